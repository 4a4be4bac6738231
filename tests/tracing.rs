//! OpenTelemetry traces through the real binary (issue 17): a mock OTLP/HTTP
//! collector on 127.0.0.1 decodes the protobuf export requests, and the
//! tests check the spans of passthrough, streamed, refused, failed and
//! `/openai` requests, trace context in and out, and that a dead collector
//! changes nothing for clients.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use prost::Message;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const OPENAI_KEY: &str = "sk-otel-provider-secret-1";
const ANTHROPIC_KEY: &str = "sk-ant-otel-provider-secret-2";
const TEAM_VK: &str = "vk-otel-team-secret-3";
const COLLECTOR_TOKEN: &str = "collector-token-secret-4";

/// SpanKind and status code numbers of the OTLP protobuf.
const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;
const KIND_CONSUMER: i32 = 5;
const STATUS_ERROR: i32 = 2;

#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    status: i32,
    attrs: HashMap<String, Value>,
    events: Vec<String>,
    start_ns: u64,
    end_ns: u64,
    service: String,
}

impl Span {
    fn attr(&self, k: &str) -> &Value {
        self.attrs.get(k).unwrap_or(&Value::Null)
    }
}

fn any(v: &Option<AnyValue>) -> Value {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(|v| any(&Some(v.clone()))).collect()),
        Some(other) => json!(format!("{other:?}")),
        None => Value::Null,
    }
}

/// The spans of an export request, added to `out`.
fn collect(req: ExportTraceServiceRequest, out: &Mutex<Vec<Span>>) {
    let mut out = out.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .map(|a| any(&a.value).as_str().unwrap_or("").to_string())
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for sp in ss.spans {
                out.push(Span {
                    trace_id: hex(&sp.trace_id),
                    span_id: hex(&sp.span_id),
                    parent: hex(&sp.parent_span_id),
                    name: sp.name.clone(),
                    kind: sp.kind,
                    status: sp.status.as_ref().map_or(0, |st| st.code),
                    attrs: sp.attributes.iter().map(|a| (a.key.clone(), any(&a.value))).collect(),
                    events: sp.events.iter().map(|e| e.name.clone()).collect(),
                    start_ns: sp.start_time_unix_nano,
                    end_ns: sp.end_time_unix_nano,
                    service: service.clone(),
                });
            }
        }
    }
}

/// A mock OTLP/HTTP collector: `POST /v1/traces`, protobuf bodies decoded.
struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
    /// Headers of each export request.
    heads: Arc<Mutex<Vec<Head>>>,
}

impl Collector {
    fn start() -> Collector {
        let l = listener();
        let port = l.local_addr().unwrap().port();
        let (spans, heads) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (s, h) = (spans.clone(), heads.clone());
        thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, h) = (s.clone(), h.clone());
                thread::spawn(move || {
                    let mut w = conn.try_clone().unwrap();
                    let mut r = BufReader::new(conn);
                    while let Ok(Some(head)) = read_head(&mut r) {
                        let len: usize = head.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).is_err() {
                            return;
                        }
                        let ok = head.start.starts_with("POST /v1/traces ");
                        if ok {
                            let req = ExportTraceServiceRequest::decode(body.as_slice()).expect("a valid ExportTraceServiceRequest");
                            collect(req, &s);
                            h.lock().unwrap().push(head);
                        }
                        let status = if ok { "200 OK" } else { "404 Not Found" };
                        let reply = format!("HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
                        if w.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Collector { port, spans, heads }
    }

    /// A mock OTLP/gRPC collector: the generated `TraceService` on a tonic
    /// server, its requests' metadata kept as heads.
    fn start_grpc() -> Collector {
        Self::start_grpc_with(None)
    }

    /// `tls`: the server's certificate chain and key (PEM).
    fn start_grpc_with(tls: Option<(Vec<u8>, Vec<u8>)>) -> Collector {
        let l = listener();
        let port = l.local_addr().unwrap().port();
        let (spans, heads) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let sink = GrpcSink { spans: spans.clone(), heads: heads.clone() };
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                l.set_nonblocking(true).unwrap();
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                let mut server = tonic::transport::Server::builder();
                if let Some((chain, key)) = tls {
                    let identity = tonic::transport::Identity::from_pem(chain, key);
                    server = server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity)).unwrap();
                }
                server
                    .add_service(TraceServiceServer::new(sink))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
                    .await
                    .unwrap();
            });
        });
        Collector { port, spans, heads }
    }

    /// The spans of the request with id `rid` (server span first), once its
    /// server span arrived (spans come in batches, after a delay).
    fn request(&self, rid: &str) -> (Span, Vec<Span>) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if let Some(server) = spans.iter().find(|s| s.attr("tollgate.request_id") == &json!(rid)).cloned() {
                // A request's client span ends before its server span: it
                // is in the same batch or an earlier one.
                let children = spans.into_iter().filter(|s| s.parent == server.span_id).collect();
                return (server, children);
            }
            assert!(Instant::now() < deadline, "no span for request {rid}; got {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
            thread::sleep(Duration::from_millis(25));
        }
    }

    fn all(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

struct GrpcSink {
    spans: Arc<Mutex<Vec<Span>>>,
    heads: Arc<Mutex<Vec<Head>>>,
}

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(&self, req: tonic::Request<ExportTraceServiceRequest>) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = req.metadata().clone().into_headers();
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
        collect(req.into_inner(), &self.spans);
        self.heads.lock().unwrap().push(Head { start: "POST /opentelemetry.proto.collector.trace.v1.TraceService/Export".into(), headers });
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn provider_mock() -> Mock {
    Mock::start(|req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let path = req.path().to_string();
        if path.ends_with("/chat/completions") && body["stream"] == true {
            let events = vec![
                json!({"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hi"}}]}),
                json!({"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":" there"}}]}),
                json!({"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
                json!({"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":31,"completion_tokens":7,"total_tokens":38}}),
            ];
            Reply::Sse { events: events.iter().map(|e| e.to_string()).chain(["[DONE]".to_string()]).collect(), delay: Duration::from_millis(150) }
        } else if path.ends_with("/chat/completions") {
            json(200, json!({"id":"c","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}))
        } else if path.ends_with("/v1/messages") && body["stream"] == true {
            let events = [
                json!({"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[],"usage":{"input_tokens":11,"output_tokens":1}}}),
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there, streamed"}}),
                json!({"type":"content_block_stop","index":0}),
                json!({"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":4}}),
                json!({"type":"message_stop"}),
            ];
            Reply::Sse { events: events.iter().map(|e| e.to_string()).collect(), delay: Duration::from_millis(20) }
        } else if path.ends_with("/v1/messages") {
            json(200, json!({"id":"m","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":11,"output_tokens":3}}))
        } else {
            json(404, json!({"error": {"message": "no such mock path"}}))
        }
    })
}

fn gateway(mock: &Mock, collector_port: u16, dead_port: u16) -> Gateway {
    gateway_with(mock, collector_port, dead_port, "")
}

/// `otel_extra`: more lines of the `otel:` block (4-space indent).
fn gateway_with(mock: &Mock, collector_port: u16, dead_port: u16, otel_extra: &str) -> Gateway {
    let section = format!(
        "  providers:\n    openai: {{ base_url: \"{m}\", keys: [{{ name: main, value: env.OPENAI_KEY }}] }}\n    anthropic: {{ base_url: \"{m}\", keys: [{{ name: ant, value: env.ANTHROPIC_KEY }}] }}\n    gemini: {{ base_url: \"http://127.0.0.1:{dead_port}\", keys: [{{ name: g, value: env.ANTHROPIC_KEY }}] }}\n  connect_retries: 1\n  virtual_keys:\n    - {{ name: team-a, secret: env.TEAM_VK }}\n  otel:\n    endpoint: \"http://127.0.0.1:{collector_port}\"\n    service_name: tollgate-test\n    scheduled_delay_ms: 100\n    headers: {{ x-collector-token: env.COLLECTOR_TOKEN }}\n{otel_extra}",
        m = mock.url()
    );
    Gateway::start(&section, "", &[("OPENAI_KEY", OPENAI_KEY), ("ANTHROPIC_KEY", ANTHROPIC_KEY), ("TEAM_VK", TEAM_VK), ("COLLECTOR_TOKEN", COLLECTOR_TOKEN)])
}

fn no_secret_in(spans: &[Span]) {
    for s in spans {
        let text = format!("{} {:?}", s.name, s.attrs);
        for secret in [OPENAI_KEY, ANTHROPIC_KEY, TEAM_VK, COLLECTOR_TOKEN] {
            assert!(!text.contains(secret), "a secret in span {}: {text}", s.name);
        }
        // No prompt or completion text unless capture_content is on.
        assert!(!text.contains("Say hi") && !text.contains("Hi there"), "content in span {}: {text}", s.name);
    }
}

#[test]
fn passthrough_request_has_server_and_client_spans_with_genai_attributes() {
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway(&mock, collector.port, free_port());
    let r = post_json(
        gw.port,
        "/openai_passthrough/v1/chat/completions",
        &[("authorization", &format!("Bearer {TEAM_VK}")), ("x-request-id", "otel-pass-1")],
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (server, children) = collector.request("otel-pass-1");
    assert_eq!(server.kind, KIND_SERVER);
    assert_eq!(server.name, "POST /openai_passthrough/v1/chat/completions");
    assert_eq!(server.service, "tollgate-test");
    assert_eq!(server.parent, "", "no traceparent from the client: a new trace");
    for (k, v) in [
        ("http.request.method", json!("POST")),
        ("http.route", json!("/openai_passthrough/v1/chat/completions")),
        ("url.path", json!("/openai_passthrough/v1/chat/completions")),
        ("http.response.status_code", json!(200)),
        ("gen_ai.system", json!("openai")),
        ("gen_ai.operation.name", json!("chat")),
        ("gen_ai.request.model", json!("gpt-4o-mini")),
        ("gen_ai.response.model", json!("gpt-4o-mini-2024-07-18")),
        ("gen_ai.usage.input_tokens", json!(19)),
        ("gen_ai.usage.output_tokens", json!(10)),
        ("gen_ai.response.finish_reasons", json!(["stop"])),
        ("tollgate.virtual_key", json!("team-a")),
        ("tollgate.provider_key", json!("main")),
        ("server.address", json!("127.0.0.1")),
    ] {
        assert_eq!(server.attr(k), &v, "server span {k}: {:?}", server.attrs);
    }
    assert_eq!(children.len(), 1, "{children:?}");
    let client = &children[0];
    assert_eq!(client.kind, KIND_CLIENT);
    assert_eq!(client.trace_id, server.trace_id);
    assert_eq!(client.name, "chat gpt-4o-mini");
    assert_eq!(client.attr("server.address"), &json!("127.0.0.1"));
    assert_eq!(client.attr("server.port"), &json!(mock.port));
    assert_eq!(client.attr("http.response.status_code"), &json!(200));
    assert_eq!(client.attr("gen_ai.usage.output_tokens"), &json!(10));
    assert!(client.events.contains(&"connected".to_string()) && client.events.contains(&"first_byte".to_string()), "{:?}", client.events);
    assert_ne!(server.status, STATUS_ERROR);
    // The provider got the gateway's client span as its parent.
    let up = mock.take();
    assert_eq!(up[0].header("traceparent"), Some(format!("00-{}-{}-01", server.trace_id, client.span_id).as_str()));
    // The exporter sends the configured collector headers.
    assert_eq!(collector.heads.lock().unwrap()[0].get("x-collector-token"), Some(COLLECTOR_TOKEN));
    assert_eq!(collector.heads.lock().unwrap()[0].get("content-type"), Some("application/x-protobuf"));
    no_secret_in(&collector.all());
}

#[test]
fn streamed_response_span_ends_with_the_stream_and_carries_usage() {
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway(&mock, collector.port, free_port());
    let r = post_json(
        gw.port,
        "/openai_passthrough/v1/chat/completions",
        &[("x-request-id", "otel-stream-1")],
        &json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Say hi"}]}),
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("[DONE]"));
    let (server, children) = collector.request("otel-stream-1");
    // Five events 150 ms apart: a span that ended with the response head
    // would last a few milliseconds.
    assert!(server.end_ns - server.start_ns >= 600_000_000, "server span lasted {} ns", server.end_ns - server.start_ns);
    assert_eq!(server.attr("gen_ai.usage.input_tokens"), &json!(31));
    assert_eq!(server.attr("gen_ai.usage.output_tokens"), &json!(7));
    assert_eq!(server.attr("gen_ai.response.model"), &json!("gpt-4o-mini-2024-07-18"));
    assert_eq!(server.attr("gen_ai.response.finish_reasons"), &json!(["stop"]));
    let client = &children[0];
    assert!(client.end_ns >= server.start_ns + 600_000_000, "client span ends after the stream too");
    assert_eq!(client.attr("gen_ai.usage.output_tokens"), &json!(7));
    no_secret_in(&collector.all());
}

#[test]
fn refused_request_has_an_error_span_and_no_client_span() {
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway(&mock, collector.port, free_port());
    let r = post_json(
        gw.port,
        "/openai_passthrough/v1/chat/completions",
        &[("x-tollgate-vk", "vk-unknown"), ("x-request-id", "otel-refused-1")],
        &json!({"model": "gpt-4o-mini", "messages": []}),
    );
    assert_eq!(r.status, 401);
    let (server, children) = collector.request("otel-refused-1");
    assert_eq!(server.status, STATUS_ERROR);
    assert_eq!(server.attr("error.type"), &json!("virtual_key_invalid"));
    assert_eq!(server.attr("http.response.status_code"), &json!(401));
    assert_eq!(server.attr("gen_ai.system"), &json!("openai"));
    assert!(children.is_empty(), "nothing was sent upstream: {children:?}");
    assert_eq!(mock.count(), 0);
    // An unknown route is traced too, named by its method only.
    let r = request(gw.port, "GET", "/nowhere/x", &[("x-request-id", "otel-404")], b"");
    assert_eq!(r.status, 404);
    let (server, _) = collector.request("otel-404");
    assert_eq!((server.name.as_str(), server.status), ("GET", STATUS_ERROR));
    no_secret_in(&collector.all());
}

#[test]
fn failed_upstream_marks_both_spans_with_retries_as_events() {
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway(&mock, collector.port, free_port());
    let r = post_json(
        gw.port,
        "/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent",
        &[("x-request-id", "otel-502")],
        &json!({"contents": [{"parts": [{"text": "Say hi"}]}]}),
    );
    assert_eq!(r.status, 502, "{}", r.text());
    let (server, children) = collector.request("otel-502");
    assert_eq!(server.name, "POST /genai_passthrough/v1beta/models/{id}:generateContent");
    assert_eq!(server.status, STATUS_ERROR);
    assert_eq!(server.attr("error.type"), &json!("upstream_unreachable"));
    assert_eq!(server.attr("http.response.status_code"), &json!(502));
    assert_eq!(server.attr("gen_ai.system"), &json!("gcp.gemini"));
    assert_eq!(server.attr("gen_ai.operation.name"), &json!("generate_content"));
    assert_eq!(server.attr("gen_ai.request.model"), &json!("gemini-2.5-flash"));
    assert_eq!(children.len(), 1, "one client span, retries are events: {children:?}");
    let client = &children[0];
    assert_eq!(client.status, STATUS_ERROR);
    assert_eq!(client.events.iter().filter(|e| *e == "connect_failed").count(), 2, "{:?}", client.events);
    assert!(client.events.contains(&"retry".to_string()), "{:?}", client.events);
    no_secret_in(&collector.all());
}

#[test]
fn client_trace_context_is_continued_and_propagated() {
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway(&mock, collector.port, free_port());
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let r = post_json(
        gw.port,
        "/anthropic_passthrough/v1/messages",
        &[("traceparent", &format!("00-{trace}-{parent}-01")), ("tracestate", "vendor=abc"), ("x-request-id", "otel-tp-1")],
        &json!({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Say hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (server, children) = collector.request("otel-tp-1");
    assert_eq!(server.trace_id, trace);
    assert_eq!(server.parent, parent);
    assert_eq!(server.attr("gen_ai.system"), &json!("anthropic"));
    assert_eq!(server.attr("gen_ai.usage.input_tokens"), &json!(11));
    let client = &children[0];
    let up = mock.take();
    assert_eq!(up[0].header("traceparent"), Some(format!("00-{trace}-{}-01", client.span_id).as_str()));
    assert_eq!(up[0].header("tracestate"), Some("vendor=abc"));
    assert_eq!(up[0].header("x-api-key"), Some(ANTHROPIC_KEY));
}

#[test]
fn openai_route_translated_request_is_traced_and_propagated() {
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway(&mock, collector.port, free_port());
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let r = post_json(
        gw.port,
        "/openai/v1/chat/completions",
        &[("traceparent", &format!("00-{trace}-b7ad6b7169203331-01")), ("x-request-id", "otel-compat-1")],
        &json!({"model": "anthropic/claude-haiku-4-5", "messages": [{"role": "user", "content": "Say hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (server, children) = collector.request("otel-compat-1");
    assert_eq!(server.name, "POST /openai/v1/chat/completions");
    assert_eq!(server.trace_id, trace);
    assert_eq!(server.attr("gen_ai.system"), &json!("anthropic"));
    assert_eq!(server.attr("gen_ai.request.model"), &json!("claude-haiku-4-5"));
    assert_eq!(server.attr("gen_ai.usage.input_tokens"), &json!(11));
    assert_eq!(server.attr("tollgate.provider_key"), &json!("ant"));
    // Anthropic's `end_turn`, as the client saw it.
    assert_eq!(server.attr("gen_ai.response.finish_reasons"), &json!(["stop"]));
    let client = &children[0];
    assert_eq!(client.name, "chat claude-haiku-4-5");
    assert_eq!(client.attr("gen_ai.response.finish_reasons"), &json!(["stop"]));
    let up = mock.take();
    assert_eq!(up[0].path(), "/v1/messages");
    assert_eq!(up[0].header("traceparent"), Some(format!("00-{trace}-{}-01", client.span_id).as_str()));
    no_secret_in(&collector.all());
}

#[test]
fn each_routing_attempt_is_its_own_client_span() {
    // SPEC 10: the primary refuses connections (Gemini on a dead port), the
    // request's fallback answers; one CLIENT span per attempt.
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway(&mock, collector.port, free_port());
    let r = post_json(
        gw.port,
        "/openai/v1/chat/completions",
        &[("x-request-id", "otel-route-1")],
        &json!({"model": "gemini/gemini-2.5-flash", "fallbacks": ["anthropic/claude-haiku-4-5"], "messages": [{"role": "user", "content": "Say hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (server, mut children) = collector.request("otel-route-1");
    assert_eq!(server.attr("gen_ai.system"), &json!("anthropic"), "the server span names who answered");
    children.sort_by_key(|c| c.start_ns);
    assert_eq!(children.len(), 2, "{children:?}");
    assert_eq!(children.iter().map(|c| c.kind).collect::<Vec<_>>(), [KIND_CLIENT, KIND_CLIENT]);
    assert_eq!(children[0].name, "chat gemini-2.5-flash");
    assert_eq!(children[0].status, STATUS_ERROR);
    assert_eq!(children[0].attr("error.type"), &json!("connect"));
    assert_eq!(children[1].name, "chat claude-haiku-4-5");
    assert_ne!(children[1].status, STATUS_ERROR);
    assert!(children[0].end_ns <= children[1].start_ns, "the first attempt ended before the second began");
    let up = mock.take();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].header("traceparent").map(|t| t.contains(&children[1].span_id)), Some(true));
}

#[test]
fn capture_content_puts_prompt_and_translated_answer_on_the_span() {
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway_with(&mock, collector.port, free_port(), "    capture_content: true\n");
    let r = post_json(
        gw.port,
        "/openai/chat/completions",
        &[("x-request-id", "otel-content-1")],
        &json!({"model": "anthropic/claude-haiku-4-5", "messages": [{"role": "user", "content": "Say hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (server, _) = collector.request("otel-content-1");
    // The GenAI conventions' shape: role and typed parts.
    let input: Value = serde_json::from_str(server.attr("gen_ai.input.messages").as_str().expect("input captured")).unwrap();
    assert_eq!(input, json!([{"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}]));
    let output: Value = serde_json::from_str(server.attr("gen_ai.output.messages").as_str().expect("output captured")).unwrap();
    assert_eq!(output, json!([{"role": "assistant", "parts": [{"type": "text", "content": "Hi"}], "finish_reason": "stop"}]));
    assert_eq!(server.attr("tollgate.content_truncated"), &Value::Null);
}

#[test]
fn streamed_translated_answer_has_finish_reasons_and_its_text_accumulated() {
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway_with(&mock, collector.port, free_port(), "    capture_content: true\n");
    let r = post_json(
        gw.port,
        "/openai/v1/chat/completions",
        &[("x-request-id", "otel-content-stream")],
        &json!({"model": "anthropic/claude-haiku-4-5", "stream": true, "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Say hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"length\""), "the client saw max_tokens as length: {}", r.text());
    let (server, children) = collector.request("otel-content-stream");
    assert_eq!(server.attr("gen_ai.response.finish_reasons"), &json!(["length"]));
    assert_eq!(children[0].attr("gen_ai.response.finish_reasons"), &json!(["length"]));
    let output: Value = serde_json::from_str(server.attr("gen_ai.output.messages").as_str().expect("output captured")).unwrap();
    assert_eq!(output, json!([{"role": "assistant", "parts": [{"type": "text", "content": "Hi there, streamed"}], "finish_reason": "length"}]));
    let input: Value = serde_json::from_str(server.attr("gen_ai.input.messages").as_str().unwrap()).unwrap();
    assert_eq!(input[0], json!({"role": "system", "parts": [{"type": "text", "content": "Be brief"}]}));

    // Without capture_content: finish reasons, and no text.
    let gw = gateway(&mock, collector.port, free_port());
    let r = post_json(
        gw.port,
        "/openai/v1/chat/completions",
        &[("x-request-id", "otel-stream-nocontent")],
        &json!({"model": "anthropic/claude-haiku-4-5", "stream": true, "messages": [{"role": "user", "content": "Say hi"}]}),
    );
    assert_eq!(r.status, 200);
    let (server, _) = collector.request("otel-stream-nocontent");
    assert_eq!(server.attr("gen_ai.response.finish_reasons"), &json!(["length"]));
    assert_eq!(server.attr("gen_ai.output.messages"), &Value::Null);
    assert_eq!(server.attr("gen_ai.input.messages"), &Value::Null);
    no_secret_in(&[server]);
}

#[test]
fn capture_content_on_passthrough_routes_reads_both_sides() {
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway_with(&mock, collector.port, free_port(), "    capture_content: true\n");
    // Anthropic's own shape: system, content blocks, a whole JSON answer.
    let r = post_json(
        gw.port,
        "/anthropic_passthrough/v1/messages",
        &[("x-request-id", "otel-pass-content-1")],
        &json!({"model": "claude-haiku-4-5", "max_tokens": 10, "system": "Be brief", "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (server, _) = collector.request("otel-pass-content-1");
    let input: Value = serde_json::from_str(server.attr("gen_ai.input.messages").as_str().expect("input captured")).unwrap();
    assert_eq!(
        input,
        json!([{"role": "system", "parts": [{"type": "text", "content": "Be brief"}]}, {"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}])
    );
    let output: Value = serde_json::from_str(server.attr("gen_ai.output.messages").as_str().expect("output captured")).unwrap();
    assert_eq!(output, json!([{"role": "assistant", "parts": [{"type": "text", "content": "Hi"}], "finish_reason": "end_turn"}]));
    assert_eq!(server.attr("gen_ai.response.finish_reasons"), &json!(["end_turn"]));
    // An OpenAI stream, accumulated from its deltas.
    let r = post_json(
        gw.port,
        "/openai_passthrough/v1/chat/completions",
        &[("x-request-id", "otel-pass-content-2")],
        &json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "Say hi"}]}),
    );
    assert_eq!(r.status, 200);
    let (server, _) = collector.request("otel-pass-content-2");
    let output: Value = serde_json::from_str(server.attr("gen_ai.output.messages").as_str().expect("output captured")).unwrap();
    assert_eq!(output, json!([{"role": "assistant", "parts": [{"type": "text", "content": "Hi there"}], "finish_reason": "stop"}]));
    let input: Value = serde_json::from_str(server.attr("gen_ai.input.messages").as_str().unwrap()).unwrap();
    assert_eq!(input, json!([{"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}]));
    // The bytes reached the client unchanged.
    assert!(r.text().contains("\" there\""), "{}", r.text());
}

#[test]
fn captured_content_is_cut_and_marked() {
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway_with(&mock, collector.port, free_port(), "    capture_content: true\n");
    let long = "é".repeat(20_000);
    let r = post_json(
        gw.port,
        "/openai/v1/chat/completions",
        &[("x-request-id", "otel-content-long")],
        &json!({"model": "anthropic/claude-haiku-4-5", "messages": [{"role": "user", "content": long}, {"role": "user", "content": "never seen"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (server, _) = collector.request("otel-content-long");
    assert_eq!(server.attr("tollgate.content_truncated"), &json!(true));
    let text = server.attr("gen_ai.input.messages").as_str().unwrap().to_string();
    let input: Value = serde_json::from_str(&text).expect("still valid JSON");
    let kept = input[0]["parts"][0]["content"].as_str().unwrap();
    assert!(kept.len() <= 16 * 1024 && kept.len() > 8 * 1024 && long.starts_with(kept), "{}", kept.len());
    assert!(!text.contains("never seen"));
}

#[test]
fn async_job_execution_continues_the_submission_trace() {
    let collector = Collector::start();
    let mock = provider_mock();
    let gw = gateway(&mock, collector.port, free_port());
    let trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    let r = post_json(
        gw.port,
        "/openai/v1/chat/completions",
        &[("x-bf-async", "true"), ("traceparent", &format!("00-{trace}-10f067aa0ba902b7-01")), ("x-request-id", "otel-job-submit")],
        &json!({"model": "anthropic/claude-haiku-4-5", "messages": [{"role": "user", "content": "Say hi"}]}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json()["id"].as_str().unwrap().to_string();
    let (submit, submit_children) = collector.request("otel-job-submit");
    assert_eq!(submit.trace_id, trace);
    assert_eq!(submit.attr("tollgate.async_job_id"), &json!(job));
    // The execution: a CONSUMER span, child of the submission's SERVER span.
    let (run, run_children) = collector.request(&format!("{job}-run"));
    assert_eq!(run.kind, KIND_CONSUMER);
    assert_eq!(run.trace_id, trace, "the execution is in the submission's trace");
    assert_eq!(run.parent, submit.span_id);
    assert!(submit_children.iter().any(|c| c.span_id == run.span_id), "{submit_children:?}");
    assert_eq!(run.attr("tollgate.async_job_id"), &json!(job));
    assert_eq!(run.attr("gen_ai.response.finish_reasons"), &json!(["stop"]));
    // Its provider call is its CLIENT child, and the provider got that context.
    assert_eq!(run_children.len(), 1, "{run_children:?}");
    assert_eq!(run_children[0].kind, KIND_CLIENT);
    let up = mock.take();
    assert_eq!(up[0].header("traceparent"), Some(format!("00-{trace}-{}-01", run_children[0].span_id).as_str()));
}

#[test]
fn grpc_export_carries_the_same_spans_and_headers_as_metadata() {
    let collector = Collector::start_grpc();
    let mock = provider_mock();
    let gw = gateway_with(&mock, collector.port, free_port(), "    protocol: grpc\n");
    let r = post_json(
        gw.port,
        "/openai_passthrough/v1/chat/completions",
        &[("authorization", &format!("Bearer {TEAM_VK}")), ("x-request-id", "otel-grpc-1")],
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (server, children) = collector.request("otel-grpc-1");
    assert_eq!((server.kind, server.name.as_str(), server.service.as_str()), (KIND_SERVER, "POST /openai_passthrough/v1/chat/completions", "tollgate-test"));
    for (k, v) in [
        ("gen_ai.system", json!("openai")),
        ("gen_ai.request.model", json!("gpt-4o-mini")),
        ("gen_ai.response.model", json!("gpt-4o-mini-2024-07-18")),
        ("gen_ai.usage.input_tokens", json!(19)),
        ("gen_ai.usage.output_tokens", json!(10)),
        ("gen_ai.response.finish_reasons", json!(["stop"])),
        ("tollgate.virtual_key", json!("team-a")),
        ("http.response.status_code", json!(200)),
    ] {
        assert_eq!(server.attr(k), &v, "server span {k}: {:?}", server.attrs);
    }
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!((children[0].kind, children[0].trace_id.as_str()), (KIND_CLIENT, server.trace_id.as_str()));
    let up = mock.take();
    assert_eq!(up[0].header("traceparent"), Some(format!("00-{}-{}-01", server.trace_id, children[0].span_id).as_str()));
    // `headers` went as gRPC metadata.
    let heads = collector.heads.lock().unwrap();
    assert_eq!(heads[0].get("x-collector-token"), Some(COLLECTOR_TOKEN));
    assert_eq!(heads[0].get("content-type"), Some("application/grpc"));
    drop(heads);
    gw.wait_metric_at_least("tollgate_otel_spans_exported_total", &[], 2.0);
    gw.wait_stderr("over OTLP/gRPC", 1);
    no_secret_in(&collector.all());
}

#[test]
fn grpc_over_tls_verifies_the_collector_against_the_ca_bundle() {
    use common::pki::{cert, key};
    let dir = temp_dir("otel-grpc-tls");
    let ca_key = key();
    let ca = cert("otel collector test CA", &ca_key, None, true, &[]);
    let leaf_key = key();
    let leaf = cert("localhost", &leaf_key, Some((&ca, &ca_key)), false, &["localhost"]);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.to_pem().unwrap()).unwrap();
    let collector = Collector::start_grpc_with(Some((leaf.to_pem().unwrap(), leaf_key.private_key_to_pem_pkcs8().unwrap())));
    let mock = provider_mock();
    let section = format!(
        "  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: main, value: env.OPENAI_KEY }}] }}\n  otel: {{ protocol: grpc, endpoint: \"https://localhost:{}\", scheduled_delay_ms: 100, timeout_ms: 2000 }}\n",
        mock.url(),
        collector.port
    );
    // Trusted through SSL_CERT_FILE (the system bundle's override).
    let ca = ca_file.display().to_string();
    let gw = Gateway::start(&section, "", &[("OPENAI_KEY", OPENAI_KEY), ("SSL_CERT_FILE", ca.as_str())]);
    let r = post_json(gw.port, "/openai_passthrough/v1/chat/completions", &[("x-request-id", "otel-grpc-tls")], &json!({"model": "gpt-4o-mini", "messages": []}));
    assert_eq!(r.status, 200);
    let (server, _) = collector.request("otel-grpc-tls");
    assert_eq!(server.attr("gen_ai.system"), &json!("openai"));
    drop(gw);
    // A CA bundle without the test CA: the collector is not trusted, nothing
    // is exported, requests are served all the same.
    let other = dir.join("other.pem");
    let other_key = key();
    std::fs::write(&other, cert("some other CA", &other_key, None, true, &[]).to_pem().unwrap()).unwrap();
    let other = other.display().to_string();
    let gw = Gateway::start(&section, "", &[("OPENAI_KEY", OPENAI_KEY), ("SSL_CERT_FILE", other.as_str())]);
    let r = post_json(gw.port, "/openai_passthrough/v1/chat/completions", &[("x-request-id", "otel-grpc-untrusted")], &json!({"model": "gpt-4o-mini", "messages": []}));
    assert_eq!(r.status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.metric("tollgate_otel_spans_dropped_total", &[("reason", "export_failed")]) < 1.0 {
        assert!(Instant::now() < deadline, "no failed export counted: {}", gw.metrics());
        thread::sleep(Duration::from_millis(100));
    }
    assert!(!collector.all().iter().any(|s| s.attr("tollgate.request_id") == &json!("otel-grpc-untrusted")));
}

/// `n` passthrough requests with a dead collector: every one answered in
/// full; then the exporter counts a failed export and nothing exported.
fn serve_while_exports_fail(gw: &Gateway, id_prefix: &str, n: usize) {
    for i in 0..n {
        let r = post_json(
            gw.port,
            "/openai_passthrough/v1/chat/completions",
            &[("x-request-id", &format!("{id_prefix}-{i}"))],
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["usage"]["completion_tokens"], 10);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.metric("tollgate_otel_spans_dropped_total", &[("reason", "export_failed")]) < 1.0 {
        assert!(Instant::now() < deadline, "no drop counted: {}", gw.metrics());
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(gw.metric("tollgate_otel_spans_exported_total", &[]), 0.0);
}

#[test]
fn dead_grpc_collector_changes_nothing_for_clients() {
    let mock = provider_mock();
    let gw = gateway_with(&mock, free_port(), free_port(), "    protocol: grpc\n    timeout_ms: 500\n");
    serve_while_exports_fail(&gw, "otel-grpc-dead", 3);
    // Still serving after the failed exports.
    let r = post_json(gw.port, "/openai_passthrough/v1/chat/completions", &[], &json!({"model": "gpt-4o-mini", "messages": []}));
    assert_eq!(r.status, 200);
    assert!(!gw.stderr().contains(COLLECTOR_TOKEN), "the collector header leaked into the log");
}

#[test]
fn dead_collector_changes_nothing_for_clients_and_drops_are_counted() {
    let mock = provider_mock();
    let dead = free_port();
    // A queue of one span: while the exporter is stuck retrying, spans are
    // refused and counted.
    let gw = gateway_with(&mock, dead, free_port(), "    max_queue_size: 1\n    max_export_batch_size: 1\n");
    serve_while_exports_fail(&gw, "otel-dead", 5);
    // Ten spans for five requests; at most a few fit a queue of one.
    assert!(gw.metric("tollgate_otel_spans_dropped_total", &[("reason", "queue_full")]) >= 1.0, "{}", gw.metrics());
    gw.wait_stderr("otel: export of", 1);
    assert!(!gw.stderr().contains(COLLECTOR_TOKEN), "the collector header leaked into the log");
}

#[test]
fn queued_spans_are_flushed_when_the_gateway_stops() {
    let collector = Collector::start();
    let mock = provider_mock();
    let section = format!(
        "  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: main, value: env.OPENAI_KEY }}] }}\n  otel: {{ endpoint: \"http://127.0.0.1:{}/v1/traces\", scheduled_delay_ms: 600000 }}\n",
        mock.url(),
        collector.port
    );
    let mut gw = Gateway::start(&section, "", &[("OPENAI_KEY", OPENAI_KEY)]);
    let r = post_json(gw.port, "/openai_passthrough/v1/embeddings", &[("x-request-id", "otel-flush-1")], &json!({"model": "text-embedding-3-small", "input": "x"}));
    assert_eq!(r.status, 404, "the mock has no embeddings: a provider error, passed through");
    // Ten minutes before a timed export: only the stop can send it.
    assert!(collector.all().is_empty());
    assert!(gw.terminate().success());
    let (server, children) = collector.request("otel-flush-1");
    assert_eq!(server.service, "tollgate");
    assert_eq!(server.attr("gen_ai.operation.name"), &json!("embeddings"));
    assert_eq!(server.attr("http.response.status_code"), &json!(404));
    assert_ne!(server.status, STATUS_ERROR, "a provider 4xx is not the gateway's failure");
    assert_eq!(children[0].status, STATUS_ERROR, "but the client span says the call failed");
}

#[test]
fn queued_spans_are_flushed_over_grpc_when_the_gateway_stops() {
    let collector = Collector::start_grpc();
    let mock = provider_mock();
    let section = format!(
        "  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: main, value: env.OPENAI_KEY }}] }}\n  otel: {{ protocol: grpc, endpoint: \"http://127.0.0.1:{}\", scheduled_delay_ms: 600000 }}\n",
        mock.url(),
        collector.port
    );
    let mut gw = Gateway::start(&section, "", &[("OPENAI_KEY", OPENAI_KEY)]);
    let r = post_json(gw.port, "/openai_passthrough/v1/chat/completions", &[("x-request-id", "otel-grpc-flush")], &json!({"model": "gpt-4o-mini", "messages": []}));
    assert_eq!(r.status, 200);
    assert!(collector.all().is_empty(), "ten minutes before a timed export");
    assert!(gw.terminate().success());
    let (server, children) = collector.request("otel-grpc-flush");
    assert_eq!(server.attr("gen_ai.usage.output_tokens"), &json!(10));
    assert_eq!(children.len(), 1);
}

#[test]
fn tracing_off_forwards_the_clients_traceparent_untouched() {
    let mock = provider_mock();
    let section = format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: main, value: env.OPENAI_KEY }}] }}\n", mock.url());
    let gw = Gateway::start(&section, "", &[("OPENAI_KEY", OPENAI_KEY)]);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = post_json(gw.port, "/openai_passthrough/v1/chat/completions", &[("traceparent", tp), ("tracestate", "v=1")], &json!({"model": "gpt-4o-mini", "messages": []}));
    assert_eq!(r.status, 200);
    let up = mock.take();
    assert_eq!(up[0].header("traceparent"), Some(tp));
    assert_eq!(up[0].header("tracestate"), Some("v=1"));
    assert!(!gw.metrics().contains("tollgate_otel_spans_exported_total 1"));
}
