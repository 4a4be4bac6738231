//! W3C trace context (`traceparent`, `tracestate`): read from the client's
//! request, written on the provider's.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

struct HeaderReader<'a>(&'a http::HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The client's trace context: a remote parent when it sent a valid
/// `traceparent`, else an empty context (a new trace starts).
pub fn extract(headers: &http::HeaderMap) -> Context {
    if !headers.contains_key(TRACEPARENT) {
        return Context::new();
    }
    let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), &HeaderReader(headers));
    if cx.span().span_context().is_valid() {
        cx
    } else {
        Context::new()
    }
}

#[derive(Default)]
struct Pairs(Vec<(&'static str, String)>);

impl Injector for Pairs {
    fn set(&mut self, key: &str, value: String) {
        let key = match key {
            TRACEPARENT => TRACEPARENT,
            TRACESTATE => TRACESTATE,
            _ => return,
        };
        self.0.push((key, value));
    }
}

/// The headers that carry `cx`'s span to the next hop: `traceparent`, and
/// `tracestate` when the trace has one.
pub fn headers_for(cx: &Context) -> Vec<(&'static str, String)> {
    let mut out = Pairs::default();
    TraceContextPropagator::new().inject_context(cx, &mut out);
    out.0.retain(|(k, v)| *k == TRACEPARENT || !v.is_empty());
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    fn map(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn continues_a_valid_traceparent_with_its_state() {
        let h = map(&[
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("tracestate", "vendor=abc"),
        ]);
        let cx = extract(&h);
        let sc = cx.span().span_context().clone();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_state().header(), "vendor=abc");
    }

    #[test]
    fn ignores_absent_or_invalid_traceparent() {
        for h in [
            map(&[]),
            map(&[("traceparent", "garbage")]),
            map(&[("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")]),
            map(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")]),
        ] {
            assert!(!extract(&h).span().span_context().is_valid(), "{h:?}");
        }
    }

    #[test]
    fn writes_traceparent_and_state_of_the_given_span() {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("a1b2c3d4e5f60718").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("vendor", "abc")]).unwrap(),
        );
        let cx = Context::new().with_remote_span_context(sc);
        let h = headers_for(&cx);
        assert_eq!(
            h,
            vec![
                ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-a1b2c3d4e5f60718-01".to_string()),
                ("tracestate", "vendor=abc".to_string())
            ]
        );
        // No state: only traceparent; an unsampled span says so.
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("a1b2c3d4e5f60718").unwrap(),
            TraceFlags::default(),
            false,
            TraceState::default(),
        );
        let h = headers_for(&Context::new().with_remote_span_context(sc));
        assert_eq!(h, vec![("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-a1b2c3d4e5f60718-00".to_string())]);
        assert!(headers_for(&Context::new()).is_empty(), "no span, nothing to propagate");
    }
}
