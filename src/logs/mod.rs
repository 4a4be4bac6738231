//! The request log store (SPEC 12): every access record of SPEC 6 is also
//! kept in SQLite, written off the request path in batches, and read back by
//! the admin API (`GET /admin/logs`) and the dashboard.
//!
//! **Where.** Its own file beside the store, `<store dir>/tollgate-logs.db`
//! (WAL), not a table in `tollgate.db`: SQLite has one writer per file, and
//! a batch of log rows (or a retention delete of thousands of rows) must
//! never hold the write lock that async jobs and virtual-key spend need.
//! A separate file also lets an operator delete or copy the logs alone.
//!
//! **Off the request path.** A worker clones the record into a bounded
//! queue ([`QUEUE`] rows) and returns: no JSON, no SQLite, no wake-up per
//! row. A writer thread takes the queue every [`INTERVAL`], serialises the
//! records and inserts them in one transaction. A full queue, or a batch the
//! store refuses (disk full, locked past [`BUSY`], unwritable), drops rows
//! and counts them in `tollgate_logs_dropped_total`: never a request.
//!
//! **Rows.** One column per filter of the API (`ts_ms`, `provider`, `model`,
//! `route`, `status`, `virtual_key`, `cache`, `async_job_id`, latency, cost,
//! tokens), plus the whole record as JSON, so fields added to the record
//! later flow through without a migration. `cache` and `async_job_id` are
//! read from the record when present. Content only with `capture_content`.
//!
//! **Retention.** At start and each minute: rows older than
//! `retention_days`, and the oldest past `max_rows`, are deleted.
//!
//! Across many instances each has its own store; the fleet view is the JSON
//! access log or the traces shipped to a log system.

mod query;
mod row;
mod writer;

pub use query::{by_request_id, parse_filter, series, Filter, FilterError, Page};
pub use row::{parse_rfc3339_ms, Content, MAX_CONTENT};

use crate::config::logs::LogsConf;
use crate::observe::access_log::Record;
use prometheus::{register_int_counter, IntCounter};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, OnceLock};
use std::time::Duration;

/// Rows waiting for the writer; past this a row is dropped (and counted).
pub const QUEUE: usize = 65_536;
/// How long rows may wait in the queue.
const INTERVAL: Duration = Duration::from_millis(250);
/// How long a batch waits for a locked database before it is dropped.
const BUSY: Duration = Duration::from_millis(500);

/// `tollgate_logs_dropped_total`.
pub static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("tollgate_logs_dropped_total", "Request log rows dropped: the queue was full or the log store refused them")
        .expect("register")
});

/// The file beside the store.
pub fn path_beside(store_path: &Path) -> PathBuf {
    crate::store::beside(store_path, "tollgate-logs.db")
}

/// One queued row: the record and, with `capture_content`, its content.
pub struct Entry {
    pub record: Record,
    pub content: Option<Content>,
}

/// The log store: the queue, its writer thread, and reads for the API.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    started: Arc<OnceLock<()>>,
    pub conf: LogsConf,
    pub path: PathBuf,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    done: Condvar,
}

#[derive(Default)]
struct Queue {
    rows: Vec<Entry>,
    flush_asked: u64,
    flush_done: u64,
}

impl LogStore {
    /// Open (creating the file and schema) to check it now: a store that
    /// cannot be opened is a start error. The writer thread opens its own
    /// connection at the first row (Pingora may fork after this).
    pub fn open(path: &Path, conf: LogsConf) -> Result<LogStore, String> {
        let conn = writer::connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
        writer::migrate(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
        // Retention at start too (a store that was off for a while).
        if let Err(e) = writer::retain(&conn, conf.retention_days, conf.max_rows, writer::now_ms()) {
            log::warn!("log store {}: retention: {e}", path.display());
        }
        drop(conn);
        LazyLock::force(&DROPPED);
        let shared = Shared { queue: Mutex::new(Queue::default()), wake: Condvar::new(), done: Condvar::new() };
        Ok(LogStore { shared: Arc::new(shared), started: Arc::new(OnceLock::new()), conf, path: path.to_path_buf() })
    }

    fn start(&self) {
        self.started.get_or_init(|| {
            let store = self.clone();
            std::thread::Builder::new()
                .name("tollgate-logs".into())
                .spawn(move || writer::run(&store))
                .expect("start the log store writer thread");
        });
    }

    /// Queue one row; never waits. A full queue drops it (counted).
    pub fn write(&self, entry: Entry) {
        self.start();
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.rows.len() >= QUEUE {
            drop(q);
            DROPPED.inc();
            return;
        }
        q.rows.push(entry);
    }

    /// Wait (up to `max`) until every row queued so far is written or dropped.
    pub fn flush(&self, max: Duration) {
        self.start();
        let deadline = std::time::Instant::now() + max;
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.flush_asked += 1;
        let target = q.flush_asked;
        self.shared.wake.notify_one();
        while q.flush_done < target {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            q = self.shared.done.wait_timeout(q, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// A read connection for the API (run it on the blocking pool).
    pub fn reader(&self) -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(&self.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        c.busy_timeout(Duration::from_secs(2))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests;
