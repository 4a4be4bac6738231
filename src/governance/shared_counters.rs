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

use super::redis::{RedisClient, Reply};
use super::virtual_keys::Refusal;
use crate::config::{Period, RedisConf, VirtualKey};
use std::io;
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
    redis: RedisClient,
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

fn cmd(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

fn redis_error(r: &Reply) -> Option<io::Error> {
    match r {
        Reply::Error(e) => Some(io::Error::other(format!("redis: {e}"))),
        _ => None,
    }
}

impl SharedCounters {
    pub fn new(conf: RedisConf) -> Self {
        SharedCounters { redis: RedisClient::new(conf), last_logged: Default::default() }
    }

    /// Count and (at most every 10 s) log a failed Redis call.
    pub fn failed(&self, op: &'static str, e: &io::Error) {
        use std::sync::atomic::Ordering;
        crate::observe::metrics::METRICS.redis_errors.with_label_values(&[op]).inc();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let last = self.last_logged.load(Ordering::Relaxed);
        if now >= last + 10 && self.last_logged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let c = self.redis.conf();
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
        let k = keys(&self.redis.conf().key_prefix, vk, wall);
        let num = |v: Option<String>| v.unwrap_or_else(|| "-1".into());
        let c = cmd(&[
            "EVAL",
            ADMIT,
            "3",
            &k.rpm,
            &k.tpm,
            &k.spend,
            &num(vk.requests_per_minute.map(|v| v.to_string())),
            &num(vk.tokens_per_minute.map(|v| v.to_string())),
            &num(vk.budget.map(|b| b.usd.to_string())),
        ]);
        let reply = self.redis.pipeline(&[c]).await?.remove(0);
        if let Some(e) = redis_error(&reply) {
            return Err(e);
        }
        Ok(match reply.as_i64() {
            Some(0) => Ok(()),
            Some(1) => Err(Refusal::over_requests(vk, k.retry_after)),
            Some(2) => Err(Refusal::over_tokens(vk, k.retry_after)),
            Some(3) => Err(Refusal::budget_spent(vk, vk.budget.expect("budget refusal only with a budget"))),
            _ => return Err(io::Error::other(format!("redis: unexpected reply {reply:?}"))),
        })
    }

    /// Count a finished request's tokens and cost. Returns the key's
    /// fleet-wide spend in the period when it has a budget.
    pub async fn record(&self, vk: &VirtualKey, tokens: u64, cost_usd: f64, wall: SystemTime) -> io::Result<Option<f64>> {
        let k = keys(&self.redis.conf().key_prefix, vk, wall);
        let mut cmds = Vec::new();
        if vk.tokens_per_minute.is_some() && tokens > 0 {
            cmds.push(cmd(&["INCRBY", &k.tpm, &tokens.to_string()]));
            cmds.push(cmd(&["EXPIRE", &k.tpm, "120"]));
        }
        let spend_at = vk.budget.map(|_| cmds.len());
        if vk.budget.is_some() {
            cmds.push(cmd(&["INCRBYFLOAT", &k.spend, &format!("{cost_usd:.12}")]));
            cmds.push(cmd(&["EXPIRE", &k.spend, &k.spend_ttl.to_string()]));
        }
        if cmds.is_empty() {
            return Ok(None);
        }
        let replies = self.redis.pipeline(&cmds).await?;
        if let Some(e) = replies.iter().find_map(redis_error) {
            return Err(e);
        }
        Ok(spend_at.and_then(|i| replies.get(i)).and_then(Reply::as_f64))
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
}
