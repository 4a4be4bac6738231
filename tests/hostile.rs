//! Hostile clients (issue 8): each abuse gets a clear answer and has no
//! effect upstream. Path tricks (`..`, `%2e%2e`, `//host`, `@host`, `\`,
//! control bytes) are in tests/gateway.rs; this file covers the rest.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn setup(limits: &str) -> (Mock, Gateway) {
    let mock = Mock::start(|r| json(200, json!({"object": "list", "path": r.path(), "body_len": r.body.len()})));
    let gw = Gateway::start(
        &format!("{limits}  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-hostile-key }}] }}\n", mock.url()),
        "",
        &[],
    );
    (mock, gw)
}

/// Send raw bytes, read everything until the gateway closes (10 s max).
fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(resp: &str) -> u16 {
    resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn oversized_heads_get_431_and_oversized_bodies_413_before_any_upstream_contact() {
    let (mock, gw) = setup("  limits: { max_request_body_bytes: 100000, max_header_bytes: 16384 }\n");
    // One big header, many headers, and a very long path.
    let big = "a".repeat(20_000);
    let r = get(gw.port, "/openai_passthrough/v1/models", &[("x-big", &big)]);
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (431, Some("headers_too_large")));
    let many: Vec<(String, String)> = (0..200).map(|i| (format!("x-h{i}"), "v".repeat(100))).collect();
    let many_ref: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(get(gw.port, "/openai_passthrough/v1/models", &many_ref).status, 431);
    let long_path = format!("/openai_passthrough/v1/{}", "p".repeat(20_000));
    assert_eq!(get(gw.port, &long_path, &[]).status, 431);
    // Above Pingora's own 1 MiB cap the parser refuses with 400 and closes.
    let huge = "b".repeat(1_200_000);
    let resp = raw_exchange(gw.port, format!("GET /openai_passthrough/v1/models HTTP/1.1\r\nhost: x\r\nx-huge: {huge}\r\n\r\n").as_bytes());
    assert_eq!(status_of(&resp), 400, "{}", &resp[..resp.len().min(200)]);

    // Body over the limit by content-length: refused before reading it.
    let body = vec![b'x'; 200_000];
    let r = request(gw.port, "POST", "/openai_passthrough/v1/files", &[], &body);
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (413, Some("payload_too_large")));
    // Chunked, no length announced: cut when the limit is crossed; the
    // provider never receives a complete request.
    let mut raw = b"POST /openai_passthrough/v1/files HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for _ in 0..10 {
        raw.extend_from_slice(format!("{:x}\r\n", 30_000).as_bytes());
        raw.extend_from_slice(&[b'y'; 30_000]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let resp = raw_exchange(gw.port, &raw);
    assert!(status_of(&resp) == 413 || resp.is_empty(), "{}", &resp[..resp.len().min(300)]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(mock.take().iter().all(|r| r.body.len() < 200_000), "a complete oversized body reached the provider");
    let recs = gw.records(5);
    assert!(recs.iter().filter(|r| r["error"] == "headers_too_large" && r["status"] == 431).count() >= 3);
    assert!(recs.iter().any(|r| r["error"] == "payload_too_large"));
}

#[test]
fn header_injection_and_smuggling_shapes_are_refused() {
    let (mock, gw) = setup("");
    // A bare CR inside a header value (an attempt to start a new header
    // upstream), and CRLF smuggled percent-encoded in the path.
    let resp = raw_exchange(gw.port, b"GET /openai_passthrough/v1/models HTTP/1.1\r\nhost: x\r\nx-a: b\rinjected: c\r\n\r\n");
    assert_eq!(status_of(&resp), 400, "{resp}");
    let r = get(gw.port, "/openai_passthrough/v1/models%0d%0ax-injected:%201", &[]);
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (400, Some("invalid_path")));
    // Two different content-lengths.
    let resp = raw_exchange(gw.port, b"POST /openai_passthrough/v1/files HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!");
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert_eq!(mock.count(), 0, "nothing reached the provider");

    // CL + TE: chunked wins (RFC 9112), content-length is dropped and the
    // connection is not reused; the "smuggled" request in the body is body.
    let smuggled = "GET /openai_passthrough/v1/secret HTTP/1.1\r\nhost: x\r\n\r\n";
    let chunk = format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len());
    let resp = raw_exchange(
        gw.port,
        format!("POST /openai_passthrough/v1/files HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n{chunk}").as_bytes(),
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "exactly one response: {resp}");
    let reqs = mock.take();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path(), "/v1/files");
    assert_eq!(reqs[0].body, smuggled.as_bytes(), "the smuggled request arrived as body");
    assert!(reqs.iter().all(|r| !r.path().contains("secret")));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (mock, gw) = setup("");
    let mut raw = Vec::new();
    for p in ["a", "b", "c"] {
        raw.extend_from_slice(format!("GET /openai_passthrough/v1/{p} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes());
    }
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&raw).unwrap();
    let mut r = BufReader::new(s);
    for p in ["a", "b", "c"] {
        let resp = read_response(&mut r).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json()["path"], format!("/v1/{p}"));
    }
    assert_eq!(mock.take().len(), 3);
}

#[test]
fn http2_prior_knowledge_gets_a_clear_refusal() {
    let (mock, gw) = setup("");
    let resp = raw_exchange(gw.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    let status = status_of(&resp);
    assert_eq!(status, 400, "{resp}");
    assert!(resp.to_ascii_lowercase().contains("connection: close"), "{resp}");
    assert_eq!(mock.count(), 0);
}

#[test]
fn slow_clients_do_not_hold_up_others() {
    let (mock, gw) = setup("");
    let port = gw.port;
    // Twenty slowloris connections: headers one byte every 50 ms; twenty
    // more sending a body one byte every 50 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut slow = Vec::new();
    for i in 0..40 {
        let stop = stop.clone();
        slow.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let bytes: Vec<u8> = if i % 2 == 0 {
                b"GET /openai_passthrough/v1/models HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec()
            } else {
                let _ = s.write_all(b"POST /openai_passthrough/v1/files HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n");
                vec![b'z'; 1000]
            };
            for b in bytes {
                if stop.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..20 {
        let t = Instant::now();
        let r = get(port, "/openai_passthrough/v1/models", &[]);
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_millis(500), "a normal request waited {:?}", t.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in slow {
        h.join().unwrap();
    }
    assert_eq!(mock.take().iter().filter(|r| r.path() == "/v1/files").count(), 0, "no partial upload was completed upstream");
}

#[test]
fn ten_thousand_idle_connections_are_held_and_released() {
    const N: usize = 10_000;
    let (_mock, gw) = setup("");
    let fds_before = fd_count(gw.pid());
    let mut conns = Vec::with_capacity(N);
    for i in 0..N {
        match TcpStream::connect(("127.0.0.1", gw.port)) {
            Ok(c) => conns.push(c),
            Err(e) => panic!("connection {i} of {N} failed: {e} (raise `ulimit -n`; make test does)"),
        }
    }
    // The gateway accepted them all and still answers promptly.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fd_count(gw.pid()) + 10 < fds_before + N {
        assert!(Instant::now() < deadline, "accepted only {} of {N}", fd_count(gw.pid()) - fds_before);
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    assert_eq!(get(gw.port, "/openai_passthrough/v1/models", &[]).status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let rss_mb = rss_kb(gw.pid()) / 1024;
    assert!(rss_mb < 512, "RSS with {N} idle connections: {rss_mb} MB");
    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(20);
    while fd_count(gw.pid()) > fds_before + 50 {
        assert!(Instant::now() < deadline, "{} descriptors still open after the clients left", fd_count(gw.pid()) - fds_before);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap()
}
