//! One JSON line per request (SPEC 6), written from the logging phase to
//! stdout or to a file opened for append.

use serde::Serialize;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where records go (`tollgate.access_log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(String),
}

/// One access record. Its line is written by `access_line::write_record`;
/// the derived `Serialize` is the reference that writer is tested against
/// (a new field goes in both).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Record {
    pub ts: String,
    pub request_id: String,
    pub client_ip: Option<String>,
    pub method: String,
    pub route: Option<&'static str>,
    pub provider: Option<&'static str>,
    pub upstream_host: Option<String>,
    /// Client path and query, with secret query values redacted.
    pub path: String,
    pub status: u16,
    pub duration_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub stream: bool,
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    /// Input tokens read from a prompt cache (the same as `cached_tokens`).
    pub cache_read_tokens: Option<u64>,
    /// Input tokens written to a prompt cache (priced at the write rate).
    pub cache_write_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub virtual_key: Option<String>,
    pub provider_key: Option<String>,
    pub error: Option<String>,
    pub user_agent: Option<String>,
    /// The async job (SPEC 9) this submission, poll or execution is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub async_job_id: Option<String>,
    /// `/openai` (SPEC 10): the position of the target that answered in
    /// the order tried (0 = the first choice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_index: Option<usize>,
    /// `/openai` (SPEC 11): hit, semantic-hit, miss, refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    /// A hit: the tokens and USD the stored answer saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_saved_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_saved_usd: Option<f64>,
    /// `/openai` (SPEC 10): every attempt, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// With `logs.capture_content` (SPEC 12): the request's messages and
    /// the answer's text, for the request log store only (never in this
    /// log's lines).
    #[serde(skip)]
    pub content: Option<Box<Content>>,
}

/// Bytes of content kept per row, for the request and the answer each.
pub const MAX_CONTENT: usize = 16 * 1024;

/// What `capture_content` keeps: the request's messages and the answer's
/// text, each cut at [`MAX_CONTENT`] bytes (on a character boundary).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Content {
    pub request: String,
    pub response: String,
}

impl Content {
    pub fn new(request: &str, response: &str) -> Content {
        Content { request: cut(request).to_string(), response: cut(response).to_string() }
    }
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_CONTENT {
        return s;
    }
    let mut end = MAX_CONTENT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whoever else keeps the records (the request log store, SPEC 12): handed
/// each record with the JSON line this log wrote for it (no newline), by
/// the writer thread, once per batch. It must not block: the access log
/// never drops a record and waits for nothing else.
pub trait Tee: Send + Sync {
    fn records(&self, batch: Vec<(Record, Vec<u8>)>);
}

/// One attempt of an `/openai` request on one target (SPEC 10).
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Attempt {
    pub provider: String,
    pub model: String,
    /// The provider key's name.
    pub key: Option<String>,
    /// The provider's status, when it answered.
    pub status: Option<u16>,
    /// Why it failed (`None` for the answer).
    pub error: Option<String>,
    pub latency_ms: f64,
}

/// The access log: proxy workers append records to a shared queue and a
/// writer thread serialises them and writes whole lines, every 20 ms or
/// sooner when asked to flush. Workers never serialise JSON, never block in
/// `write(2)` and never wake the writer per record (a wake-up per record
/// cost more than the write itself). Lines are written whole (never one
/// line across two writes), so two processes appending during a graceful
/// upgrade do not interleave inside a line. When 16k records are queued, a
/// worker waits for the writer: records are never dropped.
///
/// The writer thread starts with the first record, not at `open`: Pingora
/// daemonises (forks) after the log is opened, and a thread does not
/// survive a fork.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
    started: Arc<OnceLock<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// The writer waits here for a flush request or a full queue.
    wake_writer: Condvar,
    /// Workers and `flush` wait here for the writer to catch up.
    written: Condvar,
    out: Mutex<Option<Box<dyn Write + Send>>>,
    tee: OnceLock<Arc<dyn Tee>>,
}

#[derive(Default)]
struct Queue {
    records: Vec<Record>,
    /// Flushes asked for and done, counted.
    flush_asked: u64,
    flush_done: u64,
}

/// Records queued before a worker waits for the writer.
const QUEUE: usize = 16_384;
/// Bytes batched into one `write(2)` at most (whole lines).
const BATCH: usize = 256 * 1024;
/// How long records may wait in the queue.
const INTERVAL: Duration = Duration::from_millis(20);

impl AccessLog {
    pub fn open(target: &AccessLogTarget) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
        };
        let shared = Shared { queue: Mutex::new(Queue::default()), wake_writer: Condvar::new(), written: Condvar::new(), out: Mutex::new(Some(out)), tee: OnceLock::new() };
        Ok(AccessLog { shared: Arc::new(shared), started: Arc::new(OnceLock::new()) })
    }

    fn start(&self) {
        self.started.get_or_init(|| {
            let shared = self.shared.clone();
            let out = shared.out.lock().expect("access log lock").take().expect("writer started once");
            std::thread::Builder::new()
                .name("tollgate-access-log".into())
                .spawn(move || writer(&shared, out))
                .expect("start the access log writer thread");
        });
    }

    /// Hand every record, with its line, to `tee` too (set once, before
    /// the first record).
    pub fn set_tee(&self, tee: Arc<dyn Tee>) {
        let _ = self.shared.tee.set(tee);
    }

    /// Queue one record.
    pub fn write(&self, rec: Record) {
        self.start();
        let mut q = self.shared.queue.lock().expect("access log lock");
        q.records.push(rec);
        if q.records.len() >= QUEUE {
            self.shared.wake_writer.notify_one();
            while q.records.len() >= QUEUE {
                q = self.shared.written.wait(q).expect("access log lock");
            }
        }
    }

    /// Wait (up to 10 s) until every record queued so far is written.
    pub fn flush(&self) {
        self.start();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut q = self.shared.queue.lock().expect("access log lock");
        q.flush_asked += 1;
        let target = q.flush_asked;
        self.shared.wake_writer.notify_one();
        while q.flush_done < target {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                log::error!("access log flush timed out");
                return;
            }
            q = self.shared.written.wait_timeout(q, left).expect("access log lock").0;
        }
    }
}

fn writer(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut buf: Vec<u8> = Vec::with_capacity(BATCH);
    let mut batch: Vec<Record> = Vec::new();
    loop {
        let asked = {
            let mut q = shared.queue.lock().expect("access log lock");
            if q.records.len() < QUEUE && q.flush_asked == q.flush_done {
                q = shared.wake_writer.wait_timeout(q, INTERVAL).expect("access log lock").0;
            }
            std::mem::swap(&mut batch, &mut q.records);
            q.flush_asked
        };
        let tee = shared.tee.get();
        let mut teed = Vec::with_capacity(if tee.is_some() { batch.len() } else { 0 });
        for rec in batch.drain(..) {
            let start = buf.len();
            super::access_line::write_record(&mut buf, &rec);
            if tee.is_some() {
                teed.push((rec, buf[start..].to_vec()));
            }
            buf.push(b'\n');
            if buf.len() >= BATCH {
                write_out(&mut buf, &mut out);
            }
        }
        write_out(&mut buf, &mut out);
        if let (Some(t), false) = (tee, teed.is_empty()) {
            t.records(std::mem::take(&mut teed));
        }
        let mut q = shared.queue.lock().expect("access log lock");
        q.flush_done = asked;
        shared.written.notify_all();
    }
}

fn write_out(buf: &mut Vec<u8>, out: &mut Box<dyn Write + Send>) {
    if !buf.is_empty() {
        if let Err(e) = out.write_all(buf).and_then(|_| out.flush()) {
            log::error!("cannot write access records: {e}");
        }
        buf.clear();
    }
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60, d.subsec_millis());
    }
    // Fixed width: digits written directly (one per request, on the path).
    let mut out = [0u8; 24];
    let mut put = |at: usize, v: i64, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, rem / 3600, 2);
    put(14, (rem % 3600) / 60, 2);
    put(17, rem % 60, 2);
    put(20, i64::from(d.subsec_millis()), 3);
    for (at, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')] {
        out[at] = c;
    }
    // Digits and ASCII punctuation only.
    String::from_utf8(out.to_vec()).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn writes_one_line_per_record() {
        let dir = std::env::temp_dir().join(format!("tollgate-al-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.log");
        let log = AccessLog::open(&AccessLogTarget::File(p.to_string_lossy().into())).unwrap();
        log.write(Record { request_id: "a".into(), status: 200, ..Default::default() });
        log.write(Record { request_id: "b".into(), status: 404, ..Default::default() });
        log.flush();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["status"], 404);
        assert!(lines[0].get("input_tokens").is_some(), "fields are present even when null");
        // Many writers at once: every record is one whole line.
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        log.write(Record { request_id: format!("{t}-{i}"), path: "x".repeat(i % 300), ..Default::default() });
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        log.flush();
        let text = std::fs::read_to_string(&p).unwrap();
        let ids: std::collections::HashSet<String> =
            text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids.len(), 2 + 8 * 2000);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
