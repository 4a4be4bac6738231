//! The job store for async inference (SPEC 9) and the virtual-key spend
//! (which replaces the old JSON `state_file`).
//!
//! Two back ends implement [`JobStore`]:
//! - [`sqlite::SqliteStore`]: embedded SQLite at `store.path` (WAL, mode 0600,
//!   schema versioned with `PRAGMA user_version`). It also keeps the
//!   virtual-key spend ([`sqlite::SqliteStore::add_spend`]).
//! - [`redis::RedisStore`]: jobs in Redis so that every instance sharing it
//!   can answer a poll; results expire with a native TTL.
//!
//! [`replay::ReplayStore`] is the reasoning replay memory's embedded store
//! (SPEC 8), in its own file beside the job store.
//!
//! Job life: `submit` → Queued → `claim_next` → Running → `finish` → Done →
//! (after `result_ttl_s`) deleted by `sweep` (SQLite) or by Redis itself.
//! A job found Running by `fail_interrupted` (its process died) becomes Done
//! with a 500 `async_job_interrupted`: it is never replayed.

pub mod redis;
pub mod replay;
pub mod sqlite;

#[cfg(test)]
mod redis_tests;
#[cfg(test)]
mod sqlite_tests;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

pub use self::redis::{RedisOptions, RedisStore};
pub use self::sqlite::SqliteStore;

/// A job id: 128 random bits as 32 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId(pub String);

impl JobId {
    pub fn random() -> JobId {
        let bits: u128 = rand::random();
        JobId(format!("{bits:032x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Done,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        match s {
            "queued" => Some(JobState::Queued),
            "running" => Some(JobState::Running),
            "done" => Some(JobState::Done),
            _ => None,
        }
    }
}

/// A job as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Hash of the virtual key name, or of the client credential.
    pub owner: String,
    /// `"chat.completions"` or `"responses"`.
    pub endpoint: String,
    /// The request to replay: opaque bytes (JSON the gateway serialises).
    pub request: Vec<u8>,
    /// How long the result lives after the job is done.
    pub result_ttl_s: u64,
}

/// What the synchronous request would have returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    pub status: u16,
    /// Shared, not copied, when the worker keeps it for a retry after a
    /// failed write to the store.
    pub body: bytes::Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub owner: String,
    pub endpoint: String,
    pub state: JobState,
    /// The request to replay; emptied once the job is Done.
    pub request: Vec<u8>,
    /// Set when `state` is Done.
    pub result: Option<JobResult>,
    /// Unix seconds.
    pub created_at: u64,
    pub finished_at: Option<u64>,
    /// `finished_at` + the job's TTL. Times are whole seconds (the finish
    /// rounded down), so the result is kept through this second and gone
    /// after it ([`expired`]): it lives at least its TTL, never less.
    pub expires_at: Option<u64>,
}

/// The file `name` in the store's directory: where the other embedded
/// stores live (the log store, the response cache, the reasoning memory).
pub fn beside(store_path: &std::path::Path, name: &str) -> std::path::PathBuf {
    store_path.parent().unwrap_or(std::path::Path::new(".")).join(name)
}

/// Whether a result with `expires_at` is gone at `now` (Unix seconds): only
/// once that second has passed (see [`Job::expires_at`]).
pub fn expired(expires_at: u64, now: u64) -> bool {
    expires_at < now
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store could not be opened, created or migrated; `what` names the
    /// file (SQLite) or the URL without its credentials (Redis).
    Open { what: String, message: String },
    /// An error while running (I/O, disk full, Redis error, corrupt row).
    Backend(String),
    /// A call did not complete within its deadline.
    Timeout(String),
    /// `finish` on a job that is not Running (unknown, or already failed as
    /// interrupted).
    NotRunning(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open { what, message } => {
                write!(f, "cannot open the store {what}: {message}")
            }
            StoreError::Backend(m) => write!(f, "store error: {m}"),
            StoreError::Timeout(m) => write!(f, "store timeout: {m}"),
            StoreError::NotRunning(id) => write!(f, "job {id} is not running"),
        }
    }
}

impl std::error::Error for StoreError {}

#[async_trait::async_trait]
pub trait JobStore: Send + Sync {
    /// Stores a new Queued job and returns its id.
    async fn submit(&self, job: NewJob) -> Result<JobId, StoreError>;
    /// The job, or None if unknown, expired, or owned by someone else.
    async fn get(&self, id: &str, owner: &str) -> Result<Option<Job>, StoreError>;
    /// Atomically moves the oldest Queued job to Running and returns it.
    async fn claim_next(&self) -> Result<Option<Job>, StoreError>;
    /// Running → Done; the result expires `result_ttl_s` from now.
    async fn finish(&self, id: &str, result: JobResult) -> Result<(), StoreError>;
    /// Fails, as `async_job_interrupted`, the Running jobs whose process is
    /// gone; returns how many. SQLite: jobs whose claiming process (its pid,
    /// on this machine) no longer runs. Redis: jobs whose claiming instance's
    /// lease expired. Safe to call at start and periodically in both.
    async fn fail_interrupted(&self) -> Result<u64, StoreError>;
    /// Deletes Done jobs [`expired`] at `now`; returns how many.
    async fn sweep(&self, now: u64) -> Result<u64, StoreError>;
}

/// Unix seconds now.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The status of a job failed by [`JobStore::fail_interrupted`].
pub const INTERRUPTED_STATUS: u16 = 500;

/// The body of a job failed by [`JobStore::fail_interrupted`].
pub fn interrupted_body() -> Vec<u8> {
    serde_json::json!({
        "error": {
            "type": "async_job_interrupted",
            "message": "the async job was running when the gateway stopped; it was not replayed, submit it again",
        }
    })
    .to_string()
    .into_bytes()
}
