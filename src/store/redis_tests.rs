use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::{redact, RedisOptions, RedisStore};
use super::*;

const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A `redis-server` on a free 127.0.0.1 port, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// None (with a notice) when redis-server is not installed.
    fn start() -> Option<Server> {
        if !Path::new(REDIS_SERVER).exists() {
            eprintln!("NOTICE: {REDIS_SERVER} is missing; Redis store test skipped");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(REDIS_SERVER)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Server { child, port })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn store(&self, opts: RedisOptions) -> RedisStore {
        RedisStore::connect(&self.url(), opts).await.unwrap()
    }

    async fn raw(&self) -> ::redis::aio::MultiplexedConnection {
        ::redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn opts(lease_s: u64) -> RedisOptions {
    RedisOptions {
        lease: Duration::from_secs(lease_s),
        call_timeout: Duration::from_secs(2),
        ..RedisOptions::default()
    }
}

fn new_job(owner: &str, request: &[u8], ttl: u64) -> NewJob {
    NewJob {
        owner: owner.into(),
        endpoint: "responses".into(),
        request: request.to_vec(),
        result_ttl_s: ttl,
    }
}

fn ok(body: &str) -> JobResult {
    JobResult {
        status: 200,
        body: body.as_bytes().to_vec().into(),
    }
}

#[tokio::test]
async fn redis_submit_get_claim_finish() {
    let Some(srv) = Server::start() else { return };
    let s = srv.store(opts(30)).await;
    let request = b"{\"a\":1}\xff\x00binary";
    let id = s.submit(new_job("alice", request, 3600)).await.unwrap();
    assert_eq!(id.0.len(), 32);
    let j = s.get(&id.0, "alice").await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.endpoint.as_str(), j.request.as_slice()),
        (JobState::Queued, "responses", &request[..])
    );
    assert!(j.created_at > 0 && j.result.is_none());

    let c = s.claim_next().await.unwrap().unwrap();
    assert_eq!(
        (c.id.clone(), c.state, c.request.as_slice()),
        (id.clone(), JobState::Running, &request[..])
    );
    assert!(s.claim_next().await.unwrap().is_none());
    assert_eq!(
        s.get(&id.0, "alice").await.unwrap().unwrap().state,
        JobState::Running
    );

    let result = JobResult {
        status: 502,
        body: b"{\"error\":{\"type\":\"upstream\"}}".to_vec().into(),
    };
    s.finish(&id.0, result.clone()).await.unwrap();
    let done = s.get(&id.0, "alice").await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.result),
        (JobState::Done, Some(result.clone()))
    );
    assert_eq!(done.expires_at, Some(done.finished_at.unwrap() + 3600));
    assert_eq!(
        s.finish(&id.0, result).await,
        Err(StoreError::NotRunning(id.0.clone()))
    );
    // The result has a native TTL.
    let mut raw = srv.raw().await;
    let ttl: i64 = ::redis::cmd("TTL")
        .arg(format!("tollgate:job:{}", id.0))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!((3590..=3600).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn redis_owner_isolation_fifo_and_polls_from_another_instance() {
    let Some(srv) = Server::start() else { return };
    let a = srv.store(opts(30)).await;
    let b = srv.store(opts(30)).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            a.submit(new_job("alice", format!("{i}").as_bytes(), 60))
                .await
                .unwrap(),
        );
    }
    assert!(b.get(&ids[0].0, "bob").await.unwrap().is_none());
    assert!(b.get(&JobId::random().0, "alice").await.unwrap().is_none());
    for want in &ids {
        assert_eq!(
            &b.claim_next().await.unwrap().unwrap().id,
            want,
            "oldest first"
        );
    }
    b.finish(&ids[1].0, ok("r1")).await.unwrap();
    // Submitted on a, run on b, polled on a.
    assert_eq!(
        a.get(&ids[1].0, "alice").await.unwrap().unwrap().result,
        Some(ok("r1"))
    );
    assert!(a.get(&ids[1].0, "bob").await.unwrap().is_none());
}

#[tokio::test]
async fn redis_results_expire() {
    let Some(srv) = Server::start() else { return };
    let s = srv.store(opts(30)).await;
    let id = s.submit(new_job("o", b"{}", 1)).await.unwrap();
    let queued = s.submit(new_job("o", b"{}", 1)).await.unwrap();
    s.claim_next().await.unwrap();
    s.finish(&id.0, ok("x")).await.unwrap();
    assert!(s.get(&id.0, "o").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(s.get(&id.0, "o").await.unwrap().is_none());
    let mut raw = srv.raw().await;
    let exists: i64 = ::redis::cmd("EXISTS")
        .arg(format!("tollgate:job:{}", id.0))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0, "Redis deleted the result itself");
    assert_eq!(s.sweep(now_s()).await.unwrap(), 0);
    // A queued job has no TTL.
    assert_eq!(
        s.get(&queued.0, "o").await.unwrap().unwrap().state,
        JobState::Queued
    );
}

#[tokio::test]
async fn redis_fails_only_the_jobs_of_a_dead_instance() {
    let Some(srv) = Server::start() else { return };
    let a = srv.store(opts(1)).await;
    let b = srv.store(opts(30)).await;
    let ja = a.submit(new_job("o", b"a", 60)).await.unwrap();
    let jb = a.submit(new_job("o", b"b", 60)).await.unwrap();
    let queued = a.submit(new_job("o", b"q", 60)).await.unwrap();
    assert_eq!(a.claim_next().await.unwrap().unwrap().id, ja);
    assert_eq!(b.claim_next().await.unwrap().unwrap().id, jb);
    // Both alive: nothing to fail, from either side.
    assert_eq!(b.fail_interrupted().await.unwrap(), 0);
    assert_eq!(a.fail_interrupted().await.unwrap(), 0);
    // a's heartbeat keeps its 1 s lease through a long job.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(b.fail_interrupted().await.unwrap(), 0);
    drop(a); // as kill -9: no finish, the heartbeat stops
    assert_eq!(
        b.fail_interrupted().await.unwrap(),
        0,
        "a's lease has not expired yet"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let c = srv.store(opts(30)).await; // a fresh instance starting up
    assert_eq!(c.fail_interrupted().await.unwrap(), 1);
    assert_eq!(c.fail_interrupted().await.unwrap(), 0);
    let j = c.get(&ja.0, "o").await.unwrap().unwrap();
    let r = j.result.unwrap();
    assert_eq!((j.state, r.status), (JobState::Done, 500));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["type"], "async_job_interrupted");
    // Never replayed; the live instance's job is untouched and finishes.
    assert_eq!(c.claim_next().await.unwrap().unwrap().id, queued);
    assert!(c.claim_next().await.unwrap().is_none());
    assert_eq!(
        c.get(&jb.0, "o").await.unwrap().unwrap().state,
        JobState::Running
    );
    b.finish(&jb.0, ok("b")).await.unwrap();
    assert!(matches!(
        c.finish(&ja.0, ok("late")).await,
        Err(StoreError::NotRunning(_))
    ));
}

#[tokio::test]
async fn redis_restart_with_a_stable_instance_id_fails_its_jobs_at_once() {
    let Some(srv) = Server::start() else { return };
    let named = || RedisOptions {
        instance_id: Some("host-a".into()),
        ..opts(30)
    };
    let first = srv.store(named()).await;
    assert_eq!(first.instance_id(), "host-a");
    let old = first.submit(new_job("o", b"1", 60)).await.unwrap();
    let queued = first.submit(new_job("o", b"2", 60)).await.unwrap();
    first.claim_next().await.unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = srv.store(named()).await;
    assert_eq!(
        second.fail_interrupted().await.unwrap(),
        1,
        "no wait for the 30 s lease"
    );
    assert_eq!(
        second
            .get(&old.0, "o")
            .await
            .unwrap()
            .unwrap()
            .result
            .unwrap()
            .status,
        500
    );
    // Jobs the new process claims are its own live ones.
    assert_eq!(second.claim_next().await.unwrap().unwrap().id, queued);
    assert_eq!(second.fail_interrupted().await.unwrap(), 0);
    second.finish(&queued.0, ok("done")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_instances_never_claim_the_same_job() {
    let Some(srv) = Server::start() else { return };
    let a = std::sync::Arc::new(srv.store(opts(30)).await);
    let b = std::sync::Arc::new(srv.store(opts(30)).await);
    const N: usize = 200;
    let mut ids = HashSet::new();
    for _ in 0..N {
        ids.insert(a.submit(new_job("o", b"{}", 60)).await.unwrap().0);
    }
    let mut tasks = Vec::new();
    for s in [a.clone(), b.clone(), a, b] {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = s.claim_next().await.unwrap() {
                got.push(j.id.0);
            }
            got
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    assert_eq!(claimed.len(), N);
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), ids);
}

#[tokio::test]
async fn redis_calls_are_bounded_by_the_timeout() {
    let Some(srv) = Server::start() else { return };
    let s = srv
        .store(RedisOptions {
            call_timeout: Duration::from_millis(300),
            ..opts(30)
        })
        .await;
    let id = s.submit(new_job("o", b"{}", 60)).await.unwrap();
    let mut raw = srv.raw().await;
    let () = ::redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async(&mut raw)
        .await
        .unwrap();
    let t = Instant::now();
    let e = s.get(&id.0, "o").await.err().unwrap();
    assert!(
        matches!(e, StoreError::Timeout(_) | StoreError::Backend(_)),
        "{e}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(
        s.get(&id.0, "o").await.unwrap().is_some(),
        "works again after the pause"
    );
}

#[tokio::test]
async fn redis_connect_errors_are_bounded_and_hide_the_password() {
    let Some(srv) = Server::start() else { return };
    let quick = RedisOptions {
        call_timeout: Duration::from_millis(300),
        ..opts(30)
    };
    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:s3cret@127.0.0.1:{port}/");
    let msg = RedisStore::connect(&url, quick.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && !msg.contains("s3cret"),
        "{msg}"
    );
    // A peer that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", silent.local_addr().unwrap());
    let t = Instant::now();
    assert!(RedisStore::connect(&url, quick.clone()).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // rediss:// (TLS is built in) against a plain server fails, bounded.
    let t = Instant::now();
    let url = format!("rediss://127.0.0.1:{}/", srv.port);
    assert!(RedisStore::connect(&url, quick).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(redact("rediss://u:p@h:6380/0"), "rediss://***@h:6380/0");
    assert_eq!(redact("redis://h:6379"), "redis://h:6379");
}
