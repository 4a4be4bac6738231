//! The client-facing TLS listener (issue 16): TLS 1.2 and up, HTTP/2 or
//! HTTP/1.1 by ALPN, and a certificate that a reload can replace.
//!
//! Pingora builds a listener's OpenSSL context once, at start. So the
//! context carries no certificate: at each handshake Pingora pauses and asks
//! [`Certificates`] (its `certificate_callback`), which hands OpenSSL the
//! identity held now. A reload swaps that identity; handshakes after it get
//! the new certificate, connections already open keep theirs (TLS never
//! looks at the certificate again after the handshake).

use crate::config::tls::TlsIdentity;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::ext;
use std::sync::{Arc, RwLock};

/// The identity served to new TLS connections.
pub struct Certificates {
    current: RwLock<Arc<TlsIdentity>>,
}

impl Certificates {
    pub fn new(identity: Arc<TlsIdentity>) -> Certificates {
        Certificates { current: RwLock::new(identity) }
    }

    /// What new handshakes get.
    pub fn current(&self) -> Arc<TlsIdentity> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serve `identity` from the next handshake on. Returns whether it
    /// differs from the one served until now (same leaf, same key: no
    /// change).
    pub fn replace(&self, identity: Arc<TlsIdentity>) -> bool {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        let same = cur.leaf.to_der().ok() == identity.leaf.to_der().ok()
            && cur.chain.len() == identity.chain.len()
            && cur.key.public_eq(&identity.key);
        *cur = identity;
        !same
    }

    /// The listener's TLS settings: Mozilla's intermediate profile (TLS 1.2
    /// and 1.3, forward-secret ciphers), h2 preferred over http/1.1 by
    /// ALPN, and the certificate from `self` at every handshake.
    pub fn listener_settings(self: &Arc<Self>) -> pingora::Result<TlsSettings> {
        let mut settings = TlsSettings::with_callbacks(Box::new(Handshake(self.clone())))?;
        settings
            .set_min_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))
            .map_err(|e| pingora::Error::because(pingora::ErrorType::InternalError, "TLS 1.2 minimum", e))?;
        settings.enable_h2();
        Ok(settings)
    }
}

struct Handshake(Arc<Certificates>);

#[async_trait::async_trait]
impl TlsAccept for Handshake {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let id = self.0.current();
        // On failure the handshake goes on without a certificate and fails
        // for this client only; nothing here names the key.
        let result = ext::ssl_use_certificate(ssl, &id.leaf)
            .and_then(|_| ext::ssl_use_private_key(ssl, &id.key))
            .and_then(|_| id.chain.iter().try_for_each(|c| ext::ssl_add_chain_cert(ssl, c)));
        if let Err(e) = result {
            log::error!("TLS: cannot use the certificate ({}) for a handshake: {e}", id.describe());
        }
    }
}
