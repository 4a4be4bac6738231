//! Virtual-key limits shared by several gateway instances through Redis
//! (`tollgate.redis`). Each instance checks and counts in Redis, so a limit
//! of 100 requests per minute is 100 across the fleet, not per instance.
//!
//! * requests and tokens per minute: fixed one-minute windows (UTC minute),
//!   one Redis key per virtual key and minute, expiring after two minutes;
//!   the request check and count is one Lua script, so it is atomic;
//! * budget: USD per UTC day or month, one key per virtual key and period
//!   (`INCRBYFLOAT`), kept for two periods.
//!
//! When Redis cannot be reached within its timeout the instance falls back
//! to its local counters (each instance then enforces the limit alone) and
//! counts the failure in `tollgate_redis_errors_total`; requests are not
//! refused because the shared store is down.
//!
//! The client is the `redis` crate's [`ConnectionManager`] (one multiplexed
//! connection, TLS with `rediss://`, reconnecting after a dropped
//! connection). Every call is bounded by `RedisConf.timeout` (a Tokio
//! timeout around the call, and the manager's own connect and response
//! timeouts). The manager is made on first use, inside a request, not in
//! `SharedCounters::new` (that runs in `main`, outside any runtime). Its
//! connection task runs on the runtime of the call that (re)connected: the
//! proxy's, or the async-jobs worker's when a job records first. Both are
//! Pingora service runtimes that live as long as the server, and if one
//! stopped first the connection would drop and the next call from another
//! runtime would reconnect on its own runtime. A call that timed out or
//! failed other than by a server's error reply drops the manager, and the
//! next call connects afresh, as the hand-written client did.

use super::virtual_keys::Refusal;
use crate::config::{Period, RedisConf, VirtualKey};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ErrorKind, RedisError, RedisResult, Script, Value};
use std::future::Future;
use std::io;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// KEYS: rpm, tpm, spend. ARGV: rpm limit, tpm limit, budget (-1: none).
/// Returns 0 (admitted, request counted), 1 (rpm), 2 (tpm), 3 (budget).
const ADMIT: &str = r#"
local rpm, tpm, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if budget >= 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= budget then return 3 end
if tpm >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= tpm then return 2 end
if rpm >= 0 then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('EXPIRE', KEYS[1], 120) end
  if n > rpm then redis.call('DECR', KEYS[1]) return 1 end
end
return 0
"#;

pub struct SharedCounters {
    conf: RedisConf,
    /// The client for `conf.url()` (an error when that URL was refused).
    client: Result<::redis::Client, String>,
    /// The connection manager, made on first use; `None` again after a
    /// call that leaves the connection in doubt. The number counts
    /// managers made, so that only the one that failed is dropped.
    conn: Mutex<(u64, Option<ConnectionManager>)>,
    admit_script: Script,
    /// Unix second of the last failure logged (one line per 10 s at most).
    last_logged: std::sync::atomic::AtomicU64,
}

/// The Redis keys for `vk` at `wall`, and the seconds left in the minute.
struct Keys {
    rpm: String,
    tpm: String,
    spend: String,
    spend_ttl: u64,
    retry_after: u64,
}

fn keys(prefix: &str, vk: &VirtualKey, wall: SystemTime) -> Keys {
    let secs = wall.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let minute = secs / 60;
    let (period, id, ttl) = match vk.budget {
        // Kept for two periods.
        Some(b) => (b.period.name(), b.period.id(wall), match b.period {
            Period::Day => 2 * 86_400,
            Period::Month => 62 * 86_400,
        }),
        None => ("none", 0, 60),
    };
    Keys {
        rpm: format!("{prefix}:vk:{}:rpm:{minute}", vk.name),
        tpm: format!("{prefix}:vk:{}:tpm:{minute}", vk.name),
        spend: format!("{prefix}:vk:{}:spend:{period}:{id}", vk.name),
        spend_ttl: ttl,
        retry_after: (60 - secs % 60).max(1),
    }
}

fn redis_error(e: RedisError) -> io::Error {
    io::Error::other(format!("redis: {e}"))
}

/// Whether `e` is a reply of the server (a script error, a wrong type):
/// the connection itself is fine and is kept. Any other failure drops the
/// manager, so that the next call connects afresh (the manager alone,
/// with RESP2, would first answer the next call with the failed
/// reconnection it started at once, and a refused AUTH would stick).
fn is_server_reply(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::UnexpectedReturnType)
}

impl SharedCounters {
    pub fn new(conf: RedisConf) -> Self {
        let client = ::redis::Client::open(conf.url()).map_err(|e| format!("redis {}:{}: {e}", conf.host, conf.port));
        SharedCounters {
            conf,
            client,
            conn: Mutex::new((0, None)),
            admit_script: Script::new(ADMIT),
            last_logged: Default::default(),
        }
    }

    /// The connection manager, made now on first use (or after a failure
    /// dropped the last one): on the runtime of the calling request. The
    /// manager connects lazily, on the first command.
    fn manager(&self) -> io::Result<(u64, ConnectionManager)> {
        let mut slot = self.conn.lock().expect("redis manager lock");
        if let Some(m) = &slot.1 {
            return Ok((slot.0, m.clone()));
        }
        let client = self.client.as_ref().map_err(|e| io::Error::other(e.clone()))?.clone();
        let t = self.conf.timeout;
        // No retries inside the manager: a call fails within its deadline
        // and the request falls back to local counters; the next call
        // reconnects.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t))
            .set_number_of_retries(0);
        let m = ConnectionManager::new_lazy_with_config(client, config).map_err(redis_error)?;
        slot.0 += 1;
        slot.1 = Some(m.clone());
        Ok((slot.0, m))
    }

    /// Run `f` on the manager within `RedisConf.timeout`. A call that timed
    /// out or failed for any reason but a server's error reply drops the
    /// manager (and with it the connection, whose state is unknown).
    async fn call<T, F, Fut>(&self, what: &str, f: F) -> io::Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, m) = self.manager()?;
        let (result, drop_manager) = match tokio::time::timeout(self.conf.timeout, f(m)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                let drop_it = !is_server_reply(&e);
                (Err(redis_error(e)), drop_it)
            }
            Err(_) => (
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis {what} took over {} ms", self.conf.timeout.as_millis()),
                )),
                true,
            ),
        };
        if drop_manager {
            let mut slot = self.conn.lock().expect("redis manager lock");
            if slot.0 == generation {
                slot.1 = None;
            }
        }
        result
    }

    /// Count and (at most every 10 s) log a failed Redis call.
    pub fn failed(&self, op: &'static str, e: &io::Error) {
        use std::sync::atomic::Ordering;
        crate::observe::metrics::METRICS.redis_errors.with_label_values(&[op]).inc();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let last = self.last_logged.load(Ordering::Relaxed);
        if now >= last + 10 && self.last_logged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let c = &self.conf;
            log::warn!("shared counters: redis {}:{} failed ({op}): {e}; using this instance's local counters", c.host, c.port);
        }
    }

    /// Whether `vk` has anything to count.
    pub fn applies(vk: &VirtualKey) -> bool {
        vk.requests_per_minute.is_some() || vk.tokens_per_minute.is_some() || vk.budget.is_some()
    }

    /// Check `vk`'s limits and count the request. `Err` when Redis failed
    /// (the caller falls back to local counters).
    pub async fn admit(&self, vk: &VirtualKey, wall: SystemTime) -> io::Result<Result<(), Refusal>> {
        let k = keys(&self.conf.key_prefix, vk, wall);
        let num = |v: Option<String>| v.unwrap_or_else(|| "-1".into());
        let mut invocation = self.admit_script.prepare_invoke();
        invocation
            .key(&k.rpm)
            .key(&k.tpm)
            .key(&k.spend)
            .arg(num(vk.requests_per_minute.map(|v| v.to_string())))
            .arg(num(vk.tokens_per_minute.map(|v| v.to_string())))
            .arg(num(vk.budget.map(|b| b.usd.to_string())));
        let reply: i64 = self.call("admit", |mut c| async move { invocation.invoke_async(&mut c).await }).await?;
        Ok(match reply {
            0 => Ok(()),
            1 => Err(Refusal::over_requests(vk, k.retry_after)),
            2 => Err(Refusal::over_tokens(vk, k.retry_after)),
            3 => Err(Refusal::budget_spent(vk, vk.budget.expect("budget refusal only with a budget"))),
            _ => return Err(io::Error::other(format!("redis: unexpected reply {reply}"))),
        })
    }

    /// Count a finished request's tokens and cost. Returns the key's
    /// fleet-wide spend in the period when it has a budget.
    pub async fn record(&self, vk: &VirtualKey, tokens: u64, cost_usd: f64, wall: SystemTime) -> io::Result<Option<f64>> {
        let k = keys(&self.conf.key_prefix, vk, wall);
        let mut pipe = ::redis::pipe();
        let mut n = 0;
        if vk.tokens_per_minute.is_some() && tokens > 0 {
            pipe.cmd("INCRBY").arg(&k.tpm).arg(tokens);
            pipe.cmd("EXPIRE").arg(&k.tpm).arg(120);
            n += 2;
        }
        let spend_at = vk.budget.map(|_| n);
        if vk.budget.is_some() {
            pipe.cmd("INCRBYFLOAT").arg(&k.spend).arg(format!("{cost_usd:.12}"));
            pipe.cmd("EXPIRE").arg(&k.spend).arg(k.spend_ttl);
            n += 2;
        }
        if n == 0 {
            return Ok(None);
        }
        let mut replies: Vec<Value> = self.call("record", |mut c| async move { pipe.query_async(&mut c).await }).await?;
        Ok(spend_at.filter(|&i| i < replies.len()).and_then(|i| ::redis::from_redis_value::<f64>(replies.swap_remove(i)).ok()))
    }
}

/// Route cooldowns shared by instances (SPEC 10), keyed by `provider/model`.
impl SharedCounters {
    fn route_key(&self, kind: &str, target: &str) -> String {
        format!("{}:route:{kind}:{target}", self.conf.key_prefix)
    }

    /// Count a failure of `target` in a window of `window_ms`: the fleet's
    /// count of its failures in the window.
    pub async fn route_failure(&self, target: &str, window_ms: u64) -> io::Result<u64> {
        let k = self.route_key("fail", target);
        let mut pipe = ::redis::pipe();
        pipe.cmd("INCR").arg(&k);
        pipe.cmd("PEXPIRE").arg(&k).arg(window_ms.max(1)).arg("NX").ignore();
        let (n,): (u64,) = self.call("route_failure", |mut c| async move { pipe.query_async(&mut c).await }).await?;
        Ok(n)
    }

    /// `target` cools down until `until_ms` (Unix milliseconds), for every
    /// instance; its failure count starts again.
    pub async fn route_cool(&self, target: &str, until_ms: u64, for_ms: u64) -> io::Result<()> {
        let (cool, fail) = (self.route_key("cool", target), self.route_key("fail", target));
        let mut pipe = ::redis::pipe();
        pipe.cmd("SET").arg(&cool).arg(until_ms).arg("PX").arg(for_ms.max(1)).ignore();
        pipe.cmd("DEL").arg(&fail).ignore();
        self.call("route_cool", |mut c| async move { pipe.query_async::<()>(&mut c).await }).await
    }

    /// When each of `targets` cools down until (Unix milliseconds), if it does.
    pub async fn route_cooling(&self, targets: &[String]) -> io::Result<Vec<Option<u64>>> {
        let keys: Vec<String> = targets.iter().map(|t| self.route_key("cool", t)).collect();
        self.call("route_cooling", |mut c| async move { ::redis::cmd("MGET").arg(&keys).query_async(&mut c).await }).await
    }
}

/// Response cache entries shared by instances (SPEC 11): each entry a key
/// with Redis's own TTL; the semantic vectors also appended to one capped
/// stream that every instance reads into its own index.
impl SharedCounters {
    fn cache_key(&self, kind: &str, key: &str) -> String {
        format!("{}:cache:{kind}:{key}", self.conf.key_prefix)
    }

    /// An entry: the time it was stored (Unix ms) and its body.
    pub async fn cache_get(&self, key: &str) -> io::Result<Option<(u64, Vec<u8>)>> {
        let k = self.cache_key("e", key);
        let v: Option<Vec<u8>> = self.call("cache_get", |mut c| async move { ::redis::cmd("GET").arg(&k).query_async(&mut c).await }).await?;
        Ok(v.and_then(|v| {
            let nl = v.iter().position(|&b| b == b'\n')?;
            let created = std::str::from_utf8(&v[..nl]).ok()?.parse().ok()?;
            Some((created, v[nl + 1..].to_vec()))
        }))
    }

    /// Store an entry for `ttl_ms`, listed under its namespace, and its
    /// vector (`partition`, little-endian f32) on the stream.
    #[allow(clippy::too_many_arguments)]
    pub async fn cache_put(&self, key: &str, namespace: &str, body: &[u8], created_ms: u64, ttl_ms: u64, vector: Option<(&str, &[u8])>, max_stream: u64) -> io::Result<()> {
        let mut value = format!("{created_ms}\n").into_bytes();
        value.extend_from_slice(body);
        let (e, ns) = (self.cache_key("e", key), self.cache_key("ns", namespace));
        let mut pipe = ::redis::pipe();
        pipe.cmd("SET").arg(&e).arg(value).arg("PX").arg(ttl_ms.max(1)).ignore();
        pipe.cmd("SADD").arg(&ns).arg(key).ignore();
        pipe.cmd("PEXPIRE").arg(&ns).arg(ttl_ms.max(1)).arg("GT").ignore();
        pipe.cmd("PEXPIRE").arg(&ns).arg(ttl_ms.max(1)).arg("NX").ignore();
        if let Some((partition, vec)) = vector {
            pipe.cmd("XADD").arg(self.cache_key("vectors", "all")).arg("MAXLEN").arg("~").arg(max_stream.max(1)).arg("*")
                .arg("k").arg(key).arg("p").arg(partition).arg("x").arg(created_ms + ttl_ms).arg("v").arg(vec).ignore();
        }
        self.call("cache_put", |mut c| async move { pipe.query_async::<()>(&mut c).await }).await
    }

    /// Vectors appended after stream id `after` (`0` for all): (id, key,
    /// partition, expiry in Unix ms, vector bytes), at most `count`.
    pub async fn cache_vectors(&self, after: &str, count: usize) -> io::Result<Vec<(String, String, String, u64, Vec<u8>)>> {
        let stream = self.cache_key("vectors", "all");
        let start = format!("({after}");
        let start = if after == "0" { "-".to_string() } else { start };
        let reply: Vec<(String, Vec<(String, Vec<u8>)>)> =
            self.call("cache_vectors", |mut c| async move { ::redis::cmd("XRANGE").arg(&stream).arg(&start).arg("+").arg("COUNT").arg(count).query_async(&mut c).await }).await?;
        Ok(reply
            .into_iter()
            .filter_map(|(id, fields)| {
                let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                let s = |n: &str| get(n).and_then(|v| String::from_utf8(v).ok());
                Some((id.clone(), s("k")?, s("p")?, s("x")?.parse().ok()?, get("v")?))
            })
            .collect())
    }

    /// Delete one namespace's entries, or every entry: the keys deleted
    /// (`None`: all of them).
    pub async fn cache_clear(&self, namespace: Option<&str>) -> io::Result<(u64, Option<Vec<String>>)> {
        match namespace {
            Some(n) => {
                let ns = self.cache_key("ns", n);
                let keys: Vec<String> = self.call("cache_clear", |mut c| { let ns = ns.clone(); async move { ::redis::cmd("SMEMBERS").arg(&ns).query_async(&mut c).await } }).await?;
                let mut pipe = ::redis::pipe();
                for k in &keys {
                    pipe.cmd("DEL").arg(self.cache_key("e", k)).ignore();
                }
                pipe.cmd("DEL").arg(&ns).ignore();
                self.call("cache_clear", |mut c| async move { pipe.query_async::<()>(&mut c).await }).await?;
                Ok((keys.len() as u64, Some(keys)))
            }
            None => {
                let pattern = format!("{}:cache:*", self.conf.key_prefix);
                let mut cursor: u64 = 0;
                let mut n = 0u64;
                loop {
                    let pat = pattern.clone();
                    let (next, keys): (u64, Vec<String>) = self.call("cache_clear", |mut c| async move { ::redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pat).arg("COUNT").arg(1000).query_async(&mut c).await }).await?;
                    if !keys.is_empty() {
                        n += keys.iter().filter(|k| k.contains(":cache:e:")).count() as u64;
                        let ks = keys.clone();
                        self.call("cache_clear", |mut c| async move { ::redis::cmd("DEL").arg(&ks).query_async::<()>(&mut c).await }).await?;
                    }
                    if next == 0 {
                        return Ok((n, None));
                    }
                    cursor = next;
                }
            }
        }
    }
}

/// The reasoning replay memory shared by instances (SPEC 8): each memo a
/// key `{prefix}:rz:{owner digest}:{tool-call id}` with Redis's own TTL, so
/// a turn answered through one instance is completed on another.
impl SharedCounters {
    fn replay_key(&self, owner: &str, id: &str) -> String {
        let digest: String = crate::config::virtual_keys::sha256(owner.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{}:rz:{digest}:{id}", self.conf.key_prefix)
    }

    /// Remember `memos` (id, JSON) for `owner`, for `ttl_s`.
    pub async fn replay_put(&self, owner: &str, memos: &[(String, String)], ttl_s: u64) -> io::Result<()> {
        let mut pipe = ::redis::pipe();
        for (id, memo) in memos {
            pipe.cmd("SET").arg(self.replay_key(owner, id)).arg(memo).arg("EX").arg(ttl_s.max(1)).ignore();
        }
        self.call("replay_put", |mut c| async move { pipe.query_async::<()>(&mut c).await }).await
    }

    /// The memos of `owner` among `ids`.
    pub async fn replay_get(&self, owner: &str, ids: &[String]) -> io::Result<std::collections::HashMap<String, String>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.replay_key(owner, id)).collect();
        let got: Vec<Option<String>> = self.call("replay_get", |mut c| async move { ::redis::cmd("MGET").arg(&keys).query_async(&mut c).await }).await?;
        Ok(ids.iter().zip(got).filter_map(|(id, m)| Some((id.clone(), m?))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Budget;

    #[test]
    fn keys_are_per_minute_and_per_period() {
        let vk = VirtualKey {
            name: "team".into(),
            digest: [0; 32],
            providers: None,
            models: None,
            requests_per_minute: Some(1),
            tokens_per_minute: None,
            budget: Some(Budget { usd: 1.0, period: Period::Day }),
        };
        // 2024-03-01T00:00:59Z
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_709_251_259);
        let k = keys("tg", &vk, t);
        assert_eq!(k.rpm, format!("tg:vk:team:rpm:{}", 1_709_251_259 / 60));
        assert_eq!(k.spend, format!("tg:vk:team:spend:day:{}", 1_709_251_259 / 86_400));
        assert_eq!(k.retry_after, 1);
        assert_eq!(k.spend_ttl, 2 * 86_400);
    }

    // Against a real redis-server (Debian's package; skipped with a notice
    // when it is missing, like the job store's tests).
    const REDIS_SERVER: &str = "/usr/bin/redis-server";

    struct Server(std::process::Child, u16);

    impl Server {
        fn start_on(port: u16) -> Server {
            let child = std::process::Command::new(REDIS_SERVER)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start redis-server");
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not listen on {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Server(child, port)
        }
        fn start() -> Option<Server> {
            if !std::path::Path::new(REDIS_SERVER).exists() {
                eprintln!("NOTICE: {REDIS_SERVER} is missing; shared counters test skipped");
                return None;
            }
            Some(Server::start_on(free_port()))
        }
        fn stop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn conf(url: &str, timeout_ms: u64) -> RedisConf {
        let (tls, host, port, password, db) = RedisConf::parse_url(url).unwrap();
        RedisConf { tls, host, port, password, db, timeout: Duration::from_millis(timeout_ms), key_prefix: "tg-unit".into() }
    }

    fn vk(name: &str, rpm: Option<u32>, tpm: Option<u64>, usd: Option<f64>) -> VirtualKey {
        VirtualKey {
            name: name.into(),
            digest: [0; 32],
            providers: None,
            models: None,
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            budget: usd.map(|usd| Budget { usd, period: Period::Day }),
        }
    }

    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn two_instances_share_limits_and_spend_in_redis() {
        let Some(srv) = Server::start() else { return };
        let url = format!("redis://127.0.0.1:{}/2", srv.1);
        let (a, b) = (SharedCounters::new(conf(&url, 500)), SharedCounters::new(conf(&url, 500)));
        let wall = SystemTime::now();
        let fleet = vk("fleet", Some(2), Some(1000), None);
        assert!(a.admit(&fleet, wall).await.unwrap().is_ok());
        assert!(b.admit(&fleet, wall).await.unwrap().is_ok());
        let r = a.admit(&fleet, wall).await.unwrap().unwrap_err();
        assert_eq!(r.reason, "requests_per_minute");
        assert!(r.retry_after.is_some());
        // Tokens: no budget, so no spend comes back.
        assert_eq!(a.record(&fleet, 600, 0.1, wall).await.unwrap(), None);
        assert_eq!(b.record(&fleet, 600, 0.1, wall).await.unwrap(), None);

        let cap = vk("cap", None, None, Some(1.0));
        assert!(a.admit(&cap, wall).await.unwrap().is_ok());
        assert!((a.record(&cap, 10, 0.4, wall).await.unwrap().unwrap() - 0.4).abs() < 1e-9);
        assert!((b.record(&cap, 10, 0.7, wall).await.unwrap().unwrap() - 1.1).abs() < 1e-9, "fleet-wide spend");
        assert_eq!(b.admit(&cap, wall).await.unwrap().unwrap_err().reason, "budget");

        // The key layout and expiries are today's.
        let k = keys("tg-unit", &fleet, wall);
        let kc = keys("tg-unit", &cap, wall);
        let mut raw = ::redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let get = |key: String| ::redis::cmd("GET").arg(key).clone();
        let ttl = |key: String| ::redis::cmd("TTL").arg(key).clone();
        assert_eq!(get(k.rpm.clone()).query_async::<i64>(&mut raw).await.unwrap(), 2, "the refused request is not counted");
        assert_eq!(get(k.tpm.clone()).query_async::<i64>(&mut raw).await.unwrap(), 1200);
        assert!((get(kc.spend.clone()).query_async::<f64>(&mut raw).await.unwrap() - 1.1).abs() < 1e-9);
        assert!((1..=120).contains(&ttl(k.rpm).query_async::<i64>(&mut raw).await.unwrap()));
        assert!((1..=120).contains(&ttl(k.tpm).query_async::<i64>(&mut raw).await.unwrap()));
        assert!((86_400..=2 * 86_400).contains(&ttl(kc.spend).query_async::<i64>(&mut raw).await.unwrap()));
        // A server that lost its scripts (restart, SCRIPT FLUSH) is sent
        // the script again.
        let () = ::redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut raw).await.unwrap();
        assert!(a.admit(&vk("other", Some(5), None, None), wall).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn redis_down_fails_within_the_deadline_and_the_next_call_reconnects() {
        let Some(mut srv) = Server::start() else { return };
        let port = srv.1;
        let c = SharedCounters::new(conf(&format!("redis://127.0.0.1:{port}/"), 300));
        let key = vk("k", Some(100), None, None);
        let wall = SystemTime::now();
        assert!(c.admit(&key, wall).await.unwrap().is_ok());
        srv.stop();
        for _ in 0..3 {
            let t = Instant::now();
            assert!(c.admit(&key, wall).await.is_err());
            assert!(t.elapsed() < Duration::from_millis(600), "{:?}", t.elapsed());
        }
        let _srv = Server::start_on(port);
        // The first call after Redis is back is served by it.
        assert!(c.admit(&key, wall).await.unwrap().is_ok());
        assert!(c.record(&vk("k", None, Some(10), None), 5, 0.0, wall).await.is_ok());
    }

    #[tokio::test]
    async fn a_silent_redis_times_out_and_the_connection_is_dropped() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = SharedCounters::new(conf(&format!("redis://:s3cret@{}/", silent.local_addr().unwrap()), 200));
        let key = vk("k", Some(1), None, Some(1.0));
        let t = Instant::now();
        let e = c.admit(&key, SystemTime::now()).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(c.conn.lock().unwrap().1.is_none(), "the next call connects afresh");
        let t = Instant::now();
        assert!(c.record(&key, 1, 0.1, SystemTime::now()).await.is_err());
        assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
        assert_eq!(c.conn.lock().unwrap().0, 2, "a second manager was made");
    }

    #[tokio::test]
    async fn rediss_speaks_tls_and_fails_bounded_against_a_plain_server() {
        let Some(srv) = Server::start() else { return };
        let c = SharedCounters::new(conf(&format!("rediss://:s3cret@127.0.0.1:{}/", srv.1), 300));
        let t = Instant::now();
        let e = c.admit(&vk("k", Some(1), None, None), SystemTime::now()).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(700), "{:?}", t.elapsed());
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
