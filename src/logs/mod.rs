//! The request log store (SPEC 12): every access record of SPEC 6 is also
//! kept on disk, written off the request path in batches, and read back by
//! the admin API (`GET /admin/logs`) and the dashboard.
//!
//! **Where.** A directory beside the store, `<store dir>/tollgate-logs/`,
//! of append-only segments ([`segment`]): the records' JSON lines, and a
//! compact index of fixed columns per row. Not SQLite: a row inserted into
//! a table with an index per filter cost some 80k instructions (half the
//! whole proxied request's), and a query's stats over a million rows took
//! two seconds. Here a row costs a copy and a few dictionary lookups, and a
//! query scans the columns in memory (see `benches/README.md`).
//!
//! **Off the request path, and no second serialisation.** The access log's
//! writer thread already turns each record into its JSON line; it hands
//! the record and the line to this store ([`Tee`]), which queues them
//! (bounded: [`QUEUE`] rows, [`QUEUE_BYTES`]) and returns. A writer thread
//! appends each batch to this process's segment in two writes. A full
//! queue, or a batch the disk refuses (full, unwritable), drops rows and
//! counts them in `tollgate_logs_dropped_total`: never a request.
//!
//! **In memory.** Every kept row's columns (time, status, latency, cost,
//! tokens, flags, and provider, model, route, virtual key and cache as
//! dictionary ids): about 100 bytes a row. Filters and stats scan them; the
//! JSON is read from the segment for the rows a page shows.
//!
//! **Retention.** The oldest rows past `max_rows`, and rows older than
//! `retention_days` (hidden from queries at once, dropped from memory as
//! they reach the oldest end), after each batch and at start; a segment's
//! files are deleted once none of its rows is kept. Segments close after
//! an hour or `max_rows / 8` rows, so files hold at most about an eighth
//! more than what is kept.
//!
//! **Two processes (graceful upgrade).** Each writes only its own segments;
//! each reads the other's as they grow (a query looks at most once a
//! second). A segment being written holds an `flock`, and no process
//! deletes a locked segment. Row ids (`segment key << 20 | position`) are
//! the same in every process, so a cursor stays valid across an upgrade.
//!
//! Across many instances each has its own store; the fleet view is the JSON
//! access log or the traces shipped to a log system.

mod index;
mod query;
mod row;
mod segment;
mod writer;

pub use crate::observe::access_log::{Content, MAX_CONTENT};
pub use query::{parse_filter, Filter, FilterError};
pub use row::parse_rfc3339_ms;

use crate::config::logs::LogsConf;
use crate::observe::access_log::{Record, Tee};
use index::Index;
use prometheus::{register_int_counter, IntCounter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// Rows waiting for the writer; past this a row is dropped (and counted).
pub const QUEUE: usize = 65_536;
/// Bytes of JSON waiting for the writer; past this a row is dropped.
pub const QUEUE_BYTES: usize = 64 << 20;
/// How long rows may wait in the queue.
const INTERVAL: Duration = Duration::from_millis(250);

/// `tollgate_logs_dropped_total`.
pub static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("tollgate_logs_dropped_total", "Request log rows dropped: the queue was full or the log store refused them")
        .expect("register")
});

/// The directory beside the store.
pub fn path_beside(store_path: &Path) -> PathBuf {
    crate::store::beside(store_path, "tollgate-logs")
}

/// One queued row: the record (with its captured content) and its JSON.
pub struct Entry {
    pub record: Record,
    pub json: Vec<u8>,
}

/// The log store: the queue, its writer thread, the index, and reads for
/// the API.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    index: Arc<RwLock<Index>>,
    started: Arc<OnceLock<()>>,
    last_refresh: Arc<Mutex<Option<Instant>>>,
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
    bytes: usize,
    flush_asked: u64,
    flush_done: u64,
}

impl LogStore {
    /// Open `dir` (created, mode 0700), read its segments and apply
    /// retention: a store that cannot be opened is a start error. The
    /// writer thread starts with the first row (Pingora may fork after
    /// this).
    pub fn open(dir: &Path, conf: LogsConf) -> Result<LogStore, String> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let probe = dir.join(format!(".probe-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(|e| format!("{}: {e}", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        let index = Index::load(dir)?;
        LazyLock::force(&DROPPED);
        let shared = Shared { queue: Mutex::new(Queue::default()), wake: Condvar::new(), done: Condvar::new() };
        let store = LogStore {
            shared: Arc::new(shared),
            index: Arc::new(RwLock::new(index)),
            started: Arc::new(OnceLock::new()),
            last_refresh: Arc::new(Mutex::new(Some(Instant::now()))),
            conf,
            path: dir.to_path_buf(),
        };
        store.retain(None, false);
        Ok(store)
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

    /// Queue one record (serialised here). The gateway's records come
    /// through [`Tee`] instead, already serialised by the access log.
    pub fn write(&self, record: Record) {
        match serde_json::to_vec(&record) {
            Ok(json) => self.queue(vec![Entry { record, json }]),
            Err(_) => DROPPED.inc(),
        }
    }

    /// Queue rows; never waits. What does not fit is dropped (counted).
    fn queue(&self, rows: Vec<Entry>) {
        self.start();
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped = 0;
        for e in rows {
            let size = e.json.len() + e.record.content.as_ref().map_or(0, |c| c.request.len() + c.response.len());
            if q.rows.len() >= QUEUE || q.bytes + size > QUEUE_BYTES {
                dropped += 1;
                continue;
            }
            q.bytes += size;
            q.rows.push(e);
        }
        drop(q);
        if dropped > 0 {
            DROPPED.inc_by(dropped);
        }
    }

    /// Wait (up to `max`) until every row queued so far is written or dropped.
    pub fn flush(&self, max: Duration) {
        self.start();
        let deadline = Instant::now() + max;
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.flush_asked += 1;
        let target = q.flush_asked;
        self.shared.wake.notify_one();
        while q.flush_done < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            q = self.shared.done.wait_timeout(q, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Retention now; with `refresh`, first read what other processes
    /// wrote.
    fn retain(&self, writing: Option<u32>, refresh: bool) {
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        if refresh {
            if let Err(e) = idx.refresh() {
                log::warn!("log store: {e}");
            }
        }
        idx.retain(self.cutoff_ms(), self.conf.max_rows, writing);
    }

    /// Rows older than this are gone.
    fn cutoff_ms(&self) -> i64 {
        writer::now_ms() - i64::from(self.conf.retention_days) * 86_400_000
    }

    /// Another process's new rows, looked for at most once a second.
    fn refresh(&self) {
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = idx.refresh() {
            log::warn!("log store: {e}");
        }
    }

    /// `GET /admin/logs`: a page of rows newest first and the stats over
    /// the whole filtered set.
    pub fn page(&self, f: &Filter) -> Result<serde_json::Value, String> {
        self.refresh();
        query::page(&self.index, f, self.cutoff_ms())
    }

    /// `GET /admin/logs/series`.
    pub fn series(&self, f: &Filter, now_ms: i64) -> Result<serde_json::Value, String> {
        self.refresh();
        query::series(&self.index, f, self.cutoff_ms(), now_ms)
    }

    /// `GET /admin/logs/{request_id}`.
    pub fn by_request_id(&self, id: &str) -> Result<Option<serde_json::Value>, String> {
        self.refresh();
        query::by_request_id(&self.index, id, self.cutoff_ms())
    }

    /// Rows kept (in this process's view).
    pub fn rows(&self) -> usize {
        self.index.read().unwrap_or_else(|e| e.into_inner()).rows.len()
    }
}

impl Tee for LogStore {
    fn records(&self, batch: Vec<(Record, Vec<u8>)>) {
        self.queue(batch.into_iter().map(|(record, json)| Entry { record, json }).collect());
    }
}

#[cfg(test)]
mod tests;
