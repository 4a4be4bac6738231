//! Embedded SQLite store at `store.path`.
//!
//! One connection behind a mutex; every call runs on Tokio's blocking pool so
//! the async runtime never waits on disk. WAL mode, a busy timeout so that
//! several processes may share the file, mode 0600, schema versioned with
//! `PRAGMA user_version` (see [`MIGRATIONS`]).

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    interrupted_body, now_s, Job, JobId, JobResult, JobState, JobStore, NewJob, StoreError,
    INTERRUPTED_STATUS,
};

/// Schema migrations, in order: entry `i` takes `user_version` from `i` to
/// `i + 1`. Append only; never edit a released entry.
pub const MIGRATIONS: &[&str] = &[
    // 1: async jobs.
    "CREATE TABLE jobs (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT    NOT NULL UNIQUE,
        owner        TEXT    NOT NULL,
        endpoint     TEXT    NOT NULL,
        state        TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done')),
        request      BLOB    NOT NULL,
        result_ttl_s INTEGER NOT NULL,
        status       INTEGER,
        body         BLOB,
        created_at   INTEGER NOT NULL,
        started_at   INTEGER,
        finished_at  INTEGER,
        expires_at   INTEGER
    );
    CREATE INDEX jobs_by_state ON jobs (state, seq);
    CREATE INDEX jobs_by_expiry ON jobs (expires_at) WHERE state = 'done';",
    // 2: virtual-key spend per budget period (replaces `state_file`).
    "CREATE TABLE spend (
        vk        TEXT    NOT NULL,
        period    TEXT    NOT NULL,
        period_id INTEGER NOT NULL,
        usd       REAL    NOT NULL,
        PRIMARY KEY (vk, period, period_id)
    ) WITHOUT ROWID;",
    // 3: which process runs a job, so a restart (or the new process of a
    // graceful upgrade) fails only the jobs of processes that are gone.
    "ALTER TABLE jobs ADD COLUMN claimed_by INTEGER;",
];

/// Is the process that claimed a job still running? This process is; any
/// other is looked up in /proc (the store is a local file, so its
/// processes share this machine).
fn claimer_alive(pid: Option<i64>) -> bool {
    match pid {
        Some(p) if p == i64::from(std::process::id()) => true,
        Some(p) if p > 0 => std::path::Path::new(&format!("/proc/{p}")).exists(),
        _ => false,
    }
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the checkpointer moves the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

const JOB_COLUMNS: &str =
    "id, owner, endpoint, state, request, status, body, created_at, finished_at, expires_at";

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    checkpointer: Arc<OnceLock<()>>,
}

impl SqliteStore {
    /// Opens (creating it, and its directory, if missing) the store at `path`
    /// and brings its schema to [`SCHEMA_VERSION`]. Blocking: call it at
    /// start, or through [`SqliteStore::open_async`].
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let err = |message: String| StoreError::Open {
            what: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        // Create the file ourselves so that it is 0600 from the first byte;
        // SQLite gives its -wal and -shm files the same mode.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(e.to_string()))?;
        let mode = file
            .metadata()
            .map_err(|e| err(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| err(format!("chmod 0600: {e}")))?;
        }
        drop(file);
        let mut conn = Connection::open(path).map_err(|e| err(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| err(e.to_string()))?;
        let journal: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| err(e.to_string()))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(err(format!(
                "cannot use WAL mode (journal_mode is {journal})"
            )));
        }
        // No automatic checkpoint on this connection: see `checkpoints`.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0;")
            .map_err(|e| err(e.to_string()))?;
        migrate(&mut conn, MIGRATIONS).map_err(err)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
            checkpointer: Arc::new(OnceLock::new()),
        })
    }

    /// Checkpoints off the store's lock (issue 28). With SQLite's automatic
    /// checkpoint, the commit that crosses 1,000 WAL pages copies them into
    /// the database file and fsyncs it while it holds the store's one
    /// connection, and every submission queued behind it waits (submit p99
    /// 4.4 ms at 500 submissions/s). Here a thread with its own connection
    /// runs a PASSIVE checkpoint every [`CHECKPOINT_EVERY`]; writers go on
    /// appending to the WAL meanwhile. A commit is in the WAL before a job
    /// is acknowledged, as before (SPEC 9: kill -9 loses no acknowledged
    /// job). Started with the first use, not at open: Pingora may fork
    /// (daemon) after the store is opened, and a thread does not survive a
    /// fork. It ends when the store is dropped; if it cannot open its
    /// connection, the store's own connection checkpoints automatically
    /// again.
    fn checkpoints(&self) {
        self.checkpointer.get_or_init(|| {
            // Without the thread: the store's connection checkpoints as it
            // commits again (SQLite's default).
            fn checkpoint_on_commit(path: &Path, conn: Option<&Mutex<Connection>>, why: &dyn std::fmt::Display) {
                log::warn!("store {}: no checkpoint thread ({why}): the store checkpoints as it commits", path.display());
                if let Some(conn) = conn {
                    let _ = conn.lock().map(|c| c.execute_batch("PRAGMA wal_autocheckpoint = 1000;"));
                }
            }
            let (path, store) = (self.path.clone(), Arc::downgrade(&self.conn));
            let spawned = std::thread::Builder::new().name("tollgate-store-checkpoint".into()).spawn(move || {
                let own = Connection::open(&path).and_then(|c| c.busy_timeout(Duration::from_millis(100)).map(|_| c));
                let c = match own {
                    Ok(c) => c,
                    Err(e) => {
                        checkpoint_on_commit(&path, store.upgrade().as_deref(), &e);
                        return;
                    }
                };
                while store.strong_count() > 0 {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    if let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        log::debug!("store {}: checkpoint: {e}", path.display());
                    }
                }
            });
            if let Err(e) = spawned {
                checkpoint_on_commit(&self.path, Some(&self.conn), &e);
            }
        });
    }

    /// [`SqliteStore::open`] on the blocking pool.
    pub async fn open_async(path: PathBuf) -> Result<SqliteStore, StoreError> {
        let what = path.display().to_string();
        tokio::task::spawn_blocking(move || SqliteStore::open(&path))
            .await
            .map_err(|e| StoreError::Open {
                what,
                message: e.to_string(),
            })?
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.checkpoints();
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("store connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    /// [`SqliteStore::add_spend`], blocking (for the spend flusher, which
    /// also runs after the server's runtime is gone).
    pub fn add_spend_now(&self, vk: &str, period: &str, period_id: i64, usd: f64) -> Result<f64, StoreError> {
        check_period(period)?;
        self.checkpoints();
        let c = self.conn.lock().map_err(|_| StoreError::Backend("store connection lock poisoned".into()))?;
        c.query_row(
            "INSERT INTO spend (vk, period, period_id, usd) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (vk, period, period_id) DO UPDATE SET usd = usd + excluded.usd
             RETURNING usd",
            params![vk, period, period_id, usd],
            |r| r.get(0),
        )
        .map_err(backend)
    }

    /// Adds `usd` to the spend of virtual key `vk` in budget period
    /// (`period`, `period_id`), atomically (also across processes), and
    /// returns the new total.
    pub async fn add_spend(
        &self,
        vk: &str,
        period: &str,
        period_id: i64,
        usd: f64,
    ) -> Result<f64, StoreError> {
        let (store, vk, period) = (self.clone(), vk.to_string(), period.to_string());
        tokio::task::spawn_blocking(move || store.add_spend_now(&vk, &period, period_id, usd))
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    /// The spend of `vk` in (`period`, `period_id`); 0 when none recorded.
    pub async fn spend(&self, vk: &str, period: &str, period_id: i64) -> Result<f64, StoreError> {
        check_period(period)?;
        let (vk, period) = (vk.to_string(), period.to_string());
        self.with(move |c| {
            c.query_row(
                "SELECT usd FROM spend WHERE vk = ?1 AND period = ?2 AND period_id = ?3",
                params![vk, period, period_id],
                |r| r.get::<_, f64>(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0.0))
            .map_err(backend)
        })
        .await
    }

    #[cfg(test)]
    pub(crate) async fn exec_for_test(&self, sql: &'static str) -> Result<(), StoreError> {
        self.with(move |c| c.execute_batch(sql).map_err(backend))
            .await
    }
}

fn check_period(period: &str) -> Result<(), StoreError> {
    match period {
        "day" | "month" => Ok(()),
        _ => Err(StoreError::Backend(format!(
            "unknown budget period {period:?} (day or month)"
        ))),
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Applies the migrations that `conn` lacks, in one immediate transaction
/// (so two processes opening a new file at once do not both migrate).
pub(crate) fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), String> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    let known = migrations.len() as i64;
    if version > known {
        return Err(format!(
            "its schema version {version} is newer than this tollgate knows ({known}); use a newer tollgate or another store.path"
        ));
    }
    if version < 0 {
        return Err(format!("invalid schema version {version}"));
    }
    for (i, sql) in migrations.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .map_err(|e| format!("migration to schema version {}: {e}", i + 1))?;
    }
    if version < known {
        // PRAGMA takes no bound parameters; `known` is a number we made.
        tx.execute_batch(&format!("PRAGMA user_version = {known}"))
            .map_err(|e| e.to_string())?;
        log::info!("store schema migrated from version {version} to {known}");
    }
    tx.commit().map_err(|e| e.to_string())
}

fn to_u64(v: i64) -> u64 {
    v.max(0) as u64
}

fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let state: String = r.get(3)?;
    let state = JobState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Text,
            format!("bad job state {state:?}").into(),
        )
    })?;
    let status: Option<i64> = r.get(5)?;
    let body: Option<Vec<u8>> = r.get(6)?;
    let result = match (state, status) {
        (JobState::Done, Some(s)) => Some(JobResult {
            status: s.clamp(0, u16::MAX as i64) as u16,
            body: body.unwrap_or_default().into(),
        }),
        _ => None,
    };
    Ok(Job {
        id: JobId(r.get(0)?),
        owner: r.get(1)?,
        endpoint: r.get(2)?,
        state,
        request: r.get(4)?,
        result,
        created_at: to_u64(r.get(7)?),
        finished_at: r.get::<_, Option<i64>>(8)?.map(to_u64),
        expires_at: r.get::<_, Option<i64>>(9)?.map(to_u64),
    })
}

fn to_i64(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

#[async_trait::async_trait]
impl JobStore for SqliteStore {
    async fn submit(&self, job: NewJob) -> Result<JobId, StoreError> {
        let id = JobId::random();
        let sid = id.0.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO jobs (id, owner, endpoint, state, request, result_ttl_s, created_at)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6)",
                params![
                    sid,
                    job.owner,
                    job.endpoint,
                    job.request,
                    to_i64(job.result_ttl_s),
                    to_i64(now_s())
                ],
            )
            .map_err(backend)
        })
        .await?;
        Ok(id)
    }

    async fn get(&self, id: &str, owner: &str) -> Result<Option<Job>, StoreError> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.with(move |c| {
            c.query_row(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND owner = ?2
                     AND NOT (state = 'done' AND expires_at < ?3)"
                ),
                params![id, owner, to_i64(now_s())],
                row_to_job,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn claim_next(&self) -> Result<Option<Job>, StoreError> {
        self.with(|c| {
            // IMMEDIATE takes the write lock first, so that two processes on
            // one file serialise here (waiting up to the busy timeout).
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let job = tx
                .query_row(
                    &format!(
                        "UPDATE jobs SET state = 'running', started_at = ?1, claimed_by = ?2
                         WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1)
                           AND state = 'queued'
                         RETURNING {JOB_COLUMNS}"
                    ),
                    params![to_i64(now_s()), i64::from(std::process::id())],
                    row_to_job,
                )
                .optional()
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(job)
        })
        .await
    }

    async fn finish(&self, id: &str, result: JobResult) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |c| {
            let now = to_i64(now_s());
            let n = c
                .execute(
                    "UPDATE jobs SET state = 'done', status = ?2, body = ?3, finished_at = ?4, request = X'',
                            expires_at = ?4 + result_ttl_s
                     WHERE id = ?1 AND state = 'running'",
                    params![id, result.status, result.body.as_ref(), now],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotRunning(id));
            }
            Ok(())
        })
        .await
    }

    async fn fail_interrupted(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            let now = to_i64(now_s());
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let running: Vec<(String, Option<i64>)> = {
                let mut q = tx.prepare("SELECT id, claimed_by FROM jobs WHERE state = 'running'").map_err(backend)?;
                let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            let mut n = 0;
            for (id, _) in running.into_iter().filter(|(_, pid)| !claimer_alive(*pid)) {
                n += tx
                    .execute(
                        "UPDATE jobs SET state = 'done', status = ?1, body = ?2, finished_at = ?3, request = X'',
                                expires_at = ?3 + result_ttl_s
                         WHERE id = ?4 AND state = 'running'",
                        params![INTERRUPTED_STATUS, interrupted_body(), now, id],
                    )
                    .map_err(backend)? as u64;
            }
            tx.commit().map_err(backend)?;
            Ok(n)
        })
        .await
    }

    async fn sweep(&self, now: u64) -> Result<u64, StoreError> {
        self.with(move |c| {
            c.execute(
                "DELETE FROM jobs WHERE state = 'done' AND expires_at < ?1",
                params![to_i64(now)],
            )
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }
}
