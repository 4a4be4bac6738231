//! Prometheus metrics (SPEC 6), prefix `tollgate_`, in the default registry
//! that Pingora's Prometheus service exposes on `metrics_listen`.
//!
//! Label values are bounded: providers, routes, methods and statuses come
//! from fixed sets; models and virtual keys fold into `other` past a cap.

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge, register_int_gauge_vec, register_counter_vec, register_gauge_vec, GaugeVec, IntGaugeVec,
    CounterVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

/// Buckets from 5 ms to 15 min.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    900.0,
];
/// Gateway overhead is small: 10 µs to 1 s.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0,
];

/// Distinct models tracked per label before folding into `other`.
pub const MODEL_LABEL_CAP: usize = 200;

pub struct Metrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub ttfb: HistogramVec,
    pub overhead: HistogramVec,
    pub in_flight: IntGauge,
    pub upstream_errors: IntCounterVec,
    /// `/openai` attempts by provider, model and outcome (SPEC 10).
    pub route_attempts: IntCounterVec,
    /// Response cache lookups by result, and what hits saved (SPEC 11).
    pub cache_lookups: IntCounterVec,
    pub cache_saved_tokens: IntCounter,
    pub cache_saved_usd: prometheus::Counter,
    pub request_bytes: IntCounterVec,
    pub response_bytes: IntCounterVec,
    pub input_tokens: IntCounterVec,
    pub output_tokens: IntCounterVec,
    pub cached_tokens: IntCounterVec,
    pub cache_write_tokens: IntCounterVec,
    pub cost: CounterVec,
    pub vk_rejections: IntCounterVec,
    pub key_healthy: IntGaugeVec,
    pub vk_spend: GaugeVec,
    pub vk_budget: GaugeVec,
    pub config_reloads: IntCounterVec,
    pub redis_errors: IntCounterVec,
    pub otel_spans_dropped: IntCounterVec,
    pub otel_spans_exported: IntCounter,
    models: LabelCap,
}

/// Keeps at most `cap` distinct values; others become `other`.
pub struct LabelCap {
    cap: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelCap {
    pub fn new(cap: usize) -> Self {
        LabelCap { cap, seen: Mutex::new(HashSet::new()) }
    }

    pub fn label(&self, v: &str) -> String {
        if v.is_empty() || v.len() > 128 {
            return "other".into();
        }
        let mut seen = self.seen.lock().expect("label cap lock");
        if seen.contains(v) {
            return v.to_string();
        }
        if seen.len() < self.cap {
            seen.insert(v.to_string());
            return v.to_string();
        }
        "other".into()
    }
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    requests: register_int_counter_vec!(
        "tollgate_requests_total",
        "Requests answered, by provider, route, method and status",
        &["provider", "route", "method", "status"]
    )
    .expect("register"),
    duration: register_histogram_vec!(
        "tollgate_request_duration_seconds",
        "Time from request start to the last response byte",
        &["provider"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register"),
    ttfb: register_histogram_vec!(
        "tollgate_ttfb_seconds",
        "Time from request start to the first response byte from the provider",
        &["provider"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register"),
    overhead: register_histogram_vec!(
        "tollgate_gateway_overhead_seconds",
        "Time spent in the gateway itself (routing, key selection, header work), excluding upstream and client waits",
        &["provider"],
        OVERHEAD_BUCKETS.to_vec()
    )
    .expect("register"),
    in_flight: register_int_gauge!("tollgate_requests_in_flight", "Requests being processed")
        .expect("register"),
    upstream_errors: register_int_counter_vec!(
        "tollgate_upstream_errors_total",
        "Upstream failures by provider and kind (unreachable, timeout, error)",
        &["provider", "kind"]
    )
    .expect("register"),
    route_attempts: register_int_counter_vec!(
        "tollgate_route_attempts_total",
        "/openai attempts by provider, model and outcome (answered, connect, timeout, status_NNN, unsendable)",
        &["provider", "model", "outcome"]
    )
    .expect("register"),
    cache_lookups: register_int_counter_vec!(
        "tollgate_cache_lookups_total",
        "/openai response cache lookups by result (hit, semantic-hit, miss, refresh; bypass: Redis unreachable)",
        &["result"]
    )
    .expect("register"),
    cache_saved_tokens: prometheus::register_int_counter!("tollgate_cache_saved_tokens_total", "Tokens cache hits did not spend").expect("register"),
    cache_saved_usd: prometheus::register_counter!("tollgate_cache_saved_usd_total", "USD cache hits did not spend").expect("register"),
    request_bytes: register_int_counter_vec!(
        "tollgate_request_bytes_total",
        "Request body bytes received from clients",
        &["provider"]
    )
    .expect("register"),
    response_bytes: register_int_counter_vec!(
        "tollgate_response_bytes_total",
        "Response body bytes sent to clients",
        &["provider"]
    )
    .expect("register"),
    input_tokens: register_int_counter_vec!(
        "tollgate_input_tokens_total",
        "Input (prompt) tokens reported by providers",
        &["provider", "model", "virtual_key"]
    )
    .expect("register"),
    output_tokens: register_int_counter_vec!(
        "tollgate_output_tokens_total",
        "Output (completion) tokens reported by providers",
        &["provider", "model", "virtual_key"]
    )
    .expect("register"),
    cached_tokens: register_int_counter_vec!(
        "tollgate_cached_tokens_total",
        "Cached input tokens reported by providers",
        &["provider", "model", "virtual_key"]
    )
    .expect("register"),
    cache_write_tokens: register_int_counter_vec!(
        "tollgate_cache_write_tokens_total",
        "Input tokens written to a prompt cache, reported by providers (part of the input tokens)",
        &["provider", "model", "virtual_key"]
    )
    .expect("register"),
    cost: register_counter_vec!(
        "tollgate_cost_usd_total",
        "Cost in USD computed from tokens and the price table",
        &["provider", "model", "virtual_key"]
    )
    .expect("register"),
    vk_rejections: register_int_counter_vec!(
        "tollgate_virtual_key_rejections_total",
        "Requests refused by virtual key checks, by reason",
        &["reason"]
    )
    .expect("register"),
    key_healthy: register_int_gauge_vec!(
        "tollgate_provider_key_healthy",
        "1 while a configured provider key is in rotation, 0 while it rests after a 401/403/429",
        &["provider", "key"]
    )
    .expect("register"),
    vk_spend: register_gauge_vec!(
        "tollgate_virtual_key_spend_usd",
        "USD spent by a virtual key in its current budget period",
        &["virtual_key"]
    )
    .expect("register"),
    vk_budget: register_gauge_vec!(
        "tollgate_virtual_key_budget_usd",
        "A virtual key's budget in USD per period (0 when it has none)",
        &["virtual_key"]
    )
    .expect("register"),
    config_reloads: register_int_counter_vec!(
        "tollgate_config_reloads_total",
        "Configuration reloads on SIGHUP by result (success, failure: the running configuration was kept)",
        &["result"]
    )
    .expect("register"),
    redis_errors: register_int_counter_vec!(
        "tollgate_redis_errors_total",
        "Failed calls to the shared-counter Redis by operation (admit, record); local counters were used instead",
        &["op"]
    )
    .expect("register"),
    otel_spans_dropped: {
        let v = register_int_counter_vec!(
            "tollgate_otel_spans_dropped_total",
            "Trace spans not exported, by reason (queue_full: the export queue was full; export_failed: the collector did not take the batch)",
            &["reason"]
        )
        .expect("register");
        // Both series exist from the start (0), for alerts on their rate.
        for reason in ["queue_full", "export_failed"] {
            v.with_label_values(&[reason]);
        }
        v
    },
    otel_spans_exported: register_int_counter!(
        "tollgate_otel_spans_exported_total",
        "Trace spans the OTLP collector accepted"
    )
    .expect("register"),
    models: LabelCap::new(MODEL_LABEL_CAP),
});

impl Metrics {
    pub fn model_label(&self, model: Option<&str>) -> String {
        match model {
            Some(m) => self.models.label(m),
            None => "unknown".into(),
        }
    }
}

/// The per-provider series every proxied request touches, resolved once per
/// thread: a labelled lookup hashes the label values and takes the family's
/// lock, which five lookups a request would otherwise do. None of these
/// series is ever removed, so a cached handle stays the exported one.
pub struct ProviderSeries {
    pub duration: Histogram,
    pub ttfb: Histogram,
    pub overhead: Histogram,
    pub request_bytes: IntCounter,
    pub response_bytes: IntCounter,
}

type RequestKey = (&'static str, &'static str, &'static str, u16);

/// The token and cost series of one (provider, model, virtual key).
pub struct TokenSeries {
    pub input: IntCounter,
    pub output: IntCounter,
    pub cached: IntCounter,
    pub cache_write: IntCounter,
    pub cost: prometheus::Counter,
}

/// Token series cached per thread, keyed by the model as the answer named
/// it (before the label cap folds it into `other`); the cache is emptied
/// when it holds this many, so models never seen again do not accumulate.
const TOKEN_SERIES_CACHE: usize = 1024;

thread_local! {
    static PROVIDER_SERIES: RefCell<HashMap<&'static str, ProviderSeries>> = RefCell::new(HashMap::new());
    static REQUEST_SERIES: RefCell<HashMap<RequestKey, IntCounter>> = RefCell::new(HashMap::new());
    static TOKEN_SERIES: RefCell<TokenCache> = RefCell::new(TokenCache::default());
}

/// provider → virtual key → model (`\0` when unknown) → series, looked up by
/// `&str` without allocating; `len` counts the series held.
#[derive(Default)]
struct TokenCache {
    by: HashMap<&'static str, HashMap<String, HashMap<String, TokenSeries>>>,
    len: usize,
}

impl Metrics {
    /// Run `f` with the series of provider `label`.
    pub fn with_provider<R>(&self, label: &'static str, f: impl FnOnce(&ProviderSeries) -> R) -> R {
        PROVIDER_SERIES.with(|cache| {
            let mut cache = cache.borrow_mut();
            let series = cache.entry(label).or_insert_with(|| ProviderSeries {
                duration: self.duration.with_label_values(&[label]),
                ttfb: self.ttfb.with_label_values(&[label]),
                overhead: self.overhead.with_label_values(&[label]),
                request_bytes: self.request_bytes.with_label_values(&[label]),
                response_bytes: self.response_bytes.with_label_values(&[label]),
            });
            f(series)
        })
    }

    /// Run `f` with the token and cost series of (provider, model, virtual
    /// key); `model` goes through the label cap the first time a thread
    /// sees it. Four labelled lookups and the cap's lock a request before.
    pub fn with_tokens<R>(&self, provider: &'static str, model: Option<&str>, virtual_key: &str, f: impl FnOnce(&TokenSeries) -> R) -> R {
        TOKEN_SERIES.with(|cache| {
            let cache = &mut *cache.borrow_mut();
            let model_key = model.unwrap_or("\0");
            if let Some(series) = cache.by.get(provider).and_then(|v| v.get(virtual_key)).and_then(|m| m.get(model_key)) {
                return f(series);
            }
            if cache.len >= TOKEN_SERIES_CACHE {
                *cache = TokenCache::default();
            }
            let m = self.model_label(model);
            let labels = [provider, m.as_str(), virtual_key];
            let series = TokenSeries {
                input: self.input_tokens.with_label_values(&labels),
                output: self.output_tokens.with_label_values(&labels),
                cached: self.cached_tokens.with_label_values(&labels),
                cache_write: self.cache_write_tokens.with_label_values(&labels),
                cost: self.cost.with_label_values(&labels),
            };
            cache.len += 1;
            let by_model = cache.by.entry(provider).or_default().entry(virtual_key.to_string()).or_default();
            f(by_model.entry(model_key.to_string()).or_insert(series))
        })
    }

    /// Count one request in `tollgate_requests_total`.
    pub fn count_request(&self, provider: &'static str, route: &'static str, method: &'static str, status: u16) {
        REQUEST_SERIES.with(|cache| {
            cache
                .borrow_mut()
                .entry((provider, route, method, status))
                .or_insert_with(|| self.requests.with_label_values(&[provider, route, method, &status.to_string()]))
                .inc()
        })
    }
}

/// Bounded label for an HTTP method.
pub fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Serves the registry as Prometheus text at `/metrics` on `metrics_listen`.
pub struct MetricsApp;

#[async_trait::async_trait]
impl pingora::apps::http_app::ServeHttp for MetricsApp {
    async fn response(&self, session: &mut pingora::protocols::http::ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        let (status, ctype, body) = if path == "/metrics" {
            use prometheus::Encoder;
            LazyLock::force(&METRICS);
            let mut buf = Vec::new();
            match prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut buf) {
                Ok(()) => (200, prometheus::TEXT_FORMAT, buf),
                Err(e) => (500, "text/plain", e.to_string().into_bytes()),
            }
        } else {
            (404, "text/plain", b"not found; metrics are at /metrics\n".to_vec())
        };
        http::Response::builder()
            .status(status)
            .header("content-type", ctype)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_series_are_cached_per_thread_and_count_in_the_registry() {
        let labels = ["openai", "gpt-test-cache", "vk-cache"];
        let before = METRICS.input_tokens.with_label_values(&labels).get();
        for _ in 0..3 {
            METRICS.with_tokens("openai", Some("gpt-test-cache"), "vk-cache", |s| s.input.inc_by(5));
        }
        assert_eq!(METRICS.input_tokens.with_label_values(&labels).get() - before, 15);
        // An unknown model is its own series, labelled `unknown`.
        METRICS.with_tokens("openai", None, "vk-cache", |s| s.output.inc_by(2));
        assert!(METRICS.output_tokens.with_label_values(&["openai", "unknown", "vk-cache"]).get() >= 2);
        // Past the cache's bound it starts again, and the series still count.
        for i in 0..TOKEN_SERIES_CACHE + 3 {
            METRICS.with_tokens("anthropic", Some("m-cache"), &format!("vk-many-{i}"), |s| s.cached.inc());
        }
        METRICS.with_tokens("openai", Some("gpt-test-cache"), "vk-cache", |s| s.input.inc_by(1));
        assert_eq!(METRICS.input_tokens.with_label_values(&labels).get() - before, 16);
        TOKEN_SERIES.with(|c| assert!(c.borrow().len <= TOKEN_SERIES_CACHE));
    }

    #[test]
    fn label_cap_folds_into_other() {
        let c = LabelCap::new(2);
        assert_eq!(c.label("a"), "a");
        assert_eq!(c.label("b"), "b");
        assert_eq!(c.label("c"), "other");
        assert_eq!(c.label("a"), "a");
        assert_eq!(c.label(""), "other");
    }

    #[test]
    fn methods_bounded() {
        assert_eq!(method_label("POST"), "POST");
        assert_eq!(method_label("BREW"), "other");
    }
}
