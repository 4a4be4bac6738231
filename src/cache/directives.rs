//! What a request asks of the cache (SPEC 11), and whose entries it may
//! read. Pure: headers in, a decision or the header at fault out.

use crate::config::cache::{valid_namespace, CacheConf};
use http::HeaderMap;

/// Which layers a request may be served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Both,
    /// `x-bf-cache-type: direct`: the exact layer only.
    Direct,
    /// `x-bf-cache-type: semantic`: the semantic layer only.
    Semantic,
}

/// A request's cache settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Directives {
    pub namespace: String,
    pub ttl_s: u64,
    /// The similarity a semantic neighbour needs (never below the config's).
    pub threshold: f64,
    pub layer: Layer,
    /// Look the request up (`false` with `Cache-Control: no-cache`: a refresh).
    pub read: bool,
    /// Store the answer (`false` with `x-bf-cache-no-store`).
    pub write: bool,
}

/// A malformed cache header: its name and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadHeader {
    pub header: &'static str,
    pub message: String,
}

fn bad(header: &'static str, message: impl Into<String>) -> BadHeader {
    BadHeader { header, message: message.into() }
}

/// `5`, `30s`, `5m`, `2h`, `1d`: seconds.
pub fn parse_ttl(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&s| s > 0)
}

/// The cache settings of a request with `headers`; `Ok(None)` when the
/// cache is not used for it (no namespace, or `Cache-Control: no-store`).
pub fn of(headers: &HeaderMap, conf: &CacheConf) -> Result<Option<Directives>, BadHeader> {
    let get = |n: &'static str| -> Result<Option<&str>, BadHeader> {
        match headers.get(n) {
            None => Ok(None),
            Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| bad(n, format!("{n} is not visible ASCII"))),
        }
    };
    let namespace = match get("x-bf-cache-key")? {
        Some(k) if !valid_namespace(k) => return Err(bad("x-bf-cache-key", "x-bf-cache-key must be 1 to 128 visible ASCII characters")),
        Some(k) => Some(k.to_string()),
        None => conf.default_key.clone(),
    };
    let ttl_s = match get("x-bf-cache-ttl")? {
        None => conf.ttl_s,
        Some(v) => parse_ttl(v).ok_or_else(|| bad("x-bf-cache-ttl", format!("x-bf-cache-ttl `{v}` is not a number of seconds or a duration such as 5m")))?.min(conf.max_ttl_s),
    };
    let base = conf.semantic.as_ref().map_or(1.0, |s| s.threshold);
    let threshold = match get("x-bf-cache-threshold")? {
        None => base,
        Some(v) => match v.parse::<f64>() {
            Ok(t) if (0.0..=1.0).contains(&t) => t.max(base),
            _ => return Err(bad("x-bf-cache-threshold", format!("x-bf-cache-threshold `{v}` is not a number between 0 and 1"))),
        },
    };
    let layer = match get("x-bf-cache-type")? {
        None => Layer::Both,
        Some(v) if v.eq_ignore_ascii_case("direct") => Layer::Direct,
        Some(v) if v.eq_ignore_ascii_case("semantic") => Layer::Semantic,
        Some(v) => return Err(bad("x-bf-cache-type", format!("x-bf-cache-type `{v}` is not direct or semantic"))),
    };
    let no_store = match get("x-bf-cache-no-store")? {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
        Some(v) => return Err(bad("x-bf-cache-no-store", format!("x-bf-cache-no-store `{v}` is not true or false"))),
    };
    let cc = headers.get_all("cache-control").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(|d| d.trim().to_ascii_lowercase()).collect::<Vec<_>>();
    if cc.iter().any(|d| d == "no-store") {
        return Ok(None);
    }
    let refresh = cc.iter().any(|d| d == "no-cache");
    Ok(namespace.map(|namespace| Directives { namespace, ttl_s, threshold, layer, read: !refresh, write: !no_store }))
}

/// Whose entries a request reads and writes: its virtual key's, or (direct
/// keys) a digest of the client's credential, or the gateway's own keys'
/// anonymous callers'. Never chosen by a cache header.
pub fn owner(virtual_key: Option<&str>, client_credential: Option<&str>) -> String {
    match (virtual_key, client_credential) {
        (Some(vk), _) => format!("vk:{vk}"),
        (None, Some(c)) => format!("cred:{}", super::key::digest(&["tollgate-cache-owner", c])),
        (None, None) => "anonymous".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cache::SemanticConf;

    fn conf() -> CacheConf {
        CacheConf { semantic: Some(SemanticConf { model: "openai/e".into(), threshold: 0.9, max_messages: 3 }), ..CacheConf::default() }
    }

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn a_namespace_turns_it_on_and_the_rest_is_read() {
        assert_eq!(of(&h(&[]), &conf()).unwrap(), None);
        let d = of(&h(&[("x-bf-cache-key", "faq"), ("x-bf-cache-ttl", "5m"), ("x-bf-cache-threshold", "0.97"), ("x-bf-cache-type", "semantic"), ("x-bf-cache-no-store", "true")]), &conf()).unwrap().unwrap();
        assert_eq!((d.namespace.as_str(), d.ttl_s, d.threshold, d.layer, d.read, d.write), ("faq", 300, 0.97, Layer::Semantic, true, false));
        let d = of(&h(&[("x-bf-cache-key", "faq"), ("x-bf-cache-threshold", "0.5"), ("x-bf-cache-ttl", "999999999")]), &conf()).unwrap().unwrap();
        assert_eq!(d.threshold, 0.9, "a request may raise the threshold, never lower it");
        assert_eq!(d.ttl_s, conf().max_ttl_s, "up to max_ttl_s");
        let d = of(&h(&[("x-bf-cache-key", "faq"), ("cache-control", "max-age=0, no-cache")]), &conf()).unwrap().unwrap();
        assert!(!d.read && d.write, "no-cache: a refresh");
        assert_eq!(of(&h(&[("x-bf-cache-key", "faq"), ("cache-control", "no-store")]), &conf()).unwrap(), None);
        let with_default = CacheConf { default_key: Some("shared".into()), ..conf() };
        assert_eq!(of(&h(&[]), &with_default).unwrap().unwrap().namespace, "shared");
    }

    #[test]
    fn malformed_headers_are_named() {
        for (name, v) in [("x-bf-cache-ttl", "soon"), ("x-bf-cache-ttl", "0"), ("x-bf-cache-ttl", "5y"), ("x-bf-cache-threshold", "1.5"), ("x-bf-cache-threshold", "x"), ("x-bf-cache-type", "fuzzy"), ("x-bf-cache-no-store", "maybe"), ("x-bf-cache-key", " ")] {
            let mut hs = vec![("x-bf-cache-key", "faq")];
            if name == "x-bf-cache-key" {
                hs.clear();
            }
            hs.push((name, v));
            let e = of(&h(&hs), &conf()).unwrap_err();
            assert_eq!(e.header, name, "{v}");
        }
    }

    #[test]
    fn owners_never_collide() {
        assert_ne!(owner(Some("a"), None), owner(None, Some("a")));
        assert_ne!(owner(None, Some("sk-1")), owner(None, Some("sk-2")));
        assert!(!owner(None, Some("sk-secret")).contains("sk-secret"));
        assert_eq!(owner(Some("team"), Some("sk-1")), "vk:team");
    }
}
