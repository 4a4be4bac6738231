//! Test harness: start the real `tollgate` binary with a generated config,
//! run mock providers on 127.0.0.1 (plain or TLS) that record what they
//! receive and answer like a provider (JSON, SSE with delays, stalls), and
//! talk HTTP/1.1 to both with a small blocking client that timestamps every
//! body chunk. std threads only: no runtime in the tests.

#![allow(dead_code)]

pub mod drain_load;
pub mod pki;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// HTTP/1.1 message reading, shared by the mock (requests) and the client
// (responses).
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct Head {
    /// Request line or status line.
    pub start: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

pub fn read_head<R: BufRead>(r: &mut R) -> std::io::Result<Option<Head>> {
    let mut start = String::new();
    if r.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let mut head = Head { start: start.trim_end().to_string(), headers: vec![] };
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof in headers"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            head.headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok(Some(head))
}

/// Read a body framed by `head`, calling `on_chunk` with each piece as it
/// arrives. `until_close` reads to EOF when there is no framing.
fn read_body<R: BufRead>(r: &mut R, head: &Head, until_close: bool, on_chunk: &mut dyn FnMut(&[u8])) -> std::io::Result<()> {
    if head.get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad chunk size {size:?}")))?;
            if n == 0 {
                // trailers until blank line
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l)? == 0 || l.trim().is_empty() {
                        break;
                    }
                }
                return Ok(());
            }
            let mut buf = vec![0u8; n];
            r.read_exact(&mut buf)?;
            on_chunk(&buf);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = head.get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut left = len;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = r.read(&mut buf[..left.min(65536)])?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof in body"));
            }
            on_chunk(&buf[..n]);
            left -= n;
        }
        Ok(())
    } else if until_close {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            on_chunk(&buf[..n]);
        }
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Mock provider
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub head: Head,
    pub body: Vec<u8>,
    pub received: Instant,
    /// Arrival time of each body chunk (streaming uploads).
    pub chunk_times: Vec<Instant>,
    /// The client port of the connection it came on (pooling checks).
    pub conn_port: u16,
}

impl Recorded {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
    pub fn header(&self, n: &str) -> Option<&str> {
        self.head.get(n)
    }
}

/// What the mock answers.
pub enum Reply {
    Json(u16, Vec<(String, String)>, String),
    /// SSE events (each `data: ...` payload) with a delay before each.
    Sse { events: Vec<String>, delay: Duration },
    /// Accept the request, never answer.
    Silent,
    /// Raw bytes written as they are, with a pause before each piece.
    Raw(Vec<(Duration, Vec<u8>)>),
    /// Take the stream (WebSocket and other custom exchanges).
    Upgrade(Box<dyn FnOnce(TcpStream, Vec<u8>) + Send>),
}

/// A provider's WebSocket endpoint: `101 Switching Protocols`, then the
/// first message it reads is sent back prefixed with `echo:`, and the
/// connection stays open until the gateway closes it.
pub fn websocket_echo() -> Reply {
    Reply::Upgrade(Box::new(|mut s: TcpStream, _| {
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        s.write_all(&[b"echo:".as_slice(), &buf[..n]].concat()).unwrap();
        let _ = s.read(&mut buf);
    }))
}

/// The client side of [`websocket_echo`] through the gateway, over any
/// stream (plain TCP or TLS): a Realtime upgrade (`host` as given) must get
/// `101`, and a message sent after it must come back echoed.
pub fn websocket_round_trip(s: &mut (impl Read + Write), host: &str) {
    s.write_all(format!("GET /openai_passthrough/v1/realtime?model=gpt-4o-realtime HTTP/1.1\r\nhost: {host}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\nauthorization: Bearer dummy-key\r\n\r\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
    s.write_all(b"ping-frame").unwrap();
    let mut echoed = Vec::new();
    while !String::from_utf8_lossy(&echoed).contains("echo:ping-frame") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the echo");
        echoed.extend_from_slice(&buf[..n]);
    }
}

pub fn json(status: u16, body: serde_json::Value) -> Reply {
    Reply::Json(status, vec![], body.to_string())
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

pub struct Mock {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// When the mock saw the downstream side of a stream go away.
    pub stream_closed: Arc<Mutex<Vec<Instant>>>,
    /// Times at which each SSE event was written.
    pub sent_events: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl Mock {
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Mock {
        Self::start_with(None, Arc::new(handler))
    }

    /// A TLS mock presenting `identity` (certificate chain + key).
    pub fn start_tls(acceptor: openssl::ssl::SslAcceptor, handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Mock {
        Self::start_with(Some(Arc::new(acceptor)), Arc::new(handler))
    }

    fn start_with(tls: Option<Arc<openssl::ssl::SslAcceptor>>, handler: Handler) -> Mock {
        let listener = listener();
        let port = listener.local_addr().unwrap().port();
        let mock = Mock {
            port,
            requests: Default::default(),
            stream_closed: Default::default(),
            sent_events: Default::default(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (reqs, closed, sent, stop) = (mock.requests.clone(), mock.stream_closed.clone(), mock.sent_events.clone(), mock.stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let peer = conn.peer_addr().map(|a| a.port()).unwrap_or(0);
                let (h, r, c, s, tls) = (handler.clone(), reqs.clone(), closed.clone(), sent.clone(), tls.clone());
                thread::spawn(move || {
                    match tls {
                        Some(acc) => {
                            if let Ok(stream) = acc.accept(conn) {
                                serve_conn(stream, None, peer, h, r, c, s);
                            }
                        }
                        None => {
                            let raw = conn.try_clone().ok();
                            serve_conn(conn, raw, peer, h, r, c, s);
                        }
                    }
                });
            }
        });
        mock
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_conn<S: Read + Write>(
    stream: S,
    raw: Option<TcpStream>,
    conn_port: u16,
    handler: Handler,
    reqs: Arc<Mutex<Vec<Recorded>>>,
    closed: Arc<Mutex<Vec<Instant>>>,
    sent: Arc<Mutex<Vec<Instant>>>,
) {
    let mut r = BufReader::new(stream);
    loop {
        let Ok(Some(head)) = read_head(&mut r) else { return };
        let received = Instant::now();
        let mut parts = head.start.splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut body = Vec::new();
        let mut chunk_times = Vec::new();
        if read_body(&mut r, &head, false, &mut |c| {
            body.extend_from_slice(c);
            chunk_times.push(Instant::now());
        })
        .is_err()
        {
            return;
        }
        let rec = Recorded { method, target, head, body, received, chunk_times, conn_port };
        reqs.lock().unwrap().push(rec.clone());
        let reply = handler(&rec);
        let w = r.get_mut();
        let ok = match reply {
            Reply::Json(status, headers, body) => {
                let mut out = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", body.len());
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                w.write_all(out.as_bytes()).and_then(|_| w.flush()).is_ok()
            }
            Reply::Sse { events, delay } => {
                let mut ok = w
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
                    .and_then(|_| w.flush())
                    .is_ok();
                for ev in events {
                    if !ok {
                        break;
                    }
                    thread::sleep(delay);
                    let data = format!("data: {ev}\n\n");
                    ok = w.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes()).and_then(|_| w.flush()).is_ok();
                    if ok {
                        sent.lock().unwrap().push(Instant::now());
                    }
                }
                if ok {
                    ok = w.write_all(b"0\r\n\r\n").and_then(|_| w.flush()).is_ok();
                }
                if !ok {
                    closed.lock().unwrap().push(Instant::now());
                }
                ok
            }
            Reply::Silent => {
                // Hold the connection until the peer goes away.
                let mut buf = [0u8; 1];
                let _ = r.read(&mut buf);
                closed.lock().unwrap().push(Instant::now());
                false
            }
            Reply::Raw(pieces) => {
                let mut ok = true;
                for (pause, bytes) in pieces {
                    thread::sleep(pause);
                    if w.write_all(&bytes).and_then(|_| w.flush()).is_err() {
                        ok = false;
                        closed.lock().unwrap().push(Instant::now());
                        break;
                    }
                }
                ok && false
            }
            Reply::Upgrade(f) => {
                let buffered = r.buffer().to_vec();
                if let Some(raw) = raw {
                    f(raw, buffered);
                }
                return;
            }
        };
        if !ok {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
    /// (arrival time, bytes) of each body piece.
    pub chunks: Vec<(Instant, Vec<u8>)>,
}

impl Response {
    pub fn header(&self, n: &str) -> Option<&str> {
        self.head.get(n)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send `raw` request bytes, read one response.
pub fn raw_request(port: u16, raw: &[u8]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(raw)?;
    let method = String::from_utf8_lossy(&raw[..raw.len().min(8)]).split(' ').next().unwrap_or("").to_string();
    read_response_to(&mut BufReader::new(s), &method)
}

/// [`raw_request`] over TLS: `client` connects to 127.0.0.1:`port` asking
/// for (and verifying) the name `localhost`.
pub fn tls_raw_request(client: &openssl::ssl::SslConnector, port: u16, raw: &[u8]) -> std::io::Result<Response> {
    let mut s = tls_connect(client, port)?;
    s.write_all(raw)?;
    let method = String::from_utf8_lossy(&raw[..raw.len().min(8)]).split(' ').next().unwrap_or("").to_string();
    read_response_to(&mut BufReader::new(s), &method)
}

/// A TLS connection to the gateway on 127.0.0.1:`port` (SNI and verified
/// name `localhost`), with a 30 s read timeout.
pub fn tls_connect(client: &openssl::ssl::SslConnector, port: u16) -> std::io::Result<openssl::ssl::SslStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    client.connect("localhost", tcp).map_err(|e| std::io::Error::new(std::io::ErrorKind::Other, e.to_string()))
}

pub fn read_response<R: BufRead>(r: &mut R) -> std::io::Result<Response> {
    read_response_to(r, "GET")
}

/// Read a response to a request of `method` (HEAD responses have no body).
pub fn read_response_to<R: BufRead>(r: &mut R, method: &str) -> std::io::Result<Response> {
    let head = read_head(r)?.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no response"))?;
    let status = head.start.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut chunks = Vec::new();
    let mut body = Vec::new();
    if method == "HEAD" || status == 204 || status == 304 {
        return Ok(Response { status, head, body, chunks });
    }
    read_body(r, &head, true, &mut |c| {
        chunks.push((Instant::now(), c.to_vec()));
        body.extend_from_slice(c);
    })?;
    assert_no_secret(&format!("{:?}", head), "a response head");
    assert_no_secret(&String::from_utf8_lossy(&body), "a response body");
    Ok(Response { status, head, body, chunks })
}

/// The bytes of one request with `connection: close`.
fn request_bytes(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        raw.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One request with `connection: close`.
pub fn request(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    raw_request(port, &request_bytes(port, method, target, headers, body)).unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

/// Send one request with `connection: close` and hand back the connection,
/// for callers that read the answer themselves (cut or endless streams).
pub fn send_request(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8], read_timeout: Duration) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(read_timeout)).unwrap();
    s.write_all(&request_bytes(port, method, target, headers, body)).unwrap();
    BufReader::new(s)
}

pub fn get(port: u16, target: &str, headers: &[(&str, &str)]) -> Response {
    request(port, "GET", target, headers, b"")
}

pub fn post_json(port: u16, target: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> Response {
    let mut h = headers.to_vec();
    h.push(("content-type", "application/json"));
    request(port, "POST", target, &h, body.to_string().as_bytes())
}

// ---------------------------------------------------------------------------
// The gateway process
// ---------------------------------------------------------------------------

/// Ports this test process has handed out, to mocks or to gateways.
static HANDED_OUT: Mutex<std::collections::BTreeSet<u16>> = Mutex::new(std::collections::BTreeSet::new());

/// A listener on 127.0.0.1 whose port no other caller in this process got.
/// The kernel may give a just-released port to the next `bind(0)`, and a
/// gateway only binds its ports after it starts: without this, two tests
/// running side by side (or one gateway's listen and metrics ports) could
/// be handed the same port.
pub fn listener() -> TcpListener {
    let mut taken = Vec::new();
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return l;
        }
        // Keep it bound so the next bind(0) moves on.
        taken.push(l);
    }
}

/// A port for a gateway to bind, never handed out twice in this process.
///
/// Taken below the kernel's ephemeral range when there is room: between
/// this probe and the gateway's bind (or its restart on the same port after
/// a kill), any outbound connection on the machine may otherwise take the
/// port as its local port, and Pingora then retries the bind for up to 30 s.
pub fn free_port() -> u16 {
    const FLOOR: u32 = 10_000;
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(32_768);
    if low > FLOOR + 1_000 {
        let span = low - FLOOR;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let mut seed = (std::process::id().wrapping_mul(2_654_435_761) ^ nanos) | 1;
        for _ in 0..1_000 {
            // xorshift: a different start for each test process.
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let port = (FLOOR + seed % span) as u16;
            if HANDED_OUT.lock().unwrap().contains(&port) {
                continue;
            }
            if TcpListener::bind(("127.0.0.1", port)).is_ok() && HANDED_OUT.lock().unwrap().insert(port) {
                return port;
            }
        }
    }
    listener().local_addr().unwrap().port()
}

pub struct Gateway {
    child: Option<Child>,
    pub port: u16,
    pub metrics_port: u16,
    pub dir: PathBuf,
    pub log_path: PathBuf,
    pub stderr_path: PathBuf,
    env: Vec<(String, String)>,
    generation: usize,
    /// This gateway's configured secrets (see `SECRETS`).
    secrets: Vec<String>,
    /// A TLS listener (`tollgate.tls`): how the readiness probe connects.
    tls: Option<openssl::ssl::SslConnector>,
}

fn spawn(dir: &std::path::Path, env: &[(String, String)], stderr_path: &std::path::Path, upgrade: bool) -> Child {
    let mut cmd = Command::new(BIN);
    if upgrade {
        cmd.arg("-u");
    }
    cmd.arg("-c")
        .arg(dir.join("tollgate.yaml"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr_path).unwrap())
        .spawn()
        .expect("start tollgate")
}

/// Provider key values and virtual-key secrets of every gateway this test
/// process started: no response, record, log line or metric may carry one
/// (issue 8, secret hygiene). Checked on every response read here and on
/// each gateway's records, logs and metrics when it is dropped.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The configured secrets of a config file (`env.VAR` resolved from `env`).
pub fn config_secrets(yaml: &str, env: &[(String, String)]) -> Vec<String> {
    let v: serde_yaml::Value = serde_yaml::from_str(yaml).expect("test config is YAML");
    let resolve = |s: &str| match s.strip_prefix("env.") {
        Some(var) => env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()),
        None => Some(s.to_string()),
    };
    let mut out = Vec::new();
    if let Some(ps) = v["tollgate"]["providers"].as_mapping() {
        for (_, p) in ps {
            for k in p["keys"].as_sequence().into_iter().flatten() {
                out.extend(k["value"].as_str().and_then(resolve));
                out.extend(k["entra"]["client_secret"].as_str().and_then(resolve));
            }
        }
    }
    for k in v["tollgate"]["virtual_keys"].as_sequence().into_iter().flatten() {
        out.extend(k["secret"].as_str().filter(|s| !s.starts_with("sha256:")).and_then(resolve));
    }
    // Short placeholders ("x", "k") would match by accident.
    out.retain(|s| s.len() >= 8);
    out
}

/// Panic when `text` contains a registered secret.
pub fn assert_no_secret(text: &str, what: &str) {
    for s in SECRETS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        assert!(!text.contains(s.as_str()), "a configured secret ({}...) appeared in {what}", &s[..4]);
    }
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn temp_dir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("tollgate-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

impl Gateway {
    /// Start with `section` as the body of `tollgate:` (indented two spaces
    /// by the caller's YAML, without listen/metrics/access_log, which are
    /// set here) and `top` extra Pingora settings.
    pub fn start(section: &str, top: &str, env: &[(&str, &str)]) -> Gateway {
        Self::start_tls(section, top, env, None)
    }

    /// [`Gateway::start`] for a `section` that sets `tls`: the readiness
    /// probe goes over TLS with `client` (which must trust the certificate
    /// the gateway serves for `localhost`).
    pub fn start_tls(section: &str, top: &str, env: &[(&str, &str)], client: Option<openssl::ssl::SslConnector>) -> Gateway {
        let top = if top.contains("grace_period_seconds") { top.to_string() } else { format!("grace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 2\n{top}") };
        let dir = temp_dir("gw");
        let (port, metrics_port) = (free_port(), free_port());
        let log_path = dir.join("access.log");
        let yaml = format!(
            "version: 1\nthreads: 2\npid_file: {d}/tollgate.pid\nupgrade_sock: {d}/upgrade.sock\n{top}\ntollgate:\n  listen: \"127.0.0.1:{port}\"\n  metrics_listen: \"127.0.0.1:{metrics_port}\"\n  access_log: {log}\n{section}\n",
            d = dir.display(),
            log = log_path.display()
        );
        std::fs::write(dir.join("tollgate.yaml"), &yaml).unwrap();
        let stderr_path = dir.join("stderr.log");
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let secrets = config_secrets(&yaml, &env);
        SECRETS.lock().unwrap().extend(secrets.iter().cloned());
        let child = spawn(&dir, &env, &stderr_path, false);
        let mut gw = Gateway { child: Some(child), port, metrics_port, dir, log_path, stderr_path, env, generation: 0, secrets, tls: client };
        gw.wait_ready();
        gw
    }

    /// Pingora's graceful upgrade: a new process started with `-u` takes
    /// the listeners over, the old one gets SIGQUIT and drains. Returns the
    /// old process, still finishing its in-flight requests.
    pub fn upgrade(&mut self) -> Child {
        self.generation += 1;
        let stderr_path = self.dir.join(format!("stderr.{}.log", self.generation));
        let new = spawn(&self.dir, &self.env, &stderr_path, true);
        let mut old = self.child.replace(new).unwrap();
        // Give the new process a moment to wait on the upgrade socket.
        thread::sleep(Duration::from_millis(300));
        let ok = Command::new("kill").args(["-QUIT", &old.id().to_string()]).status().unwrap();
        assert!(ok.success());
        self.stderr_path = stderr_path;
        if let Some(st) = old.try_wait().unwrap() {
            panic!("old process exited early: {st}");
        }
        // The new process took the listeners over (the old one retries the
        // hand-over while the new one is still starting, on a busy machine).
        self.wait_stderr("tollgate listening on", 1);
        old
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("tollgate exited ({status}): {}", self.stderr());
            }
            let probe = b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
            let answer = match &self.tls {
                None => raw_request(self.port, probe),
                Some(c) => tls_raw_request(c, self.port, probe),
            };
            if let Ok(r) = answer {
                if r.status == 200 {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("tollgate not ready: {}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Access records so far (waits up to 2 s for at least `min`), without
    /// those of the harness's own readiness probes.
    pub fn records(&self, min: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            // Only complete lines: a record may be half written while read.
            let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            let recs: Vec<serde_json::Value> =
                complete.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("record is JSON")).filter(|r| r["path"] != "/readyz").collect();
            if recs.len() >= min || Instant::now() > deadline {
                return recs;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The record with this request id.
    pub fn record(&self, request_id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(r) = self.records(0).into_iter().find(|r| r["request_id"] == request_id) {
                return r;
            }
            if Instant::now() > deadline {
                panic!("no record for {request_id}; records: {:?}", self.records(0));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn metrics(&self) -> String {
        get(self.metrics_port, "/metrics", &[]).text()
    }

    /// Sum of a metric's samples whose labels contain every `k="v"` given.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }

    /// SIGTERM (graceful stop) and wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send a signal (`HUP`, `QUIT`, ...) to the running process.
    pub fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([&format!("-{sig}"), &self.pid().to_string()]).status().unwrap().success());
    }

    /// Wait (up to 10 s) until metric `name{labels}` is at least `min`: for
    /// counters bumped after the fact (an exporter counts a batch when the
    /// collector's answer arrives, after the collector has the spans).
    pub fn wait_metric_at_least(&self, name: &str, labels: &[(&str, &str)], min: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metric(name, labels) < min {
            assert!(Instant::now() < deadline, "{name} never reached {min}: {}", self.metrics());
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait (up to 10 s) until stderr contains `needle` `times` times.
    pub fn wait_stderr(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stderr().matches(needle).count() < times {
            assert!(Instant::now() < deadline, "stderr never said {needle:?} {times}x: {}", self.stderr());
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replace `old` with `new` in the config file (for reload tests).
    pub fn edit_config(&self, old: &str, new: &str) {
        let p = self.dir.join("tollgate.yaml");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(old), "{old:?} not in config");
        std::fs::write(&p, text.replace(old, new)).unwrap();
    }

    /// One more secret this gateway must never show (an access token a mock
    /// token endpoint hands out, a refresh token in a credentials file):
    /// checked in every response read here and in its records, logs and
    /// metrics when it is dropped.
    pub fn add_secret(&mut self, s: &str) {
        assert!(s.len() >= 8, "secrets shorter than 8 bytes would match by accident");
        self.secrets.push(s.to_string());
        SECRETS.lock().unwrap().push(s.to_string());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
}

pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Secret hygiene: the metrics, every record and every log line this
        // gateway produced are free of its configured secrets.
        let mut leaks = Vec::new();
        if !thread::panicking() {
            let mut outputs = Vec::new();
            if self.child.is_some() {
                if let Ok(r) = raw_request(self.metrics_port, b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n") {
                    outputs.push(("metrics".to_string(), String::from_utf8_lossy(&r.body).into_owned()));
                }
            }
            // Records are written by a thread every 20 ms: let the last ones land.
            thread::sleep(Duration::from_millis(60));
            for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") {
                    outputs.push((name, String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap_or_default()).into_owned()));
                }
            }
            for (what, text) in &outputs {
                for s in &self.secrets {
                    if text.contains(s.as_str()) {
                        leaks.push(format!("{what} contains a configured secret ({}...)", &s[..4]));
                    }
                }
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        assert!(leaks.is_empty(), "{leaks:?}");
    }
}

/// SSE event payloads (`data:` lines) from a body.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

pub fn headers_map(h: &Head) -> HashMap<String, String> {
    h.headers.iter().cloned().collect()
}
