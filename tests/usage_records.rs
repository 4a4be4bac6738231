//! Records, metrics, usage and cost through the real binary (SPEC 6,
//! issue 3): every API family, JSON and SSE, compressed bodies passed
//! through unchanged, cut streams, and /metrics moving by the right amounts.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Answers by path with each provider's real shapes.
fn provider_mock() -> Mock {
    Mock::start(|req| {
        let path = req.path().to_string();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let stream = body["stream"] == true || req.query().is_some_and(|q| q.contains("alt=sse"));
        let sse = |events: Vec<Value>| Reply::Sse { events: events.iter().map(|e| e.to_string()).collect(), delay: Duration::from_millis(5) };
        if path.ends_with("/chat/completions") && stream {
            sse(vec![
                json!({"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}),
                json!({"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500,"prompt_tokens_details":{"cached_tokens":200}}}),
            ])
        } else if path.ends_with("/chat/completions") {
            json(200, json!({"id":"c","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500,"prompt_tokens_details":{"cached_tokens":200}}}))
        } else if path.ends_with("/responses") && stream {
            sse(vec![
                json!({"type":"response.created","response":{"id":"r","model":"gpt-4.1-2025-04-14","status":"in_progress","usage":null}}),
                json!({"type":"response.output_text.delta","delta":"Hi"}),
                json!({"type":"response.completed","response":{"id":"r","model":"gpt-4.1-2025-04-14","status":"completed","usage":{"input_tokens":30,"input_tokens_details":{"cached_tokens":0},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":37}}}),
            ])
        } else if path.ends_with("/responses") {
            json(200, json!({"id":"r","object":"response","model":"gpt-4.1-2025-04-14","output":[],"usage":{"input_tokens":30,"output_tokens":7,"total_tokens":37,"input_tokens_details":{"cached_tokens":10},"output_tokens_details":{"reasoning_tokens":3}}}))
        } else if path.ends_with("/embeddings") {
            // Compressed by the provider: passed through as is.
            let body = json!({"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":42,"total_tokens":42}});
            let z = gzip(body.to_string().as_bytes());
            let mut head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\nconnection: close\r\ncontent-length: {}\r\n\r\n", z.len()).into_bytes();
            head.extend(z);
            Reply::Raw(vec![(Duration::ZERO, head)])
        } else if path.ends_with("/v1/messages") && body["long"] == true {
            sse((0..40)
                .map(|i| if i == 0 {
                    json!({"type":"message_start","message":{"model":"claude-haiku-4-5","usage":{"input_tokens":77,"output_tokens":1}}})
                } else {
                    json!({"type":"content_block_delta","delta":{"type":"text_delta","text":"x"}})
                })
                .collect::<Vec<_>>())
        } else if path.ends_with("/v1/messages") && stream {
            sse(vec![
                json!({"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"usage":{"input_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":50,"output_tokens":1}}}),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}),
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":20}}),
                json!({"type":"message_stop"}),
            ])
        } else if path.ends_with("/v1/messages") {
            json(200, json!({"id":"m","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi"}],"usage":{"input_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":50,"output_tokens":20}}))
        } else if path.contains(":streamGenerateContent") {
            sse(vec![
                json!({"candidates":[{"content":{"parts":[{"text":"H"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":1},"modelVersion":"gemini-2.5-flash"}),
                json!({"candidates":[{"content":{"parts":[{"text":"i"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":4,"thoughtsTokenCount":6,"totalTokenCount":22},"modelVersion":"gemini-2.5-flash"}),
            ])
        } else if path.contains(":generateContent") {
            json(200, json!({"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":4,"thoughtsTokenCount":6,"cachedContentTokenCount":2,"totalTokenCount":22},"modelVersion":"gemini-2.5-flash"}))
        } else if path.contains(":countTokens") {
            json(200, json!({"totalTokens": 31}))
        } else {
            json(404, json!({"error": {"message": "no such mock path"}}))
        }
    })
}

fn gateway(mock: &Mock) -> Gateway {
    let u = mock.url();
    Gateway::start(
        &format!("  providers:\n    openai: {{ base_url: \"{u}\", keys: [{{ name: o, value: sk-o }}] }}\n    anthropic: {{ base_url: \"{u}\", keys: [{{ name: a, value: sk-a }}] }}\n    azure: {{ keys: [{{ name: z, value: sk-z, endpoint: \"{u}\" }}] }}\n    gemini: {{ base_url: \"{u}\", keys: [{{ name: g, value: sk-g }}] }}\n    vertex: {{ base_url: \"{u}\", keys: [{{ name: v, value: sk-v }}] }}\n  prices:\n    openai:\n      gpt-4o-mini: {{ input: 0.15, output: 0.60, cached: 0.075 }}\n"),
        "",
        &[],
    )
}

fn rec(gw: &Gateway, r: &Response) -> Value {
    gw.record(r.header("x-tollgate-request-id").expect("request id"))
}

fn tokens(rec: &Value) -> (Value, Value, Value, Value, Value) {
    (rec["provider"].clone(), rec["model"].clone(), rec["input_tokens"].clone(), rec["output_tokens"].clone(), rec["cached_tokens"].clone())
}

#[test]
fn every_family_is_recorded_with_model_tokens_and_cost() {
    let mock = provider_mock();
    let gw = gateway(&mock);
    let p = gw.port;
    let chat = json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]});
    let chat_stream = json!({"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]});

    let cases: Vec<(Response, (&str, &str, u64, u64, u64), bool)> = vec![
        (post_json(p, "/openai_passthrough/v1/chat/completions", &[], &chat), ("openai", "gpt-4o-mini-2024-07-18", 1000, 500, 200), false),
        (post_json(p, "/openai_passthrough/v1/chat/completions", &[], &chat_stream), ("openai", "gpt-4o-mini-2024-07-18", 1000, 500, 200), true),
        (post_json(p, "/openai_passthrough/v1/responses", &[], &json!({"model":"gpt-4.1","input":"hi"})), ("openai", "gpt-4.1-2025-04-14", 30, 7, 10), false),
        (post_json(p, "/openai_passthrough/v1/responses", &[], &json!({"model":"gpt-4.1","input":"hi","stream":true})), ("openai", "gpt-4.1-2025-04-14", 30, 7, 0), true),
        (post_json(p, "/openai_passthrough/v1/embeddings", &[("accept-encoding", "gzip")], &json!({"model":"text-embedding-3-small","input":"hi"})), ("openai", "text-embedding-3-small", 42, 0, 0), false),
        (post_json(p, "/anthropic_passthrough/v1/messages", &[], &json!({"model":"claude-sonnet-4-5","max_tokens":9,"messages":[]})), ("anthropic", "claude-sonnet-4-5-20250929", 150, 20, 50), false),
        (post_json(p, "/anthropic_passthrough/v1/messages", &[], &json!({"model":"claude-sonnet-4-5","max_tokens":9,"stream":true,"messages":[]})), ("anthropic", "claude-sonnet-4-5-20250929", 150, 20, 50), true),
        (post_json(p, "/azure_passthrough/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", &[], &chat), ("azure", "gpt-4o-mini-2024-07-18", 1000, 500, 200), false),
        (post_json(p, "/azure_passthrough/openai/v1/responses", &[], &json!({"model":"gpt-4.1","input":"x"})), ("azure", "gpt-4.1-2025-04-14", 30, 7, 10), false),
        (post_json(p, "/azure_passthrough/anthropic/v1/messages", &[], &json!({"model":"claude-sonnet-4-5","messages":[]})), ("azure", "claude-sonnet-4-5-20250929", 150, 20, 50), false),
        (post_json(p, "/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent", &[], &json!({"contents":[]})), ("gemini", "gemini-2.5-flash", 12, 10, 2), false),
        (post_json(p, "/genai_passthrough/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", &[], &json!({"contents":[]})), ("gemini", "gemini-2.5-flash", 12, 10, 0), true),
        (post_json(p, "/genai_passthrough/v1beta1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse", &[], &json!({"contents":[]})), ("vertex", "gemini-2.5-flash", 12, 10, 0), true),
        (post_json(p, "/genai_passthrough/v1beta1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent", &[], &json!({"contents":[]})), ("vertex", "gemini-2.5-flash", 12, 10, 2), false),
    ];
    for (r, (provider, model, input, output, cached), stream) in &cases {
        assert_eq!(r.status, 200, "{provider} {model}: {}", r.text());
        let rec = rec(&gw, r);
        assert_eq!(tokens(&rec), (json!(provider), json!(model), json!(input), json!(output), json!(cached)), "record: {rec}");
        assert_eq!(rec["stream"], *stream, "{rec}");
        for f in ["ts", "request_id", "client_ip", "method", "route", "provider", "upstream_host", "path", "status", "duration_ms", "ttfb_ms", "request_bytes", "response_bytes", "stream", "model", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "virtual_key", "provider_key", "error", "user_agent"] {
            assert!(rec.get(f).is_some(), "record lacks {f}: {rec}");
        }
        assert_eq!(rec["response_bytes"], r.body.len(), "{rec}");
        assert!(rec["cost_usd"].as_f64().is_some(), "no cost for {model}: {rec}");
    }
    // Cost from the overridden price: 800 uncached × 0.15 + 200 cached × 0.075 + 500 × 0.60, per million.
    let first = rec(&gw, &cases[0].0);
    let want = (800.0 * 0.15 + 200.0 * 0.075 + 500.0 * 0.60) / 1e6;
    assert!((first["cost_usd"].as_f64().unwrap() - want).abs() < 1e-12, "{first}");
    // Shipped table: claude-sonnet-4-5 at 3 / 15 / 0.30.
    let claude = rec(&gw, &cases[5].0);
    let want = (100.0 * 3.0 + 50.0 * 0.30 + 20.0 * 15.0) / 1e6;
    assert!((claude["cost_usd"].as_f64().unwrap() - want).abs() < 1e-12, "{claude}");

    // The gzip body reached the client byte for byte, still compressed.
    let emb = &cases[4].0;
    assert_eq!(emb.header("content-encoding"), Some("gzip"));
    assert_eq!(emb.body[..2], [0x1f, 0x8b]);

    // countTokens and model lists carry no usage.
    let r = post_json(p, "/genai_passthrough/v1beta/models/gemini-2.5-flash:countTokens", &[], &json!({"contents":[]}));
    let rec = rec(&gw, &r);
    assert_eq!((rec["input_tokens"].clone(), rec["cost_usd"].clone()), (Value::Null, Value::Null));
}

#[test]
fn metrics_move_by_the_right_amounts() {
    let mock = provider_mock();
    let gw = gateway(&mock);
    let labels = [("provider", "openai"), ("model", "gpt-4o-mini-2024-07-18"), ("virtual_key", "none")];
    let before = gw.metrics();
    let b = |name: &str| metric_value(&before, name, &labels);
    let (in0, out0, cached0, cost0) = (b("tollgate_input_tokens_total"), b("tollgate_output_tokens_total"), b("tollgate_cached_tokens_total"), b("tollgate_cost_usd_total"));
    let req0 = metric_value(&before, "tollgate_requests_total", &[("provider", "openai"), ("route", "/openai_passthrough"), ("method", "POST"), ("status", "200")]);
    for stream in [false, true, false] {
        let r = post_json(gw.port, "/openai_passthrough/v1/chat/completions", &[], &json!({"model":"gpt-4o-mini","stream":stream,"messages":[]}));
        assert_eq!(r.status, 200);
        rec(&gw, &r);
    }
    let after = gw.metrics();
    let a = |name: &str| metric_value(&after, name, &labels);
    assert_eq!(a("tollgate_input_tokens_total") - in0, 3000.0);
    assert_eq!(a("tollgate_output_tokens_total") - out0, 1500.0);
    assert_eq!(a("tollgate_cached_tokens_total") - cached0, 600.0);
    let cost = a("tollgate_cost_usd_total") - cost0;
    assert!((cost - 3.0 * (800.0 * 0.15 + 200.0 * 0.075 + 500.0 * 0.60) / 1e6).abs() < 1e-9, "{cost}");
    let req1 = metric_value(&after, "tollgate_requests_total", &[("provider", "openai"), ("route", "/openai_passthrough"), ("method", "POST"), ("status", "200")]);
    assert_eq!(req1 - req0, 3.0);
    assert!(metric_value(&after, "tollgate_request_duration_seconds_count", &[("provider", "openai")]) >= 3.0);
    assert!(metric_value(&after, "tollgate_ttfb_seconds_count", &[("provider", "openai")]) >= 3.0);
    assert!(metric_value(&after, "tollgate_gateway_overhead_seconds_count", &[("provider", "openai")]) >= 3.0);
    assert!(after.contains("tollgate_request_duration_seconds_bucket{provider=\"openai\",le=\"0.005\"}"));
    assert!(after.contains("le=\"900\""));
    assert_eq!(metric_value(&after, "tollgate_requests_in_flight", &[]), 0.0);
}

#[test]
fn a_stream_cut_by_the_client_keeps_the_usage_seen() {
    let mock = provider_mock();
    let gw = gateway(&mock);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.write_all(b"POST /anthropic_passthrough/v1/messages HTTP/1.1\r\nhost: x\r\nx-request-id: cut-1\r\ncontent-length: 13\r\n\r\n{\"long\":true}").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("content_block_delta") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    drop(s);
    let rec = gw.record("cut-1");
    assert_eq!(rec["error"], "client_disconnected");
    assert_eq!(rec["model"], "claude-haiku-4-5");
    assert_eq!(rec["input_tokens"], 77);
}

#[test]
fn records_for_refusals_and_failures_and_no_secret_anywhere() {
    let mock = provider_mock();
    let gw = gateway(&mock);
    get(gw.port, "/nowhere", &[]);
    get(gw.port, "/openai_passthrough/v1/../x", &[]);
    post_json(gw.port, "/genai_passthrough/v1beta/models/g:generateContent?key=AIzaSECRETclientkey&alt=sse", &[("x-goog-api-key", "AIzaSECRETheader")], &json!({}));
    let recs = gw.records(3);
    assert!(recs.iter().any(|r| r["status"] == 404 && r["error"] == "route_not_found"));
    assert!(recs.iter().any(|r| r["status"] == 400 && r["error"] == "invalid_path"));
    let log = std::fs::read_to_string(&gw.log_path).unwrap();
    for secret in ["AIzaSECRET", "sk-o", "sk-a", "sk-z", "sk-g", "sk-v"] {
        assert!(!log.contains(secret), "{secret} in the access log");
        assert!(!gw.metrics().contains(secret), "{secret} in the metrics");
        assert!(!gw.stderr().contains(secret), "{secret} in the operational log");
    }
    assert!(log.contains("key=REDACTED&alt=sse"));
}
