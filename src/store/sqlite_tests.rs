use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::sqlite::{migrate, SqliteStore, MIGRATIONS, SCHEMA_VERSION};
use super::*;

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "tollgate-store-{name}-{}-{}",
            std::process::id(),
            JobId::random()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn new_job(owner: &str, request: &str, ttl: u64) -> NewJob {
    NewJob {
        owner: owner.into(),
        endpoint: "chat.completions".into(),
        request: request.as_bytes().to_vec(),
        result_ttl_s: ttl,
    }
}

fn user_version(path: &Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn submit_get_claim_finish() {
    let d = TempDir::new("basic");
    let s = SqliteStore::open_async(d.join("s.db")).await.unwrap();
    let id = s
        .submit(new_job("alice", r#"{"model":"m"}"#, 3600))
        .await
        .unwrap();
    assert_eq!(id.0.len(), 32);
    assert!(id
        .0
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

    let j = s.get(&id.0, "alice").await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.endpoint.as_str(), j.result.clone()),
        (JobState::Queued, "chat.completions", None)
    );
    assert_eq!(j.request, br#"{"model":"m"}"#);
    assert!(j.created_at > 0 && j.finished_at.is_none() && j.expires_at.is_none());

    let c = s.claim_next().await.unwrap().unwrap();
    assert_eq!(
        (c.id.clone(), c.state, c.request.clone()),
        (id.clone(), JobState::Running, j.request.clone())
    );
    assert!(
        s.claim_next().await.unwrap().is_none(),
        "one job, claimed once"
    );
    assert_eq!(
        s.get(&id.0, "alice").await.unwrap().unwrap().state,
        JobState::Running
    );

    let result = JobResult {
        status: 429,
        body: b"{\"error\":{}}".to_vec().into(),
    };
    s.finish(&id.0, result.clone()).await.unwrap();
    let done = s.get(&id.0, "alice").await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.result),
        (JobState::Done, Some(result.clone()))
    );
    let fin = done.finished_at.unwrap();
    assert_eq!(done.expires_at, Some(fin + 3600));
    assert_eq!(
        s.finish(&id.0, result).await,
        Err(StoreError::NotRunning(id.0.clone()))
    );
    assert!(matches!(
        s.finish(
            "nope",
            JobResult {
                status: 200,
                body: Default::default()
            }
        )
        .await,
        Err(StoreError::NotRunning(_))
    ));
}

#[tokio::test]
async fn owner_isolation_and_unknown_ids() {
    let d = TempDir::new("owner");
    let s = SqliteStore::open_async(d.join("s.db")).await.unwrap();
    let id = s.submit(new_job("alice", "{}", 60)).await.unwrap();
    assert!(s.get(&id.0, "bob").await.unwrap().is_none());
    assert!(s.get(&id.0, "").await.unwrap().is_none());
    assert!(s.get(&JobId::random().0, "alice").await.unwrap().is_none());
    assert!(s.get("' OR 1=1 --", "alice").await.unwrap().is_none());
    assert!(s.get(&id.0, "alice").await.unwrap().is_some());
}

#[tokio::test]
async fn claims_oldest_first() {
    let d = TempDir::new("fifo");
    let s = SqliteStore::open_async(d.join("s.db")).await.unwrap();
    let mut submitted = Vec::new();
    for _ in 0..3 {
        submitted.push(s.submit(new_job("o", "{}", 60)).await.unwrap());
    }
    for want in submitted {
        assert_eq!(s.claim_next().await.unwrap().unwrap().id, want);
    }
    assert!(s.claim_next().await.unwrap().is_none());
}

#[tokio::test]
async fn ttl_and_sweep() {
    let d = TempDir::new("ttl");
    let s = SqliteStore::open_async(d.join("s.db")).await.unwrap();
    let short = s.submit(new_job("o", "{}", 0)).await.unwrap();
    let long = s.submit(new_job("o", "{}", 3600)).await.unwrap();
    let queued = s.submit(new_job("o", "{}", 0)).await.unwrap();
    let before = now_s();
    for _ in 0..2 {
        let j = s.claim_next().await.unwrap().unwrap();
        s.finish(
            &j.id.0,
            JobResult {
                status: 200,
                body: b"ok".to_vec().into(),
            },
        )
        .await
        .unwrap();
    }
    let after = now_s();
    // A result is kept through the second its TTL ends in (times are whole
    // seconds): never shorter than its TTL. Nothing has expired at `before`.
    assert_eq!(s.sweep(before).await.unwrap(), 0);
    // ttl 0: gone once its finishing second has passed, hidden from get
    // even before the sweep.
    while now_s() <= after {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(s.get(&short.0, "o").await.unwrap().is_none());
    assert!(s.get(&long.0, "o").await.unwrap().is_some());
    assert_eq!(s.sweep(after + 1).await.unwrap(), 1);
    assert_eq!(s.sweep(after + 1).await.unwrap(), 0);
    assert!(s.get(&long.0, "o").await.unwrap().is_some());
    // ttl 3600: still there at `before` + 3600, gone after `after` + 3600.
    assert_eq!(s.sweep(before + 3600).await.unwrap(), 0);
    assert_eq!(s.sweep(after + 3601).await.unwrap(), 1);
    assert!(s.get(&long.0, "o").await.unwrap().is_none());
    // Queued (and running) jobs are never swept.
    assert_eq!(s.sweep(u64::MAX).await.unwrap(), 0);
    assert_eq!(
        s.get(&queued.0, "o").await.unwrap().unwrap().state,
        JobState::Queued
    );
}

#[tokio::test]
async fn kill_during_a_running_job_fails_it_on_reopen_and_keeps_the_queue() {
    let d = TempDir::new("kill");
    let path = d.join("s.db");
    let (running, queued) = {
        let s = SqliteStore::open_async(path.clone()).await.unwrap();
        let a = s.submit(new_job("o", "first", 60)).await.unwrap();
        let b = s.submit(new_job("o", "second", 60)).await.unwrap();
        assert_eq!(s.claim_next().await.unwrap().unwrap().id, a);
        // Dropped without finishing, as by kill -9: the claiming process is
        // gone (a pid that cannot exist stands for it).
        s.exec_for_test("UPDATE jobs SET claimed_by = 2147483647 WHERE state = 'running'").await.unwrap();
        (a, b)
    };
    let s = SqliteStore::open_async(path.clone()).await.unwrap();
    assert_eq!(s.fail_interrupted().await.unwrap(), 1);
    assert_eq!(s.fail_interrupted().await.unwrap(), 0);
    let j = s.get(&running.0, "o").await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Done);
    let r = j.result.unwrap();
    assert_eq!(r.status, 500);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["type"], "async_job_interrupted");
    assert!(j.expires_at.unwrap() >= j.finished_at.unwrap() + 60);
    // Never replayed: the next claim is the queued job, then nothing.
    let next = s.claim_next().await.unwrap().unwrap();
    assert_eq!((next.id, next.request), (queued, b"second".to_vec()));
    assert!(s.claim_next().await.unwrap().is_none());
}

#[tokio::test]
async fn jobs_of_a_live_process_are_not_failed() {
    // A graceful upgrade: the old process (here: pid 1, alive) still runs a
    // job when the new one opens the store; and our own running job is ours.
    let d = TempDir::new("live");
    let s = SqliteStore::open_async(d.join("s.db")).await.unwrap();
    let other = s.submit(new_job("o", "other", 60)).await.unwrap();
    let mine = s.submit(new_job("o", "mine", 60)).await.unwrap();
    assert_eq!(s.claim_next().await.unwrap().unwrap().id, other);
    s.exec_for_test("UPDATE jobs SET claimed_by = 1 WHERE state = 'running'").await.unwrap();
    assert_eq!(s.claim_next().await.unwrap().unwrap().id, mine);
    assert_eq!(s.fail_interrupted().await.unwrap(), 0);
    assert_eq!(s.get(&other.0, "o").await.unwrap().unwrap().state, JobState::Running);
    assert_eq!(s.get(&mine.0, "o").await.unwrap().unwrap().state, JobState::Running);
}

#[tokio::test]
async fn reopen_keeps_queued_and_done_jobs() {
    let d = TempDir::new("reopen");
    let path = d.join("sub/dir/s.db");
    let (q, done) = {
        let s = SqliteStore::open_async(path.clone()).await.unwrap();
        let q = s.submit(new_job("o", "q", 60)).await.unwrap();
        let done = s.submit(new_job("o", "d", 60)).await.unwrap();
        s.claim_next().await.unwrap();
        s.finish(
            &q.0,
            JobResult {
                status: 200,
                body: b"r".to_vec().into(),
            },
        )
        .await
        .unwrap();
        (q, done)
    };
    let s = SqliteStore::open_async(path).await.unwrap();
    assert_eq!(s.fail_interrupted().await.unwrap(), 0);
    assert_eq!(
        s.get(&q.0, "o")
            .await
            .unwrap()
            .unwrap()
            .result
            .unwrap()
            .body,
        &b"r"[..]
    );
    assert_eq!(
        s.get(&done.0, "o").await.unwrap().unwrap().state,
        JobState::Queued
    );
    assert_eq!(s.claim_next().await.unwrap().unwrap().id, done);
}

#[tokio::test]
async fn migrates_an_empty_file_and_version_1() {
    let d = TempDir::new("migrate");
    let empty = d.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    SqliteStore::open_async(empty.clone()).await.unwrap();
    assert_eq!(user_version(&empty), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 3);

    let v1 = d.join("v1.db");
    {
        let mut c = rusqlite::Connection::open(&v1).unwrap();
        migrate(&mut c, &MIGRATIONS[..1]).unwrap();
        c.execute(
            "INSERT INTO jobs (id, owner, endpoint, state, request, result_ttl_s, created_at)
             VALUES ('00112233445566778899aabbccddeeff', 'o', 'responses', 'queued', x'7b7d', 60, 1)",
            [],
        )
        .unwrap();
    }
    assert_eq!(user_version(&v1), 1);
    let s = SqliteStore::open_async(v1.clone()).await.unwrap();
    assert_eq!(user_version(&v1), SCHEMA_VERSION);
    let j = s
        .get("00112233445566778899aabbccddeeff", "o")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (j.endpoint.as_str(), j.request.as_slice(), j.created_at),
        ("responses", &b"{}"[..], 1)
    );
    assert_eq!(s.add_spend("vk", "day", 1, 0.5).await.unwrap(), 0.5);
    drop(s);
    // Opening again at the current version changes nothing.
    SqliteStore::open_async(v1.clone()).await.unwrap();
    assert_eq!(user_version(&v1), SCHEMA_VERSION);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let d = TempDir::new("newer");
    let p = d.join("s.db");
    rusqlite::Connection::open(&p)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let e = SqliteStore::open_async(p.clone()).await.err().unwrap();
    let msg = e.to_string();
    assert!(matches!(e, StoreError::Open { .. }));
    assert!(
        msg.contains(&p.display().to_string()) && msg.contains("99") && msg.contains("newer"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unusable_path_is_an_error_naming_it() {
    let d = TempDir::new("unwritable");
    // A regular file where the directory should be (fails even for root).
    std::fs::write(d.join("file"), b"x").unwrap();
    let p = d.join("file/store/s.db");
    let msg = SqliteStore::open_async(p.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains(&p.display().to_string()), "{msg}");
    // A path that is a directory.
    let msg = SqliteStore::open_async(d.0.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains(&d.0.display().to_string()), "{msg}");
    // A read-only directory (only meaningful when not running as root).
    let ro = d.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
    if std::fs::write(ro.join("probe"), b"").is_err() {
        let p = ro.join("s.db");
        let msg = SqliteStore::open_async(p.clone())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[tokio::test]
async fn files_are_0600() {
    let d = TempDir::new("mode");
    let p = d.join("new/s.db");
    let s = SqliteStore::open_async(p.clone()).await.unwrap();
    s.submit(new_job("o", "{}", 1)).await.unwrap();
    assert_eq!(mode(&p), 0o600);
    assert_eq!(mode(&d.join("new")), 0o700);
    let wal = PathBuf::from(format!("{}-wal", p.display()));
    assert_eq!(mode(&wal), 0o600);
    // An existing file readable by others is tightened.
    let loose = d.join("loose.db");
    std::fs::write(&loose, b"").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    SqliteStore::open_async(loose.clone()).await.unwrap();
    assert_eq!(mode(&loose), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_never_claim_the_same_job() {
    let d = TempDir::new("concurrent");
    let p = d.join("s.db");
    let a = SqliteStore::open_async(p.clone()).await.unwrap();
    let b = SqliteStore::open_async(p.clone()).await.unwrap();
    const N: usize = 200;
    let mut ids = HashSet::new();
    for _ in 0..N {
        ids.insert(a.submit(new_job("o", "{}", 60)).await.unwrap().0);
    }
    let mut tasks = Vec::new();
    for s in [a.clone(), b.clone(), a, b] {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = s.claim_next().await.unwrap() {
                assert_eq!(j.state, JobState::Running);
                got.push(j.id.0);
            }
            got
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    assert_eq!(claimed.len(), N, "every job claimed exactly once");
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_accumulates_and_reads_back() {
    let d = TempDir::new("spend");
    let p = d.join("s.db");
    let s = SqliteStore::open_async(p.clone()).await.unwrap();
    assert_eq!(s.spend("team", "day", 20000).await.unwrap(), 0.0);
    assert_eq!(s.add_spend("team", "day", 20000, 1.5).await.unwrap(), 1.5);
    assert_eq!(s.add_spend("team", "day", 20000, 2.25).await.unwrap(), 3.75);
    assert_eq!(s.spend("team", "day", 20000).await.unwrap(), 3.75);
    assert_eq!(s.spend("team", "day", 20001).await.unwrap(), 0.0);
    assert_eq!(s.spend("team", "month", 20000).await.unwrap(), 0.0);
    assert_eq!(s.spend("other", "day", 20000).await.unwrap(), 0.0);
    assert!(s.add_spend("team", "week", 1, 1.0).await.is_err());
    // Two processes' connections add without losing updates, and it persists.
    let t = SqliteStore::open_async(p.clone()).await.unwrap();
    let mut tasks = Vec::new();
    for st in [s.clone(), t.clone()] {
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                st.add_spend("m", "month", 675, 0.25).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    drop((s, t));
    let s = SqliteStore::open_async(p).await.unwrap();
    assert_eq!(s.spend("m", "month", 675).await.unwrap(), 25.0);
    assert_eq!(s.spend("team", "day", 20000).await.unwrap(), 3.75);
}

#[tokio::test]
async fn a_full_disk_is_an_error_not_a_panic() {
    let d = TempDir::new("full");
    let s = SqliteStore::open_async(d.join("s.db")).await.unwrap();
    let id = s.submit(new_job("o", "{}", 60)).await.unwrap();
    // Cap the database at its current size, as a full disk would.
    s.exec_for_test("PRAGMA max_page_count = 1").await.unwrap();
    let big = "x".repeat(1 << 20);
    let e = s.submit(new_job("o", &big, 60)).await.err().unwrap();
    assert!(
        matches!(&e, StoreError::Backend(m) if m.contains("full")),
        "{e}"
    );
    // Reads and small updates keep working.
    assert_eq!(
        s.get(&id.0, "o").await.unwrap().unwrap().state,
        JobState::Queued
    );
}

#[tokio::test]
async fn the_wal_is_checkpointed_off_the_store_lock() {
    // The store's connection never checkpoints itself; its checkpoint
    // thread moves the WAL into the database file within a second.
    let d = TempDir::new("checkpoint");
    let s = SqliteStore::open_async(d.join("s.db")).await.unwrap();
    let body = "x".repeat(10_000);
    for _ in 0..100 {
        s.submit(new_job("alice", &body, 3600)).await.unwrap();
    }
    let db = || std::fs::metadata(d.join("s.db")).unwrap().len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while db() < 1_000_000 {
        assert!(std::time::Instant::now() < deadline, "the database file still holds {} bytes: nothing was checkpointed", db());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
