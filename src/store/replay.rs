//! The reasoning replay memory's embedded store (SPEC 8, "Reasoning
//! models"): what a tool-using turn of a reasoning model needs on the next
//! turn (Anthropic's thinking blocks, Gemini's thought signatures), keyed by
//! owner and tool-call id, in its own SQLite file beside the store so that
//! it survives a restart. With Redis configured the gateway keeps it there
//! instead (`governance::shared_counters`), shared by every instance.
//!
//! Bounded: entries expire after `openai_compat.reasoning_ttl_s` (an expired
//! one is never returned, and is deleted by the sweep), and past
//! `max_entries` the ones nearest their expiry go first. Private: a lookup
//! names its owner, and an id is found only under the owner that wrote it.
//! Nothing else of the conversation is kept: the memo is the provider's own
//! opaque replay data.

use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The memory's file beside the job store's.
pub fn path_beside(store_path: &Path) -> PathBuf {
    super::beside(store_path, "tollgate-reasoning.db")
}

pub struct ReplayStore {
    conn: Mutex<Connection>,
    max_entries: u64,
    writes: AtomicU64,
}

impl ReplayStore {
    pub fn open(path: &Path, max_entries: u64) -> Result<ReplayStore, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS memos (owner TEXT NOT NULL, call_id TEXT NOT NULL, memo TEXT NOT NULL,
               expires_s INTEGER NOT NULL, PRIMARY KEY (owner, call_id));
             CREATE INDEX IF NOT EXISTS memos_expiry ON memos (expires_s);",
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(ReplayStore { conn: Mutex::new(conn), max_entries: max_entries.max(1), writes: AtomicU64::new(0) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember `memos` (id, JSON) for `owner` until `expires_s` (Unix s).
    pub fn put(&self, owner: &str, memos: &[(String, String)], expires_s: u64) -> Result<(), String> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        for (id, memo) in memos {
            tx.execute("INSERT OR REPLACE INTO memos (owner, call_id, memo, expires_s) VALUES (?1, ?2, ?3, ?4)", params![owner, id, memo, expires_s as i64])
                .map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())?;
        if self.writes.fetch_add(1, Ordering::Relaxed) % 64 == 0 {
            Self::bound(&conn, self.max_entries, crate::store::now_s());
        }
        Ok(())
    }

    /// Expired entries out; past `max` the ones nearest their expiry too.
    fn bound(conn: &Connection, max: u64, now_s: u64) {
        let _ = conn.execute("DELETE FROM memos WHERE expires_s <= ?1", params![now_s as i64]);
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM memos", [], |r| r.get(0)).unwrap_or(0);
        if n as u64 > max {
            let _ = conn.execute(
                "DELETE FROM memos WHERE rowid IN (SELECT rowid FROM memos ORDER BY expires_s LIMIT ?1)",
                params![n - max as i64],
            );
        }
    }

    /// The live memos of `owner` among `ids`.
    pub fn get(&self, owner: &str, ids: &[String], now_s: u64) -> Result<HashMap<String, String>, String> {
        let conn = self.conn();
        let mut q = conn.prepare_cached("SELECT memo FROM memos WHERE owner = ?1 AND call_id = ?2 AND expires_s > ?3").map_err(|e| e.to_string())?;
        let mut out = HashMap::new();
        for id in ids {
            let mut rows = q.query(params![owner, id, now_s as i64]).map_err(|e| e.to_string())?;
            if let Some(r) = rows.next().map_err(|e| e.to_string())? {
                out.insert(id.clone(), r.get::<_, String>(0).map_err(|e| e.to_string())?);
            }
        }
        Ok(out)
    }

    /// Entries held (expired ones not yet swept included).
    pub fn len(&self) -> u64 {
        self.conn().query_row("SELECT COUNT(*) FROM memos", [], |r| r.get::<_, i64>(0)).unwrap_or(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("tollgate-replay-test-{}-{}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn private_to_the_owner_expiring_and_surviving_a_reopen() {
        let path = dir().join("r.db");
        let now = crate::store::now_s();
        {
            let s = ReplayStore::open(&path, 100).unwrap();
            s.put("vk:a", &[("call_1".into(), "{\"thought_signature\":\"x\"}".into())], now + 1000).unwrap();
            assert_eq!(s.get("vk:a", &["call_1".into()], now).unwrap()["call_1"], "{\"thought_signature\":\"x\"}");
            assert!(s.get("vk:b", &["call_1".into()], now).unwrap().is_empty(), "another owner reusing the id gets nothing");
            assert!(s.get("vk:a", &["call_1".into()], now + 1000).unwrap().is_empty(), "expired");
        }
        let s = ReplayStore::open(&path, 100).unwrap();
        assert_eq!(s.get("vk:a", &["call_1".into(), "call_2".into()], now).unwrap().len(), 1, "survives a reopen");
        // The bound deletes what has expired.
        s.put("vk:a", &[("old".into(), "{}".into())], now.saturating_sub(5)).unwrap();
        ReplayStore::bound(&s.conn(), 100, now);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn bounded_in_entries() {
        let s = ReplayStore::open(&dir().join("r.db"), 10).unwrap();
        let now = crate::store::now_s();
        for i in 0..30u64 {
            s.put("o", &[(format!("c{i}"), "{}".into())], now + 100 + i).unwrap();
        }
        // The bound is applied every 64 writes, and at the first.
        ReplayStore::bound(&s.conn(), 10, now);
        assert_eq!(s.len(), 10);
        assert_eq!(s.get("o", &["c29".into(), "c0".into()], now).unwrap().len(), 1, "the ones nearest their expiry went first");
    }
}
