//! Load driver for the tollgate benchmark (`benches/run.sh`). Raw HTTP/1.1
//! on tokio with keep-alive connections; prints one JSON object on stdout.
//!
//! Modes (first argument):
//!
//! * `rate`: open loop. Request i is due at `t0 + i/rps`; a dispatcher thread
//!   releases it at that time to a pool of `--conns` keep-alive connections,
//!   and latency is measured from the *scheduled* time, so a stalled server
//!   is charged for every request it delayed (no coordinated omission).
//!   `service_*` is also reported: latency from the moment the request was
//!   actually written.
//! * `max`: closed loop, `--conns` connections each sending back to back;
//!   reports requests per second (2xx answers completed inside the measured
//!   window) and, with `--pids`, the CPU those processes used per 1,000
//!   requests (utime+stime from /proc/PID/stat over the same window).
//! * `sse`: `--streams` concurrent SSE requests at a time, `--count` in total;
//!   time to first event, gaps between events, and per-event delivery delay
//!   (arrival wall-clock time minus the `ts_ns` the mock stamped when it wrote
//!   the event; same machine, same clock). The stamp is read from the event's
//!   `"ts_ns":N` (the mock's OpenAI stream), or with `--stamp content` from
//!   the leading digits of `"content":"N…"` (the mock's Anthropic stream puts
//!   it in each `text_delta`, which a translating gateway turns into
//!   `choices[0].delta.content`); events without a stamp (role, finish and
//!   usage chunks) are not counted.
//! * `hold`: opens `--streams` SSE streams, waits for each to deliver its first
//!   event, holds them `--hold-secs`, and reports VmRSS/VmHWM of `--pids`
//!   before and while they are open.
//! * `upload` / `download`: one request moving `--bytes` bytes (streamed from
//!   a fixed buffer / discarded), sampling VmRSS of `--pids` every 20 ms.
//! * `jobs`: async inference throughput (issue 14). Submits `--jobs` N
//!   requests (send `--header 'x-bf-async: true'`) back to back over
//!   `--conns` connections and reads the job id from each 202 body. The pool
//!   runs the oldest queued job first, so it then polls the newest id
//!   (`x-bf-async-id`, every `--tail-poll-ms`, 2) until it is final, then
//!   sweeps every id newest first over `--poll-conns` connections, polling
//!   an id still pending every `--poll-ms` (10) until final (at most
//!   `--drain-timeout` s). End = when the newest job was seen final, or
//!   later when the sweep saw a pending one become final; `jobs_per_s` =
//!   N / (first submit -> end), 0 unless every job answered 200. Resolution:
//!   one poll (a few ms). Completion = seen final minus submitted.
//!
//! `rate` and `jobs` report `statuses`, a count per HTTP status.
//!
//! Common options: `--url http://127.0.0.1:PORT/path`, `--header 'k: v'`
//! (repeatable), `--body JSON`, `--duration S`, `--warmup S`, `--threads N`,
//! `--label NAME`.

#[path = "common/http1.rs"]
mod http1;

use bytes::BytesMut;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const DEFAULT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}]}"#;
const STREAM_BODY: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hi"}]}"#;
static BLOCK: [u8; 256 * 1024] = [b'u'; 256 * 1024];

struct Opts {
    mode: String,
    kv: HashMap<String, String>,
    headers: Vec<String>,
    addr: String,
    host: String,
    path: String,
    pids: Vec<u32>,
}

impl Opts {
    fn f(&self, k: &str, d: f64) -> f64 {
        self.kv.get(k).map(|v| v.parse().unwrap_or_else(|_| die(&format!("--{k}: not a number: {v}")))).unwrap_or(d)
    }
    fn u(&self, k: &str, d: u64) -> u64 {
        self.kv.get(k).map(|v| v.parse().unwrap_or_else(|_| die(&format!("--{k}: not an integer: {v}")))).unwrap_or(d)
    }
    fn s(&self, k: &str, d: &str) -> String {
        self.kv.get(k).cloned().unwrap_or_else(|| d.to_string())
    }
    fn request(&self, method: &str, body: &[u8], extra: &[String]) -> Vec<u8> {
        let mut r = format!("{method} {} HTTP/1.1\r\nhost: {}\r\nuser-agent: tollgate-bench-driver\r\n", self.path, self.host);
        let mut has_auth = false;
        for h in self.headers.iter().chain(extra.iter()) {
            has_auth |= h.to_ascii_lowercase().starts_with("authorization:");
            r.push_str(h);
            r.push_str("\r\n");
        }
        if !has_auth {
            r.push_str("authorization: Bearer dummy-key\r\n");
        }
        if method != "GET" || !body.is_empty() {
            r.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        r.push_str("\r\n");
        let mut v = r.into_bytes();
        v.extend_from_slice(body);
        v
    }
}

fn die(msg: &str) -> ! {
    eprintln!("driver: {msg}");
    std::process::exit(2)
}

fn parse_args() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some(mode) = args.first().cloned() else {
        die("usage: driver rate|max|sse|hold|upload|download|jobs --url URL [options]; see the source header")
    };
    let mut kv = HashMap::new();
    let mut headers = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let k = args[i].strip_prefix("--").unwrap_or_else(|| die(&format!("unexpected argument {}", args[i])));
        let v = args.get(i + 1).cloned().unwrap_or_else(|| die(&format!("--{k} needs a value")));
        if k == "header" {
            headers.push(v);
        } else {
            kv.insert(k.to_string(), v);
        }
        i += 2;
    }
    let url = kv.get("url").cloned().unwrap_or_else(|| die("--url is required"));
    let rest = url.strip_prefix("http://").unwrap_or_else(|| die("only http:// URLs"));
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let pids = kv
        .get("pids")
        .map(|p| p.split(',').filter(|s| !s.is_empty()).map(|s| s.trim().parse().unwrap_or_else(|_| die("--pids"))).collect())
        .unwrap_or_default();
    Opts {
        mode,
        kv,
        headers,
        addr: hostport.to_string(),
        host: hostport.to_string(),
        path: path.to_string(),
        pids,
    }
}

fn main() {
    let o = Arc::new(parse_args());
    let threads = o.u("threads", 2) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let out = rt.block_on(async {
        match o.mode.as_str() {
            "rate" => rate(o.clone()).await,
            "max" => max(o.clone()).await,
            "sse" => sse(o.clone()).await,
            "hold" => hold(o.clone()).await,
            "upload" => transfer(o.clone(), true).await,
            "download" => transfer(o.clone(), false).await,
            "jobs" => jobs(o.clone()).await,
            m => die(&format!("unknown mode {m}")),
        }
    });
    let mut out = out;
    out["label"] = json!(o.s("label", ""));
    out["mode"] = json!(o.mode);
    out["url"] = json!(o.s("url", ""));
    println!("{}", serde_json::to_string(&out).unwrap());
    rt.shutdown_timeout(Duration::from_millis(200));
}

// ---------------------------------------------------------------- statistics

/// Percentile spectrum points: 0, 90, 99, 99.9, 99.99 % and ten steps in each
/// decade between, for plotting latency against 1/(1-p).
fn spectrum_points() -> Vec<f64> {
    (0..=40).map(|k| 100.0 * (1.0 - 10f64.powf(-(k as f64) / 10.0))).collect()
}

fn stats(mut v: Vec<u64>) -> Value {
    v.sort_unstable();
    let n = v.len();
    let pct = |p: f64| -> f64 {
        if n == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        v[rank.clamp(1, n) - 1] as f64 / 1000.0
    };
    let mean = if n == 0 { 0.0 } else { v.iter().map(|&x| x as f64).sum::<f64>() / n as f64 / 1000.0 };
    let spectrum: Vec<Value> = spectrum_points().into_iter().map(|p| json!([p, pct(p)])).collect();
    json!({
        "count": n,
        "min_us": pct(0.0),
        "mean_us": mean,
        "p50_us": pct(50.0),
        "p90_us": pct(90.0),
        "p99_us": pct(99.0),
        "p999_us": pct(99.9),
        "max_us": pct(100.0),
        "spectrum": spectrum,
    })
}

fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| http1::proc_cpu_ticks(p)).sum()
}

fn rss(pids: &[u32]) -> (u64, u64) {
    pids.iter().filter_map(|&p| http1::proc_mem(p)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

// --------------------------------------------------------------- connection

struct Conn {
    s: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: &str) -> io::Result<Conn> {
        let mut last = None;
        for _ in 0..5 {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return Ok(Conn { s, buf: BytesMut::with_capacity(16 * 1024) });
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Err(last.unwrap())
    }

    /// Writes `req`, reads the whole response (discarding the body).
    /// Returns (status, server wants close).
    async fn roundtrip(&mut self, req: &[u8], method: &str) -> io::Result<(u16, bool)> {
        self.s.write_all(req).await?;
        let head = http1::read_head(&mut self.s, &mut self.buf)
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed before response"))?;
        let kind = head.response_body(method);
        let until_eof = matches!(kind, http1::BodyKind::UntilEof);
        http1::read_body(&mut self.s, &mut self.buf, kind, |_| {}).await?;
        Ok((head.status(), head.close || until_eof))
    }

    /// Like `roundtrip`, keeping the body.
    async fn roundtrip_body(&mut self, req: &[u8], method: &str) -> io::Result<(u16, bool, Vec<u8>)> {
        self.s.write_all(req).await?;
        let head = http1::read_head(&mut self.s, &mut self.buf)
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed before response"))?;
        let kind = head.response_body(method);
        let until_eof = matches!(kind, http1::BodyKind::UntilEof);
        let mut body = Vec::new();
        http1::read_body(&mut self.s, &mut self.buf, kind, |d| body.extend_from_slice(d)).await?;
        Ok((head.status(), head.close || until_eof, body))
    }
}

/// A keep-alive connection that reopens itself after an error or a close.
struct Client {
    addr: String,
    conn: Option<Conn>,
}

impl Client {
    fn new(addr: &str) -> Client {
        Client { addr: addr.to_string(), conn: None }
    }
    async fn warm(&mut self) {
        if self.conn.is_none() {
            self.conn = Conn::open(&self.addr).await.ok();
        }
    }
    async fn call(&mut self, req: &[u8], timeout: Duration) -> io::Result<u16> {
        if self.conn.is_none() {
            self.conn = Some(Conn::open(&self.addr).await?);
        }
        let c = self.conn.as_mut().unwrap();
        match tokio::time::timeout(timeout, c.roundtrip(req, "POST")).await {
            Ok(Ok((status, close))) => {
                if close {
                    self.conn = None;
                }
                Ok(status)
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out"))
            }
        }
    }
    async fn call_body(&mut self, req: &[u8], timeout: Duration) -> io::Result<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            self.conn = Some(Conn::open(&self.addr).await?);
        }
        let c = self.conn.as_mut().unwrap();
        match tokio::time::timeout(timeout, c.roundtrip_body(req, "POST")).await {
            Ok(Ok((status, close, body))) => {
                if close {
                    self.conn = None;
                }
                Ok((status, body))
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out"))
            }
        }
    }
}

fn status_json(m: &HashMap<u16, u64>) -> Value {
    let mut o = serde_json::Map::new();
    let mut k: Vec<_> = m.iter().collect();
    k.sort();
    for (s, n) in k {
        o.insert(s.to_string(), json!(n));
    }
    Value::Object(o)
}

// ---------------------------------------------------------------- open loop

async fn rate(o: Arc<Opts>) -> Value {
    let rps = o.f("rps", 1000.0);
    let duration = o.f("duration", 8.0);
    let warmup = o.f("warmup", 1.0);
    let conns = o.u("conns", 32) as usize;
    let timeout = Duration::from_secs_f64(o.f("timeout", 10.0));
    let req = Arc::new(o.request("POST", o.s("body", DEFAULT_BODY).as_bytes(), &[]));
    let total = ((warmup + duration) * rps).round() as u64;
    let warm_n = (warmup * rps).round() as u64;

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, bool)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut clients = Vec::new();
    for _ in 0..conns {
        let mut c = Client::new(&o.addr);
        c.warm().await;
        clients.push(c);
    }
    let errors = Arc::new(AtomicU64::new(0));
    let non2xx = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for mut c in clients {
        let rx = rx.clone();
        let req = req.clone();
        let errors = errors.clone();
        let non2xx = non2xx.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut svc = Vec::new();
            let mut statuses: HashMap<u16, u64> = HashMap::new();
            loop {
                let job = { rx.lock().await.recv().await };
                let Some((due, record)) = job else { break };
                let sent = Instant::now();
                let r = c.call(&req, timeout).await;
                let done = Instant::now();
                if record {
                    if let Ok(st) = &r {
                        *statuses.entry(*st).or_default() += 1;
                    }
                }
                match r {
                    Ok(st) if (200..300).contains(&st) => {}
                    Ok(_) => {
                        non2xx.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if record {
                    lat.push((done - due).as_nanos() as u64);
                    svc.push((done - sent).as_nanos() as u64);
                }
            }
            (lat, svc, statuses)
        }));
    }
    // The dispatcher is an OS thread: std::thread::sleep wakes within tens
    // of microseconds, tokio's timer wheel only within a millisecond.
    let period = Duration::from_secs_f64(1.0 / rps);
    let t0 = Instant::now() + Duration::from_millis(20);
    let dispatcher = std::thread::spawn(move || {
        let mut late_max = Duration::ZERO;
        for i in 0..total {
            let due = t0 + period * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            } else {
                late_max = late_max.max(now - due);
            }
            if tx.send((due, i >= warm_n)).is_err() {
                break;
            }
        }
        late_max
    });
    let mut lat = Vec::new();
    let mut svc = Vec::new();
    let mut statuses: HashMap<u16, u64> = HashMap::new();
    for h in handles {
        let (l, s, st) = h.await.unwrap();
        lat.extend(l);
        svc.extend(s);
        for (k, n) in st {
            *statuses.entry(k).or_default() += n;
        }
    }
    let end = Instant::now();
    let late_max = dispatcher.join().unwrap();
    let measured_secs = (end - (t0 + period * warm_n as u32)).as_secs_f64();
    let count = lat.len();
    json!({
        "rps_target": rps,
        "rps_achieved": count as f64 / measured_secs,
        "requests": count,
        "errors": errors.load(Ordering::Relaxed),
        "non_2xx": non2xx.load(Ordering::Relaxed),
        "statuses": status_json(&statuses),
        "conns": conns,
        "dispatcher_late_max_us": late_max.as_secs_f64() * 1e6,
        "latency": stats(lat),
        "service": stats(svc),
    })
}

// -------------------------------------------------------------- closed loop

async fn max(o: Arc<Opts>) -> Value {
    let duration = o.f("duration", 8.0);
    let warmup = o.f("warmup", 1.0);
    let conns = o.u("conns", 64) as usize;
    let clk_tck = o.f("clk-tck", 100.0);
    let timeout = Duration::from_secs_f64(o.f("timeout", 10.0));
    let req = Arc::new(o.request("POST", o.s("body", DEFAULT_BODY).as_bytes(), &[]));
    let mut clients = Vec::new();
    for _ in 0..conns {
        let mut c = Client::new(&o.addr);
        c.warm().await;
        clients.push(c);
    }
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(warmup);
    let end = warm_end + Duration::from_secs_f64(duration);
    let errors = Arc::new(AtomicU64::new(0));
    let non2xx = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for mut c in clients {
        let req = req.clone();
        let errors = errors.clone();
        let non2xx = non2xx.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut completed = 0u64;
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let r = c.call(&req, timeout).await;
                let done = Instant::now();
                let counted = t >= warm_end && done <= end;
                match r {
                    Ok(st) if (200..300).contains(&st) => {
                        if done >= warm_end && done <= end {
                            completed += 1;
                        }
                        if counted {
                            lat.push((done - t).as_nanos() as u64)
                        }
                    }
                    Ok(_) => {
                        non2xx.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (lat, completed)
        }));
    }
    tokio::time::sleep_until(warm_end.into()).await;
    let cpu0 = cpu_ticks(&o.pids);
    let t_cpu0 = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let cpu1 = cpu_ticks(&o.pids);
    let t_cpu1 = Instant::now();
    let mut lat = Vec::new();
    let mut completed = 0u64;
    for h in handles {
        let (l, n) = h.await.unwrap();
        lat.extend(l);
        completed += n;
    }
    // Requests and RPS: 2xx answers that completed inside the measured window
    // (the window the CPU is read over), whenever they were sent; latency:
    // only those sent and answered inside it. The same for a fast server;
    // a slow one (seconds per request) would otherwise count none.
    let n = completed as usize;
    let rps = n as f64 / duration;
    let cpu_secs = (cpu1 - cpu0) as f64 / clk_tck;
    let wall = (t_cpu1 - t_cpu0).as_secs_f64();
    json!({
        "conns": conns,
        "duration_s": duration,
        "requests": n,
        "rps": rps,
        "errors": errors.load(Ordering::Relaxed),
        "non_2xx": non2xx.load(Ordering::Relaxed),
        "latency": stats(lat),
        "pids": o.pids,
        "cpu_seconds": cpu_secs,
        "cpu_cores_busy": if wall > 0.0 { cpu_secs / wall } else { 0.0 },
        "cpu_ms_per_1000_requests": if n > 0 { cpu_secs * 1000.0 / (n as f64 / 1000.0) } else { 0.0 },
    })
}

// ---------------------------------------------------------------------- SSE

#[derive(Default)]
struct StreamTimes {
    ttfe: Option<u64>,
    gaps: Vec<u64>,
    delivery_first: Option<u64>,
    delivery: Vec<u64>,
    events: u64,
}

/// Splits SSE events out of body pieces as they arrive.
struct SseParser {
    pending: Vec<u8>,
    sent: Instant,
    last: Option<Instant>,
    t: StreamTimes,
    content_stamp: bool,
}

/// The mock's send time in an event: `"ts_ns":N`, or (content stamps) the
/// leading digits of the first non-empty `"content":"…"`.
fn event_stamp(ev: &[u8], content_stamp: bool) -> Option<u128> {
    let digits_at = |at: &[u8]| -> Option<u128> {
        let d: Vec<u8> = at.iter().take_while(|b| b.is_ascii_digit()).copied().collect();
        std::str::from_utf8(&d).ok().and_then(|s| s.parse().ok())
    };
    if !content_stamp {
        let k = http1::find(ev, b"\"ts_ns\":")?;
        return Some(digits_at(&ev[k + 8..]).unwrap_or(0));
    }
    let mut rest = ev;
    while let Some(k) = http1::find(rest, b"\"content\":") {
        rest = &rest[k + 10..];
        let at: &[u8] = {
            let mut a = rest;
            while let Some((b' ', tail)) = a.split_first() {
                a = tail;
            }
            a
        };
        if let Some((b'"', tail)) = at.split_first() {
            if let Some(ts) = digits_at(tail) {
                return Some(ts);
            }
        }
    }
    None
}

impl SseParser {
    fn new(sent: Instant, content_stamp: bool) -> SseParser {
        SseParser { pending: Vec::new(), sent, last: None, t: StreamTimes::default(), content_stamp }
    }
    fn feed(&mut self, d: &[u8]) {
        let arrival = Instant::now();
        let wall = now_ns();
        self.pending.extend_from_slice(d);
        let mut start = 0;
        while let Some(i) = http1::find(&self.pending[start..], b"\n\n") {
            let ev = &self.pending[start..start + i];
            start += i + 2;
            if !ev.starts_with(b"data: {") {
                continue; // [DONE], comments
            }
            let Some(ts) = event_stamp(ev, self.content_stamp) else { continue };
            let delay = wall.saturating_sub(ts) as u64;
            match self.last {
                None => {
                    self.t.ttfe = Some((arrival - self.sent).as_nanos() as u64);
                    self.t.delivery_first = Some(delay);
                }
                Some(prev) => {
                    self.t.gaps.push((arrival - prev).as_nanos() as u64);
                    self.t.delivery.push(delay);
                }
            }
            self.last = Some(arrival);
            self.t.events += 1;
        }
        self.pending.drain(..start);
    }
}

async fn one_stream(c: &mut Option<Conn>, addr: &str, req: &[u8], content_stamp: bool) -> io::Result<StreamTimes> {
    if c.is_none() {
        *c = Some(Conn::open(addr).await?);
    }
    let conn = c.as_mut().unwrap();
    let sent = Instant::now();
    conn.s.write_all(req).await?;
    let head = http1::read_head(&mut conn.s, &mut conn.buf)
        .await?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed before response"))?;
    if head.status() != 200 {
        return Err(io::Error::other(format!("status {}", head.status())));
    }
    let mut p = SseParser::new(sent, content_stamp);
    let kind = head.response_body("POST");
    let close = head.close || matches!(kind, http1::BodyKind::UntilEof);
    http1::read_body(&mut conn.s, &mut conn.buf, kind, |d| p.feed(d)).await?;
    if close {
        *c = None;
    }
    Ok(p.t)
}

async fn sse(o: Arc<Opts>) -> Value {
    let streams = o.u("streams", 50) as usize;
    let count = o.u("count", 200) as usize;
    let content_stamp = match o.s("stamp", "ts_ns").as_str() {
        "ts_ns" => false,
        "content" => true,
        s => die(&format!("--stamp: ts_ns or content, not {s}")),
    };
    let req = Arc::new(o.request("POST", o.s("body", STREAM_BODY).as_bytes(), &[]));
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let started = Instant::now();
    for w in 0..streams {
        let (o, req, next, errors) = (o.clone(), req.clone(), next.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            // Stagger the workers over 200 ms so events do not all align.
            tokio::time::sleep(Duration::from_micros((w as u64 * 200_000) / streams as u64)).await;
            let mut c = None;
            let mut all = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                match one_stream(&mut c, &o.addr, &req, content_stamp).await {
                    Ok(t) => all.push(t),
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("driver: stream error: {e}");
                        }
                        c = None;
                    }
                }
            }
            all
        }));
    }
    let (mut ttfe, mut gaps, mut del, mut del_first) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut events = 0;
    let mut done = 0;
    for h in handles {
        for t in h.await.unwrap() {
            done += 1;
            events += t.events;
            ttfe.extend(t.ttfe);
            del_first.extend(t.delivery_first);
            gaps.extend(t.gaps);
            del.extend(t.delivery);
        }
    }
    json!({
        "stamp": if content_stamp { "content" } else { "ts_ns" },
        "streams_concurrent": streams,
        "streams_done": done,
        "errors": errors.load(Ordering::Relaxed),
        "events": events,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "ttfe": stats(ttfe),
        "gap": stats(gaps),
        "delivery_first": stats(del_first),
        "delivery": stats(del),
    })
}

// --------------------------------------------------------------------- hold

async fn hold(o: Arc<Opts>) -> Value {
    let streams = o.u("streams", 2000) as usize;
    let ramp = o.f("ramp-per-sec", 1000.0).max(1.0);
    let hold_secs = o.f("hold-secs", 5.0);
    let open_timeout = Duration::from_secs_f64(o.f("open-timeout", 60.0));
    let req = Arc::new(o.request("POST", o.s("body", STREAM_BODY).as_bytes(), &[]));
    let (before_rss, before_hwm) = rss(&o.pids);
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..streams {
        let due = start + Duration::from_secs_f64(i as f64 / ramp);
        tokio::time::sleep_until(due.into()).await;
        let (o, req, opened, failed, mut stop_rx) = (o.clone(), req.clone(), opened.clone(), failed.clone(), stop_rx.clone());
        handles.push(tokio::spawn(async move {
            let r: io::Result<()> = async {
                let mut c = Conn::open(&o.addr).await?;
                c.s.write_all(&req).await?;
                let head = http1::read_head(&mut c.s, &mut c.buf)
                    .await?
                    .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed"))?;
                if head.status() != 200 {
                    return Err(io::Error::other(format!("status {}", head.status())));
                }
                let mut got_first = false;
                let kind = head.response_body("POST");
                let opened2 = opened.clone();
                let body = http1::read_body(&mut c.s, &mut c.buf, kind, |d| {
                    if !got_first && http1::find(d, b"data: ").is_some() {
                        got_first = true;
                        opened2.fetch_add(1, Ordering::SeqCst);
                    }
                });
                tokio::select! {
                    r = body => { r?; Err(io::Error::other("stream ended while held")) }
                    _ = stop_rx.changed() => Ok(()),
                }
            }
            .await;
            if r.is_err() && !*stop_rx.borrow() {
                failed.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let deadline = Instant::now() + open_timeout;
    while opened.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst) < streams && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (open_rss, _) = rss(&o.pids);
    let mut peak_rss = open_rss;
    let hold_end = Instant::now() + Duration::from_secs_f64(hold_secs);
    while Instant::now() < hold_end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak_rss = peak_rss.max(rss(&o.pids).0);
    }
    let (held_rss, held_hwm) = rss(&o.pids);
    let n_open = opened.load(Ordering::SeqCst);
    let n_failed = failed.load(Ordering::SeqCst);
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = h.await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after_rss, _) = rss(&o.pids);
    let growth = peak_rss.saturating_sub(before_rss);
    json!({
        "streams": streams,
        "opened": n_open,
        "failed": n_failed,
        "open_seconds": open_s,
        "pids": o.pids,
        "rss_before": before_rss,
        "hwm_before": before_hwm,
        "rss_open": open_rss,
        "rss_open_peak": peak_rss,
        "rss_held_end": held_rss,
        "hwm_held": held_hwm,
        "rss_after_close": after_rss,
        "bytes_per_stream": if n_open > 0 { growth as f64 / n_open as f64 } else { 0.0 },
    })
}

// ------------------------------------------------------------ big transfers

async fn transfer(o: Arc<Opts>, upload: bool) -> Value {
    let bytes = o.u("bytes", 1 << 30);
    let (rss0, hwm0) = rss(&o.pids);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss0));
    let sampler = {
        let (pids, stop, peak) = (o.pids.clone(), stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(&pids).0, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let start = Instant::now();
    let r: io::Result<(u16, u64)> = async {
        let mut c = Conn::open(&o.addr).await?;
        if upload {
            let head = o.request("POST", b"", &["content-type: application/octet-stream".to_string()]);
            // request() wrote content-length 0 for the empty body: replace it.
            let head = String::from_utf8(head).unwrap().replace("content-length: 0\r\n", &format!("content-length: {bytes}\r\n"));
            c.s.write_all(head.as_bytes()).await?;
            let mut left = bytes;
            while left > 0 {
                let k = left.min(BLOCK.len() as u64) as usize;
                c.s.write_all(&BLOCK[..k]).await?;
                left -= k as u64;
            }
            let head = http1::read_head(&mut c.s, &mut c.buf).await?.ok_or_else(|| io::Error::other("no response"))?;
            let kind = head.response_body("POST");
            http1::read_body(&mut c.s, &mut c.buf, kind, |_| {}).await?;
            Ok((head.status(), bytes))
        } else {
            let req = o.request("GET", b"", &[]);
            c.s.write_all(&req).await?;
            let head = http1::read_head(&mut c.s, &mut c.buf).await?.ok_or_else(|| io::Error::other("no response"))?;
            let kind = head.response_body("GET");
            let n = http1::read_body(&mut c.s, &mut c.buf, kind, |_| {}).await?;
            Ok((head.status(), n))
        }
    }
    .await;
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let (rss1, hwm1) = rss(&o.pids);
    let peak = peak.load(Ordering::Relaxed).max(rss1);
    let (status, moved, error) = match r {
        Ok((s, n)) => (s, n, Value::Null),
        Err(e) => (0, 0, json!(e.to_string())),
    };
    json!({
        "direction": if upload { "upload" } else { "download" },
        "bytes": bytes,
        "moved": moved,
        "status": status,
        "error": error,
        "seconds": secs,
        "mb_per_s": moved as f64 / secs / 1e6,
        "pids": o.pids,
        "rss_before": rss0,
        "hwm_before": hwm0,
        "rss_peak": peak,
        "rss_after": rss1,
        "hwm_after": hwm1,
        "rss_growth": peak.saturating_sub(rss0),
    })
}

// -------------------------------------------------------------- async jobs

async fn jobs(o: Arc<Opts>) -> Value {
    let n = o.u("jobs", 2000) as usize;
    let conns = o.u("conns", 32) as usize;
    let poll_conns = o.u("poll-conns", 8) as usize;
    let poll_every = Duration::from_secs_f64(o.f("poll-ms", 10.0) / 1000.0);
    let drain_timeout = Duration::from_secs_f64(o.f("drain-timeout", 60.0));
    let timeout = Duration::from_secs_f64(o.f("timeout", 10.0));
    let body = o.s("body", DEFAULT_BODY);
    let req = Arc::new(o.request("POST", body.as_bytes(), &[]));
    // Polls carry the same headers minus x-bf-async, plus x-bf-async-id.
    let poll_headers: Vec<String> =
        o.headers.iter().filter(|h| !h.to_ascii_lowercase().starts_with("x-bf-async:")).cloned().collect();
    let mut clients = Vec::new();
    for _ in 0..conns.max(poll_conns) {
        let mut c = Client::new(&o.addr);
        c.warm().await;
        clients.push(c);
    }

    // Phase 1: submit N jobs as fast as the connections go (closed loop).
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for mut c in clients.drain(..conns) {
        let (req, next) = (req.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new(); // (index, submitted at, status, id, latency ns)
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let r = c.call_body(&req, timeout).await;
                let done = Instant::now();
                let (st, id) = match r {
                    Ok((st, b)) => {
                        let id = serde_json::from_slice::<Value>(&b).ok().and_then(|v| v["id"].as_str().map(String::from));
                        if st != 202 && out.len() < 3 {
                            eprintln!("driver: submit answered {st}: {}", String::from_utf8_lossy(&b[..b.len().min(300)]));
                        }
                        (st, id)
                    }
                    Err(e) => {
                        eprintln!("driver: submit error: {e}");
                        (0, None)
                    }
                };
                out.push((i, t, st, id, (done - t).as_nanos() as u64));
            }
            (c, out)
        }));
    }
    let mut subs = Vec::new();
    for h in handles {
        let (c, out) = h.await.unwrap();
        clients.push(c);
        subs.extend(out);
    }
    let submit_end = Instant::now();
    subs.sort_by_key(|s| s.0);
    let mut submit_statuses: HashMap<u16, u64> = HashMap::new();
    let mut submit_lat = Vec::new();
    let mut pending: Vec<(usize, String, Instant)> = Vec::new();
    for (i, t, st, id, lat) in subs {
        *submit_statuses.entry(st).or_default() += 1;
        submit_lat.push(lat);
        if let (202, Some(id)) = (st, id) {
            pending.push((i, id, t));
        }
    }
    let accepted = pending.len();

    // Phase 2: the pool claims the oldest queued job first, so poll the
    // newest job (one connection, every --tail-poll-ms) until it is final:
    // t_tail. Then sweep every id, newest first, over --poll-conns
    // connections; an id still pending is polled every --poll-ms until final,
    // and extends the end to when it was seen final.
    let deadline = submit_end + drain_timeout;
    let tail_every = Duration::from_secs_f64(o.f("tail-poll-ms", 2.0) / 1000.0);
    let poll_req = |id: &str| -> Vec<u8> {
        let mut extra = poll_headers.clone();
        extra.push(format!("x-bf-async-id: {id}"));
        let mut r = format!("POST {} HTTP/1.1\r\nhost: {}\r\nuser-agent: tollgate-bench-driver\r\n", o.path, o.host);
        let mut has_auth = false;
        for h in &extra {
            has_auth |= h.to_ascii_lowercase().starts_with("authorization:");
            r.push_str(h);
            r.push_str("\r\n");
        }
        if !has_auth {
            r.push_str("authorization: Bearer dummy-key\r\n");
        }
        r.push_str(&format!("content-length: {}\r\n\r\n{}", body.len(), body));
        r.into_bytes()
    };
    let mut polls = 0u64;
    let mut tail_at = submit_end;
    if let Some((_, id, _)) = pending.last() {
        let req = poll_req(id);
        let c = &mut clients[0];
        loop {
            polls += 1;
            let r = c.call_body(&req, timeout).await;
            let now = Instant::now();
            match r {
                Ok((202, _)) => {}
                Ok(_) => {
                    tail_at = now;
                    break;
                }
                Err(e) => eprintln!("driver: poll error: {e}"),
            }
            if now >= deadline {
                tail_at = now;
                break;
            }
            tokio::time::sleep(tail_every).await;
        }
    }
    let reqs: Arc<Vec<(Vec<u8>, Instant)>> = Arc::new(pending.iter().rev().map(|(_, id, t)| (poll_req(id), *t)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for mut c in clients.into_iter().take(poll_conns) {
        let (reqs, next) = (reqs.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new(); // (final status, seen final at, submitted at, was pending)
            let mut polls = 0u64;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some((req, submitted)) = reqs.get(k) else { break };
                let mut was_pending = false;
                loop {
                    polls += 1;
                    let r = c.call_body(req, timeout).await;
                    let now = Instant::now();
                    match r {
                        Ok((202, _)) => was_pending = true,
                        Ok((st, b)) => {
                            if st != 200 && out.len() < 3 {
                                eprintln!("driver: poll answered {st}: {}", String::from_utf8_lossy(&b[..b.len().min(300)]));
                            }
                            out.push((st, now, *submitted, was_pending));
                            break;
                        }
                        Err(e) => eprintln!("driver: poll error: {e}"),
                    }
                    if now >= deadline {
                        out.push((0, now, *submitted, true));
                        break;
                    }
                    tokio::time::sleep(poll_every).await;
                }
            }
            (out, polls)
        }));
    }
    let mut final_statuses: HashMap<u16, u64> = HashMap::new();
    let mut completion = Vec::new();
    let mut last = tail_at;
    let mut pending_after_tail = 0;
    for h in handles {
        let (out, p) = h.await.unwrap();
        polls += p;
        for (st, at, submitted, was_pending) in out {
            *final_statuses.entry(st).or_default() += 1;
            if was_pending {
                pending_after_tail += 1;
                last = last.max(at);
            }
            if st == 200 {
                completion.push((if was_pending { at } else { at.min(tail_at) } - submitted).as_nanos() as u64);
            }
        }
    }
    let done = completion.len();
    let span = (last - t0).as_secs_f64();
    json!({
        "jobs": n,
        "conns": conns,
        "poll_conns": poll_conns,
        "poll_ms": poll_every.as_secs_f64() * 1000.0,
        "accepted": accepted,
        "completed_200": done,
        "submit_statuses": status_json(&submit_statuses),
        "final_statuses": status_json(&final_statuses),
        "submit_seconds": (submit_end - t0).as_secs_f64(),
        "submit_per_s": n as f64 / (submit_end - t0).as_secs_f64(),
        "span_seconds": span,
        "jobs_per_s": if done == n && span > 0.0 { done as f64 / span } else { 0.0 },
        "completed_per_s": if span > 0.0 { done as f64 / span } else { 0.0 },
        "polls": polls,
        "tail_seconds": (tail_at - t0).as_secs_f64(),
        "pending_after_tail": pending_after_tail,
        "submit_latency": stats(submit_lat),
        "completion": stats(completion),
    })
}
