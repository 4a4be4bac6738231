//! Provider key pools (SPEC 2): a weighted random choice among the keys
//! that allow the request's model, and keys resting after the provider
//! refused them (401/403) or rate-limited them (429).

use crate::config::glob::glob_match;
use crate::config::KeyConf;
use crate::providers::Provider;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Does this key allow `model`? A key with a model list needs a known model.
pub fn key_allows(key: &KeyConf, model: Option<&str>) -> bool {
    match (&key.models, model) {
        (None, _) => true,
        (Some(pats), Some(m)) => pats.iter().any(|p| glob_match(p, m)),
        (Some(_), None) => false,
    }
}

/// Weighted random choice among keys that allow `model`, skipping the names
/// in `exclude` (keys already tried for this request).
pub fn select_key<'a, R: Rng + ?Sized>(
    keys: &'a [KeyConf],
    model: Option<&str>,
    exclude: &[String],
    rng: &mut R,
) -> Option<&'a KeyConf> {
    let eligible: Vec<&KeyConf> = keys
        .iter()
        .filter(|k| key_allows(k, model) && !exclude.contains(&k.name))
        .collect();
    let total: u64 = eligible.iter().map(|k| u64::from(k.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut pick = rng.gen_range(0..total);
    for k in eligible {
        let w = u64::from(k.weight);
        if pick < w {
            return Some(k);
        }
        pick -= w;
    }
    None
}

/// Provider keys taken out of rotation for a while: after a 401/403 (bad or
/// revoked key) for a fixed cooldown, after a 429 for its `retry-after`.
#[derive(Default)]
pub struct KeyHealth {
    until: Mutex<HashMap<(Provider, String), Instant>>,
}

/// How long a key that answered 401/403 stays out.
pub const AUTH_FAILURE_COOLDOWN: Duration = Duration::from_secs(60);
/// A 429 without a usable `retry-after`.
pub const DEFAULT_RATE_LIMIT_COOLDOWN: Duration = Duration::from_secs(10);
/// Upper bound on any cooldown taken from a provider's header.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(3600);

impl KeyHealth {
    pub fn cool_down(&self, provider: Provider, key: &str, d: Duration, now: Instant) {
        let d = d.min(MAX_COOLDOWN);
        self.until.lock().expect("key health lock").insert((provider, key.to_string()), now + d);
    }

    /// Names of the provider's keys that are out of rotation at `now`.
    pub fn cooling(&self, provider: Provider, now: Instant) -> Vec<String> {
        let mut map = self.until.lock().expect("key health lock");
        map.retain(|_, until| *until > now);
        map.keys().filter(|(p, _)| *p == provider).map(|(_, k)| k.clone()).collect()
    }
}

/// Cooldown for a provider answer, if it says the key should rest:
/// 401/403 → [`AUTH_FAILURE_COOLDOWN`], 429 → `retry-after` seconds.
pub fn cooldown_for(status: u16, retry_after: Option<&str>) -> Option<Duration> {
    match status {
        401 | 403 => Some(AUTH_FAILURE_COOLDOWN),
        429 => Some(
            retry_after
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or(DEFAULT_RATE_LIMIT_COOLDOWN),
        ),
        _ => None,
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn key(name: &str, weight: u32, models: Option<&[&str]>) -> KeyConf {
        KeyConf {
            name: name.into(),
            value: format!("v-{name}"),
            weight,
            models: models.map(|m| m.iter().map(|s| s.to_string()).collect()),
            endpoint: None,
            api_version: None,
            identity: None,
        }
    }

    #[test]
    fn cooldowns() {
        let h = KeyHealth::default();
        let t0 = Instant::now();
        h.cool_down(Provider::OpenAi, "a", Duration::from_secs(5), t0);
        assert_eq!(h.cooling(Provider::OpenAi, t0), vec!["a".to_string()]);
        assert!(h.cooling(Provider::Anthropic, t0).is_empty());
        assert!(h.cooling(Provider::OpenAi, t0 + Duration::from_secs(6)).is_empty());
        h.cool_down(Provider::OpenAi, "b", Duration::from_secs(1_000_000), t0);
        assert!(!h.cooling(Provider::OpenAi, t0 + MAX_COOLDOWN + Duration::from_secs(1)).contains(&"b".to_string()));
        assert_eq!(cooldown_for(429, Some("7")), Some(Duration::from_secs(7)));
        assert_eq!(cooldown_for(429, Some("0.5")), Some(Duration::from_millis(500)));
        assert_eq!(cooldown_for(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")), Some(DEFAULT_RATE_LIMIT_COOLDOWN));
        assert_eq!(cooldown_for(429, None), Some(DEFAULT_RATE_LIMIT_COOLDOWN));
        assert_eq!(cooldown_for(401, None), Some(AUTH_FAILURE_COOLDOWN));
        assert_eq!(cooldown_for(500, None), None);
        assert_eq!(cooldown_for(200, None), None);
    }

    #[test]
    fn weighted_selection_follows_weights_and_models() {
        let keys = vec![key("a", 3, None), key("b", 1, None), key("c", 5, Some(&["claude-*"]))];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..8000 {
            let k = select_key(&keys, Some("gpt-4o"), &[], &mut rng).unwrap();
            *counts.entry(k.name.clone()).or_insert(0) += 1;
        }
        assert_eq!(counts.get("c"), None, "c does not allow gpt-4o");
        let a = counts["a"] as f64 / 8000.0;
        assert!((a - 0.75).abs() < 0.03, "a share {a}");
        // model unknown: a key with a model list is not eligible
        for _ in 0..100 {
            assert_ne!(select_key(&keys, None, &[], &mut rng).unwrap().name, "c");
        }
        assert_eq!(select_key(&keys, Some("claude-x"), &["a".into(), "b".into()], &mut rng).unwrap().name, "c");
        assert!(select_key(&keys, Some("gpt-4o"), &["a".into(), "b".into()], &mut rng).is_none());
        assert!(select_key(&[], None, &[], &mut rng).is_none());
    }
}
