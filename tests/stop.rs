//! A stop that waits for nothing (issue 29): SIGTERM on an idle gateway
//! exits at once, idle kept-alive connections are closed after a second's
//! idle moment, streams in flight still get their time. The grace period is
//! 30 s in every test, so a stop that waits it out fails clearly.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const TOP: &str = "grace_period_seconds: 30\ngraceful_shutdown_timeout_seconds: 10";

fn chat_mock() -> Mock {
    Mock::start(|_| json(200, json!({ "id": "c1", "object": "chat.completion", "choices": [], "usage": { "prompt_tokens": 3, "completion_tokens": 2 } })))
}

fn section(mock: &Mock) -> String {
    format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-stop-upstream }}] }}\n", mock.url())
}

fn chat_bytes(rid: &str, keep_alive: bool) -> Vec<u8> {
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    format!(
        "POST /openai_passthrough/v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-request-id: {rid}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
        body.len(),
        if keep_alive { "" } else { "connection: close\r\n" }
    )
    .into_bytes()
}

/// A kept-alive connection that got one answer and stays open.
fn kept_alive(port: u16, rid: &str) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    s.write_all(&chat_bytes(rid, true)).unwrap();
    let mut c = BufReader::new(s);
    let r = read_response(&mut c).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("connection").is_none_or(|v| !v.eq_ignore_ascii_case("close")), "not kept alive");
    c
}

#[test]
fn an_idle_gateway_exits_within_a_second_of_sigterm() {
    let mock = chat_mock();
    let mut gw = Gateway::start(&section(&mock), TOP, &[]);
    // One request on a connection that closes after it: nothing stays open.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.write_all(&chat_bytes("idle-1", false)).unwrap();
    let mut c = BufReader::new(s);
    assert_eq!(read_response(&mut c).unwrap().status, 200);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    drop(c);
    let t = Instant::now();
    let status = gw.terminate();
    let took = t.elapsed();
    assert!(status.success(), "exit: {status}");
    eprintln!("idle stop: {took:?}");
    assert!(took <= Duration::from_secs(1), "an idle gateway took {took:?} to stop (grace_period_seconds is 30)");
    assert!(gw.stderr().contains("draining: done"), "{}", gw.stderr());
    // Its record was written before the exit.
    assert_eq!(gw.record("idle-1")["status"], 200);
}

/// 100 idle kept-alive connections: each is closed by the gateway after
/// its idle moment (1 s), and the process exits right after. A request
/// sent on one of them within that moment is still served, with
/// `Connection: close` (the race a prompt close would lose).
#[test]
fn idle_kept_alive_connections_are_closed_after_an_idle_moment() {
    let mock = chat_mock();
    let mut gw = Gateway::start(&section(&mock), TOP, &[]);
    let mut conns: Vec<_> = (0..100).map(|i| kept_alive(gw.port, &format!("ka-{i}"))).collect();
    let mut late = conns.pop().unwrap();
    // The 100th connection got its answer just now; the stop comes at once.
    let pid = gw.pid();
    let t = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    thread::sleep(Duration::from_millis(200));
    late.get_mut().write_all(&chat_bytes("ka-late", true)).unwrap();
    let r = read_response(&mut late).unwrap();
    assert_eq!(r.status, 200, "a request on an idle connection 200 ms into the drain: {}", r.text());
    assert!(r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")), "{:?}", r.header("connection"));
    let status = gw.terminate();
    let took = t.elapsed();
    assert!(status.success(), "exit: {status}");
    eprintln!("stop with 100 idle kept-alive connections: {took:?}");
    // Bound: the 1 s idle moment, a quarter second of quiet, and room for
    // a loaded 2-core machine. Waiting out the 30 s grace fails here.
    assert!(took <= Duration::from_secs(3), "stop with 100 idle kept-alive connections took {took:?}");
    // Every idle connection was closed by the gateway (EOF, no answer).
    for (i, c) in conns.iter_mut().enumerate() {
        let mut buf = Vec::new();
        let n = c.read_to_end(&mut buf);
        assert!(matches!(n, Ok(0)) || n.is_err(), "connection {i} got bytes after the stop: {buf:?}");
    }
    assert_eq!(gw.record("ka-late")["status"], 200);
}

/// 50 SSE streams open when SIGTERM arrives: every one gets all its events,
/// and the process exits once they are done, not after the grace period.
#[test]
fn a_stop_during_50_open_streams_waits_for_them() {
    let events: Vec<String> = (0..10).map(|i| json!({ "i": i }).to_string()).collect();
    let ev = events.clone();
    let mock = Mock::start(move |_| Reply::Sse { events: ev.clone(), delay: Duration::from_millis(250) });
    let mut gw = Gateway::start(&section(&mock), TOP, &[]);
    let readers: Vec<_> = (0..50)
        .map(|i| {
            let mut conn = send_request(gw.port, "GET", "/openai_passthrough/v1/stream", &[("x-request-id", &format!("st-{i}"))], b"", Duration::from_secs(40));
            let head = read_head(&mut conn).unwrap().unwrap();
            assert!(head.start.contains(" 200 "), "{head:?}");
            thread::spawn(move || {
                let mut body = Vec::new();
                let _ = conn.read_to_end(&mut body);
                body
            })
        })
        .collect();
    // Every stream has begun (its head is read) and runs ~2.5 s.
    let t = Instant::now();
    let status = gw.terminate();
    let took = t.elapsed();
    assert!(status.success(), "exit: {status}");
    eprintln!("stop during 50 streams: {took:?}");
    for (i, r) in readers.into_iter().enumerate() {
        assert_eq!(sse_data(&r.join().unwrap()), events, "stream {i} was cut by the stop");
    }
    assert!(took >= Duration::from_millis(1000), "exited after {took:?}, before its streams could end");
    assert!(took < Duration::from_secs(10), "lingered {took:?} after the streams ended");
    let recs: Vec<_> = gw.records(50).into_iter().filter(|r| r["request_id"].as_str().is_some_and(|id| id.starts_with("st-"))).collect();
    assert_eq!(recs.len(), 50);
}

/// The old process of a graceful upgrade, with no connection left, exits
/// once Pingora's fixed 5 s hand-over wait is over, not after the grace
/// period; the new process serves on.
#[test]
fn the_old_process_of_an_idle_upgrade_exits_after_the_hand_over() {
    let mock = chat_mock();
    let mut gw = Gateway::start(&section(&mock), TOP, &[]);
    let t = Instant::now();
    let mut old = gw.upgrade();
    let deadline = t + Duration::from_secs(20);
    while old.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the old process waited out the grace period");
        thread::sleep(Duration::from_millis(20));
    }
    let took = t.elapsed();
    eprintln!("old process of an idle upgrade exited after {took:?}");
    // 5 s hand-over (Pingora's CLOSE_TIMEOUT), then the idle exit.
    assert!(took <= Duration::from_secs(8), "the old process took {took:?}");
    assert_eq!(request(gw.port, "POST", "/openai_passthrough/v1/chat/completions", &[("content-type", "application/json")], br#"{"model":"gpt-4o-mini","messages":[]}"#).status, 200);
    assert!(gw.terminate().success());
}
