use super::*;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

fn tracer() -> (SdkTracerProvider, SdkTracer, Collect) {
    let c = Collect::default();
    let p = SdkTracerProvider::builder().with_simple_exporter(c.clone()).build();
    let t = opentelemetry::trace::TracerProvider::tracer(&p, "test");
    (p, t, c)
}

fn attr<'a>(s: &'a SpanData, k: &str) -> Option<&'a Value> {
    s.attributes.iter().find(|kv| kv.key.as_str() == k).map(|kv| &kv.value)
}

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    h
}

#[test]
fn server_and_client_spans_with_genai_attributes() {
    let (_p, t, c) = tracer();
    let h = headers(&[
        ("host", "gw.local:8080"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("authorization", "Bearer sk-secret"),
    ]);
    let req = Incoming { method: "POST", path: "/openai_passthrough/v1/chat/completions", headers: &h, request_id: "rid-1", client_ip: Some("127.0.0.1".into()), start: SystemTime::now() };
    let mut tr = RequestTrace::start(&t, &req);
    tr.routed("/openai_passthrough/v1/chat/completions");
    tr.target(Provider::OpenAi, Some("chat"), Some("gpt-4o-mini"));
    tr.credentials(Some("team-a"), Some("main"));
    tr.upstream_attempt(&Outgoing { scheme: "https", host: "api.openai.com", port: 443, path: "/v1/chat/completions" });
    let prop = tr.propagation_headers();
    tr.upstream_attempt(&Outgoing { scheme: "https", host: "api.openai.com", port: 443, path: "/v1/chat/completions" });
    tr.upstream_response(200);
    tr.finish(&Finish { status: 200, response_model: Some("gpt-4o-mini-2024"), tokens: Some((12, 5, 2)), finish_reasons: &["stop".to_string()], ..Default::default() });

    let spans = c.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 2);
    let client = spans.iter().find(|s| s.span_kind == SpanKind::Client).unwrap();
    let server = spans.iter().find(|s| s.span_kind == SpanKind::Server).unwrap();
    assert_eq!(server.name, "POST /openai_passthrough/v1/chat/completions");
    assert_eq!(client.name, "chat gpt-4o-mini");
    // The client's trace is continued; the client span is the server's child.
    assert_eq!(server.span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(client.span_context.trace_id(), server.span_context.trace_id());
    assert_eq!(client.parent_span_id, server.span_context.span_id());
    // The provider gets the client span's context.
    assert_eq!(prop[0], ("traceparent", format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", client.span_context.span_id())));
    for (k, v) in [
        ("gen_ai.system", Value::from("openai")),
        ("gen_ai.operation.name", Value::from("chat")),
        ("gen_ai.request.model", Value::from("gpt-4o-mini")),
        ("gen_ai.response.model", Value::from("gpt-4o-mini-2024")),
        ("gen_ai.usage.input_tokens", Value::I64(12)),
        ("gen_ai.usage.output_tokens", Value::I64(5)),
        ("gen_ai.usage.cache_read.input_tokens", Value::I64(2)),
        ("http.response.status_code", Value::I64(200)),
        ("http.request.method", Value::from("POST")),
        ("url.path", Value::from("/openai_passthrough/v1/chat/completions")),
        ("server.address", Value::from("gw.local")),
        ("tollgate.request_id", Value::from("rid-1")),
        ("tollgate.virtual_key", Value::from("team-a")),
        ("tollgate.provider_key", Value::from("main")),
    ] {
        assert_eq!(attr(server, k), Some(&v), "server {k}");
    }
    assert_eq!(attr(server, "gen_ai.response.finish_reasons"), Some(&Value::Array(Array::String(vec![StringValue::from("stop")]))));
    assert_eq!(attr(client, "server.address"), Some(&Value::from("api.openai.com")));
    assert_eq!(attr(client, "url.full"), Some(&Value::from("https://api.openai.com/v1/chat/completions")));
    assert_eq!(attr(client, "gen_ai.usage.output_tokens"), Some(&Value::I64(5)));
    assert_eq!(client.events.events.iter().map(|e| e.name.as_ref()).collect::<Vec<_>>(), vec!["retry", "first_byte"]);
    assert_eq!(server.status, Status::Unset);
    // No credential anywhere.
    for s in &spans {
        for kv in &s.attributes {
            assert!(!kv.value.to_string().contains("sk-secret"), "{kv:?}");
        }
    }
}

#[test]
fn refused_request_is_an_error_without_client_span() {
    let (_p, t, c) = tracer();
    let h = headers(&[]);
    let req = Incoming { method: "POST", path: "/anthropic_passthrough/v1/messages", headers: &h, request_id: "r", client_ip: None, start: SystemTime::now() };
    let mut tr = RequestTrace::start(&t, &req);
    tr.target(Provider::Anthropic, operation_for("/v1/messages"), None);
    tr.finish(&Finish { status: 401, error: Some("virtual_key_invalid"), ..Default::default() });
    let spans = c.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.name, "POST", "no route yet: the method alone");
    assert!(!s.parent_span_id.to_string().is_empty());
    assert_eq!(s.status, Status::error("virtual_key_invalid"));
    assert_eq!(attr(s, "error.type"), Some(&Value::from("virtual_key_invalid")));
    assert_eq!(attr(s, "gen_ai.system"), Some(&Value::from("anthropic")));
}

#[test]
fn upstream_failure_marks_both_spans() {
    let (_p, t, c) = tracer();
    let h = headers(&[]);
    let req = Incoming { method: "POST", path: "/openai/chat/completions", headers: &h, request_id: "r", client_ip: None, start: SystemTime::now() };
    let mut tr = RequestTrace::start(&t, &req);
    tr.upstream_attempt(&Outgoing { scheme: "http", host: "127.0.0.1", port: 9, path: "/v1/chat/completions" });
    tr.upstream_event("connect_failed", vec![]);
    tr.finish(&Finish { status: 502, error: Some("upstream_unreachable"), ..Default::default() });
    let spans = c.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 2);
    for s in &spans {
        assert_eq!(s.status, Status::error("upstream_unreachable"), "{}", s.name);
    }
    let client = spans.iter().find(|s| s.span_kind == SpanKind::Client).unwrap();
    assert_eq!(attr(client, "url.full"), Some(&Value::from("http://127.0.0.1:9/v1/chat/completions")));
}

#[test]
fn operations_by_path() {
    for (p, op) in [
        ("/v1/chat/completions", Some("chat")),
        ("/openai/deployments/d/chat/completions", Some("chat")),
        ("/v1/completions", Some("text_completion")),
        ("/v1/embeddings", Some("embeddings")),
        ("/v1/responses", Some("chat")),
        ("/v1/messages", Some("chat")),
        ("/v1beta/models/gemini-2.0-flash:generateContent", Some("generate_content")),
        ("/v1/projects/p/locations/l/publishers/google/models/g:streamGenerateContent", Some("generate_content")),
        ("/v1beta/models/text-embedding-004:embedContent", Some("embeddings")),
        ("/v1beta/models/m:countTokens", None),
        ("/v1/models", None),
        ("/v1/files/file-abc", None),
        ("/v1/threads/t/messages", None),
    ] {
        assert_eq!(operation_for(p), op, "{p}");
    }
}

#[test]
fn route_templates_keep_no_ids() {
    for (prefix, rem, want) in [
        ("/openai_passthrough", "/v1/chat/completions", "/openai_passthrough/v1/chat/completions"),
        ("/openai_passthrough", "/v1/files/file-abc123", "/openai_passthrough/v1/files/{id}"),
        ("/openai_passthrough", "/v1/chat/completions/chatcmpl-9x/messages", "/openai_passthrough/v1/chat/completions/{id}/messages"),
        ("/genai_passthrough", "/v1beta/models/gemini-2.0-flash:generateContent", "/genai_passthrough/v1beta/models/{id}:generateContent"),
        (
            "/genai_passthrough",
            "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini:streamGenerateContent",
            "/genai_passthrough/v1/projects/{id}/locations/{id}/publishers/{id}/models/{id}:streamGenerateContent",
        ),
        ("/azure_passthrough", "/openai/deployments/my-gpt/chat/completions?api-version=1", "/azure_passthrough/openai/deployments/{id}/chat/completions"),
        ("/anthropic_passthrough", "/v1/messages", "/anthropic_passthrough/v1/messages"),
        ("/openai_passthrough", "/", "/openai_passthrough/"),
        ("/openai_passthrough", "/v1/x0a1b2", "/openai_passthrough/v1/{id}"),
    ] {
        assert_eq!(route_template(prefix, rem), want, "{rem}");
    }
}

#[test]
fn content_is_cut_on_a_char_boundary() {
    let s = "é".repeat(MAX_CONTENT_BYTES);
    let t = truncate(&s, MAX_CONTENT_BYTES + 1);
    assert!(t.len() <= MAX_CONTENT_BYTES + 1 && t.is_char_boundary(t.len()));
    assert_eq!(split_host("[::1]:8080"), ("::1", Some(8080)));
    assert_eq!(split_host("gw"), ("gw", None));
}
