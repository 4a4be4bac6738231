//! Fault injection (issue 8): providers failing in every way the gateway
//! must survive. For each fault the test states what the client gets
//! (status, error type, what was streamed), what the record and metrics
//! say, and that nothing waits past the configured timeouts:
//! connect 500 ms, first byte / idle 2 s, total 4 s.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const TIMEOUTS: &str = "  timeouts: { connect_ms: 500, read_ms: 2000, total_ms: 4000 }\n";

fn gateway(base_url: &str, top: &str) -> Gateway {
    Gateway::start(
        &format!("{TIMEOUTS}  connect_retries: 1\n  providers:\n    openai: {{ base_url: \"{base_url}\", keys: [{{ name: k, value: sk-fault-key }}] }}\n"),
        top,
        &[],
    )
}

/// What a client saw of a possibly truncated response.
struct Seen {
    status: u16,
    head: Head,
    /// Raw bytes after the head (chunked framing included).
    raw: Vec<u8>,
    elapsed: Duration,
}

impl Seen {
    fn complete_chunked(&self) -> bool {
        self.raw.ends_with(b"0\r\n\r\n")
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.raw).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// POST a chat completion and read until the gateway closes (or 15 s).
fn call(port: u16, stream: bool) -> Seen {
    call_at(port, "/openai_passthrough/v1/chat/completions", "gpt-4o", stream)
}

/// The same, to `target` naming `model`.
fn call_at(port: u16, target: &str, model: &str, stream: bool) -> Seen {
    let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let t0 = Instant::now();
    let headers = [("authorization", "Bearer dummy"), ("content-type", "application/json")];
    let mut r = send_request(port, "POST", target, &headers, body.as_bytes(), Duration::from_secs(15));
    let head = read_head(&mut r).unwrap().expect("a response head");
    let status = head.start.split(' ').nth(1).unwrap().parse().unwrap();
    let mut raw = Vec::new();
    let _ = r.read_to_end(&mut raw);
    Seen { status, head, raw, elapsed: t0.elapsed() }
}

/// The newest record of a proxied request (the harness's readiness probes
/// are recorded too), waiting up to 3 s for it.
fn last_record(gw: &Gateway) -> Value {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(r) = gw.records(0).pop() {
            return r;
        }
        assert!(Instant::now() < deadline, "no record of the request");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn upstream_errors(gw: &Gateway, kind: &str) -> f64 {
    gw.metric("tollgate_upstream_errors_total", &[("provider", "openai"), ("kind", kind)])
}

fn sse_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

#[test]
fn provider_429_and_5xx_pass_through_unchanged_and_are_not_replayed() {
    for (status, retry_after) in [(429, Some("7")), (429, None), (500, None), (503, Some("1"))] {
        let body = json!({"error": {"message": format!("provider says {status}"), "type": "server_error"}});
        let b2 = body.clone();
        let mock = Mock::start(move |_| {
            let headers = retry_after.map(|v| vec![("retry-after".to_string(), v.to_string())]).unwrap_or_default();
            Reply::Json(status, headers, b2.to_string())
        });
        let gw = gateway(&mock.url(), "");
        let seen = call(gw.port, false);
        assert_eq!(seen.status, status);
        assert_eq!(seen.json(), body, "the provider's body, unchanged");
        assert_eq!(seen.head.get("retry-after"), retry_after);
        assert_eq!(mock.take().len(), 1, "a sent POST is never replayed");
        let rec = last_record(&gw);
        assert_eq!(rec["status"], status);
        assert_eq!(rec["error"], Value::Null, "a provider answer is not a gateway error");
        assert_eq!(gw.metric("tollgate_requests_total", &[("status", &status.to_string())]), 1.0);
        // 429 rests the key (for retry-after, 10 s without one); 5xx do not.
        let healthy = gw.metric("tollgate_provider_key_healthy", &[("provider", "openai"), ("key", "k")]);
        assert_eq!(healthy, if status == 429 { 0.0 } else { 1.0 }, "{status}");
    }
}

#[test]
fn connection_refused_is_502_after_retries() {
    let port = free_port();
    let gw = gateway(&format!("http://127.0.0.1:{port}"), "");
    let seen = call(gw.port, false);
    assert_eq!((seen.status, seen.json()["error"]["type"].as_str()), (502, Some("upstream_unreachable")));
    assert!(seen.elapsed < Duration::from_secs(3), "{:?}", seen.elapsed);
    assert_eq!(last_record(&gw)["error"], "upstream_unreachable");
    assert_eq!(upstream_errors(&gw, "upstream_unreachable"), 1.0);
}

#[test]
fn a_provider_that_never_completes_the_handshake_is_504_at_the_connect_timeout() {
    // A listener that never accepts: once its accept queue is full the
    // kernel drops new SYNs, so connecting hangs like a black-holed host.
    let l = listener();
    let addr = l.local_addr().unwrap();
    let mut held = Vec::new();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(c) => held.push(c),
            Err(_) => break,
        }
        assert!(held.len() < 5000, "the accept queue never filled");
    }
    let gw = gateway(&format!("http://{addr}"), "");
    let seen = call(gw.port, false);
    assert_eq!((seen.status, seen.json()["error"]["type"].as_str()), (504, Some("upstream_timeout")), "{}", seen.text());
    // connect_ms 500, tried twice (connect_retries: 1).
    assert!(seen.elapsed >= Duration::from_millis(900) && seen.elapsed < Duration::from_millis(2500), "{:?}", seen.elapsed);
    assert_eq!(last_record(&gw)["error"], "upstream_timeout");
    drop(held);
}

#[test]
fn reset_before_headers_is_502_and_not_replayed() {
    // Accepts, lets the request arrive, closes without reading it: the
    // kernel answers with RST.
    let l = listener();
    let port = l.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = accepted.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            drop(c);
        }
    });
    let gw = gateway(&format!("http://127.0.0.1:{port}"), "");
    let seen = call(gw.port, false);
    assert_eq!(seen.status, 502, "{}", seen.text());
    assert_eq!(seen.json()["error"]["type"], "upstream_error");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "a sent request is not replayed");
    assert_eq!(last_record(&gw)["error"], "upstream_error");
    assert_eq!(upstream_errors(&gw, "upstream_error"), 1.0);
}

#[test]
fn silent_upstream_is_504_at_the_first_byte_timeout() {
    let mock = Mock::start(|_| Reply::Silent);
    let gw = gateway(&mock.url(), "");
    let seen = call(gw.port, false);
    assert_eq!((seen.status, seen.json()["error"]["type"].as_str()), (504, Some("upstream_timeout")));
    assert!(seen.elapsed >= Duration::from_millis(1900) && seen.elapsed < Duration::from_millis(3500), "{:?}", seen.elapsed);
    assert_eq!(last_record(&gw)["error"], "upstream_timeout");
    assert_eq!(upstream_errors(&gw, "upstream_timeout"), 1.0);
    // The gateway hung up on the provider.
    let deadline = Instant::now() + Duration::from_secs(2);
    while mock.stream_closed.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "upstream connection left open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn headers_then_stall_ends_the_stream_at_the_idle_timeout() {
    let event = chunk(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n");
    let mock = Mock::start(move |_| Reply::Raw(vec![(Duration::ZERO, sse_head()), (Duration::ZERO, event.clone()), (Duration::from_secs(30), b"".to_vec())]));
    let gw = gateway(&mock.url(), "");
    let seen = call(gw.port, true);
    assert_eq!(seen.status, 200);
    assert!(seen.text().contains("\"content\":\"a\""), "what was sent before the stall arrives");
    assert!(!seen.complete_chunked(), "the client can tell the stream was cut");
    assert!(seen.elapsed < Duration::from_millis(3500), "{:?}", seen.elapsed);
    let rec = last_record(&gw);
    assert_eq!((rec["status"].as_u64(), rec["error"].as_str()), (Some(200), Some("upstream_timeout")));
    assert_eq!(upstream_errors(&gw, "upstream_timeout"), 1.0);
}

#[test]
fn a_stream_cut_mid_event_keeps_what_arrived_and_its_usage() {
    let first = chunk(b"data: {\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"hel\"}}]}\n\n");
    let usage = chunk(b"data: {\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3,\"total_tokens\":14}}\n\n");
    let half = chunk(b"data: {\"id\":\"c\",\"choi");
    let mock = Mock::start(move |_| Reply::Raw(vec![(Duration::ZERO, sse_head()), (Duration::ZERO, first.clone()), (Duration::ZERO, usage.clone()), (Duration::from_millis(50), half.clone())]));
    let gw = gateway(&mock.url(), "");
    let seen = call(gw.port, true);
    assert_eq!(seen.status, 200);
    assert!(seen.text().contains("\"content\":\"hel\"") && seen.text().contains("\"choi"), "{}", seen.text());
    assert!(!seen.complete_chunked());
    let rec = last_record(&gw);
    assert_eq!(rec["error"], "upstream_error");
    assert_eq!((rec["input_tokens"].as_u64(), rec["output_tokens"].as_u64()), (Some(11), Some(3)), "usage seen so far is kept");
}

#[test]
fn malformed_sse_passes_through_byte_for_byte() {
    let garbage: Vec<u8> = b"data: {not json\n\ndata: {\"usage\": [1,2\n\n: comment\nevent\n\ndata: \xff\xfe\n\ndata: [DONE]\n\n".to_vec();
    let g = garbage.clone();
    let mock = Mock::start(move |_| {
        let mut pieces = vec![(Duration::ZERO, sse_head())];
        for c in g.chunks(7) {
            pieces.push((Duration::from_millis(2), chunk(c)));
        }
        pieces.push((Duration::ZERO, b"0\r\n\r\n".to_vec()));
        Reply::Raw(pieces)
    });
    let gw = gateway(&mock.url(), "");
    let r = post_json(gw.port, "/openai_passthrough/v1/chat/completions", &[], &json!({"model": "gpt-4o", "stream": true}));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, garbage, "the client gets the provider's bytes");
    let rec = last_record(&gw);
    assert_eq!(rec["error"], Value::Null);
    assert_eq!(rec["input_tokens"], Value::Null, "no usage invented from garbage");
}

#[test]
fn a_100_mb_response_streams_in_bounded_memory() {
    const SIZE: usize = 100 << 20;
    let mock = Mock::start(|_| {
        Reply::Upgrade(Box::new(|mut s: TcpStream, _| {
            let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {SIZE}\r\n\r\n");
            let block = vec![b'x'; 1 << 16];
            for _ in 0..SIZE / block.len() {
                if s.write_all(&block).is_err() {
                    return;
                }
            }
        }))
    });
    let gw = Gateway::start(
        &format!("  timeouts: {{ connect_ms: 500, read_ms: 5000, total_ms: 60000 }}\n  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-fault-key }}] }}\n", mock.url()),
        "",
        &[],
    );
    let rss_before = rss_kb(gw.pid());
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /openai_passthrough/v1/files/file-1/content HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let head = read_head(&mut r).unwrap().unwrap();
    assert!(head.start.contains(" 200 "));
    assert_eq!(head.get("content-length"), Some(SIZE.to_string().as_str()), "content-length kept");
    let (mut total, mut buf, mut peak) = (0usize, vec![0u8; 1 << 16], 0u64);
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        if total % (8 << 20) < n {
            peak = peak.max(rss_kb(gw.pid()));
        }
    }
    assert_eq!(total, SIZE);
    let growth_mb = peak.saturating_sub(rss_before) / 1024;
    assert!(growth_mb < 48, "RSS grew {growth_mb} MB while moving 100 MB");
    assert_eq!(last_record(&gw)["response_bytes"].as_u64(), Some(SIZE as u64));
}

/// An SSE answer that sends `piece` once a second for a minute: never idle
/// for read_ms, so only the total deadline ends it.
fn drip(piece: &'static [u8]) -> Mock {
    Mock::start(move |_| {
        let mut pieces = vec![(Duration::ZERO, sse_head())];
        for _ in 0..60 {
            pieces.push((Duration::from_secs(1), chunk(piece)));
        }
        Reply::Raw(pieces)
    })
}

#[test]
fn a_slow_drip_is_cut_at_the_total_timeout() {
    // One byte a second: never idle for read_ms (2 s), so only the total
    // deadline (4 s) ends it.
    let mock = drip(b":");
    let gw = gateway(&mock.url(), "");
    let seen = call(gw.port, true);
    assert_eq!(seen.status, 200);
    assert!(!seen.complete_chunked());
    assert!(seen.elapsed >= Duration::from_millis(3900) && seen.elapsed < Duration::from_millis(6500), "{:?}", seen.elapsed);
    let rec = last_record(&gw);
    assert_eq!(rec["error"], "upstream_timeout");
    assert!(rec["response_bytes"].as_u64().unwrap() >= 3, "the drip was forwarded as it came");
}

#[test]
fn openai_route_deadlines_a_drip_and_a_silent_provider_without_timers() {
    // The translated route (/openai -> Anthropic) holds the same deadlines
    // as the passthrough with no timer of its own: a drip (an SSE comment a
    // second, never idle for read_ms) ends at the total deadline; a
    // provider silent after its head ends at the read timeout. Neither sent
    // the client a byte (a comment is no event, and the answer's head waits
    // for the first one, SPEC 10), so both are a 504 in SPEC 5's shape.
    let drip = drip(b": drip\n");
    let silent = Mock::start(|_| Reply::Raw(vec![(Duration::ZERO, b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{".to_vec()), (Duration::from_secs(30), Vec::new())]));
    for (mock, stream, least, most) in [(&drip, true, 3900, 6500), (&silent, false, 1900, 3500)] {
        let gw = Gateway::start(
            &format!("{TIMEOUTS}  providers:\n    anthropic: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-ant-fault }}] }}\n", mock.url()),
            "",
            &[],
        );
        let seen = call_at(gw.port, "/openai/v1/chat/completions", "anthropic/claude-sonnet-4-5", stream);
        let ms = seen.elapsed.as_millis();
        assert!(ms >= least && ms < most, "stream {stream}: ended after {ms} ms, not in {least}..{most}");
        assert_eq!((seen.status, seen.json()["error"]["type"].as_str()), (504, Some("upstream_timeout")), "stream {stream}: {}", seen.text());
        assert_eq!(last_record(&gw)["error"], "upstream_timeout");
    }
}

#[test]
fn tls_handshake_failure_and_wrong_certificate_are_502_and_nothing_is_sent() {
    // Not TLS at all: the "server" answers the ClientHello with plain text.
    let l = listener();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let gw = gateway(&format!("https://localhost:{port}"), "ca_file: /etc/ssl/certs/ca-certificates.crt");
    let seen = call(gw.port, false);
    assert_eq!((seen.status, seen.json()["error"]["type"].as_str()), (502, Some("upstream_unreachable")));
    assert!(seen.elapsed < Duration::from_secs(3));
    assert_eq!(last_record(&gw)["error"], "upstream_unreachable");
    drop(gw);

    // A real TLS server whose certificate nobody trusts (self-signed).
    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut b = openssl::x509::X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap()).unwrap();
    b.sign(&key, openssl::hash::MessageDigest::sha256()).unwrap();
    let cert = b.build();
    let mut acc = openssl::ssl::SslAcceptor::mozilla_intermediate_v5(openssl::ssl::SslMethod::tls()).unwrap();
    acc.set_private_key(&key).unwrap();
    acc.set_certificate(&cert).unwrap();
    let mock = Mock::start_tls(acc.build(), |_| json(200, json!({})));
    let gw = gateway(&format!("https://localhost:{}", mock.port), "ca_file: /etc/ssl/certs/ca-certificates.crt");
    let seen = call(gw.port, false);
    assert_eq!((seen.status, seen.json()["error"]["type"].as_str()), (502, Some("upstream_unreachable")));
    assert_eq!(mock.count(), 0, "no request over an unverified connection");
    assert_eq!(upstream_errors(&gw, "upstream_unreachable"), 1.0);
}

#[test]
fn the_gateway_keeps_serving_after_every_fault() {
    // A mixed burst of faults on one gateway, then a healthy request.
    let mock = Mock::start(|req| match req.path() {
        "/v1/silent" => Reply::Silent,
        "/v1/cut" => Reply::Raw(vec![(Duration::ZERO, sse_head()), (Duration::ZERO, chunk(b"data: {\"x\":"))]),
        "/v1/500" => json(500, json!({"error": "boom"})),
        _ => json(200, json!({"object": "list", "data": []})),
    });
    let gw = gateway(&mock.url(), "");
    let handles: Vec<_> = ["/v1/silent", "/v1/cut", "/v1/500", "/v1/silent", "/v1/cut"]
        .into_iter()
        .map(|p| {
            let port = gw.port;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                write!(s, "GET /openai_passthrough{p} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
                let mut v = Vec::new();
                let _ = s.read_to_end(&mut v);
                String::from_utf8_lossy(&v).lines().next().unwrap_or("").to_string()
            })
        })
        .collect();
    let lines: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(lines.iter().filter(|l| l.contains(" 504 ")).count(), 2, "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l.contains(" 500 ")).count(), 1, "{lines:?}");
    assert_eq!(get(gw.port, "/openai_passthrough/v1/models", &[]).status, 200);
    assert_eq!(gw.records(6).len(), 6, "one record per request");
}

/// Resident set of `pid` in KiB.
fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap()
}
