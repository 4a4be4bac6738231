//! One JSON line per request (SPEC 6), written from the logging phase to
//! stdout or to a file opened for append.

use crate::config::AccessLogTarget;
use serde::Serialize;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default, Serialize)]
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
    pub reasoning_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub virtual_key: Option<String>,
    pub provider_key: Option<String>,
    pub error: Option<String>,
    pub user_agent: Option<String>,
}

/// The access log: records are handed to a writer thread over a bounded
/// channel, so no proxy worker serialises JSON or blocks in `write(2)`.
/// The writer sends whole lines only (never a line split across two
/// writes, so two processes appending during a graceful upgrade do not
/// interleave inside a line), batching what has queued up and writing as
/// soon as the queue is empty. When the queue is full, `write` waits:
/// records are never dropped.
///
/// The writer thread starts with the first record, not at `open`: Pingora
/// daemonises (forks) after the log is opened, and a thread does not
/// survive a fork.
#[derive(Clone)]
pub struct AccessLog {
    out: Arc<Mutex<Option<Box<dyn Write + Send>>>>,
    tx: Arc<OnceLock<SyncSender<Msg>>>,
}

enum Msg {
    Record(Box<Record>),
    /// Write out everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// Records queued before `write` waits.
const QUEUE: usize = 16_384;
/// Bytes batched into one `write(2)` at most (whole lines).
const BATCH: usize = 256 * 1024;

impl AccessLog {
    pub fn open(target: &AccessLogTarget) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
        };
        Ok(AccessLog { out: Arc::new(Mutex::new(Some(out))), tx: Arc::new(OnceLock::new()) })
    }

    fn sender(&self) -> &SyncSender<Msg> {
        self.tx.get_or_init(|| {
            let (tx, rx) = sync_channel(QUEUE);
            let out = self.out.lock().expect("access log lock").take().expect("writer started once");
            std::thread::Builder::new()
                .name("tollgate-access-log".into())
                .spawn(move || writer(rx, out))
                .expect("start the access log writer thread");
            tx
        })
    }

    /// Queue one record.
    pub fn write(&self, rec: Record) {
        if self.sender().send(Msg::Record(Box::new(rec))).is_err() {
            log::error!("access log writer is gone; record lost");
        }
    }

    /// Wait (up to 10 s) until every record queued so far is written.
    pub fn flush(&self) {
        let (ack, done) = sync_channel(1);
        if self.sender().send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(std::time::Duration::from_secs(10));
        }
    }
}

fn writer(rx: Receiver<Msg>, mut out: Box<dyn Write + Send>) {
    let mut buf: Vec<u8> = Vec::with_capacity(BATCH);
    let mut acks = Vec::new();
    let write_out = |buf: &mut Vec<u8>, out: &mut Box<dyn Write + Send>| {
        if !buf.is_empty() {
            if let Err(e) = out.write_all(buf).and_then(|_| out.flush()) {
                log::error!("cannot write access records: {e}");
            }
            buf.clear();
        }
    };
    // Blocks for the first message, then takes what else is queued.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Record(rec) => {
                    let start = buf.len();
                    match serde_json::to_writer(&mut buf, &rec) {
                        Ok(()) => buf.push(b'\n'),
                        Err(e) => {
                            buf.truncate(start);
                            log::error!("access record not serialisable: {e}");
                        }
                    }
                    if buf.len() >= BATCH {
                        write_out(&mut buf, &mut out);
                    }
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        write_out(&mut buf, &mut out);
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    write_out(&mut buf, &mut out);
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
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
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
