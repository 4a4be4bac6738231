//! Continuous keep-alive load through graceful upgrades and a SIGTERM drain
//! (issue 18). `tests/operations.rs` runs it briefly; `make soak` runs it at
//! length. Every request is sent back to back on kept-alive connections and
//! must get its whole answer, every stream all its events, and every request
//! exactly one record.

use super::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize};

pub struct DrainLoad {
    /// Kept-alive connections sending small POSTs back to back.
    pub connections: usize,
    /// Connections reading SSE streams (10 events, 150 ms apart) back to back.
    pub streams: usize,
    /// Graceful upgrades in a row, this far apart; then one SIGTERM drain.
    pub upgrades: usize,
    pub every: Duration,
}

#[derive(Default)]
struct Tally {
    /// Request ids answered in full.
    ok: Mutex<Vec<String>>,
    failures: Mutex<Vec<String>>,
    /// Responses that carried `Connection: close` (a draining process).
    closes: AtomicUsize,
    /// Connections refused once the last process was stopping.
    refused: AtomicUsize,
    /// New connections opened after SIGTERM that were reset before any
    /// answer: they sat in the kernel's accept queue in the instant between
    /// the stop and the listener's close, and the gateway never read them.
    reset_unaccepted: AtomicUsize,
}

const EVENTS: usize = 10;

fn events() -> Vec<String> {
    (0..EVENTS).map(|i| json!({ "i": i }).to_string()).collect()
}

/// One client connection after another, each kept alive until the gateway
/// says `Connection: close`. Ends when `stop` is set, or when a connect is
/// refused after the last process got SIGTERM.
fn worker(port: u16, name: String, stream: bool, stop: Arc<AtomicBool>, terminating: Arc<AtomicBool>, tally: Arc<Tally>) {
    let expected = events();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let fresh = conn.is_none();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    BufReader::new(s)
                }
                Err(e) if terminating.load(Ordering::Relaxed) && e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    tally.failures.lock().unwrap().push(format!("{name}: connect: {e}"));
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        n += 1;
        let rid = format!("{name}-{n}");
        let raw = if stream {
            format!("GET /openai_passthrough/v1/stream HTTP/1.1\r\nhost: x\r\nx-request-id: {rid}\r\n\r\n")
        } else {
            let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
            format!(
                "POST /openai_passthrough/v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-request-id: {rid}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let after_stop = terminating.load(Ordering::Relaxed);
        let answer = c.get_mut().write_all(raw.as_bytes()).and_then(|_| read_response(&mut c));
        match answer {
            Ok(r) if r.status == 200 && (!stream || sse_data(&r.body) == expected) => {
                tally.ok.lock().unwrap().push(rid);
                if r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
                    tally.closes.fetch_add(1, Ordering::Relaxed);
                } else {
                    conn = Some(c);
                }
            }
            Ok(r) => tally.failures.lock().unwrap().push(format!("{rid}: status {} ({} bytes): {}", r.status, r.body.len(), r.text())),
            Err(e) if fresh && after_stop && matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof) => {
                tally.reset_unaccepted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) => tally.failures.lock().unwrap().push(format!("{rid}: {e}{}", if after_stop { " (after SIGTERM)" } else { "" })),
        }
    }
}

pub fn run(load: DrainLoad) {
    let ev = events();
    let mock = Mock::start(move |req| {
        if req.path().ends_with("/stream") {
            Reply::Sse { events: ev.clone(), delay: Duration::from_millis(150) }
        } else {
            json(200, json!({ "id": "c1", "object": "chat.completion", "choices": [], "usage": { "prompt_tokens": 3, "completion_tokens": 2 } }))
        }
    });
    let mut gw = Gateway::start(
        &format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-drain-upstream }}] }}\n", mock.url()),
        "grace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 10",
        &[],
    );
    let (stop, terminating, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let workers: Vec<_> = (0..load.connections + load.streams)
        .map(|i| {
            let stream = i >= load.connections;
            let name = format!("{}{i}", if stream { "s" } else { "c" });
            let (port, stop, terminating, tally) = (gw.port, stop.clone(), terminating.clone(), tally.clone());
            thread::spawn(move || worker(port, name, stream, stop, terminating, tally))
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    let mut old = Vec::new();
    for _ in 0..load.upgrades {
        old.push(gw.upgrade());
        thread::sleep(load.every);
    }
    // The last process is stopped (systemctl stop): what it accepted, it
    // answers; new connections are refused.
    terminating.store(true, Ordering::Relaxed);
    let status = gw.terminate();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    for mut p in old {
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "an old process did not finish draining");
            thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(status.success(), "SIGTERM exit: {status}; stderr: {}", gw.stderr());
    let failures = tally.failures.lock().unwrap();
    let ok = tally.ok.lock().unwrap();
    let streams = ok.iter().filter(|id| id.starts_with('s')).count();
    eprintln!(
        "drain load: {} requests ({streams} streams) answered in full, {} Connection: close, {} refused after SIGTERM, {} new connections reset unread after SIGTERM, {} failed",
        ok.len(),
        tally.closes.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.reset_unaccepted.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(20)]);
    assert!(ok.len() > 100 * load.upgrades, "only {} requests went through", ok.len());
    assert!(streams >= load.streams * load.upgrades, "only {streams} streams completed");
    // Each draining process told its clients to go: one close per upgrade at least.
    assert!(tally.closes.load(Ordering::Relaxed) >= load.upgrades);
    // Every request has exactly one record, written by whichever process
    // served it, and nothing else was recorded for these clients.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in gw.records(ok.len()) {
        if let Some(id) = r["request_id"].as_str().filter(|id| id.starts_with('c') || id.starts_with('s')) {
            assert_eq!(r["status"], 200, "{r}");
            *seen.entry(id.to_string()).or_default() += 1;
        }
    }
    for id in ok.iter() {
        assert_eq!(seen.get(id), Some(&1), "records for {id}");
    }
    assert_eq!(seen.len(), ok.len(), "records for requests no client saw answered");
}
