//! Jobs in Redis (`redis.url`, `redis://` or `rediss://`), shared by every
//! instance so that a poll on any of them answers.
//!
//! Keys (`P` is [`RedisOptions::prefix`]):
//! - `P:job:{id}`: hash `id owner endpoint state request result_ttl_s
//!   created_at` + `worker claimed_ms` once claimed + `status body
//!   finished_at expires_at` once done. No TTL until done; `EXPIRE
//!   result_ttl_s` at finish, so Redis deletes results itself.
//! - `P:jobs:queue`: list of queued ids, `LPUSH` at submit, `RPOP` at claim
//!   (oldest first).
//! - `P:jobs:running`: set of running ids.
//! - `P:instance:{iid}`: the lease of a live instance, `SET EX lease_s`,
//!   renewed every `lease_s / 3` by a background task (and at each claim).
//!
//! Claim, finish and fail are Lua scripts, so each is atomic: a job is
//! claimed by exactly one instance. A running job records the claiming
//! instance (`worker`) and when (`claimed_ms`). `fail_interrupted` fails a
//! running job when its worker's lease key is gone (that instance died or
//! lost Redis for longer than the lease), or when its worker is this very
//! instance id but it was claimed before this process started (a restart
//! with a stable [`RedisOptions::instance_id`]). Live instances' jobs are
//! never touched. Call it at start and periodically (e.g. with `sweep`).
//!
//! Scripts build job keys from the prefix, so this needs a single Redis (or
//! a primary with replicas), not Redis Cluster.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::Script;

use super::{
    interrupted_body, now_ms, now_s, Job, JobId, JobResult, JobState, JobStore, NewJob, StoreError,
    INTERRUPTED_STATUS,
};

#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Key prefix, e.g. `"tollgate"`.
    pub prefix: String,
    /// A stable name for this instance (e.g. the host name) lets a restart
    /// fail its own interrupted jobs at once; None picks a random id, and
    /// the jobs of a dead instance are failed once its lease expires.
    pub instance_id: Option<String>,
    /// How long an instance's jobs are kept running without a heartbeat.
    pub lease: Duration,
    /// Deadline of every Redis call (and of the connection).
    pub call_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "tollgate".into(),
            instance_id: None,
            lease: Duration::from_secs(30),
            call_timeout: Duration::from_secs(2),
        }
    }
}

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    instance: String,
    boot_ms: u64,
    lease_s: u64,
    timeout: Duration,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// `url` without its user name and password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***@{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn backend(e: ::redis::RedisError) -> StoreError {
    StoreError::Backend(format!("redis: {e}"))
}

async fn bounded<T, F>(timeout: Duration, what: &str, f: F) -> Result<T, StoreError>
where
    F: Future<Output = ::redis::RedisResult<T>>,
{
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(backend),
        Err(_) => Err(StoreError::Timeout(format!(
            "redis {what} took over {} ms",
            timeout.as_millis()
        ))),
    }
}

const CLAIM: &str = r"
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
while true do
  local id = redis.call('RPOP', KEYS[1])
  if not id then return false end
  local k = ARGV[1] .. id
  if redis.call('HGET', k, 'state') == 'queued' then
    redis.call('HSET', k, 'state', 'running', 'worker', ARGV[2], 'claimed_ms', ARGV[3])
    redis.call('SADD', KEYS[2], id)
    return redis.call('HGETALL', k)
  end
end";

const FINISH: &str = r"
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
local ttl = tonumber(redis.call('HGET', KEYS[1], 'result_ttl_s')) or 0
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'body', ARGV[3],
  'finished_at', ARGV[4], 'expires_at', string.format('%d', tonumber(ARGV[4]) + ttl))
redis.call('HDEL', KEYS[1], 'request')
redis.call('EXPIRE', KEYS[1], math.max(ttl, 1))
redis.call('SREM', KEYS[2], ARGV[1])
return 1";

const FAIL_INTERRUPTED: &str = r"
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[1] .. id
  local f = redis.call('HMGET', k, 'state', 'worker', 'claimed_ms', 'result_ttl_s')
  if f[1] ~= 'running' then
    redis.call('SREM', KEYS[1], id)
  else
    local dead
    if f[2] == ARGV[3] then
      dead = (tonumber(f[3]) or 0) < tonumber(ARGV[4])
    else
      dead = redis.call('EXISTS', ARGV[2] .. (f[2] or '')) == 0
    end
    if dead then
      local ttl = tonumber(f[4]) or 0
      redis.call('HSET', k, 'state', 'done', 'status', ARGV[6], 'body', ARGV[7],
        'finished_at', ARGV[5], 'expires_at', string.format('%d', tonumber(ARGV[5]) + ttl))
      redis.call('HDEL', k, 'request')
      redis.call('EXPIRE', k, math.max(ttl, 1))
      redis.call('SREM', KEYS[1], id)
      n = n + 1
    end
  end
end
return n";

impl RedisStore {
    /// Connects (bounded by `call_timeout`), takes this instance's lease and
    /// starts its heartbeat. Call it inside the Tokio runtime that will
    /// keep running: the connection and the heartbeat are tasks on it.
    pub async fn connect(url: &str, opts: RedisOptions) -> Result<RedisStore, StoreError> {
        let boot_ms = now_ms();
        let err = |message: String| StoreError::Open {
            what: redact(url),
            message,
        };
        let client = ::redis::Client::open(url).map_err(|e| err(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.call_timeout))
            .set_response_timeout(Some(opts.call_timeout))
            .set_number_of_retries(2);
        let conn = match tokio::time::timeout(
            opts.call_timeout * 2,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        {
            Ok(r) => r.map_err(|e| err(e.to_string()))?,
            Err(_) => {
                return Err(err(format!(
                    "no connection within {} ms",
                    (opts.call_timeout * 2).as_millis()
                )))
            }
        };
        let instance = opts
            .instance_id
            .clone()
            .unwrap_or_else(|| JobId::random().0);
        let lease_s = opts.lease.as_secs().max(1);
        let instance_key = format!("{}:instance:{instance}", opts.prefix);
        let mut c = conn.clone();
        bounded(
            opts.call_timeout,
            "SET",
            ::redis::cmd("SET")
                .arg(&instance_key)
                .arg(now_ms())
                .arg("EX")
                .arg(lease_s)
                .query_async::<()>(&mut c),
        )
        .await
        .map_err(|e| err(e.to_string()))?;
        let heartbeat = tokio::spawn(heartbeat(
            conn.clone(),
            instance_key,
            lease_s,
            opts.call_timeout,
        ));
        Ok(RedisStore {
            conn,
            prefix: opts.prefix,
            instance,
            boot_ms,
            lease_s,
            timeout: opts.call_timeout,
            heartbeat,
        })
    }

    /// This instance's id, as recorded in the jobs it claims.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    fn job_key(&self, id: &str) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
}

async fn heartbeat(mut conn: ConnectionManager, key: String, lease_s: u64, timeout: Duration) {
    let every = Duration::from_millis((lease_s * 1000 / 3).max(200));
    loop {
        tokio::time::sleep(every).await;
        let mut set = ::redis::cmd("SET");
        set.arg(&key).arg(now_ms()).arg("EX").arg(lease_s);
        if let Err(e) = bounded(timeout, "heartbeat", set.query_async::<()>(&mut conn)).await {
            log::warn!("async job lease {key} not renewed: {e}");
        }
    }
}

fn parse_job(mut h: HashMap<String, Vec<u8>>) -> Result<Job, StoreError> {
    // The two large fields are moved out of the reply, not copied.
    let (body, request) = (h.remove("body"), h.remove("request"));
    let text = |k: &str| -> Result<String, StoreError> {
        let v = h
            .get(k)
            .ok_or_else(|| StoreError::Backend(format!("redis job hash lacks {k}")))?;
        String::from_utf8(v.clone())
            .map_err(|_| StoreError::Backend(format!("redis job field {k} is not UTF-8")))
    };
    let num = |k: &str| -> Result<Option<u64>, StoreError> {
        match h.get(k) {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| StoreError::Backend(format!("redis job field {k} is not a number"))),
        }
    };
    let state = text("state")?;
    let state = JobState::parse(&state)
        .ok_or_else(|| StoreError::Backend(format!("bad job state {state:?}")))?;
    let result = match (state, num("status")?) {
        (JobState::Done, Some(s)) => Some(JobResult {
            status: s.min(u16::MAX as u64) as u16,
            body: body.unwrap_or_default().into(),
        }),
        _ => None,
    };
    Ok(Job {
        id: JobId(text("id")?),
        owner: text("owner")?,
        endpoint: text("endpoint")?,
        state,
        request: request.unwrap_or_default(),
        result,
        created_at: num("created_at")?.unwrap_or(0),
        finished_at: num("finished_at")?,
        expires_at: num("expires_at")?,
    })
}

#[async_trait::async_trait]
impl JobStore for RedisStore {
    async fn submit(&self, job: NewJob) -> Result<JobId, StoreError> {
        let id = JobId::random();
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(self.job_key(&id.0))
            .arg("id")
            .arg(&id.0)
            .arg("owner")
            .arg(&job.owner)
            .arg("endpoint")
            .arg(&job.endpoint)
            .arg("state")
            .arg("queued")
            .arg("request")
            .arg(job.request.as_slice())
            .arg("result_ttl_s")
            .arg(job.result_ttl_s)
            .arg("created_at")
            .arg(now_s())
            .ignore()
            .cmd("LPUSH")
            .arg(self.key("jobs:queue"))
            .arg(&id.0)
            .ignore();
        let mut c = self.conn.clone();
        bounded(self.timeout, "submit", pipe.query_async::<()>(&mut c)).await?;
        Ok(id)
    }

    async fn get(&self, id: &str, owner: &str) -> Result<Option<Job>, StoreError> {
        let mut c = self.conn.clone();
        let h: HashMap<String, Vec<u8>> = bounded(
            self.timeout,
            "HGETALL",
            ::redis::cmd("HGETALL")
                .arg(self.job_key(id))
                .query_async(&mut c),
        )
        .await?;
        if h.is_empty() || h.get("owner").map(Vec::as_slice) != Some(owner.as_bytes()) {
            return Ok(None);
        }
        let job = parse_job(h)?;
        if job.state == JobState::Done && job.expires_at.is_some_and(|e| super::expired(e, now_s())) {
            return Ok(None);
        }
        Ok(Some(job))
    }

    async fn claim_next(&self) -> Result<Option<Job>, StoreError> {
        let script = Script::new(CLAIM);
        let mut inv = script.prepare_invoke();
        inv.key(self.key("jobs:queue"))
            .key(self.key("jobs:running"))
            .key(self.key(&format!("instance:{}", self.instance)))
            .arg(self.job_key(""))
            .arg(&self.instance)
            .arg(now_ms())
            .arg(self.lease_s);
        let mut c = self.conn.clone();
        let h: Option<HashMap<String, Vec<u8>>> =
            bounded(self.timeout, "claim", inv.invoke_async(&mut c)).await?;
        match h {
            Some(h) if !h.is_empty() => parse_job(h).map(Some),
            _ => Ok(None),
        }
    }

    async fn finish(&self, id: &str, result: JobResult) -> Result<(), StoreError> {
        let script = Script::new(FINISH);
        let mut inv = script.prepare_invoke();
        inv.key(self.job_key(id))
            .key(self.key("jobs:running"))
            .arg(id)
            .arg(result.status)
            .arg(result.body.as_ref())
            .arg(now_s());
        let mut c = self.conn.clone();
        let n: i64 = bounded(self.timeout, "finish", inv.invoke_async(&mut c)).await?;
        if n == 0 {
            return Err(StoreError::NotRunning(id.to_string()));
        }
        Ok(())
    }

    async fn fail_interrupted(&self) -> Result<u64, StoreError> {
        let script = Script::new(FAIL_INTERRUPTED);
        let mut inv = script.prepare_invoke();
        inv.key(self.key("jobs:running"))
            .arg(self.job_key(""))
            .arg(self.key("instance:"))
            .arg(&self.instance)
            .arg(self.boot_ms)
            .arg(now_s())
            .arg(INTERRUPTED_STATUS)
            .arg(interrupted_body());
        let mut c = self.conn.clone();
        let n: u64 = bounded(self.timeout, "fail_interrupted", inv.invoke_async(&mut c)).await?;
        Ok(n)
    }

    /// Redis deletes Done jobs itself (their TTL is set at finish): nothing
    /// to do.
    async fn sweep(&self, _now: u64) -> Result<u64, StoreError> {
        Ok(0)
    }
}
