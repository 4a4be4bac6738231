//! `tollgate.routing` (SPEC 10): model aliases with their targets and
//! fallbacks, the attempt budget, same-target retries and cooldowns. The
//! decisions over it are `crate::routing`'s.

use super::{ConfigError, Parse};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    max_attempts: Option<u32>,
    max_fallbacks: Option<usize>,
    retries: Option<u32>,
    max_retry_after_s: Option<f64>,
    cooldown: Option<RawCooldown>,
    models: Option<BTreeMap<String, RawAlias>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCooldown {
    failures: Option<u32>,
    window_s: Option<f64>,
    s: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlias {
    strategy: Option<String>,
    targets: Vec<RawTarget>,
    #[serde(default)]
    fallbacks: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    model: String,
    weight: Option<f64>,
}

/// How an alias picks its first target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Weighted random among healthy targets (the default).
    Weighted,
    /// The lowest recent time to first byte.
    LeastLatency,
    /// In the order written.
    Ordered,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Weighted => "weighted",
            Strategy::LeastLatency => "least_latency",
            Strategy::Ordered => "ordered",
        }
    }
}

/// One target of an alias: `provider/model` and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasTarget {
    pub model: String,
    /// Non-negative; 0 = only as a fallback.
    pub weight: f64,
}

/// `routing.models.<alias>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Alias {
    pub strategy: Strategy,
    pub targets: Vec<AliasTarget>,
    /// `provider/model` entries tried after every target.
    pub fallbacks: Vec<String>,
}

/// `routing.cooldown`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CooldownConf {
    /// Failures within `window_s` that start a cooldown.
    pub failures: u32,
    pub window_s: f64,
    /// How long the target is skipped.
    pub s: f64,
}

/// `tollgate.routing`.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingConf {
    /// Every attempt on every target, per request.
    pub max_attempts: u32,
    /// Entries allowed in a request's `fallbacks`.
    pub max_fallbacks: usize,
    /// Same-target retries after a retryable failure.
    pub retries: u32,
    /// The cap on a provider's `retry-after` before a same-target retry.
    pub max_retry_after_s: f64,
    pub cooldown: CooldownConf,
    /// Aliases by name.
    pub models: BTreeMap<String, Alias>,
}

impl Default for RoutingConf {
    fn default() -> RoutingConf {
        RoutingConf {
            max_attempts: 4,
            max_fallbacks: 4,
            retries: 0,
            max_retry_after_s: 10.0,
            cooldown: CooldownConf { failures: 3, window_s: 60.0, s: 30.0 },
            models: BTreeMap::new(),
        }
    }
}

/// The most attempts a request may be given (a config error beyond it).
pub const MAX_ATTEMPTS_CAP: u32 = 32;

/// `provider/model` with a provider `known` accepts: the provider's name
/// and the model, or why not.
pub fn parse_target<'a>(entry: &'a str, known: &dyn Fn(&str) -> bool) -> Result<(&'a str, &'a str), String> {
    let Some((provider, model)) = entry.split_once('/') else {
        return Err(format!("`{entry}` is not provider/model"));
    };
    if provider.is_empty() || model.is_empty() || entry.chars().any(char::is_whitespace) {
        return Err(format!("`{entry}` is not provider/model"));
    }
    if !known(provider) {
        return Err(format!("`{entry}` names provider `{provider}`, which is not configured"));
    }
    Ok((provider, model))
}

pub(crate) fn parse(raw: Option<serde_yaml::Value>, known: &dyn Fn(&str) -> bool, p: &Parse) -> Result<RoutingConf, ConfigError> {
    let d = RoutingConf::default();
    let Some(raw) = raw.filter(|r| !r.is_null()) else { return Ok(d) };
    let r: RawRouting = serde_yaml::from_value(raw).map_err(|e| p.err("tollgate.routing", e.to_string()))?;
    let max_attempts = r.max_attempts.unwrap_or(d.max_attempts);
    if !(1..=MAX_ATTEMPTS_CAP).contains(&max_attempts) {
        return Err(p.err("tollgate.routing.max_attempts", format!("must be between 1 and {MAX_ATTEMPTS_CAP}")));
    }
    let max_fallbacks = r.max_fallbacks.unwrap_or(d.max_fallbacks);
    if max_fallbacks > 16 {
        return Err(p.err("tollgate.routing.max_fallbacks", "must be between 0 and 16".into()));
    }
    let retries = r.retries.unwrap_or(d.retries);
    if retries > 10 {
        return Err(p.err("tollgate.routing.retries", "must be between 0 and 10".into()));
    }
    let max_retry_after_s = r.max_retry_after_s.unwrap_or(d.max_retry_after_s);
    if !(0.0..=3600.0).contains(&max_retry_after_s) {
        return Err(p.err("tollgate.routing.max_retry_after_s", "must be between 0 and 3600".into()));
    }
    let mut cooldown = d.cooldown;
    if let Some(c) = r.cooldown {
        cooldown.failures = c.failures.unwrap_or(cooldown.failures);
        cooldown.window_s = c.window_s.unwrap_or(cooldown.window_s);
        cooldown.s = c.s.unwrap_or(cooldown.s);
        if cooldown.failures == 0 {
            return Err(p.err("tollgate.routing.cooldown.failures", "must be at least 1".into()));
        }
        if !(cooldown.window_s > 0.0 && cooldown.window_s <= 86_400.0) {
            return Err(p.err("tollgate.routing.cooldown.window_s", "must be above 0 and at most 86400".into()));
        }
        if !(0.0..=86_400.0).contains(&cooldown.s) {
            return Err(p.err("tollgate.routing.cooldown.s", "must be between 0 and 86400".into()));
        }
    }
    let mut models = BTreeMap::new();
    for (name, a) in r.models.unwrap_or_default() {
        let key = format!("tollgate.routing.models.{name}");
        if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
            return Err(p.err(&key, "an alias is a single word without `/` (provider/model names a target directly)".into()));
        }
        let strategy = match a.strategy.as_deref() {
            None | Some("weighted") => Strategy::Weighted,
            Some("least_latency") => Strategy::LeastLatency,
            Some("ordered") => Strategy::Ordered,
            Some(s) => return Err(p.err(&format!("{key}.strategy"), format!("`{s}` is not weighted, least_latency or ordered"))),
        };
        if a.targets.is_empty() {
            return Err(p.err(&format!("{key}.targets"), "needs at least one target".into()));
        }
        let mut targets = Vec::new();
        for (i, t) in a.targets.into_iter().enumerate() {
            parse_target(&t.model, known).map_err(|m| p.err(&format!("{key}.targets[{i}].model"), m))?;
            let weight = t.weight.unwrap_or(1.0);
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(p.err(&format!("{key}.targets[{i}].weight"), "must be a non-negative number".into()));
            }
            targets.push(AliasTarget { model: t.model, weight });
        }
        if strategy == Strategy::Weighted && targets.iter().all(|t| t.weight == 0.0) {
            return Err(p.err(&format!("{key}.targets"), "every weight is 0: at least one target must have a positive weight".into()));
        }
        for (i, f) in a.fallbacks.iter().enumerate() {
            parse_target(f, known).map_err(|m| p.err(&format!("{key}.fallbacks[{i}]"), m))?;
        }
        models.insert(name, Alias { strategy, targets, fallbacks: a.fallbacks });
    }
    Ok(RoutingConf { max_attempts, max_fallbacks, retries, max_retry_after_s, cooldown, models })
}

#[cfg(test)]
mod tests {
    use super::{RoutingConf, Strategy};
    use crate::config::test_load as load;

    const PROVIDERS: &str = "  providers:\n    openai: { keys: [{ name: a, value: x }] }\n    anthropic: { keys: [{ name: a, value: x }] }\n";

    #[test]
    fn parses_the_spec_example_with_defaults() {
        assert_eq!(load("tollgate:\n  listen: 127.0.0.1:1\n").unwrap().routing, RoutingConf::default());
        let y = format!(
            "tollgate:\n{PROVIDERS}  routing:\n    max_attempts: 3\n    models:\n      smart:\n        targets: [{{ model: openai/gpt-4o, weight: 0.3 }}, {{ model: anthropic/claude-sonnet-4-5, weight: 0.7 }}]\n        fallbacks: [openai/gpt-4o-mini]\n"
        );
        let r = load(&y).unwrap().routing;
        assert_eq!(r.max_attempts, 3);
        assert_eq!(r.retries, 0);
        let a = &r.models["smart"];
        assert_eq!(a.strategy, Strategy::Weighted);
        assert_eq!(a.targets[0].weight, 0.3, "fractional weights are kept");
        assert_eq!(a.fallbacks, vec!["openai/gpt-4o-mini"]);
    }

    #[test]
    fn bad_values_name_the_key() {
        let case = |body: &str| load(&format!("tollgate:\n{PROVIDERS}  routing:\n{body}")).unwrap_err().key;
        assert_eq!(case("    max_attempts: 0\n"), "tollgate.routing.max_attempts");
        assert_eq!(case("    cooldown: { failures: 0 }\n"), "tollgate.routing.cooldown.failures");
        assert_eq!(case("    models:\n      a: { targets: [] }\n"), "tollgate.routing.models.a.targets");
        assert_eq!(case("    models:\n      a: { targets: [{ model: gemini/x }] }\n"), "tollgate.routing.models.a.targets[0].model");
        assert_eq!(case("    models:\n      a: { targets: [{ model: gpt-4o }] }\n"), "tollgate.routing.models.a.targets[0].model");
        assert_eq!(case("    models:\n      a: { targets: [{ model: openai/x, weight: -1 }] }\n"), "tollgate.routing.models.a.targets[0].weight");
        assert_eq!(case("    models:\n      a: { targets: [{ model: openai/x, weight: 0 }] }\n"), "tollgate.routing.models.a.targets");
        assert_eq!(case("    models:\n      a: { strategy: fastest, targets: [{ model: openai/x }] }\n"), "tollgate.routing.models.a.strategy");
        assert_eq!(case("    models:\n      a: { targets: [{ model: openai/x }], fallbacks: [nope/x] }\n"), "tollgate.routing.models.a.fallbacks[0]");
        assert_eq!(case("    models:\n      a/b: { targets: [{ model: openai/x }] }\n"), "tollgate.routing.models.a/b");
        assert_eq!(case("    nope: 1\n"), "tollgate.routing");
    }
}
