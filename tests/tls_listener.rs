//! TLS for clients (issue 16): `tollgate.tls` on `listen`, HTTP/1.1 and
//! HTTP/2 by ALPN, the certificate replaced on SIGHUP without touching open
//! connections, bad files refused at start and on reload. A throwaway CA
//! and server certificates are made here; HTTP/2 is spoken by curl.

mod common;

use common::pki::{cert, key};
use common::*;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use openssl::x509::X509;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "sk-tls-listener-secret";

/// A CA, the server certificate it signed for `localhost` and its key, in
/// files the gateway reads.
struct Tls {
    dir: PathBuf,
    ca: X509,
    ca_key: PKey<Private>,
    cert_path: PathBuf,
    key_path: PathBuf,
    ca_path: PathBuf,
}

impl Tls {
    fn new() -> Tls {
        let dir = temp_dir("tls-listener");
        let ca_key = key();
        let ca = cert("tollgate listener test CA", &ca_key, None, true, &[]);
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.to_pem().unwrap()).unwrap();
        let t = Tls { cert_path: dir.join("fullchain.pem"), key_path: dir.join("privkey.pem"), ca_path, dir, ca, ca_key };
        t.issue();
        t
    }

    /// A new server certificate and key (a renewal), written over the files.
    fn issue(&self) -> X509 {
        let renewal = self.renewal();
        self.install(&renewal);
        renewal.0
    }

    /// A new server certificate, its PEM chain and its key.
    fn renewal(&self) -> (X509, Vec<u8>, Vec<u8>) {
        let k = key();
        let leaf = cert("localhost", &k, Some((&self.ca, &self.ca_key)), false, &["localhost"]);
        let mut chain = leaf.to_pem().unwrap();
        chain.extend(self.ca.to_pem().unwrap());
        (leaf, chain, k.private_key_to_pem_pkcs8().unwrap())
    }

    fn install(&self, (_, chain, key): &(X509, Vec<u8>, Vec<u8>)) {
        std::fs::write(&self.cert_path, chain).unwrap();
        std::fs::write(&self.key_path, key).unwrap();
    }

    fn section(&self, mock: &Mock) -> String {
        format!(
            "  tls: {{ cert: \"{}\", key: \"{}\" }}\n  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: {KEY} }}] }}\n",
            self.cert_path.display(),
            self.key_path.display(),
            mock.url()
        )
    }

    /// A client trusting the test CA, offering `alpn` (wire format).
    fn client(&self, alpn: &[u8]) -> SslConnector {
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_ca_file(&self.ca_path).unwrap();
        b.set_alpn_protos(alpn).unwrap();
        b.build()
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const H1: &[u8] = b"\x08http/1.1";
const H2_H1: &[u8] = b"\x02h2\x08http/1.1";

fn provider() -> Mock {
    Mock::start(|req| match req.path() {
        "/v1/models" => json(200, json!({"object": "list", "data": [{"id": "gpt-4o"}]})),
        "/v1/realtime" => websocket_echo(),
        // 12 s: outlasts the 5 s an upgraded process serves on before its drain begins.
        _ if String::from_utf8_lossy(&req.body).contains("\"slow\":\"long\"") => Reply::Sse {
            events: (0..24).map(|i| json!({"object": "chat.completion.chunk", "i": i}).to_string()).collect(),
            delay: Duration::from_millis(500),
        },
        _ if String::from_utf8_lossy(&req.body).contains("\"slow\":true") => Reply::Sse {
            events: (0..8).map(|i| json!({"object": "chat.completion.chunk", "i": i}).to_string()).collect(),
            delay: Duration::from_millis(500),
        },
        _ if String::from_utf8_lossy(&req.body).contains("\"stream\":true") => Reply::Sse {
            events: (0..5).map(|i| json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": format!("t{i}")}}]}).to_string()).collect(),
            delay: Duration::from_millis(200),
        },
        _ => json(200, json!({"id": "c1", "object": "chat.completion", "model": "gpt-4o", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})),
    })
}

fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &str, close: bool) -> Vec<u8> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\n");
    if close {
        raw.push_str("connection: close\r\n");
    }
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    raw.into_bytes()
}

/// Each SSE event reached the client before the provider wrote the next.
fn assert_event_by_event(arrivals: &[Instant], sent: &[Instant], n: usize) {
    assert_eq!(arrivals.len(), n, "events received");
    assert_eq!(sent.len(), n, "events sent");
    for i in 0..n - 1 {
        assert!(arrivals[i] < sent[i + 1], "event {i} was held until event {} was sent", i + 1);
    }
}

#[test]
fn https_http1_passthrough_stream_and_websocket() {
    let tls = Tls::new();
    let mock = provider();
    let client = tls.client(H1);
    let gw = Gateway::start_tls(&tls.section(&mock), "", &[], Some(client.clone()));

    // Plain request, verified against the CA, HTTP/1.1 by ALPN.
    let s = tls_connect(&client, gw.port).unwrap();
    assert_eq!(s.ssl().selected_alpn_protocol(), Some(b"http/1.1".as_slice()));
    assert!(matches!(s.ssl().version2(), Some(SslVersion::TLS1_3 | SslVersion::TLS1_2)));
    drop(s);
    let r = tls_raw_request(&client, gw.port, &request_bytes("GET", "/openai_passthrough/v1/models", &[("authorization", "Bearer dummy-key")], "", true)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"][0]["id"], "gpt-4o");
    let up = mock.take();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    let rec = gw.record(r.header("x-tollgate-request-id").unwrap());
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["route"], "/openai_passthrough");

    // SSE: event by event through TLS.
    let body = json!({"model": "gpt-4o", "stream": true, "messages": []}).to_string();
    let r = tls_raw_request(&client, gw.port, &request_bytes("POST", "/openai_passthrough/v1/chat/completions", &[("content-type", "application/json")], &body, true)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let mut arrivals = Vec::new();
    for (t, bytes) in &r.chunks {
        arrivals.extend(std::iter::repeat(*t).take(sse_data(bytes).len()));
    }
    assert_event_by_event(&arrivals, &mock.sent_events.lock().unwrap(), 5);
    assert_eq!(sse_data(&r.body).len(), 5);

    // WebSocket upgrade (HTTP/1.1) through TLS, both directions.
    let mut s = tls_connect(&client, gw.port).unwrap();
    websocket_round_trip(&mut s, "localhost");
    let up = mock.take();
    assert_eq!(up.last().unwrap().target, "/v1/realtime?model=gpt-4o-realtime");
    assert_eq!(up.last().unwrap().header("authorization"), Some(format!("Bearer {KEY}").as_str()));

    // Plain HTTP on the TLS port gets no answer in the clear.
    let plain = raw_request(gw.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    assert!(plain.map_or(true, |r| r.status != 200), "plain HTTP answered on the TLS listener");
}

#[test]
fn tls_below_1_2_is_refused() {
    let tls = Tls::new();
    let mock = provider();
    let gw = Gateway::start_tls(&tls.section(&mock), "", &[], Some(tls.client(H1)));
    // A client that can only speak TLS 1.1 (security level 0 lets OpenSSL 3
    // offer it at all).
    let old_client = || {
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_security_level(0);
        b.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
        b.set_min_proto_version(Some(SslVersion::TLS1_1)).unwrap();
        b.set_max_proto_version(Some(SslVersion::TLS1_1)).unwrap();
        b.set_verify(openssl::ssl::SslVerifyMode::NONE);
        b.build()
    };
    // Control: that client does complete a TLS 1.1 handshake with a server
    // that allows it, so the refusal below is the gateway's.
    let permissive = {
        let k = key();
        let c = cert("localhost", &k, None, false, &["localhost"]);
        let mut a = openssl::ssl::SslAcceptor::mozilla_intermediate(SslMethod::tls()).unwrap();
        a.set_security_level(0);
        a.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
        a.set_min_proto_version(Some(SslVersion::TLS1_1)).unwrap();
        a.set_private_key(&k).unwrap();
        a.set_certificate(&c).unwrap();
        a.build()
    };
    let l = listener();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        permissive.accept(s).map(|_| ()).map_err(|e| e.to_string())
    });
    let c = old_client().connect("localhost", TcpStream::connect(("127.0.0.1", port)).unwrap());
    assert!(c.is_ok(), "the TLS 1.1 client cannot do TLS 1.1 here: {:?}", c.err());
    drop(c);
    let _ = server.join();
    let r = old_client().connect("localhost", TcpStream::connect(("127.0.0.1", gw.port)).unwrap());
    assert!(r.is_err(), "the gateway accepted TLS 1.1");
}

/// curl over HTTP/2: (status, headers, body, the HTTP version curl used).
fn curl(tls: &Tls, port: u16, args: &[&str]) -> (u16, Head, String, String) {
    let url_base = format!("https://localhost:{port}");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http2", "--cacert"]).arg(&tls.ca_path);
    cmd.args(["--resolve", &format!("localhost:{port}:127.0.0.1"), "-D", "-", "-w", "\n__HTTP_VERSION__%{http_version}"]);
    for a in args {
        cmd.arg(a.replace("BASE", &url_base));
    }
    let out = cmd.output().expect("curl runs");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, version) = text.rsplit_once("\n__HTTP_VERSION__").unwrap();
    let mut r = BufReader::new(rest.as_bytes());
    let head = read_head(&mut r).unwrap().unwrap();
    let mut body = String::new();
    r.read_to_string(&mut body).unwrap();
    let status = head.start.split(' ').nth(1).unwrap().parse().unwrap();
    assert_no_secret(&text, "a response over h2");
    (status, head, body, version.to_string())
}

#[test]
fn http2_by_alpn_with_curl() {
    let out = Command::new("curl").arg("-V").output().expect("curl is installed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("HTTP2"), "this curl has no HTTP/2");
    let tls = Tls::new();
    let mock = provider();
    let gw = Gateway::start_tls(&tls.section(&mock), "", &[], Some(tls.client(H1)));

    // ALPN: h2 preferred when offered.
    let s = tls_connect(&tls.client(H2_H1), gw.port).unwrap();
    assert_eq!(s.ssl().selected_alpn_protocol(), Some(b"h2".as_slice()));
    drop(s);

    let (status, head, body, version) = curl(&tls, gw.port, &["-H", "authorization: Bearer dummy-key", "BASE/openai_passthrough/v1/models"]);
    assert_eq!((status, version.as_str()), (200, "2"), "{body}");
    assert!(head.get("x-tollgate-request-id").is_some());
    for hop in ["connection", "transfer-encoding", "keep-alive", "upgrade"] {
        assert!(head.get(hop).is_none(), "{hop} in an h2 response: {head:?}");
    }
    let up = mock.take();
    assert_eq!(up[0].header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(up[0].header("host"), Some(mock.url().trim_start_matches("http://")));

    // The gateway's own errors (SPEC 5) over h2: JSON, the client's request id.
    let (status, head, body404, version) = curl(&tls, gw.port, &["-H", "x-request-id: req-h2-404", "BASE/nope"]);
    assert_eq!((status, version.as_str()), (404, "2"));
    assert_eq!(head.get("content-type"), Some("application/json"));
    assert_eq!(head.get("x-tollgate-request-id"), Some("req-h2-404"));
    let e: serde_json::Value = serde_json::from_str(&body404).unwrap();
    assert_eq!((e["error"]["type"].as_str(), e["error"]["request_id"].as_str()), (Some("route_not_found"), Some("req-h2-404")));

    // A body with a length, and one without (streamed from stdin): the
    // provider gets both whole.
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (status, _, answer, _) = curl(&tls, gw.port, &["-H", "content-type: application/json", "--data-binary", &body, "BASE/openai_passthrough/v1/chat/completions"]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&answer).unwrap()["object"], "chat.completion");
    let mut child = Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&tls.ca_path)
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", gw.port), "-X", "POST", "-T", "-", "-H", "content-type: application/json"])
        .arg(format!("https://localhost:{}/openai_passthrough/v1/chat/completions", gw.port))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("chat.completion"), "{}", String::from_utf8_lossy(&out.stdout));
    let up = mock.take();
    assert_eq!(up.len(), 2, "{up:#?}");
    assert!(up.iter().all(|r| r.body == body.as_bytes()), "{up:?}");
    assert!(up[1].header("content-length").is_none() && up[1].header("transfer-encoding") == Some("chunked"), "{:?}", up[1].head);

    // The /openai route answers itself: over h2 too.
    let (status, head, answer, version) = curl(&tls, gw.port, &["-H", "content-type: application/json", "--data-binary", &body, "BASE/openai/v1/chat/completions"]);
    assert_eq!((status, version.as_str()), (200, "2"), "{answer}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&answer).unwrap()["choices"][0]["message"]["content"], "hi");
    assert!(head.get("transfer-encoding").is_none());
    let rec = gw.record(head.get("x-tollgate-request-id").unwrap());
    assert_eq!((rec["route"].as_str(), rec["input_tokens"].as_u64()), (Some("/openai"), Some(3)));

    // SSE over h2 (passthrough, then translated by /openai), event by event.
    for path in ["/openai_passthrough/v1/chat/completions", "/openai/v1/chat/completions"] {
        mock.sent_events.lock().unwrap().clear();
        let stream_body = json!({"model": "gpt-4o", "stream": true, "messages": []}).to_string();
        let mut child = Command::new("curl")
            .args(["-sS", "-N", "--http2", "--cacert"])
            .arg(&tls.ca_path)
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", gw.port), "-H", "content-type: application/json", "--data-binary", &stream_body])
            .arg(format!("https://localhost:{}{path}", gw.port))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut arrivals = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if line.starts_with("data: {") {
                arrivals.push(Instant::now());
            }
        }
        assert!(child.wait().unwrap().success());
        assert_event_by_event(&arrivals, &mock.sent_events.lock().unwrap(), 5);
    }
}

#[test]
fn sighup_serves_a_renewed_certificate_and_keeps_open_connections() {
    let tls = Tls::new();
    let first = X509::from_pem(&std::fs::read(&tls.cert_path).unwrap()).unwrap();
    let mock = provider();
    let client = tls.client(H1);
    let gw = Gateway::start_tls(&tls.section(&mock), "", &[], Some(client.clone()));
    let served = |c: &SslConnector| tls_connect(c, gw.port).unwrap().ssl().peer_certificate().unwrap().to_der().unwrap();
    assert_eq!(served(&client), first.to_der().unwrap());

    // An idle keep-alive connection and a stream in progress.
    let mut kept = BufReader::new(tls_connect(&client, gw.port).unwrap());
    kept.get_mut().write_all(&request_bytes("GET", "/openai_passthrough/v1/models", &[], "", false)).unwrap();
    assert_eq!(read_response(&mut kept).unwrap().status, 200);
    let renewal = tls.renewal();
    let c2 = client.clone();
    let port = gw.port;
    let stream = std::thread::spawn(move || {
        let body = json!({"model": "gpt-4o", "stream": true, "slow": true, "messages": []}).to_string();
        tls_raw_request(&c2, port, &request_bytes("POST", "/openai_passthrough/v1/chat/completions", &[], &body, true)).unwrap()
    });
    while mock.sent_events.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }

    // Renewal: new key, new certificate, then SIGHUP.
    tls.install(&renewal);
    let renewed = renewal.0;
    gw.signal("HUP");
    gw.wait_stderr("TLS certificate from", 1);
    assert!(mock.sent_events.lock().unwrap().len() < 8, "the stream ended before the reload");
    assert_eq!(served(&client), renewed.to_der().unwrap(), "new connections get the renewed certificate");
    let r = tls_raw_request(&client, gw.port, &request_bytes("GET", "/openai_passthrough/v1/models", &[], "", true)).unwrap();
    assert_eq!(r.status, 200);
    // The open connection goes on with its own certificate.
    kept.get_mut().write_all(&request_bytes("GET", "/openai_passthrough/v1/models", &[], "", false)).unwrap();
    assert_eq!(read_response(&mut kept).unwrap().status, 200, "the open connection was dropped");
    assert_eq!(kept.get_ref().ssl().peer_certificate().unwrap().to_der().unwrap(), first.to_der().unwrap());
    let r = stream.join().unwrap();
    assert_eq!(sse_data(&r.body).len(), 8, "the stream in progress was cut: {}", r.text());
    assert_eq!(gw.metric("tollgate_config_reloads_total", &[("result", "success")]), 1.0);

    // A broken certificate file, then a key that is not the certificate's:
    // each reload is refused, counted, and the renewed certificate stays.
    let good_cert = std::fs::read(&tls.cert_path).unwrap();
    std::fs::write(&tls.cert_path, b"-----BEGIN CERTIFICATE-----\ntruncated\n").unwrap();
    gw.signal("HUP");
    gw.wait_stderr("reload refused", 1);
    assert!(gw.stderr().contains("`tollgate.tls.cert`") && gw.stderr().contains(tls.cert_path.to_str().unwrap()), "{}", gw.stderr());
    assert_eq!(served(&client), renewed.to_der().unwrap());
    std::fs::write(&tls.cert_path, good_cert).unwrap();
    std::fs::write(&tls.key_path, key().private_key_to_pem_pkcs8().unwrap()).unwrap();
    gw.signal("HUP");
    gw.wait_stderr("reload refused", 2);
    assert!(gw.stderr().contains("`tollgate.tls.key`"), "{}", gw.stderr());
    assert_eq!(served(&client), renewed.to_der().unwrap());
    assert_eq!(gw.metric("tollgate_config_reloads_total", &[("result", "failure")]), 2.0);
    assert_eq!(gw.metric("tollgate_config_reloads_total", &[("result", "success")]), 1.0);
    assert!(!gw.stderr().contains("PRIVATE KEY"), "key material in the log");
}

#[test]
fn bad_certificate_files_refuse_the_start() {
    let tls = Tls::new();
    let garbage = tls.dir.join("garbage.pem");
    std::fs::write(&garbage, b"not a certificate").unwrap();
    let other_key = tls.dir.join("other-key.pem");
    std::fs::write(&other_key, key().private_key_to_pem_pkcs8().unwrap()).unwrap();
    let missing = tls.dir.join("missing.pem");
    let cases = [
        (&garbage, &tls.key_path, "tollgate.tls.cert", &garbage),
        (&missing, &tls.key_path, "tollgate.tls.cert", &missing),
        (&tls.cert_path, &other_key, "tollgate.tls.key", &other_key),
        (&tls.cert_path, &missing, "tollgate.tls.key", &missing),
    ];
    for (i, (cert, key, name, file)) in cases.into_iter().enumerate() {
        let conf = tls.dir.join(format!("bad-{i}.yaml"));
        std::fs::write(
            &conf,
            format!("version: 1\ntollgate:\n  listen: \"127.0.0.1:{}\"\n  tls: {{ cert: \"{}\", key: \"{}\" }}\n", free_port(), cert.display(), key.display()),
        )
        .unwrap();
        let mut child = Command::new(BIN).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("tollgate started with {name} = {}", file.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("`{name}`")) && err.contains(file.to_str().unwrap()), "{name}: {err}");
    }
}

#[test]
fn graceful_upgrade_keeps_tls_and_reads_the_files_again() {
    let tls = Tls::new();
    let first = X509::from_pem(&std::fs::read(&tls.cert_path).unwrap()).unwrap().to_der().unwrap();
    let mock = provider();
    let client = tls.client(H2_H1);
    let mut gw = Gateway::start_tls(&tls.section(&mock), "", &[], Some(tls.client(H1)));
    // A stream on the old process, across the upgrade.
    let (c2, port) = (tls.client(H1), gw.port);
    let stream = std::thread::spawn(move || {
        let body = json!({"model": "gpt-4o", "stream": true, "slow": true, "messages": []}).to_string();
        tls_raw_request(&c2, port, &request_bytes("POST", "/openai_passthrough/v1/chat/completions", &[], &body, true)).unwrap()
    });
    while mock.sent_events.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let renewed = tls.issue().to_der().unwrap();
    let mut old = gw.upgrade();
    // The new process serves the files as they are now, with h2.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(s) = tls_connect(&client, gw.port) {
            let der = s.ssl().peer_certificate().unwrap().to_der().unwrap();
            if der == renewed {
                assert_eq!(s.ssl().selected_alpn_protocol(), Some(b"h2".as_slice()));
                break;
            }
            assert_eq!(der, first, "an unknown certificate");
        }
        assert!(Instant::now() < deadline, "the upgraded process never served the renewed certificate: {}", gw.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = tls_raw_request(&tls.client(H1), gw.port, &request_bytes("GET", "/openai_passthrough/v1/models", &[], "", true)).unwrap();
    assert_eq!(r.status, 200);
    let r = stream.join().unwrap();
    assert_eq!(sse_data(&r.body).len(), 8, "the stream on the old process was cut: {}", r.text());
    let _ = old.wait();
}

#[test]
fn an_h2_client_that_goes_away_ends_the_provider_stream() {
    let tls = Tls::new();
    let mock = provider();
    let gw = Gateway::start_tls(&tls.section(&mock), "", &[], Some(tls.client(H1)));
    // Passthrough (Pingora relays) and /openai (the gateway relays itself).
    for (i, path) in ["/openai_passthrough/v1/chat/completions", "/openai/v1/chat/completions"].into_iter().enumerate() {
        mock.sent_events.lock().unwrap().clear();
        let body = json!({"model": "gpt-4o", "stream": true, "slow": true, "messages": []}).to_string();
        let mut child = Command::new("curl")
            .args(["-sS", "-N", "--http2", "--cacert"])
            .arg(&tls.ca_path)
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", gw.port), "-H", "content-type: application/json", "--data-binary", &body])
            .arg(format!("https://localhost:{}{path}", gw.port))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.starts_with("data: ") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "no event before the end");
        }
        child.kill().unwrap();
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while mock.stream_closed.lock().unwrap().len() <= i {
            assert!(Instant::now() < deadline, "{path}: the provider stream went on after the client left");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(mock.sent_events.lock().unwrap().len() < 8, "{path}: every event was sent");
        let rec = gw.records(i + 1).into_iter().filter(|r| r["stream"] == true).nth(i).unwrap_or_else(|| panic!("no record for {path}"));
        assert_eq!(rec["route"], path.split("/v1").next().unwrap());
    }
}

// ---------------------------------------------------------------------------
// HTTP/2 through a drain (SIGTERM) and a graceful upgrade
// ---------------------------------------------------------------------------

/// An h2 connection to the gateway: the request handle and the task driving
/// the connection (its result says how the connection ended).
async fn h2_connect(tls: &Tls, port: u16) -> (h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let ssl = tls.client(b"\x02h2").configure().unwrap().into_ssl("localhost").unwrap();
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut s).connect().await.unwrap();
    assert_eq!(s.ssl().selected_alpn_protocol(), Some(b"h2".as_slice()));
    let (send, conn) = h2::client::handshake(s).await.unwrap();
    (send, tokio::spawn(conn))
}

/// How one h2 request ended: its status and whole body, or the stream's
/// error.
async fn h2_call(send: &mut h2::client::SendRequest<bytes::Bytes>, port: u16, method: &str, path: &str, body: &str) -> Result<(u16, Vec<u8>), h2::Error> {
    let mut send = send.clone().ready().await?;
    let req = http::Request::builder().method(method).uri(format!("https://localhost:{port}{path}")).header("content-type", "application/json").body(()).unwrap();
    let (resp, mut out) = send.send_request(req, body.is_empty())?;
    if !body.is_empty() {
        out.send_data(bytes::Bytes::from(body.to_string()), true)?;
    }
    let (head, mut recv) = resp.await?.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok((head.status.as_u16(), data))
}

/// A new stream opened on a draining connection is answered whole or
/// refused the way RFC 9113 lets a client retry it: GOAWAY, or
/// REFUSED_STREAM. Anything else (a reset, a cut connection) fails.
fn assert_answered_or_refused(outcome: &Result<(u16, Vec<u8>), h2::Error>, what: &str) {
    match outcome {
        Ok((status, body)) => assert_eq!((*status, serde_json::from_slice::<serde_json::Value>(body).is_ok()), (200, true), "{what}: {}", String::from_utf8_lossy(body)),
        Err(e) => assert!(
            (e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR)) || e.reason() == Some(h2::Reason::REFUSED_STREAM),
            "{what}: the stream was cut, not refused cleanly: {e:?}"
        ),
    }
}

/// Two h2 streams in flight on one connection when the drain begins (SIGTERM,
/// then a graceful upgrade) get every event; streams opened on that
/// connection after the signal are answered or refused with GOAWAY, never
/// cut; the GOAWAY comes while the two streams are still running; the
/// connection then ends without an error of the server's; after an upgrade a
/// new connection is served by the new process.
///
/// On an upgrade, Pingora serves on for 5 s after handing the listeners over
/// (`CLOSE_TIMEOUT` in pingora-core's `server/mod.rs`) before its shutdown
/// watch flips and the GOAWAY goes out, so the streams there last 12 s.
#[test]
fn h2_streams_in_flight_survive_a_drain_and_an_upgrade() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for upgrade in [false, true] {
        let (slow, events) = if upgrade { (json!("long"), 24) } else { (json!(true), 8) };
        let tls = Tls::new();
        let mock = provider();
        let mut gw = Gateway::start_tls(&tls.section(&mock), "grace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 10", &[], Some(tls.client(H1)));
        let port = gw.port;
        let (send, conn) = rt.block_on(h2_connect(&tls, port));
        let slow = json!({"model": "gpt-4o", "stream": true, "slow": slow, "messages": []}).to_string();
        let streams: Vec<_> = ["/openai_passthrough/v1/chat/completions", "/openai/v1/chat/completions"]
            .into_iter()
            .map(|path| {
                let (mut send, body) = (send.clone(), slow.clone());
                rt.spawn(async move { h2_call(&mut send, port, "POST", path, &body).await })
            })
            .collect();
        // Both streams have begun (each provider stream sent its first event).
        let deadline = Instant::now() + Duration::from_secs(10);
        while mock.sent_events.lock().unwrap().len() < 2 {
            assert!(Instant::now() < deadline, "the streams never began: {}", gw.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
        let old = if upgrade { Some(gw.upgrade()) } else { gw.signal("TERM"); None };
        // New streams on the draining connection, until it refuses them.
        let mut late = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let outcome = rt.block_on(h2_call(&mut send.clone(), port, "GET", "/openai_passthrough/v1/models", ""));
            assert_answered_or_refused(&outcome, &format!("new stream {} after the drain began (upgrade: {upgrade})", late.len()));
            let refused = outcome.is_err();
            late.push(outcome);
            if refused || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(late.last().unwrap().is_err(), "the draining connection never sent GOAWAY (upgrade: {upgrade}): {}", gw.stderr());
        assert!(
            streams.iter().all(|s| !s.is_finished()),
            "a stream ended before the GOAWAY: the drain was not tested with streams in flight (upgrade: {upgrade}, {} late streams)",
            late.len()
        );
        for (i, s) in streams.into_iter().enumerate() {
            let (status, body) = rt.block_on(s).unwrap().unwrap_or_else(|e| panic!("stream {i} in flight was cut (upgrade: {upgrade}): {e:?}"));
            assert_eq!(status, 200);
            assert_eq!(sse_data(&body).iter().filter(|d| d.contains("chat.completion.chunk")).count(), events, "stream {i} lost events (upgrade: {upgrade}): {}", String::from_utf8_lossy(&body));
        }
        // The connection ends without an error of the server's (no GOAWAY
        // with an error code, no reset while streams ran: those failed the
        // streams above). Both peers close it at the same moment: the server
        // after its last stream, and h2's client too, as soon as it is idle
        // after a GOAWAY (`proto/connection.rs`, `error.is_some() &&
        // !has_streams()`), with a GOAWAY and a TLS close_notify of its own.
        // When the server's close wins, those last writes of the client fail
        // (EPIPE, or a reset), with nothing left in flight.
        let ended = rt.block_on(async { tokio::time::timeout(Duration::from_secs(15), conn).await });
        drop(send);
        match ended.expect("the draining connection was never closed").unwrap() {
            Ok(()) => {}
            Err(e) if e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR) => {}
            Err(e) if e.get_io().is_some_and(|io| matches!(io.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::NotConnected)) => {}
            Err(e) => panic!("the connection ended badly (upgrade: {upgrade}): {e:?}"),
        }
        if let Some(mut old) = old {
            // The new process serves new h2 connections.
            let (mut send, _conn) = rt.block_on(h2_connect(&tls, port));
            let (status, body) = rt.block_on(h2_call(&mut send, port, "POST", "/openai/v1/chat/completions", &json!({"model": "gpt-4o", "messages": []}).to_string())).unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let _ = old.wait();
        } else {
            let status = gw.terminate();
            assert!(status.success(), "the drain did not end cleanly: {status:?} {}", gw.stderr());
        }
        let records = gw.records(2);
        assert!(records.iter().filter(|r| r["stream"] == true && r["status"] == 200).count() >= 2, "{records:?}");
    }
}
