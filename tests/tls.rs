//! Upstream TLS: SNI sent, certificate chain and host name verified against
//! the `ca_file` of the config (a test CA made here).

mod common;

use common::pki::{cert, key};
use common::*;
use openssl::ssl::{SslAcceptor, SslMethod};
use serde_json::json;
use std::sync::{Arc, Mutex};


struct Pki {
    ca_pem: Vec<u8>,
    acceptor: SslAcceptor,
    /// Server names the clients asked for (SNI).
    sni: Arc<Mutex<Vec<String>>>,
}

fn pki() -> Pki {
    let ca_key = key();
    let ca = cert("tollgate test CA", &ca_key, None, true, &[]);
    let leaf_key = key();
    let leaf = cert("localhost", &leaf_key, Some((&ca, &ca_key)), false, &["localhost"]);
    let mut acc = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acc.set_private_key(&leaf_key).unwrap();
    acc.set_certificate(&leaf).unwrap();
    acc.add_extra_chain_cert(ca.clone()).unwrap();
    let sni: Arc<Mutex<Vec<String>>> = Default::default();
    let seen = sni.clone();
    acc.set_servername_callback(move |ssl, _| {
        if let Some(n) = ssl.servername(openssl::ssl::NameType::HOST_NAME) {
            seen.lock().unwrap().push(n.to_string());
        }
        Ok(())
    });
    Pki { ca_pem: ca.to_pem().unwrap(), acceptor: acc.build(), sni }
}

fn gateway_with(ca_file: &str, base_url: &str) -> Gateway {
    Gateway::start(
        &format!("  timeouts: {{ connect_ms: 2000, read_ms: 5000 }}\n  providers:\n    openai: {{ base_url: \"{base_url}\", keys: [{{ name: k, value: sk-tls-key }}] }}\n"),
        &format!("ca_file: {ca_file}"),
        &[],
    )
}

#[test]
fn tls_upstream_verified_against_ca_file_with_sni() {
    let Pki { ca_pem, acceptor, sni } = pki();
    let mock = Mock::start_tls(acceptor, |_| json(200, json!({"object": "list", "data": []})));
    let dir = temp_dir("tls");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca_pem).unwrap();

    // Trusted CA and matching host name: the request goes through.
    let gw = gateway_with(ca_path.to_str().unwrap(), &format!("https://localhost:{}", mock.port));
    let r = get(gw.port, "/openai_passthrough/v1/models", &[("authorization", "Bearer dummy-key")]);
    assert_eq!(r.status, 200, "{} {}", r.text(), gw.stderr());
    let reqs = mock.take();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-tls-key"));
    assert_eq!(reqs[0].header("host"), Some(format!("localhost:{}", mock.port).as_str()));
    assert_eq!(sni.lock().unwrap().first().map(String::as_str), Some("localhost"), "SNI");
    drop(gw);

    // The same server when the CA is not trusted: refused, never sent.
    let gw = gateway_with("/etc/ssl/certs/ca-certificates.crt", &format!("https://localhost:{}", mock.port));
    let r = get(gw.port, "/openai_passthrough/v1/models", &[]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "upstream_unreachable");
    assert_eq!(mock.count(), 0);
    drop(gw);

    // Trusted CA but a name the certificate does not carry: refused too.
    let gw = gateway_with(ca_path.to_str().unwrap(), &format!("https://127.0.0.1:{}", mock.port));
    let r = get(gw.port, "/openai_passthrough/v1/models", &[]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(mock.count(), 0);
    let _ = std::fs::remove_dir_all(dir);
}
