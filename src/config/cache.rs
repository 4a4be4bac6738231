//! `tollgate.cache` (SPEC 11): the response cache on `/openai`. Off when
//! absent. The decisions over it are `crate::cache`'s.

use super::routing::parse_target;
use super::{ConfigError, Parse};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    default_key: Option<String>,
    ttl_s: Option<u64>,
    max_ttl_s: Option<u64>,
    max_entries: Option<u64>,
    max_entry_bytes: Option<u64>,
    semantic: Option<RawSemantic>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSemantic {
    model: String,
    threshold: Option<f64>,
    max_messages: Option<usize>,
}

/// `cache.semantic`: the embedding model (`provider/model`, through the
/// gateway's own providers and keys) and when a neighbour is close enough.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticConf {
    pub model: String,
    pub threshold: f64,
    pub max_messages: usize,
}

/// `tollgate.cache`.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConf {
    /// The namespace of requests that send no `x-bf-cache-key`; `None`:
    /// such requests are not cached.
    pub default_key: Option<String>,
    pub ttl_s: u64,
    pub max_ttl_s: u64,
    pub max_entries: u64,
    pub max_entry_bytes: u64,
    pub semantic: Option<SemanticConf>,
}

impl Default for CacheConf {
    fn default() -> CacheConf {
        CacheConf { default_key: None, ttl_s: 300, max_ttl_s: 86_400, max_entries: 100_000, max_entry_bytes: 1_048_576, semantic: None }
    }
}

pub(crate) fn parse(raw: Option<serde_yaml::Value>, known: &dyn Fn(&str) -> bool, p: &Parse) -> Result<Option<CacheConf>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.is_null() {
        return Ok(Some(CacheConf::default()));
    }
    let r: RawCache = serde_yaml::from_value(raw).map_err(|e| p.err("tollgate.cache", e.to_string()))?;
    let d = CacheConf::default();
    let max_ttl_s = r.max_ttl_s.unwrap_or(d.max_ttl_s);
    if max_ttl_s == 0 || max_ttl_s > 30 * 86_400 {
        return Err(p.err("tollgate.cache.max_ttl_s", "must be between 1 and 2592000 (30 days)".into()));
    }
    let ttl_s = r.ttl_s.unwrap_or(d.ttl_s.min(max_ttl_s));
    if ttl_s == 0 || ttl_s > max_ttl_s {
        return Err(p.err("tollgate.cache.ttl_s", format!("must be between 1 and max_ttl_s ({max_ttl_s})")));
    }
    let max_entries = r.max_entries.unwrap_or(d.max_entries);
    if max_entries == 0 || max_entries > 100_000_000 {
        return Err(p.err("tollgate.cache.max_entries", "must be between 1 and 100000000".into()));
    }
    let max_entry_bytes = r.max_entry_bytes.unwrap_or(d.max_entry_bytes);
    if !(1024..=64 * 1024 * 1024).contains(&max_entry_bytes) {
        return Err(p.err("tollgate.cache.max_entry_bytes", "must be between 1024 and 67108864".into()));
    }
    if let Some(k) = &r.default_key {
        if !valid_namespace(k) {
            return Err(p.err("tollgate.cache.default_key", "must be 1 to 128 printable characters".into()));
        }
    }
    let semantic = match r.semantic {
        None => None,
        Some(s) => {
            parse_target(&s.model, known).map_err(|m| p.err("tollgate.cache.semantic.model", m))?;
            let threshold = s.threshold.unwrap_or(0.95);
            if !(threshold > 0.0 && threshold <= 1.0) {
                return Err(p.err("tollgate.cache.semantic.threshold", "must be above 0 and at most 1".into()));
            }
            let max_messages = s.max_messages.unwrap_or(3);
            if max_messages == 0 {
                return Err(p.err("tollgate.cache.semantic.max_messages", "must be at least 1".into()));
            }
            Some(SemanticConf { model: s.model, threshold, max_messages })
        }
    };
    Ok(Some(CacheConf { default_key: r.default_key, ttl_s, max_ttl_s, max_entries, max_entry_bytes, semantic }))
}

/// A cache namespace (`x-bf-cache-key`, `default_key`): 1 to 128 visible
/// ASCII characters.
pub fn valid_namespace(k: &str) -> bool {
    !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::{CacheConf, SemanticConf};
    use crate::config::test_load as load;

    const P: &str = "  providers:\n    openai: { keys: [{ name: a, value: x }] }\n";

    #[test]
    fn parses_with_defaults() {
        assert_eq!(load("tollgate:\n  listen: 127.0.0.1:1\n").unwrap().cache, None);
        assert_eq!(load("tollgate:\n  cache: {}\n").unwrap().cache, Some(CacheConf::default()));
        let c = load(&format!("tollgate:\n{P}  cache: {{ ttl_s: 60, semantic: {{ model: openai/text-embedding-3-small }} }}\n")).unwrap().cache.unwrap();
        assert_eq!(c.ttl_s, 60);
        assert_eq!(c.semantic, Some(SemanticConf { model: "openai/text-embedding-3-small".into(), threshold: 0.95, max_messages: 3 }));
    }

    #[test]
    fn bad_values_name_the_key() {
        let case = |body: &str| load(&format!("tollgate:\n{P}  cache: {body}\n")).unwrap_err().key;
        assert_eq!(case("{ ttl_s: 0 }"), "tollgate.cache.ttl_s");
        assert_eq!(case("{ ttl_s: 100, max_ttl_s: 10 }"), "tollgate.cache.ttl_s");
        assert_eq!(case("{ max_entries: 0 }"), "tollgate.cache.max_entries");
        assert_eq!(case("{ max_entry_bytes: 10 }"), "tollgate.cache.max_entry_bytes");
        assert_eq!(case("{ default_key: '' }"), "tollgate.cache.default_key");
        assert_eq!(case("{ semantic: { model: nope/x } }"), "tollgate.cache.semantic.model");
        assert_eq!(case("{ semantic: { model: openai/x, threshold: 1.5 } }"), "tollgate.cache.semantic.threshold");
        assert_eq!(case("{ nope: 1 }"), "tollgate.cache");
    }
}
