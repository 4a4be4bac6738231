//! `tollgate.tls`: TLS for clients on `listen` (issue 16).
//!
//! ```yaml
//! tollgate:
//!   tls: { cert: /etc/tollgate/tls/fullchain.pem, key: /etc/tollgate/tls/privkey.pem }
//! ```
//!
//! `cert` is a PEM chain, the server's certificate first, then its
//! intermediates (certbot's `fullchain.pem`); `key` its private key (PEM,
//! PKCS#8 or traditional RSA/EC). Both are read and checked here, when the
//! file is loaded: at start a bad file refuses the start, on `SIGHUP` it
//! refuses the reload and the running certificate stays. The key's bytes
//! are never printed (not in `Debug`, not in an error).

use super::{ConfigError, Parse};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert: Option<String>,
    key: Option<String>,
}

/// The listener's TLS: the files, and what was read from them.
#[derive(Debug, Clone)]
pub struct TlsConf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub identity: Arc<TlsIdentity>,
}

/// Only the files count: the same files re-read are "the same TLS setting"
/// for the reload's start-bound check (their content may change).
impl PartialEq for TlsConf {
    fn eq(&self, other: &Self) -> bool {
        self.cert == other.cert && self.key == other.key
    }
}

/// A certificate chain and its private key, checked to belong together.
pub struct TlsIdentity {
    pub leaf: X509,
    /// Intermediates, in the order of the file.
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TlsIdentity {
    /// Read and check `cert` (PEM chain) and `key`. Errors name the file
    /// and say why, with the config key (`cert` or `key`) it belongs to.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsIdentity, (&'static str, String)> {
        let cert_pem = std::fs::read(cert).map_err(|e| ("cert", format!("cannot read {}: {e}", cert.display())))?;
        let mut certs = X509::stack_from_pem(&cert_pem)
            .map_err(|e| ("cert", format!("{}: not a PEM certificate chain: {}", cert.display(), first_reason(&e))))?
            .into_iter();
        let leaf = certs.next().ok_or_else(|| ("cert", format!("{}: no PEM certificate in the file", cert.display())))?;
        let chain: Vec<X509> = certs.collect();
        let key_pem = std::fs::read(key).map_err(|e| ("key", format!("cannot read {}: {e}", key.display())))?;
        let pkey = PKey::private_key_from_pem(&key_pem)
            .map_err(|e| ("key", format!("{}: not a PEM private key: {}", key.display(), first_reason(&e))))?;
        let matches = leaf.public_key().map(|p| p.public_eq(&pkey)).unwrap_or(false);
        if !matches {
            return Err(("key", format!("{} is not the private key of the certificate in {}", key.display(), cert.display())));
        }
        // An expired certificate is served all the same (clients refuse it),
        // but the start and every reload say so.
        Ok(TlsIdentity { leaf, chain, key: pkey })
    }

    /// Subject, serial and expiry, for the log: never the key.
    pub fn describe(&self) -> String {
        let subject = self
            .leaf
            .subject_name()
            .entries()
            .filter_map(|e| Some(format!("{}={}", e.object().nid().short_name().ok()?, e.data().to_string().ok()?)))
            .collect::<Vec<_>>()
            .join(",");
        let serial = self.leaf.serial_number().to_bn().ok().and_then(|b| b.to_hex_str().ok()).map_or_else(String::new, |s| s.to_string());
        format!("subject {subject}, serial {serial}, expires {}, {} intermediate(s)", self.leaf.not_after(), self.chain.len())
    }

    /// The certificate's end of validity has passed.
    pub fn expired(&self) -> bool {
        openssl::asn1::Asn1Time::days_from_now(0).is_ok_and(|now| self.leaf.not_after() < now)
    }
}

/// OpenSSL's first reason, without the library's internal file names.
fn first_reason(e: &openssl::error::ErrorStack) -> String {
    e.errors().first().and_then(|e| e.reason().map(str::to_string)).unwrap_or_else(|| "unreadable".into())
}

pub(super) fn parse(raw: Option<RawTls>, p: &Parse) -> Result<Option<TlsConf>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let path = |v: Option<String>, name: &str| -> Result<PathBuf, ConfigError> {
        match v {
            None => Err(p.err(&format!("tollgate.tls.{name}"), "is missing (a PEM file)".into())),
            Some(s) if s.trim().is_empty() => Err(p.err(&format!("tollgate.tls.{name}"), "is empty".into())),
            Some(s) => Ok(PathBuf::from(s)),
        }
    };
    let cert = path(raw.cert, "cert")?;
    let key = path(raw.key, "key")?;
    let identity = TlsIdentity::load(&cert, &key).map_err(|(k, m)| p.err(&format!("tollgate.tls.{k}"), m))?;
    Ok(Some(TlsConf { cert, key, identity: Arc::new(identity) }))
}

#[cfg(test)]
#[path = "tls_tests.rs"]
pub(crate) mod tests;
