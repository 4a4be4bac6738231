//! A request's spans: the SERVER span (from the client's request to the
//! record) and the CLIENT span for the provider call, with the attributes
//! of the OpenTelemetry HTTP and GenAI semantic conventions plus
//! `tollgate.*`. Never a credential; prompt and completion text only when
//! `capture_content` is on (the caller checks).

use super::answer::Answer;
use super::content::{self, Budget};
use super::propagation;
use super::raw::{whole_answer, RawBody};
use crate::providers::{ApiFamily, Provider};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SdkTracer;
use std::time::SystemTime;

pub use super::content::MAX_CONTENT_BYTES;

/// The client's request as the server span first sees it.
pub struct Incoming<'a> {
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
    pub request_id: &'a str,
    pub client_ip: Option<String>,
    pub start: SystemTime,
}

/// The provider call, for the CLIENT span (same method as the client's).
pub struct Outgoing<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: u16,
    /// Path without the query (the query may carry a key).
    pub path: &'a str,
}

/// What the record knows when the request ends.
#[derive(Default)]
pub struct Finish<'a> {
    pub status: u16,
    /// The gateway's error kind (`upstream_timeout`, `virtual_key_invalid`,
    /// …) when the request failed or was refused.
    pub error: Option<&'a str>,
    pub response_model: Option<&'a str>,
    /// Input, output and cached input tokens, when the answer said.
    pub tokens: Option<(u64, u64, u64)>,
    pub finish_reasons: &'a [String],
    pub cost_usd: Option<f64>,
}

/// A request's spans.
pub struct RequestTrace {
    tracer: SdkTracer,
    method: String,
    /// Holds the server span.
    server: Context,
    /// Holds the client span, once the upstream call started.
    client: Option<Context>,
    /// GenAI attributes known before the call, copied onto the client span.
    genai: Vec<KeyValue>,
    operation: Option<&'static str>,
    model: Option<String>,
    attempts: u32,
    /// Finish reasons and (with `capture_content`) the answer's content.
    answer: Answer,
    /// Some captured content was cut.
    truncated: bool,
    /// Passthrough bodies read for content (`capture_content` only).
    raw_request: Option<RawBody>,
    request_read: bool,
    raw_response: Option<RawBody>,
}

impl RequestTrace {
    /// The SERVER span, child of the client's `traceparent` when it sent one.
    pub fn start(tracer: &SdkTracer, req: &Incoming<'_>) -> RequestTrace {
        Self::start_kind(tracer, req, SpanKind::Server)
    }

    /// An async job's execution (SPEC 9): a CONSUMER span, child of the
    /// submission's SERVER span when `submission` (its `traceparent` and
    /// `tracestate`, stored with the job) is given, so one trace holds the
    /// submission, the execution and its provider call.
    pub fn start_job(tracer: &SdkTracer, path: &str, request_id: &str, job_id: &str, submission: &[(String, String)]) -> RequestTrace {
        let mut h = http::HeaderMap::new();
        for (name, value) in submission {
            if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value)) {
                h.insert(n, v);
            }
        }
        let req = Incoming { method: "POST", path, headers: &h, request_id, client_ip: None, start: SystemTime::now() };
        let t = Self::start_kind(tracer, &req, SpanKind::Consumer);
        t.server.span().set_attribute(KeyValue::new("tollgate.async_job_id", job_id.to_string()));
        t
    }

    fn start_kind(tracer: &SdkTracer, req: &Incoming<'_>, kind: SpanKind) -> RequestTrace {
        let parent = propagation::extract(req.headers);
        let mut attrs = vec![
            KeyValue::new("http.request.method", req.method.to_string()),
            KeyValue::new("url.path", req.path.to_string()),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("tollgate.request_id", req.request_id.to_string()),
        ];
        if let Some(host) = req.headers.get("host").and_then(|v| v.to_str().ok()) {
            let (name, port) = split_host(host);
            attrs.push(KeyValue::new("server.address", name.to_string()));
            if let Some(p) = port {
                attrs.push(KeyValue::new("server.port", i64::from(p)));
            }
        }
        if let Some(ip) = &req.client_ip {
            attrs.push(KeyValue::new("client.address", ip.clone()));
        }
        if let Some(ua) = req.headers.get("user-agent").and_then(|v| v.to_str().ok()) {
            attrs.push(KeyValue::new("user_agent.original", truncate(ua, 256).to_string()));
        }
        let span = tracer
            .span_builder(req.method.to_string())
            .with_kind(kind)
            .with_start_time(req.start)
            .with_attributes(attrs)
            .start_with_context(tracer, &parent);
        RequestTrace {
            tracer: tracer.clone(),
            method: req.method.to_string(),
            server: parent.with_span(span),
            client: None,
            genai: Vec::new(),
            operation: None,
            model: None,
            attempts: 0,
            answer: Answer::new(super::capture_content()),
            truncated: false,
            raw_request: None,
            request_read: false,
            raw_response: None,
        }
    }

    /// The submission of async job `job_id` (its execution continues this
    /// trace).
    pub fn job_submitted(&self, job_id: &str) {
        self.server.span().set_attribute(KeyValue::new("tollgate.async_job_id", job_id.to_string()));
    }

    /// The route is known: the span is named `METHOD route` (a template,
    /// low cardinality).
    pub fn routed(&self, route: &str) {
        let span = self.server.span();
        span.update_name(format!("{} {route}", self.method));
        span.set_attribute(KeyValue::new("http.route", route.to_string()));
    }

    /// The provider, the GenAI operation (`chat`, `embeddings`, …) and the
    /// requested model, as far as known.
    pub fn target(&mut self, provider: Provider, operation: Option<&'static str>, model: Option<&str>) {
        let mut attrs = vec![
            KeyValue::new("gen_ai.system", gen_ai_system(provider)),
            KeyValue::new("gen_ai.provider.name", gen_ai_system(provider)),
            KeyValue::new("tollgate.provider", provider.name()),
        ];
        if let Some(op) = operation {
            attrs.push(KeyValue::new("gen_ai.operation.name", op));
        }
        if let Some(m) = model {
            attrs.push(KeyValue::new("gen_ai.request.model", truncate(m, 256).to_string()));
        }
        self.server.span().set_attributes(attrs.clone());
        self.genai = attrs;
        self.operation = operation;
        self.model = model.map(str::to_string);
    }

    /// Who called and with which provider key: names only.
    pub fn credentials(&self, virtual_key: Option<&str>, provider_key: Option<&str>) {
        let span = self.server.span();
        if let Some(vk) = virtual_key {
            span.set_attribute(KeyValue::new("tollgate.virtual_key", vk.to_string()));
        }
        if let Some(k) = provider_key {
            span.set_attribute(KeyValue::new("tollgate.provider_key", k.to_string()));
            if let Some(c) = &self.client {
                c.span().set_attribute(KeyValue::new("tollgate.provider_key", k.to_string()));
            }
        }
    }

    /// An attempt to reach the provider: the CLIENT span starts with the
    /// first; later ones (connect retries) are `retry` events on it.
    pub fn upstream_attempt(&mut self, out: &Outgoing<'_>) {
        self.attempts += 1;
        if let Some(c) = &self.client {
            c.span().add_event(
                "retry",
                vec![KeyValue::new("tollgate.attempt", i64::from(self.attempts)), KeyValue::new("server.address", out.host.to_string())],
            );
            return;
        }
        let name = match (self.operation, self.model.as_deref().filter(|m| plain_model(m))) {
            (Some(op), Some(m)) => format!("{op} {m}"),
            (Some(op), None) => op.to_string(),
            (None, _) => self.method.clone(),
        };
        let mut attrs = self.genai.clone();
        attrs.extend([
            KeyValue::new("http.request.method", self.method.clone()),
            KeyValue::new("server.address", out.host.to_string()),
            KeyValue::new("server.port", i64::from(out.port)),
            KeyValue::new("url.full", format!("{}://{}{}", out.scheme, authority(out), out.path)),
        ]);
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &self.server);
        self.client = Some(self.server.with_span(span));
    }

    /// The routing loop moves on to another attempt (SPEC 10): this
    /// attempt's CLIENT span ends with its error, and the next attempt
    /// starts a span of its own.
    pub fn attempt_failed(&mut self, error: &str) {
        if let Some(c) = self.client.take() {
            let span = c.span();
            span.set_attribute(KeyValue::new("error.type", error.to_string()));
            span.set_status(Status::error(error.to_string()));
            span.end();
        }
    }

    /// An event on the CLIENT span (`connected`, `connect_failed`, …).
    pub fn upstream_event(&self, name: &'static str, attrs: Vec<KeyValue>) {
        if let Some(c) = &self.client {
            c.span().add_event(name, attrs);
        }
    }

    /// A connection to the provider is ready (new or from the pool).
    pub fn connected(&self, reused: bool) {
        self.upstream_event("connected", vec![KeyValue::new("tollgate.connection_reused", reused)]);
    }

    /// A connection attempt failed (nothing was sent; it may be retried).
    pub fn connect_failed(&self, error: &str) {
        self.upstream_event("connect_failed", vec![KeyValue::new("error.type", error.to_string())]);
    }

    /// The provider's response head arrived.
    pub fn upstream_response(&self, status: u16) {
        if let Some(c) = &self.client {
            let span = c.span();
            span.add_event("first_byte", vec![]);
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
            if status >= 400 {
                span.set_attribute(KeyValue::new("error.type", status.to_string()));
                span.set_status(Status::error(format!("provider answered {status}")));
            }
        }
    }

    /// `traceparent`/`tracestate` for the provider: the CLIENT span's
    /// context (the SERVER span's before the call started).
    pub fn propagation_headers(&self) -> Vec<(&'static str, String)> {
        propagation::headers_for(self.client.as_ref().unwrap_or(&self.server))
    }

    /// The request's prompt as `gen_ai.input.messages` (see
    /// [`content`]). Only with `capture_content` on (checked here).
    pub fn input(&mut self, family: ApiFamily, body: &serde_json::Value) {
        if !self.answer.capture() {
            return;
        }
        let mut budget = Budget::default();
        if let Some(msgs) = content::input_messages(family, body, &mut budget) {
            self.server.span().set_attribute(KeyValue::new("gen_ai.input.messages", msgs.to_string()));
        }
        self.truncated |= budget.truncated;
    }

    /// Capture content (`capture_content` is on)?
    pub fn captures(&self) -> bool {
        self.answer.capture()
    }

    /// The answer, fed as it arrives: finish reasons, and content when
    /// captured.
    pub fn answer(&mut self) -> &mut Answer {
        &mut self.answer
    }

    /// A passthrough request body chunk of API `family`, read for content
    /// with `capture_content` on (nothing happens otherwise).
    pub fn request_body(&mut self, family: Option<ApiFamily>, chunk: Option<&[u8]>, end: bool) {
        let Some(family) = family.filter(|_| self.answer.capture() && !self.request_read) else { return };
        let raw = self.raw_request.get_or_insert_with(|| RawBody::request(family));
        if let Some(c) = chunk {
            raw.feed(c, &mut self.answer);
        }
        if end {
            self.request_read = true;
            if let Some(raw) = self.raw_request.take() {
                match raw.finish(&mut self.answer) {
                    Ok(Some(v)) => self.input(family, &v),
                    Ok(None) => {}
                    Err(_) => self.truncated = true,
                }
            }
        }
    }

    /// A passthrough (or OpenAI-shaped `/openai`) answer of API `family`
    /// starts: read it for content with `capture_content` on.
    pub fn response_start(&mut self, family: Option<ApiFamily>, content_type: Option<&str>, content_encoding: Option<&str>) {
        if self.answer.capture() {
            self.raw_response = family.and_then(|f| RawBody::response(f, content_type, content_encoding));
        }
    }

    /// A chunk of that answer (nothing when it is not read).
    pub fn response_body(&mut self, chunk: Option<&[u8]>, end: bool) {
        let Some(raw) = self.raw_response.as_mut() else { return };
        if let Some(c) = chunk {
            raw.feed(c, &mut self.answer);
        }
        if end {
            if let Some(raw) = self.raw_response.take() {
                let family = raw.family();
                match raw.finish(&mut self.answer) {
                    Ok(Some(v)) => whole_answer(family, &v, &mut self.answer),
                    Ok(None) => {}
                    Err(_) => self.truncated = true,
                }
            }
        }
    }

    /// The trace id, hex (tests and logs).
    pub fn trace_id(&self) -> String {
        self.server.span().span_context().trace_id().to_string()
    }

    /// End both spans with what the record knows.
    pub fn finish(self, f: &Finish<'_>) {
        let mut attrs = vec![KeyValue::new("http.response.status_code", i64::from(f.status))];
        let mut genai = Vec::new();
        if let Some(m) = f.response_model {
            genai.push(KeyValue::new("gen_ai.response.model", truncate(m, 256).to_string()));
        }
        if let Some((input, output, cached)) = f.tokens {
            genai.push(KeyValue::new("gen_ai.usage.input_tokens", input as i64));
            genai.push(KeyValue::new("gen_ai.usage.output_tokens", output as i64));
            if cached > 0 {
                genai.push(KeyValue::new("gen_ai.usage.cache_read.input_tokens", cached as i64));
            }
        }
        let seen = self.answer.finish_reasons();
        let reasons = if f.finish_reasons.is_empty() { &seen } else { f.finish_reasons };
        if !reasons.is_empty() {
            let reasons: Vec<StringValue> = reasons.iter().map(|r| StringValue::from(r.clone())).collect();
            genai.push(KeyValue::new("gen_ai.response.finish_reasons", Value::Array(Array::String(reasons))));
        }
        if let Some(c) = f.cost_usd {
            attrs.push(KeyValue::new("tollgate.cost_usd", c));
        }
        attrs.extend(genai.iter().cloned());
        if let Some(out) = self.answer.output_messages() {
            attrs.push(KeyValue::new("gen_ai.output.messages", out));
        }
        if self.truncated || self.answer.truncated() {
            attrs.push(KeyValue::new("tollgate.content_truncated", true));
        }
        let error = f.error.map(str::to_string).or_else(|| (f.status >= 500).then(|| f.status.to_string()));
        if let Some(c) = self.client {
            let span = c.span();
            span.set_attributes(genai);
            if let Some(e) = &error {
                span.set_attribute(KeyValue::new("error.type", e.clone()));
                span.set_status(Status::error(e.clone()));
            }
            span.end();
        }
        let span = self.server.span();
        span.set_attributes(attrs);
        if let Some(e) = error {
            span.set_attribute(KeyValue::new("error.type", e.clone()));
            span.set_status(Status::error(e));
        }
        span.end();
    }
}

/// `gen_ai.system` / `gen_ai.provider.name` per the GenAI conventions.
pub fn gen_ai_system(p: Provider) -> &'static str {
    match p {
        Provider::OpenAi => "openai",
        Provider::Anthropic => "anthropic",
        Provider::Azure => "azure.ai.openai",
        Provider::Gemini => "gcp.gemini",
        Provider::Vertex => "gcp.vertex_ai",
        Provider::Ollama => "ollama",
        Provider::Compatible(_) => p.name(),
    }
}

/// `gen_ai.operation.name` for a provider-native path, when it is a GenAI
/// call at all (`/v1/models` or `/v1/files` are not).
pub fn operation_for(path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    let last = path.rsplit('/').next().unwrap_or("");
    let action = last.rsplit_once(':').map(|(_, a)| a);
    match action {
        Some("generateContent" | "streamGenerateContent") => return Some("generate_content"),
        Some("embedContent" | "batchEmbedContents" | "predict") => return Some("embeddings"),
        Some(_) => return None,
        None => {}
    }
    if path.ends_with("/chat/completions") || path.ends_with("/messages") && !path.contains("/threads/") || path.ends_with("/responses") {
        Some("chat")
    } else if path.ends_with("/completions") {
        Some("text_completion")
    } else if path.ends_with("/embeddings") {
        Some("embeddings")
    } else {
        None
    }
}

/// Segments that name a collection: the segment after one is an id.
const COLLECTIONS: &[&str] = &[
    "projects", "locations", "publishers", "models", "deployments", "files", "batches", "assistants", "threads", "runs",
    "steps", "messages", "vector_stores", "responses", "jobs", "uploads", "parts", "cachedContents", "tunedModels",
    "operations", "endpoints", "containers", "conversations", "items", "completions", "evals", "fine_tuning",
];

/// A low-cardinality template of `prefix` + `remainder`: ids, models and
/// anything that looks generated become `{id}`; a Gemini `:action` stays.
pub fn route_template(prefix: &str, remainder: &str) -> String {
    let path = remainder.split('?').next().unwrap_or(remainder);
    let mut out = String::from(prefix);
    let mut after_collection = false;
    for (i, seg) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
        if i >= 12 {
            out.push_str("/…");
            break;
        }
        let (name, action) = match seg.split_once(':') {
            Some((n, a)) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphabetic()) => (n, Some(a)),
            _ => (seg, None),
        };
        let literal = !after_collection && (is_version(name) || (name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')));
        out.push('/');
        out.push_str(if literal { name } else { "{id}" });
        if let Some(a) = action {
            out.push(':');
            out.push_str(a);
        }
        // `/chat/completions` is an endpoint; `/chat/completions/{id}` is one.
        after_collection = literal && COLLECTIONS.contains(&name);
    }
    if out == prefix {
        out.push('/');
    }
    out
}

fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else { return false };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(&rest[digits..], "" | "alpha" | "beta" | "beta1" | "alpha1" | "beta2")
}

fn plain_model(m: &str) -> bool {
    m.len() <= 64 && m.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-@/".contains(&b))
}

fn split_host(host: &str) -> (&str, Option<u16>) {
    if host.starts_with('[') {
        return match host.rsplit_once("]:") {
            Some((h, p)) => (h.trim_start_matches('['), p.parse().ok()),
            None => (host.trim_start_matches('[').trim_end_matches(']'), None),
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()),
        None => (host, None),
    }
}

fn authority(out: &Outgoing<'_>) -> String {
    let default = matches!((out.scheme, out.port), ("https", 443) | ("http", 80));
    let host = if out.host.contains(':') { format!("[{}]", out.host) } else { out.host.to_string() };
    if default {
        host
    } else {
        format!("{host}:{}", out.port)
    }
}

/// `s` cut at `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[path = "span_tests.rs"]
mod tests;
