//! Virtual keys (SPEC 2): who may call which provider and model, how often,
//! and for how much. Secrets are kept as SHA-256 digests and compared in
//! constant time. Limits are per virtual key:
//!
//! * requests per minute: a token bucket refilled continuously;
//! * tokens per minute: a bucket debited after each response with the
//!   tokens the usage scanner saw, so one request may overshoot the limit
//!   (the next one is refused until the bucket refills);
//! * budget: USD spent in the current UTC day or month, from each request's
//!   cost; a request is refused once the spend reached the budget.

use crate::config::glob::glob_match;
use crate::config::{Budget, VirtualKey};
use crate::config::virtual_keys::sha256;
use crate::errors::GatewayError;
use crate::providers::Provider;
use crate::store::{SqliteStore, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

/// A refusal: the gateway error, the metric reason, and `retry-after` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub error: GatewayError,
    pub reason: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl Refusal {
    fn new(error: GatewayError, reason: &'static str, message: String) -> Self {
        Refusal { error, reason, message, retry_after: None }
    }

    /// `vk` has spent budget `b` for the current period (402).
    pub fn budget_spent(vk: &VirtualKey, b: Budget) -> Self {
        Refusal::new(
            GatewayError::BudgetExceeded,
            "budget",
            format!("virtual key {} spent its budget of {} USD for this {}", vk.name, b.usd, b.period.name()),
        )
    }

    /// `vk` is over its requests per minute (429, retry after `secs`).
    pub fn over_requests(vk: &VirtualKey, secs: u64) -> Self {
        let rpm = vk.requests_per_minute.unwrap_or(0);
        let mut r = Refusal::new(GatewayError::RateLimited, "requests_per_minute", format!("virtual key {} is over {rpm} requests per minute", vk.name));
        r.retry_after = Some(secs);
        r
    }

    /// `vk` is over its tokens per minute (429, retry after `secs`).
    pub fn over_tokens(vk: &VirtualKey, secs: u64) -> Self {
        let tpm = vk.tokens_per_minute.unwrap_or(0);
        let mut r = Refusal::new(GatewayError::RateLimited, "tokens_per_minute", format!("virtual key {} is over {tpm} tokens per minute", vk.name));
        r.retry_after = Some(secs);
        r
    }
}

/// A continuously refilled bucket of `capacity` units per minute.
#[derive(Debug, Clone)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Bucket {
        Bucket { level: capacity, at: now }
    }
    fn refill(&mut self, capacity: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * capacity / 60.0).min(capacity);
        self.at = now;
    }
    /// Seconds until the level is at least `need`.
    fn wait_for(&self, capacity: f64, need: f64) -> u64 {
        let missing = (need - self.level).max(0.0);
        ((missing * 60.0 / capacity).ceil() as u64).max(1)
    }
}

#[derive(Debug, Clone, Default)]
struct KeyState {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// (period id, USD spent in it).
    spend: (i64, f64),
    /// Spend added since the last sync with the state file.
    unflushed: f64,
}

impl KeyState {
    /// Move to budget period `pid`: a new period starts from zero, and so
    /// does its spend not yet written to the state file.
    fn enter_period(&mut self, pid: i64) {
        if self.spend.0 != pid {
            self.spend = (pid, 0.0);
            self.unflushed = 0.0;
        }
    }
}

/// The configured virtual keys and their live counters. The key list is
/// replaced on reload; counters belong to a key's name and survive it.
#[derive(Default)]
pub struct VirtualKeys {
    keys: RwLock<Arc<Vec<Arc<VirtualKey>>>>,
    state: Mutex<HashMap<String, KeyState>>,
}

impl VirtualKeys {
    pub fn new(keys: Vec<VirtualKey>) -> Self {
        let v = VirtualKeys::default();
        v.set_keys(keys);
        v
    }

    /// Replace the key list (hot reload). Counters of keys that remain are
    /// kept, also when their limits changed; those of removed keys go.
    pub fn set_keys(&self, keys: Vec<VirtualKey>) {
        let keys: Vec<Arc<VirtualKey>> = keys.into_iter().map(Arc::new).collect();
        self.state.lock().expect("vk state lock").retain(|name, _| keys.iter().any(|k| &k.name == name));
        *self.keys.write().expect("vk keys lock") = Arc::new(keys);
    }

    fn keys(&self) -> Arc<Vec<Arc<VirtualKey>>> {
        self.keys.read().expect("vk keys lock").clone()
    }

    /// The key named `name`.
    pub fn by_name(&self, name: &str) -> Option<Arc<VirtualKey>> {
        self.keys().iter().find(|k| k.name == name).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.keys().is_empty()
    }

    /// The key whose secret is `presented`. Every digest is compared in
    /// constant time; the loop does not stop early.
    pub fn find(&self, presented: &str) -> Option<Arc<VirtualKey>> {
        let d = sha256(presented.as_bytes());
        let mut found = None;
        for k in self.keys().iter() {
            if openssl::memcmp::eq(&k.digest, &d) && found.is_none() {
                found = Some(k.clone());
            }
        }
        found
    }

    /// Check a request by `vk` against provider, model, rate and budget, and
    /// count it against the request rate when allowed. The proxy calls the
    /// two halves itself (the limits may be Redis's); the tests use both.
    #[cfg(test)]
    pub fn admit(&self, vk: &VirtualKey, provider: Provider, model: Option<&str>, now: Instant, wall: SystemTime) -> Result<(), Refusal> {
        Self::check_access(vk, provider, model)?;
        self.admit_limits(vk, now, wall)
    }

    /// May `vk` use this provider and model?
    pub fn check_access(vk: &VirtualKey, provider: Provider, model: Option<&str>) -> Result<(), Refusal> {
        if let Some(ps) = &vk.providers {
            if !ps.contains(&provider) {
                return Err(Refusal::new(GatewayError::Forbidden, "provider", format!("virtual key {} may not use provider {}", vk.name, provider.name())));
            }
        }
        if let Some(pats) = &vk.models {
            match model {
                Some(m) if pats.iter().any(|p| glob_match(p, m)) => {}
                Some(m) => return Err(Refusal::new(GatewayError::Forbidden, "model", format!("virtual key {} may not use model {m}", vk.name))),
                None => return Err(Refusal::new(GatewayError::Forbidden, "model", format!("virtual key {} is restricted to listed models and the request names none", vk.name))),
            }
        }
        Ok(())
    }

    /// Check `vk`'s local rate and budget counters and count the request.
    pub fn admit_limits(&self, vk: &VirtualKey, now: Instant, wall: SystemTime) -> Result<(), Refusal> {
        let mut state = self.state.lock().expect("vk state lock");
        let st = state.entry(vk.name.clone()).or_default();
        if let Some(b) = vk.budget {
            st.enter_period(b.period.id(wall));
            if st.spend.1 >= b.usd {
                return Err(Refusal::budget_spent(vk, b));
            }
        }
        if let Some(tpm) = vk.tokens_per_minute {
            let cap = tpm as f64;
            let bucket = st.tokens.get_or_insert_with(|| Bucket::full(cap, now));
            bucket.refill(cap, now);
            if bucket.level <= 0.0 {
                return Err(Refusal::over_tokens(vk, bucket.wait_for(cap, 1.0)));
            }
        }
        if let Some(rpm) = vk.requests_per_minute {
            let cap = f64::from(rpm);
            let bucket = st.requests.get_or_insert_with(|| Bucket::full(cap, now));
            bucket.refill(cap, now);
            if bucket.level < 1.0 {
                return Err(Refusal::over_requests(vk, bucket.wait_for(cap, 1.0)));
            }
            bucket.level -= 1.0;
        }
        Ok(())
    }

    /// After the response: debit tokens and add the cost to the spend.
    pub fn record(&self, vk_name: &str, tokens: u64, cost_usd: f64, now: Instant, wall: SystemTime) {
        let Some(vk) = self.by_name(vk_name) else { return };
        let mut state = self.state.lock().expect("vk state lock");
        let st = state.entry(vk.name.clone()).or_default();
        if let Some(tpm) = vk.tokens_per_minute {
            let cap = tpm as f64;
            let bucket = st.tokens.get_or_insert_with(|| Bucket::full(cap, now));
            bucket.refill(cap, now);
            bucket.level -= tokens as f64;
        }
        if let Some(b) = vk.budget {
            st.enter_period(b.period.id(wall));
            st.spend.1 += cost_usd;
            st.unflushed += cost_usd;
        }
    }

    /// Add this process's unflushed spend to the store and take the
    /// store's totals, which include other processes' spend (the old and new
    /// process during a graceful upgrade, instances sharing the file). Each
    /// key's addition is one atomic upsert; on an error the unflushed spend
    /// is kept for the next flush.
    pub fn sync_store(&self, store: &SqliteStore, wall: SystemTime) -> Result<(), StoreError> {
        let keys = self.keys();
        let mut state = self.state.lock().expect("vk state lock");
        for vk in keys.iter() {
            let Some(b) = vk.budget else { continue };
            let pid = b.period.id(wall);
            let st = state.entry(vk.name.clone()).or_default();
            st.enter_period(pid);
            let total = store.add_spend_now(&vk.name, b.period.name(), pid, st.unflushed)?;
            st.unflushed = 0.0;
            st.spend.1 = total;
        }
        Ok(())
    }

    /// USD spent by a key in its current budget period.
    pub fn spend(&self, vk_name: &str, wall: SystemTime) -> f64 {
        let Some(vk) = self.by_name(vk_name) else { return 0.0 };
        let Some(b) = vk.budget else { return 0.0 };
        let state = self.state.lock().expect("vk state lock");
        match state.get(vk_name) {
            Some(st) if st.spend.0 == b.period.id(wall) => st.spend.1,
            _ => 0.0,
        }
    }
}

/// Flushes spend to the store every `interval` while the server runs (and
/// through its drain); `main` flushes once more after the server stops.
#[derive(Clone)]
pub struct SpendPersistence {
    pub keys: std::sync::Arc<VirtualKeys>,
    pub store: SqliteStore,
    pub interval: std::time::Duration,
}

impl SpendPersistence {
    pub fn flush(&self) {
        if let Err(e) = self.keys.sync_store(&self.store, SystemTime::now()) {
            log::error!("cannot write virtual-key spend to {}: {e}", self.store.path().display());
        }
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for SpendPersistence {
    async fn start(&self, _shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Period;
    use std::time::{Duration, UNIX_EPOCH};

    fn vk(name: &str, secret: &str) -> VirtualKey {
        VirtualKey { name: name.into(), digest: sha256(secret.as_bytes()), providers: None, models: None, requests_per_minute: None, tokens_per_minute: None, budget: None }
    }

    #[test]
    fn finds_by_secret_only() {
        let keys = VirtualKeys::new(vec![vk("a", "sa"), vk("b", "sb")]);
        assert_eq!(keys.find("sb").unwrap().name, "b");
        assert!(keys.find("sc").is_none());
        assert!(keys.find("").is_none());
        assert!(!format!("{:?}", keys.find("sa").unwrap()).contains(&format!("{:?}", sha256(b"sa"))));
    }

    #[test]
    fn provider_and_model_restrictions() {
        let mut k = vk("a", "s");
        k.providers = Some(vec![Provider::OpenAi]);
        k.models = Some(vec!["gpt-4o*".into()]);
        let keys = VirtualKeys::new(vec![k.clone()]);
        let (now, wall) = (Instant::now(), SystemTime::now());
        assert!(keys.admit(&k, Provider::OpenAi, Some("gpt-4o-mini"), now, wall).is_ok());
        let r = keys.admit(&k, Provider::Anthropic, Some("gpt-4o"), now, wall).unwrap_err();
        assert_eq!((r.error, r.reason), (GatewayError::Forbidden, "provider"));
        let r = keys.admit(&k, Provider::OpenAi, Some("o1"), now, wall).unwrap_err();
        assert_eq!((r.error, r.reason), (GatewayError::Forbidden, "model"));
        assert!(keys.admit(&k, Provider::OpenAi, None, now, wall).is_err());
    }

    #[test]
    fn request_rate_refills() {
        let mut k = vk("a", "s");
        k.requests_per_minute = Some(2);
        let keys = VirtualKeys::new(vec![k.clone()]);
        let (t0, wall) = (Instant::now(), SystemTime::now());
        assert!(keys.admit(&k, Provider::OpenAi, None, t0, wall).is_ok());
        assert!(keys.admit(&k, Provider::OpenAi, None, t0, wall).is_ok());
        let r = keys.admit(&k, Provider::OpenAi, None, t0, wall).unwrap_err();
        assert_eq!((r.error, r.reason), (GatewayError::RateLimited, "requests_per_minute"));
        assert_eq!(r.retry_after, Some(30));
        assert!(keys.admit(&k, Provider::OpenAi, None, t0 + Duration::from_secs(31), wall).is_ok());
    }

    #[test]
    fn token_rate_is_debited_after_the_response() {
        let mut k = vk("a", "s");
        k.tokens_per_minute = Some(1000);
        let keys = VirtualKeys::new(vec![k.clone()]);
        let (t0, wall) = (Instant::now(), SystemTime::now());
        assert!(keys.admit(&k, Provider::OpenAi, None, t0, wall).is_ok());
        keys.record("a", 1500, 0.0, t0, wall); // one request may overshoot
        let r = keys.admit(&k, Provider::OpenAi, None, t0, wall).unwrap_err();
        assert_eq!(r.reason, "tokens_per_minute");
        assert!(r.retry_after.unwrap() >= 30);
        assert!(keys.admit(&k, Provider::OpenAi, None, t0 + Duration::from_secs(40), wall).is_ok());
    }

    #[test]
    fn budget_per_period() {
        let mut k = vk("a", "s");
        k.budget = Some(Budget { usd: 1.0, period: Period::Day });
        let keys = VirtualKeys::new(vec![k.clone()]);
        let t0 = Instant::now();
        let day1 = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 3600);
        assert!(keys.admit(&k, Provider::OpenAi, None, t0, day1).is_ok());
        keys.record("a", 0, 0.6, t0, day1);
        assert!(keys.admit(&k, Provider::OpenAi, None, t0, day1).is_ok());
        keys.record("a", 0, 0.6, t0, day1);
        let r = keys.admit(&k, Provider::OpenAi, None, t0, day1).unwrap_err();
        assert_eq!((r.error, r.reason), (GatewayError::BudgetExceeded, "budget"));
        assert!((keys.spend("a", day1) - 1.2).abs() < 1e-9);
        let day2 = day1 + Duration::from_secs(86_400);
        assert!(keys.admit(&k, Provider::OpenAi, None, t0, day2).is_ok(), "a new day resets the spend");
    }

    fn store(tag: &str) -> (std::path::PathBuf, SqliteStore) {
        let dir = std::env::temp_dir().join(format!("tollgate-spend-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SqliteStore::open(&dir.join("tollgate.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn spend_survives_through_the_store_and_merges_processes() {
        let mut k = vk("a", "s");
        k.budget = Some(Budget { usd: 10.0, period: Period::Month });
        let (dir, st) = store("merge");
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let old = VirtualKeys::new(vec![k.clone()]);
        old.sync_store(&st, wall).unwrap();
        old.record("a", 0, 1.5, t0, wall);
        old.sync_store(&st, wall).unwrap();
        // A second process (restart or upgrade) starts from the store...
        let st2 = SqliteStore::open(&dir.join("tollgate.db")).unwrap();
        let new = VirtualKeys::new(vec![k.clone()]);
        new.sync_store(&st2, wall).unwrap();
        assert!((new.spend("a", wall) - 1.5).abs() < 1e-9);
        // ...and both keep adding; each sync sees the sum.
        old.record("a", 0, 0.25, t0, wall);
        new.record("a", 0, 1.0, t0, wall);
        old.sync_store(&st, wall).unwrap();
        new.sync_store(&st2, wall).unwrap();
        assert!((new.spend("a", wall) - 2.75).abs() < 1e-9);
        old.sync_store(&st, wall).unwrap();
        assert!((old.spend("a", wall) - 2.75).abs() < 1e-9);
        // A new month starts from zero.
        let later = wall + std::time::Duration::from_secs(40 * 86_400);
        new.sync_store(&st2, later).unwrap();
        assert_eq!(new.spend("a", later), 0.0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_new_period_does_not_carry_unwritten_spend_of_the_old_one() {
        let mut k = vk("a", "s");
        k.budget = Some(Budget { usd: 10.0, period: Period::Day });
        let (dir, st) = store("period");
        let keys = VirtualKeys::new(vec![k.clone()]);
        let t0 = Instant::now();
        let day1 = SystemTime::now();
        let day2 = day1 + std::time::Duration::from_secs(86_400);
        keys.record("a", 0, 2.0, t0, day1);
        // The first request of the next day is admitted before any sync.
        assert!(keys.admit(&k, Provider::OpenAi, None, t0, day2).is_ok());
        keys.sync_store(&st, day2).unwrap();
        assert_eq!(keys.spend("a", day2), 0.0, "yesterday's spend counted today");
        std::fs::remove_dir_all(dir).unwrap();
    }

}
