//! The writer thread: batches of rows in one transaction, retention each
//! minute, failures dropped and counted.

use super::row::Row;
use super::{Entry, LogStore, BUSY, DROPPED, INTERVAL};
use rusqlite::{params, Connection};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Indexes: newest first over a time range (`ts_ms, id`), and the common
/// filters each leading an index that then walks time the same way, so a
/// filter plus a time range plus the newest-first order is an index range
/// scan. `request_id` for `GET /admin/logs/{request_id}`.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS logs (
    id           INTEGER PRIMARY KEY,
    ts_ms        INTEGER NOT NULL,
    request_id   TEXT    NOT NULL,
    provider     TEXT,
    model        TEXT,
    route        TEXT,
    status       INTEGER NOT NULL,
    virtual_key  TEXT,
    cache        TEXT,
    async_job_id TEXT,
    latency_ms   REAL    NOT NULL,
    cost_usd     REAL,
    tokens       INTEGER,
    is_error     INTEGER NOT NULL,
    fallback     INTEGER NOT NULL,
    content      TEXT,
    record       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_ts ON logs (ts_ms, id);
CREATE INDEX IF NOT EXISTS logs_by_vk ON logs (virtual_key, ts_ms, id);
CREATE INDEX IF NOT EXISTS logs_by_provider ON logs (provider, ts_ms, id);
CREATE INDEX IF NOT EXISTS logs_by_status ON logs (status, ts_ms, id);
CREATE INDEX IF NOT EXISTS logs_by_request ON logs (request_id);
CREATE INDEX IF NOT EXISTS logs_by_job ON logs (async_job_id) WHERE async_job_id IS NOT NULL;
";

pub(super) fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    c.busy_timeout(BUSY)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(c)
}

pub(super) fn migrate(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(SCHEMA)
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub(super) fn run(store: &LogStore) {
    let shared = &store.shared;
    let mut conn: Option<Connection> = None;
    let mut batch: Vec<Entry> = Vec::new();
    // `open` applied retention; the writer does each minute after that.
    let mut last_retention: Option<Instant> = Some(Instant::now());
    loop {
        let asked = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.flush_asked == q.flush_done {
                q = shared.wake.wait_timeout(q, INTERVAL).unwrap_or_else(|e| e.into_inner()).0;
            }
            std::mem::swap(&mut batch, &mut q.rows);
            q.flush_asked
        };
        if conn.is_none() {
            conn = connect(&store.path).and_then(|c| migrate(&c).map(|_| c)).map_err(|e| log::error!("log store {}: {e}", store.path.display())).ok();
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            let res = match &mut conn {
                Some(c) => insert(c, &batch),
                None => Err(rusqlite::Error::InvalidQuery),
            };
            if let Err(e) = res {
                DROPPED.inc_by(n);
                log::warn!("log store {}: {n} rows dropped: {e}", store.path.display());
                conn = None; // reopen next time (the file may have moved or come back)
            }
            batch.clear();
        }
        if let Some(c) = &conn {
            if last_retention.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                last_retention = Some(Instant::now());
                if let Err(e) = retain(c, store.conf.retention_days, store.conf.max_rows, now_ms()) {
                    log::warn!("log store {}: retention: {e}", store.path.display());
                }
            }
        }
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.flush_done = asked;
        shared.done.notify_all();
    }
}

pub(super) fn insert(c: &mut Connection, batch: &[Entry]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO logs (ts_ms, request_id, provider, model, route, status, virtual_key, cache, async_job_id,
                latency_ms, cost_usd, tokens, is_error, fallback, content, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?;
        for e in batch {
            let Ok(v) = serde_json::to_value(&e.record) else { continue };
            let r = Row::of(&v);
            let content = e.content.as_ref().map(|c| serde_json::json!({ "request": c.request, "response": c.response }).to_string());
            st.execute(params![
                r.ts_ms,
                r.request_id,
                r.provider,
                r.model,
                r.route,
                r.status,
                r.virtual_key,
                r.cache,
                r.async_job_id,
                r.latency_ms,
                r.cost_usd,
                r.tokens,
                r.is_error,
                r.fallback,
                content,
                v.to_string()
            ])?;
        }
    }
    tx.commit()
}

/// Delete rows older than `days`, then the oldest past `max_rows`.
pub(super) fn retain(c: &Connection, days: u32, max_rows: u64, now_ms: i64) -> rusqlite::Result<usize> {
    let cutoff = now_ms - i64::from(days) * 86_400_000;
    let mut n = c.execute("DELETE FROM logs WHERE ts_ms < ?1", [cutoff])?;
    // Row ids grow with inserts: the oldest rows are the lowest ids.
    let edge: Option<i64> =
        c.query_row("SELECT id FROM logs ORDER BY id DESC LIMIT 1 OFFSET ?1", [max_rows as i64], |r| r.get(0)).map(Some).or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    if let Some(edge) = edge {
        n += c.execute("DELETE FROM logs WHERE id <= ?1", [edge])?;
    }
    Ok(n)
}
