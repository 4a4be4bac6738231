//! The cache's entries (SPEC 11): an SQLite file beside the store holds
//! them (they survive restarts); memory holds what a lookup needs (each
//! entry's expiry, and the semantic vectors by partition), loaded at open.
//!
//! Correct under concurrent writers and restarts: one process owns the file
//! (SQLite's lock; WAL), every write goes through one connection under a
//! mutex and updates memory in the same critical section, so memory and the
//! file never disagree on what exists; a write replaces an entry whole
//! (`INSERT OR REPLACE`), so a reader sees the old answer or the new one,
//! never a mix. Expiry is checked on every read, so an expired entry is
//! never served even before the sweep deletes it. After a crash the file is
//! what SQLite committed, and memory is rebuilt from it at the next open.
//!
//! The semantic vectors live in [`SemanticIndex`] (its own lock, always
//! taken after this store's): an exact scan for small partitions, an
//! index trained off the request path for large ones (`semantic.rs`).

use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::semantic::SemanticIndex;
use tokio::sync::Notify;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The stored answer: the complete OpenAI object, as JSON.
    pub body: Vec<u8>,
    pub age_s: u64,
    /// Cosine similarity, for a semantic hit.
    pub similarity: Option<f64>,
}

/// An answer to store.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub key: String,
    pub namespace: String,
    /// The semantic partition and the conversation's embedding, when the
    /// request had a semantic side.
    pub semantic: Option<(String, Vec<f32>)>,
    pub body: Vec<u8>,
    pub created_ms: u64,
    pub expires_ms: u64,
}

struct Meta {
    namespace: String,
    partition: Option<String>,
    created_ms: u64,
    expires_ms: u64,
}

#[derive(Default)]
struct Mem {
    exact: HashMap<String, Meta>,
    /// Keys by age, oldest first (stale pairs skipped when evicting).
    order: VecDeque<(u64, String)>,
    puts: u64,
}

/// The cache.
pub struct CacheStore {
    conn: Mutex<Connection>,
    mem: Mutex<Mem>,
    semantic: SemanticIndex,
    inflight: Mutex<HashMap<String, Arc<Notify>>>,
    /// With Redis: the last id read from the shared vector stream.
    stream_pos: Mutex<String>,
    max_entries: u64,
    max_entry_bytes: u64,
}

/// A request's part in coalescing identical misses.
pub enum Flight {
    /// Nobody is producing this entry: this request does; the others wait
    /// until the guard is dropped.
    Leader(FlightGuard),
    /// Another request is producing it: wait, then look again.
    Follower(Arc<Notify>),
}

pub struct FlightGuard {
    store: Arc<CacheStore>,
    key: String,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if let Some(n) = self.store.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key) {
            n.notify_waiters();
        }
    }
}

/// A vector as little-endian f32 bytes (SQLite and Redis).
pub fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

impl CacheStore {
    /// Open (or create) the cache file and load its index.
    pub fn open(path: &Path, max_entries: u64, max_entry_bytes: u64) -> Result<CacheStore, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, namespace TEXT NOT NULL, partition TEXT, embedding BLOB,
               body BLOB NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expires_ms);",
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        let store = CacheStore { conn: Mutex::new(conn), mem: Mutex::new(Mem::default()), semantic: SemanticIndex::default(), inflight: Mutex::new(HashMap::new()), stream_pos: Mutex::new("0".into()), max_entries, max_entry_bytes };
        store.load().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(store)
    }

    fn load(&self) -> rusqlite::Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut mem = self.mem.lock().unwrap_or_else(|e| e.into_inner());
        let mut q = conn.prepare("SELECT key, namespace, partition, embedding, created_ms, expires_ms FROM entries ORDER BY created_ms")?;
        let rows = q.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, Option<Vec<u8>>>(3)?, r.get::<_, i64>(4)? as u64, r.get::<_, i64>(5)? as u64))
        })?;
        for row in rows {
            let (key, namespace, partition, emb, created_ms, expires_ms) = row?;
            if let (Some(p), Some(e)) = (&partition, &emb) {
                self.semantic.insert(p, &key, &from_blob(e), expires_ms, true);
            }
            mem.order.push_back((created_ms, key.clone()));
            mem.exact.insert(key, Meta { namespace, partition, created_ms, expires_ms });
        }
        Ok(())
    }

    /// Entries held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.mem.lock().unwrap_or_else(|e| e.into_inner()).exact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn body(&self, key: &str) -> Option<Vec<u8>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        // A cached statement: parsing the SQL each time cost more than the read.
        let mut q = conn.prepare_cached("SELECT body FROM entries WHERE key = ?1").ok()?;
        q.query_row(params![key], |r| r.get(0)).optional().ok().flatten()
    }

    /// The entry under `key`, unless absent or expired.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Hit> {
        let created = {
            let mem = self.mem.lock().unwrap_or_else(|e| e.into_inner());
            let m = mem.exact.get(key)?;
            if m.expires_ms <= now_ms {
                return None;
            }
            m.created_ms
        };
        let body = self.body(key)?;
        Some(Hit { body, age_s: now_ms.saturating_sub(created) / 1000, similarity: None })
    }

    /// The most similar live entry of `partition`, when at least `threshold`.
    pub fn nearest(&self, partition: &str, embedding: &[f32], threshold: f64, now_ms: u64) -> Option<Hit> {
        let (key, sim) = self.nearest_key(partition, embedding, threshold, now_ms)?;
        let mut hit = self.get(&key, now_ms)?;
        hit.similarity = Some(sim.min(1.0));
        Some(hit)
    }

    /// The key and similarity of the most similar live vector of
    /// `partition`, when at least `threshold` (the entry itself may live
    /// elsewhere: Redis).
    pub fn nearest_key(&self, partition: &str, embedding: &[f32], threshold: f64, now_ms: u64) -> Option<(String, f64)> {
        self.semantic.nearest(partition, embedding, threshold, now_ms)
    }

    /// Index a vector whose entry lives elsewhere (Redis), once; expired
    /// vectors are dropped when the index passes `max_entries`.
    pub fn index_vector(&self, partition: &str, key: &str, vector: &[f32], expires_ms: u64, now_ms: u64) {
        self.semantic.insert(partition, key, vector, expires_ms, false);
        if self.semantic.len() as u64 > self.max_entries {
            self.semantic.retain_live(now_ms);
        }
    }

    /// The semantic vectors (benchmarks wait for their training).
    pub fn semantic(&self) -> &SemanticIndex {
        &self.semantic
    }

    /// Where this instance has read the shared vector stream to.
    pub fn stream_position(&self) -> String {
        self.stream_pos.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_stream_position(&self, id: &str) {
        *self.stream_pos.lock().unwrap_or_else(|e| e.into_inner()) = id.to_string();
    }

    /// Drop the indexed vectors of `keys` (entries cleared elsewhere).
    pub fn unindex(&self, keys: Option<&[String]>) {
        match keys {
            None => self.semantic.clear(),
            Some(ks) => ks.iter().for_each(|k| self.semantic.remove(None, k)),
        }
    }

    pub fn max_entry_bytes(&self) -> u64 {
        self.max_entry_bytes
    }

    pub fn max_entries(&self) -> u64 {
        self.max_entries
    }

    /// Store an answer (replacing one under the same key). Too large an
    /// answer is not stored: `false`.
    pub fn put(&self, e: NewEntry) -> bool {
        if e.body.len() as u64 > self.max_entry_bytes {
            return false;
        }
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let (partition, emb) = match &e.semantic {
            Some((p, v)) => (Some(p.clone()), Some(to_blob(v))),
            None => (None, None),
        };
        let ok = conn
            .prepare_cached("INSERT OR REPLACE INTO entries (key, namespace, partition, embedding, body, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .and_then(|mut q| q.execute(params![e.key, e.namespace, partition, emb, e.body, e.created_ms as i64, e.expires_ms as i64]))
            .is_ok();
        if !ok {
            return false;
        }
        let mut mem = self.mem.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = mem.exact.remove(&e.key) {
            if let Some(p) = old.partition {
                self.semantic.remove(Some(&p), &e.key);
            }
        }
        if let Some((p, v)) = &e.semantic {
            self.semantic.insert(p, &e.key, v, e.expires_ms, true);
        }
        mem.order.push_back((e.created_ms, e.key.clone()));
        mem.exact.insert(e.key.clone(), Meta { namespace: e.namespace, partition, created_ms: e.created_ms, expires_ms: e.expires_ms });
        // Oldest first past max_entries.
        while mem.exact.len() as u64 > self.max_entries {
            let Some((created, key)) = mem.order.pop_front() else { break };
            if mem.exact.get(&key).is_some_and(|m| m.created_ms == created) {
                self.forget(&mut mem, &key);
                let _ = conn.execute("DELETE FROM entries WHERE key = ?1", params![key]);
            }
        }
        mem.puts += 1;
        if mem.puts % 256 == 0 {
            self.sweep_locked(&conn, &mut mem, e.created_ms);
        }
        true
    }

    fn forget(&self, mem: &mut Mem, key: &str) {
        if let Some(m) = mem.exact.remove(key) {
            if let Some(p) = m.partition {
                self.semantic.remove(Some(&p), key);
            }
        }
    }

    fn sweep_locked(&self, conn: &Connection, mem: &mut Mem, now_ms: u64) {
        let dead: Vec<String> = mem.exact.iter().filter(|(_, m)| m.expires_ms <= now_ms).map(|(k, _)| k.clone()).collect();
        for k in &dead {
            self.forget(mem, k);
        }
        let _ = conn.execute("DELETE FROM entries WHERE expires_ms <= ?1", params![now_ms as i64]);
        mem.order.retain(|(c, k)| mem.exact.get(k).is_some_and(|m| m.created_ms == *c));
    }

    /// Delete expired entries now.
    pub fn sweep(&self, now_ms: u64) {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut mem = self.mem.lock().unwrap_or_else(|e| e.into_inner());
        self.sweep_locked(&conn, &mut mem, now_ms);
    }

    /// Delete every entry, or one namespace's: how many.
    pub fn clear(&self, namespace: Option<&str>) -> u64 {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut mem = self.mem.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<String> = mem.exact.iter().filter(|(_, m)| namespace.is_none_or(|n| m.namespace == n)).map(|(k, _)| k.clone()).collect();
        for k in &keys {
            self.forget(&mut mem, k);
        }
        let _ = match namespace {
            Some(n) => conn.execute("DELETE FROM entries WHERE namespace = ?1", params![n]),
            None => conn.execute("DELETE FROM entries", []),
        };
        if namespace.is_none() {
            mem.order.clear();
        }
        keys.len() as u64
    }

    /// Coalescing: lead the production of `key`, or follow the request
    /// that does.
    pub fn begin(self: &Arc<Self>, key: &str) -> Flight {
        let mut f = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = f.get(key) {
            return Flight::Follower(n.clone());
        }
        f.insert(key.to_string(), Arc::new(Notify::new()));
        Flight::Leader(FlightGuard { store: self.clone(), key: key.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, ns: &str, created: u64, ttl: u64, sem: Option<(&str, Vec<f32>)>) -> NewEntry {
        NewEntry { key: key.into(), namespace: ns.into(), semantic: sem.map(|(p, v)| (p.into(), v)), body: format!("{{\"k\":\"{key}\"}}").into_bytes(), created_ms: created, expires_ms: created + ttl }
    }

    #[test]
    fn entries_expire_are_evicted_oldest_first_and_survive_a_reopen() {
        let dir = tempfile_dir();
        let path = dir.join("cache.db");
        {
            let s = CacheStore::open(&path, 2, 1024).unwrap();
            assert!(s.put(entry("a", "n", 1000, 10_000, None)));
            assert!(s.put(entry("b", "n", 2000, 10_000, None)));
            assert!(s.put(entry("c", "n", 3000, 10_000, None)));
            assert_eq!(s.get("a", 3000), None, "the oldest was evicted");
            assert_eq!(s.get("b", 5000).unwrap().age_s, 3);
            assert_eq!(s.get("b", 12_000), None, "expired: never served");
            assert!(!s.put(NewEntry { body: vec![b'x'; 2000], ..entry("big", "n", 1, 1, None) }), "over max_entry_bytes");
        }
        let s = CacheStore::open(&path, 2, 1024).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("c", 4000).unwrap().body, b"{\"k\":\"c\"}");
    }

    #[test]
    fn the_nearest_neighbour_of_the_partition_above_the_threshold() {
        let dir = tempfile_dir();
        let s = CacheStore::open(&dir.join("c.db"), 100, 1024).unwrap();
        s.put(entry("x", "n", 0, 10_000, Some(("p1", vec![1.0, 0.0, 0.0]))));
        s.put(entry("y", "n", 0, 10_000, Some(("p1", vec![0.0, 1.0, 0.0]))));
        s.put(entry("z", "n", 0, 10_000, Some(("p2", vec![1.0, 0.0, 0.0]))));
        let h = s.nearest("p1", &[0.9, 0.1, 0.0], 0.9, 10).unwrap();
        assert_eq!(h.body, b"{\"k\":\"x\"}");
        assert!(h.similarity.unwrap() > 0.99);
        assert!(s.nearest("p1", &[0.6, 0.6, 0.5], 0.9, 10).is_none(), "nothing close enough");
        let h = s.nearest("p1", &[1.0, 1.0, 0.0], 0.5, 10).unwrap();
        assert!((h.similarity.unwrap() - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-6, "{h:?}");
        assert!(s.nearest("p3", &[1.0, 0.0, 0.0], 0.5, 10).is_none(), "another partition");
        assert!(s.nearest("p1", &[1.0, 0.0, 0.0], 0.5, 20_000).is_none(), "expired");
        assert_eq!(s.clear(Some("n")), 3);
        assert!(s.is_empty());
    }

    #[test]
    fn identical_misses_have_one_leader() {
        let dir = tempfile_dir();
        let s = Arc::new(CacheStore::open(&dir.join("c.db"), 100, 1024).unwrap());
        let lead = s.begin("k");
        assert!(matches!(lead, Flight::Leader(_)));
        let follow = s.begin("k");
        let Flight::Follower(n) = follow else { panic!("a follower") };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let waiting = n.notified();
            drop(lead);
            tokio::time::timeout(std::time::Duration::from_secs(1), waiting).await.expect("woken when the leader is done");
        });
        assert!(matches!(s.begin("k"), Flight::Leader(_)), "the next one leads again");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("tollgate-cache-test-{}-{}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
