//! Async inference (SPEC 9): `x-bf-async: true` submits an `/openai` chat or
//! responses request as a job (checked as a synchronous one would be, then
//! stored), `x-bf-async-id` polls it, and a bounded pool of workers runs the
//! jobs through the same exchange as synchronous requests. Jobs live in the
//! store (`crate::store`: SQLite at `store.path`, or Redis when configured)
//! and are private to whoever submitted them.

use super::logging::Facts;
use super::openai_io::Prepared;
use super::sink::JobSink;
use super::{Ctx, Gateway};
use crate::errors::GatewayError;
use crate::routes::credentials::{client_credential, virtual_key_header};
use crate::routes::openai::Endpoint;
use crate::routes::RouteName;
use crate::store::{JobResult, JobState, JobStore, NewJob, StoreError};
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// A job's result is held in memory up to this while it runs.
const MAX_RESULT: usize = 64 * 1024 * 1024;

/// Unsaved results are held in memory up to this in all.
const MAX_UNSAVED: usize = 64 * 1024 * 1024;

/// The store and the workers' wake-up, shared by the proxy and the pool.
#[derive(Clone, Default)]
pub struct Jobs {
    store: Arc<OnceLock<Arc<dyn JobStore>>>,
    wake: Arc<Notify>,
    unsaved: Arc<Unsaved>,
    running: Arc<AtomicUsize>,
}

/// Results of finished jobs that the store refused (disk full, a store
/// error): held here so that polls get them, and written again each second
/// until the store takes them. Bounded by [`MAX_UNSAVED`]: past it a result
/// is replaced by a clear `async_job_store_error`. A process that dies with
/// results held leaves those jobs Running, and the next start fails them as
/// `async_job_interrupted`: the job is never replayed.
struct Unsaved {
    held: Mutex<HashMap<String, JobResult>>,
    limit: usize,
}

impl Default for Unsaved {
    fn default() -> Unsaved {
        Unsaved::with_limit(MAX_UNSAVED)
    }
}

impl Unsaved {
    fn with_limit(limit: usize) -> Unsaved {
        Unsaved { held: Mutex::default(), limit }
    }

    fn hold(&self, id: &str, result: JobResult, why: &StoreError, request_id: &str) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let used: usize = held.values().map(|r| r.body.len()).sum();
        let result = if used + result.body.len() <= self.limit {
            result
        } else {
            let err = GatewayError::AsyncJobStoreError;
            JobResult { status: err.status(), body: err.body(&format!("{} ({why})", err.describe()), request_id).into() }
        };
        held.insert(id.to_string(), result);
    }

    fn get(&self, id: &str) -> Option<JobResult> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    fn ids(&self) -> Vec<String> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    fn forget(&self, id: &str) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Offer every held result to the store again; keep those it refuses.
    async fn retry(&self, store: &Arc<dyn JobStore>) {
        for id in self.ids() {
            let Some(result) = self.get(&id) else { continue };
            match store.finish(&id, result).await {
                // Stored, or no longer Running (failed by another process):
                // either way the store answers polls from now on.
                Ok(()) | Err(StoreError::NotRunning(_)) => {
                    log::info!("async job {id}: its held result is stored now");
                    self.forget(&id);
                }
                Err(_) => {}
            }
        }
    }
}

impl Jobs {
    /// Install the store (once, at start).
    pub fn set_store(&self, store: Arc<dyn JobStore>) {
        let _ = self.store.set(store);
    }
    fn store(&self) -> Option<&Arc<dyn JobStore>> {
        self.store.get()
    }
    /// How many jobs this process is running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }
}

/// What a job replays: the admitted request and who it runs for.
#[derive(serde::Serialize, serde::Deserialize)]
struct JobRequest {
    prepared: Prepared,
    virtual_key: Option<String>,
    /// The submission's trace context (`traceparent`, `tracestate`): the
    /// execution continues that trace. Absent when tracing was off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    trace: Vec<(String, String)>,
}

/// Who a request belongs to, for what the gateway keeps on its behalf (async
/// jobs, cached answers, reasoning replay): `vk:<name>` for a virtual key,
/// `cred:<sha256>` for another client credential, `anonymous` for none. A job is private to whoever submitted it.
pub(super) fn owner(gateway: &Gateway, session: &Session) -> String {
    let req = session.req_header();
    let presented = virtual_key_header(&req.headers).or_else(|| client_credential(&req.headers, req.uri.query()).map(|c| c.secret));
    match presented {
        Some(p) => match gateway.virtual_keys().find(&p) {
            Some(vk) => format!("vk:{}", vk.name),
            None => format!("cred:{}", hex(&crate::config::virtual_keys::sha256(p.as_bytes()))),
        },
        None => "anonymous".to_string(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn endpoint_name(e: Endpoint) -> &'static str {
    match e {
        Endpoint::Responses => "responses",
        _ => "chat.completions",
    }
}

/// The endpoint's own object for a job still waiting or running.
fn pending(endpoint: Endpoint, id: &str, model: &str, state: JobState) -> Value {
    let now = crate::store::now_s();
    match endpoint {
        Endpoint::Responses => json!({
            "id": id, "object": "response", "created_at": now, "model": model, "output": [],
            "status": if state == JobState::Running { "in_progress" } else { "queued" },
            "error": null, "incomplete_details": null, "instructions": null, "metadata": {}, "parallel_tool_calls": true,
            "temperature": null, "tool_choice": "auto", "tools": [], "top_p": null, "usage": null,
        }),
        _ => json!({ "id": id, "object": "chat.completion", "created": now, "model": model, "choices": [], "usage": null }),
    }
}

fn store_error(e: &StoreError) -> String {
    log::error!("async job store: {e}");
    e.to_string()
}

impl Gateway {
    /// `x-bf-async: true`: store the admitted request, answer 202 with the
    /// pending object whose `id` is the job id.
    pub(super) async fn submit_job(&self, session: &mut Session, ctx: &mut Ctx, p: Prepared) -> Result<bool> {
        let bad = |m: &str| GatewayError::BadRequest.body(m, &ctx.request_id);
        if p.endpoint == Endpoint::Embeddings {
            let body = bad("x-bf-async applies to /chat/completions and /responses");
            return self.answer(session, ctx, GatewayError::BadRequest, body).await;
        }
        if p.req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
            let body = bad("stream: true cannot be combined with x-bf-async");
            return self.answer(session, ctx, GatewayError::BadRequest, body).await;
        }
        if p.direct.is_some() || p.client_base.is_some() {
            let body = bad("async jobs run on the gateway's configured keys; a client's own provider key is not stored");
            return self.answer(session, ctx, GatewayError::BadRequest, body).await;
        }
        let conf = &ctx.live.config.async_jobs;
        let ttl = match session.req_header().headers.get("x-bf-async-job-result-ttl") {
            None => conf.result_ttl_s,
            Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(t) if (1..=conf.max_result_ttl_s).contains(&t) => t,
                _ => {
                    let body = bad(&format!("x-bf-async-job-result-ttl must be a whole number of seconds from 1 to {}", conf.max_result_ttl_s));
                    return self.answer(session, ctx, GatewayError::BadRequest, body).await;
                }
            },
        };
        let Some(store) = self.jobs.store().cloned() else {
            let body = GatewayError::StoreUnavailable.body("the async job store is not open", &ctx.request_id);
            return self.answer(session, ctx, GatewayError::StoreUnavailable, body).await;
        };
        let endpoint = p.endpoint;
        let model = p.model.clone();
        let trace = ctx.trace.as_ref().map(|t| t.propagation_headers().into_iter().map(|(n, v)| (n.to_string(), v)).collect()).unwrap_or_default();
        let request = serde_json::to_vec(&JobRequest { prepared: p, virtual_key: ctx.cred.virtual_key.clone(), trace }).unwrap_or_default();
        let job = NewJob { owner: owner(self, session), endpoint: endpoint_name(endpoint).to_string(), request, result_ttl_s: ttl };
        match store.submit(job).await {
            Ok(id) => {
                ctx.outcome.job_id = Some(id.0.clone());
                if let Some(t) = &ctx.trace {
                    t.job_submitted(&id.0);
                }
                self.jobs.wake.notify_one();
                let body = pending(endpoint, &id.0, &model, JobState::Queued).to_string();
                super::reply::write_json(session, 202, body.as_bytes(), &ctx.request_id, None).await?;
                Ok(true)
            }
            Err(e) => {
                let msg = format!("cannot store the job: {}", store_error(&e));
                let body = GatewayError::StoreUnavailable.body(&msg, &ctx.request_id);
                self.answer(session, ctx, GatewayError::StoreUnavailable, body).await
            }
        }
    }

    /// `x-bf-async-id`: 202 and the pending object while the job waits or
    /// runs, then exactly what the synchronous request returned.
    pub(super) async fn poll_job(&self, session: &mut Session, ctx: &mut Ctx, endpoint: Endpoint, id: &str) -> Result<bool> {
        // The body is not used; it is read so the connection stays usable.
        while session.as_mut().read_request_body().await?.is_some() {}
        ctx.outcome.job_id = Some(id.to_string());
        let Some(store) = self.jobs.store().cloned() else {
            let body = GatewayError::StoreUnavailable.body("the async job store is not open", &ctx.request_id);
            return self.answer(session, ctx, GatewayError::StoreUnavailable, body).await;
        };
        let job = match store.get(id, &owner(self, session)).await {
            Ok(j) => j.filter(|j| j.endpoint == endpoint_name(endpoint)),
            Err(e) => {
                let body = GatewayError::StoreUnavailable.body(&format!("cannot read the job: {}", store_error(&e)), &ctx.request_id);
                return self.answer(session, ctx, GatewayError::StoreUnavailable, body).await;
            }
        };
        let Some(job) = job else {
            let err = GatewayError::AsyncJobNotFound;
            let body = err.body(err.describe(), &ctx.request_id);
            return self.answer(session, ctx, err, body).await;
        };
        let held = (job.state == JobState::Running).then(|| self.jobs.unsaved.get(id)).flatten();
        match (job.state, job.result.or(held)) {
            (JobState::Done | JobState::Running, Some(r)) => {
                super::reply::write_json(session, r.status, &r.body, &ctx.request_id, None).await?;
            }
            (state, _) => {
                let model = serde_json::from_slice::<JobRequest>(&job.request).map(|r| r.prepared.model).unwrap_or_default();
                let body = pending(endpoint, id, &model, state).to_string();
                super::reply::write_json(session, 202, body.as_bytes(), &ctx.request_id, None).await?;
            }
        }
        Ok(true)
    }

    async fn answer(&self, session: &mut Session, ctx: &mut Ctx, err: GatewayError, body: Vec<u8>) -> Result<bool> {
        ctx.outcome.error = Some(err);
        super::reply::write_json(session, err.status(), &body, &ctx.request_id, None).await?;
        Ok(true)
    }

    /// Run one claimed job and store its result; its execution is recorded
    /// with the job id.
    async fn run_job(&self, store: &Arc<dyn JobStore>, job: crate::store::Job) {
        let mut ctx = Ctx::new(self.live.snapshot());
        ctx.request_id = format!("{}-run", job.id.0);
        ctx.target.route = Some(RouteName::OpenAiCompat);
        ctx.outcome.job_id = Some(job.id.0.clone());
        let request = serde_json::from_slice::<JobRequest>(&job.request);
        if let Some(tracer) = crate::observe::trace::tracer() {
            let path = format!("/openai/{}", if job.endpoint == "responses" { "responses" } else { "chat/completions" });
            let submission = request.as_ref().map_or(&[][..], |r| r.trace.as_slice());
            let t = crate::observe::trace::RequestTrace::start_job(tracer, &path, &ctx.request_id, &job.id.0, submission);
            t.routed(&path);
            ctx.trace = Some(Box::new(t));
        }
        let mut sink = JobSink::new(MAX_RESULT);
        let result = match request {
            Ok(r) => {
                if let (Some(t), Some(p)) = (ctx.trace.as_mut(), crate::providers::Provider::from_name(&r.prepared.provider)) {
                    let op = crate::observe::trace::span::operation_for(r.prepared.endpoint.openai_path());
                    t.target(p, op, Some(&r.prepared.model));
                }
                ctx.cred.virtual_key = r.virtual_key;
                ctx.cred.owner = Some(job.owner.clone());
                let outcome = self.execute_openai(&mut sink, &mut ctx, r.prepared, None).await;
                match (outcome, sink.status) {
                    (Ok(()), Some(status)) => JobResult { status, body: std::mem::take(&mut sink.body).into() },
                    (res, _) => {
                        let msg = res.err().map_or("the job produced no answer".to_string(), |e| e.to_string());
                        ctx.outcome.error.get_or_insert(GatewayError::UpstreamError);
                        JobResult { status: 502, body: GatewayError::UpstreamError.body(&msg, &ctx.request_id).into() }
                    }
                }
            }
            Err(e) => JobResult { status: 500, body: GatewayError::Internal.body(&format!("unreadable job: {e}"), &ctx.request_id).into() },
        };
        let status = result.status;
        let bytes = result.body.len() as u64;
        // A clone shares the body (`Bytes`): kept only for `unsaved.hold`.
        match store.finish(&job.id.0, result.clone()).await {
            Ok(()) => {}
            Err(StoreError::NotRunning(_)) => {
                log::error!("async job {}: finished after it was failed as interrupted; its result is dropped", job.id.0);
                ctx.outcome.error_detail = Some("store: job no longer running".into());
            }
            Err(e) => {
                log::error!("async job {}: cannot store its result, held in memory until the store takes it: {e}", job.id.0);
                ctx.outcome.error_detail = Some(format!("store: {e}"));
                ctx.outcome.error = Some(GatewayError::AsyncJobStoreError);
                self.jobs.unsaved.hold(&job.id.0, result, &e, &ctx.request_id);
            }
        }
        let facts = Facts {
            client_ip: None,
            method: "POST".into(),
            path: format!("/openai/{}", if job.endpoint == "responses" { "responses" } else { "chat/completions" }),
            status,
            request_bytes: job.request.len() as u64,
            response_bytes: bytes,
            user_agent: Some("tollgate-async-worker".into()),
        };
        self.record_facts(facts, None, &mut ctx).await;
    }
}

/// The bounded worker pool and the sweeper: a Pingora background service.
pub struct JobWorkers {
    pub gateway: Gateway,
    pub workers: usize,
    /// Jobs in Redis (`redis.url`): connected here, on this service's
    /// runtime, which lives as long as the server.
    pub redis: Option<(String, String)>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for JobWorkers {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        if let Some((url, prefix)) = &self.redis {
            let opts = crate::store::RedisOptions { prefix: prefix.clone(), ..Default::default() };
            match crate::store::RedisStore::connect(url, opts).await {
                Ok(r) => self.gateway.jobs.set_store(Arc::new(r)),
                Err(e) => log::error!("async: jobs need Redis and it cannot be reached: {e}"),
            }
        }
        let Some(store) = self.gateway.jobs.store().cloned() else { return };
        match store.fail_interrupted().await {
            Ok(0) => {}
            Ok(n) => log::warn!("async: {n} job(s) were running when the gateway stopped; failed as async_job_interrupted"),
            Err(e) => log::error!("async: cannot fail interrupted jobs: {e}"),
        }
        let mut tasks = Vec::new();
        // Worker 0 looks at the store every half second for jobs submitted
        // elsewhere (another instance, the other process of an upgrade); the
        // others sleep until a submission here, or a worker that found a
        // job, wakes one of them. An idle instance costs two queries a
        // second, not two per worker.
        for n in 0..self.workers {
            let (g, store, mut shutdown) = (self.gateway.clone(), store.clone(), shutdown.clone());
            let poll = Duration::from_millis(if n == 0 { 500 } else { 86_400_000 });
            tasks.push(tokio::spawn(async move {
                loop {
                    if *shutdown.borrow() {
                        return;
                    }
                    // Counted from before the claim, so a drain never sees a
                    // claimed job as nothing running.
                    g.jobs.running.fetch_add(1, Ordering::AcqRel);
                    let claimed = store.claim_next().await;
                    if let Ok(Some(job)) = claimed {
                        // There may be more: pass the word on.
                        g.jobs.wake.notify_one();
                        g.run_job(&store, job).await;
                        g.jobs.running.fetch_sub(1, Ordering::AcqRel);
                        continue;
                    }
                    g.jobs.running.fetch_sub(1, Ordering::AcqRel);
                    match claimed {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            tokio::select! {
                                _ = g.jobs.wake.notified() => {}
                                _ = tokio::time::sleep(poll) => {}
                                _ = shutdown.changed() => return,
                            }
                        }
                        Err(e) => {
                            log::error!("async: cannot claim a job: {e}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }));
        }
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = retry.tick() => self.gateway.jobs.unsaved.retry(&store).await,
                _ = tick.tick() => {
                    let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    if let Err(e) = store.sweep(now).await {
                        log::error!("async: sweep failed: {e}");
                    }
                    // Jobs of a process or instance that died without a
                    // restart here (the old one of an upgrade, another host).
                    if let Ok(n) = store.fail_interrupted().await {
                        if n > 0 {
                            log::warn!("async: failed {n} job(s) of a process that is gone");
                        }
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        // Jobs already running finish (the server waits for its grace
        // period); the workers take no new ones.
        let t = Instant::now();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30).saturating_sub(t.elapsed()), task).await;
        }
        self.gateway.jobs.unsaved.retry(&store).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn full() -> StoreError {
        StoreError::Backend("database or disk is full".into())
    }

    #[test]
    fn unsaved_results_are_held_up_to_the_bound_then_replaced_by_a_clear_error() {
        let u = Unsaved::with_limit(10);
        u.hold("a", JobResult { status: 200, body: vec![b'x'; 8].into() }, &full(), "r1");
        u.hold("b", JobResult { status: 200, body: vec![b'y'; 8].into() }, &full(), "r2");
        assert_eq!(u.get("a"), Some(JobResult { status: 200, body: vec![b'x'; 8].into() }));
        let b = u.get("b").unwrap();
        assert_eq!(b.status, 500);
        let v: Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(v["error"]["type"], "async_job_store_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("disk is full"), "{v}");
        assert_eq!(v["error"]["request_id"], "r2");
        assert_eq!(u.get("c"), None);
    }

    #[tokio::test]
    async fn held_results_are_written_once_the_store_takes_writes_again() {
        let dir = std::env::temp_dir().join(format!("tollgate-unsaved-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let sqlite = SqliteStore::open(&dir.join("t.db")).unwrap();
        let store: Arc<dyn JobStore> = Arc::new(sqlite.clone());
        let job = NewJob { owner: "o".into(), endpoint: "chat.completions".into(), request: b"{}".to_vec(), result_ttl_s: 60 };
        let id = store.submit(job).await.unwrap();
        assert_eq!(store.claim_next().await.unwrap().unwrap().id, id);
        sqlite
            .exec_for_test(
                "CREATE TRIGGER full BEFORE UPDATE OF state ON jobs WHEN NEW.state = 'done'
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
            )
            .await
            .unwrap();
        let answer = JobResult { status: 200, body: bytes::Bytes::from_static(b"{\"ok\":true}") };
        let e = store.finish(id.as_str(), answer.clone()).await.unwrap_err();
        let u = Unsaved::default();
        u.hold(id.as_str(), answer.clone(), &e, "r");
        u.retry(&store).await;
        assert_eq!(u.get(id.as_str()), Some(answer.clone()), "kept while the store refuses");
        assert_eq!(store.get(id.as_str(), "o").await.unwrap().unwrap().state, JobState::Running);
        sqlite.exec_for_test("DROP TRIGGER full").await.unwrap();
        u.retry(&store).await;
        assert_eq!(u.get(id.as_str()), None);
        let stored = store.get(id.as_str(), "o").await.unwrap().unwrap();
        assert_eq!((stored.state, stored.result), (JobState::Done, Some(answer)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
