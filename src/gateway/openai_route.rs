//! Routing at admission (SPEC 10): the request's own `fallbacks` taken out
//! of the body and checked, an alias's candidates, and the answer headers
//! that say who answered. The decisions are `crate::routing`'s; the loop
//! that tries the candidates is `openai_attempts`.

use super::sink::Sink;
use crate::config::routing::parse_target;
use crate::providers::Provider;
use crate::routes::openai as route;
use crate::routing::{Candidate, Origin, Target};
use crate::translate::TranslateError;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where an admitted request may go, kept with it (an async job runs it
/// later): the alias it named, if any, and its candidates in the order
/// written, the virtual key's disallowed ones already left out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct RoutePlan {
    pub alias: Option<String>,
    pub candidates: Vec<Candidate>,
    /// The candidates are in the order to try (decided at admission for a
    /// request that runs at once); otherwise the order is decided when it
    /// runs (an async job).
    #[serde(default)]
    pub ordered: bool,
}

/// The request's `fallbacks` (SPEC 10), removed from the body: at most
/// `max` entries, each `provider/model` with a configured provider.
pub(super) fn take_fallbacks(req: &mut Value, max: usize, known: &dyn Fn(&str) -> bool) -> Result<Vec<String>, TranslateError> {
    let Some(raw) = req.as_object_mut().and_then(|o| o.remove("fallbacks")) else { return Ok(Vec::new()) };
    let bad = |m: String| TranslateError::invalid("fallbacks", m);
    let list = match raw {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(bad("`fallbacks` must be an array of \"provider/model\" strings".into())),
    };
    if list.len() > max {
        return Err(bad(format!("`fallbacks` has {} entries; at most {max} are allowed (routing.max_fallbacks)", list.len())));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.into_iter().enumerate() {
        let Value::String(s) = v else {
            return Err(bad(format!("fallbacks[{i}] must be a \"provider/model\" string")));
        };
        let (provider, model) = parse_target(&s, known).map_err(|m| bad(format!("fallbacks[{i}]: {m}")))?;
        let shaped = Provider::from_name(provider).is_some_and(Provider::openai_shaped);
        if !shaped && !route::valid_model_segment(model) {
            return Err(bad(format!("fallbacks[{i}]: `{model}` is not a valid {provider} model name")));
        }
        out.push(s);
    }
    Ok(out)
}

/// A `provider/model` (or bare model, meaning OpenAI) as a target.
pub(super) fn split_target(m: &str, configured: &dyn Fn(Provider) -> bool) -> Target {
    let (p, native) = route::split_model(m, configured);
    Target { provider: p.name().to_string(), model: native.to_string() }
}

/// The candidates when a job stored before routing names only one target.
pub(super) fn single(provider: &str, model: &str) -> Vec<Candidate> {
    vec![Candidate { target: Target { provider: provider.to_string(), model: model.to_string() }, origin: Origin::Primary, weight: 1.0 }]
}

/// Who answered (SPEC 10), on every `/openai` answer.
#[derive(Debug, Clone, Default)]
pub(super) struct Answered {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub attempts: u32,
    pub fallback_index: usize,
}

impl Answered {
    pub fn apply(&self, head: &mut ResponseHeader) -> Result<()> {
        if let Some(p) = &self.provider {
            head.insert_header("x-tollgate-provider", p.as_str())?;
        }
        // A model name that is not a header value is left out. Values
        // made once and handed over (a string would be checked and copied
        // again by `insert_header`).
        if let Some(Ok(m)) = self.model.as_deref().map(http::HeaderValue::from_str) {
            head.insert_header("x-tollgate-model", m)?;
        }
        head.insert_header("x-tollgate-attempts", http::HeaderValue::from(self.attempts))?;
        head.insert_header("x-tollgate-fallback-index", http::HeaderValue::from(self.fallback_index))?;
        Ok(())
    }
}

/// A sink that adds the who-answered headers to the head it passes on.
pub(super) struct Tagged<'a> {
    pub inner: &'a mut dyn Sink,
    pub tags: Answered,
}

#[async_trait]
impl Sink for Tagged<'_> {
    async fn head(&mut self, mut head: ResponseHeader) -> Result<()> {
        self.tags.apply(&mut head)?;
        self.inner.head(head).await
    }
    async fn body(&mut self, data: Option<Bytes>, end: bool) -> Result<()> {
        self.inner.body(data, end).await
    }
    async fn gone(&mut self) {
        self.inner.gone().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn known(p: &str) -> bool {
        matches!(p, "openai" | "anthropic" | "gemini")
    }

    #[test]
    fn fallbacks_are_removed_and_checked() {
        let mut req = json!({"model": "x", "fallbacks": ["anthropic/claude-3", "openai/gpt-4o"]});
        assert_eq!(take_fallbacks(&mut req, 4, &known).unwrap(), ["anthropic/claude-3", "openai/gpt-4o"]);
        assert!(req.get("fallbacks").is_none(), "removed before the request leaves");
        let mut none = json!({"model": "x"});
        assert!(take_fallbacks(&mut none, 4, &known).unwrap().is_empty());
        for bad in [json!("openai/x"), json!([1]), json!(["gpt-4o"]), json!(["azure/x"]), json!(["gemini/a b"]), json!(["gemini/../x"]), json!(["a/1", "a/2", "a/3"])] {
            let mut req = json!({"model": "x", "fallbacks": bad.clone()});
            let e = take_fallbacks(&mut req, 2, &known).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some("fallbacks")), "{bad}");
        }
    }

    #[test]
    fn the_headers_say_who_answered() {
        let mut h = ResponseHeader::build(200, None).unwrap();
        Answered { provider: Some("anthropic".into()), model: Some("claude-3".into()), attempts: 2, fallback_index: 1 }.apply(&mut h).unwrap();
        let get = |n: &str| h.headers.get(n).unwrap().to_str().unwrap().to_string();
        assert_eq!((get("x-tollgate-provider"), get("x-tollgate-model"), get("x-tollgate-attempts"), get("x-tollgate-fallback-index")), ("anthropic".into(), "claude-3".into(), "2".into(), "1".into()));
    }
}
