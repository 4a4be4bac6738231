//! Prompt caching end to end (issue 31, SPEC 6 and 8): `cache_control`
//! markers reach Anthropic through `/openai`, on the matching blocks, and
//! cache writes are priced at their own rate on every route, streamed and
//! not, from Anthropic's documented usage objects (5-minute and 1-hour
//! writes mixed).

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Anthropic's documented usage object: 10 plain input tokens, 1,000
/// written to the cache (600 for 5 minutes, 400 for an hour), 2,000 read,
/// 5 output.
fn usage() -> Value {
    json!({"input_tokens": 10, "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 2000, "output_tokens": 5,
           "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 400}})
}

/// The bill for `usage()` on claude-sonnet-4-5 (input $3, 5-minute writes
/// $3.75, 1-hour writes $6, reads $0.30, output $15 per million).
const BILL: f64 = (10.0 * 3.0 + 600.0 * 3.75 + 400.0 * 6.0 + 2000.0 * 0.30 + 5.0 * 15.0) / 1e6;

/// An Anthropic Messages mock: answers with `usage()`, as JSON or SSE.
fn anthropic_mock() -> Mock {
    Mock::start(|req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let path = req.path();
        let vertex = path.ends_with(":rawPredict") || path.ends_with(":streamRawPredict");
        if !(path.ends_with("/v1/messages") || vertex) {
            return json(404, json!({"type": "error", "error": {"type": "not_found_error", "message": "no such path"}}));
        }
        // Claude on Vertex: the model is in the URL and the version in the body.
        if vertex && (body.get("model").is_some() || body["anthropic_version"] != "vertex-2023-10-16") {
            return json(400, json!({"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic_version: vertex-2023-10-16 required; model: Extra inputs are not permitted"}}));
        }
        if !vertex && req.header("anthropic-version").is_none() {
            return json(400, json!({"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic-version: header is required"}}));
        }
        if vertex && (body["stream"] == true) != path.ends_with(":streamRawPredict") {
            return json(400, json!({"type": "error", "error": {"type": "invalid_request_error", "message": "stream does not match the method"}}));
        }
        let model = "claude-sonnet-4-5-20250929";
        if body["stream"] == true {
            let mut start_usage = usage();
            start_usage["output_tokens"] = json!(1);
            let events = [
                json!({"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":model,"content":[],"usage":start_usage}}),
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}),
                json!({"type":"content_block_stop","index":0}),
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}),
                json!({"type":"message_stop"}),
            ];
            Reply::Sse { events: events.iter().map(|e| e.to_string()).collect(), delay: Duration::from_millis(2) }
        } else {
            json(200, json!({"id":"m","type":"message","role":"assistant","model":model,"content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":usage()}))
        }
    })
}

fn gateway(mock: &Mock) -> Gateway {
    let u = mock.url();
    Gateway::start(
        &format!("  providers:\n    anthropic: {{ base_url: \"{u}\", keys: [{{ name: a, value: sk-a }}] }}\n    vertex: {{ base_url: \"{u}\", keys: [{{ name: v, value: sk-v }}] }}\n    azure: {{ keys: [{{ name: z, value: sk-z, endpoint: \"{u}\" }}] }}\n"),
        "",
        &[],
    )
}

fn assert_billed(rec: &Value, what: &str) {
    assert_eq!(rec["input_tokens"], 3010, "{what}: {rec}");
    assert_eq!(rec["cache_read_tokens"], 2000, "{what}: {rec}");
    assert_eq!(rec["cache_write_tokens"], 1000, "{what}: {rec}");
    assert_eq!(rec["output_tokens"], 5, "{what}: {rec}");
    let cost = rec["cost_usd"].as_f64().unwrap_or_else(|| panic!("{what}: no cost in {rec}"));
    assert!((cost - BILL).abs() < 1e-12, "{what}: cost {cost}, bill {BILL}");
}

#[test]
fn cache_writes_are_billed_on_the_passthrough_and_on_openai() {
    let mock = anthropic_mock();
    let gw = gateway(&mock);
    let p = gw.port;
    let native = json!({"model": "claude-sonnet-4-5", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]});
    let mut native_stream = native.clone();
    native_stream["stream"] = json!(true);
    let chat = json!({"model": "anthropic/claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]});
    let mut chat_stream = chat.clone();
    chat_stream["stream"] = json!(true);
    for (path, body, what) in [
        ("/anthropic_passthrough/v1/messages", &native, "passthrough json"),
        ("/anthropic_passthrough/v1/messages", &native_stream, "passthrough sse"),
        ("/openai/v1/chat/completions", &chat, "/openai json"),
        ("/openai/v1/chat/completions", &chat_stream, "/openai sse"),
    ] {
        // The native client sends Anthropic's version header; /openai sets its own.
        let r = post_json(p, path, &[("anthropic-version", "2023-06-01")], body);
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        let rec = gw.record(r.header("x-tollgate-request-id").expect("request id"));
        assert_billed(&rec, what);
    }
    // Writes are their own token series.
    assert!(gw.metric("tollgate_cache_write_tokens_total", &[("provider", "anthropic")]) >= 4000.0, "{}", gw.metrics());
}

#[test]
fn markers_reach_anthropic_on_the_matching_blocks() {
    let mock = anthropic_mock();
    let gw = gateway(&mock);
    let eph = json!({"type": "ephemeral"});
    let hour = json!({"type": "ephemeral", "ttl": "1h"});
    let req = json!({
        "model": "anthropic/claude-sonnet-4-5",
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}, "cache_control": hour}],
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "a long shared system prompt", "cache_control": hour}]},
            {"role": "user", "content": [{"type": "text", "text": "question", "cache_control": eph}]},
        ],
    });
    let r = post_json(gw.port, "/openai/v1/chat/completions", &[], &req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["prompt_tokens_details"]["cache_write_tokens"], 1000);
    let sent: Value = serde_json::from_slice(&mock.take().pop().expect("one request").body).unwrap();
    assert_eq!(sent["system"], json!([{"type": "text", "text": "a long shared system prompt", "cache_control": hour}]));
    assert_eq!(sent["tools"][0]["cache_control"], hour);
    assert_eq!(sent["messages"][0]["content"], json!([{"type": "text", "text": "question", "cache_control": eph}]));

    // A fifth breakpoint is refused before anything is sent.
    let part = |t: &str| json!({"type": "text", "text": t, "cache_control": eph});
    let five = json!({"model": "anthropic/claude-sonnet-4-5", "messages": [{"role": "user", "content": [part("a"), part("b"), part("c"), part("d"), part("e")]}]});
    let r = post_json(gw.port, "/openai/v1/chat/completions", &[], &five);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "messages[0].content[4].cache_control");
    assert_eq!(mock.count(), 0, "nothing sent");
}

/// Claude on Vertex (rawPredict) and on Azure AI Foundry (/anthropic/v1/messages)
/// through /openai: the markers arrive on the same blocks, and the writes
/// are billed (Vertex and Azure fall back to the Anthropic price table).
#[test]
fn markers_and_writes_on_vertex_and_azure_claude() {
    let mock = anthropic_mock();
    let gw = gateway(&mock);
    let eph = json!({"type": "ephemeral", "ttl": "1h"});
    for (model, stream, path_end) in [
        ("vertex/claude-sonnet-4-5", false, "/publishers/anthropic/models/claude-sonnet-4-5:rawPredict"),
        ("vertex/claude-sonnet-4-5", true, "/publishers/anthropic/models/claude-sonnet-4-5:streamRawPredict"),
        ("azure/claude-sonnet-4-5", false, "/anthropic/v1/messages"),
        ("azure/claude-sonnet-4-5", true, "/anthropic/v1/messages"),
    ] {
        let req = json!({
            "model": model, "stream": stream,
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "shared", "cache_control": eph}]},
                {"role": "user", "content": "q"},
            ],
        });
        let r = post_json(gw.port, "/openai/v1/chat/completions", &[], &req);
        assert_eq!(r.status, 200, "{model} stream={stream}: {}", r.text());
        let sent = mock.take().pop().expect("one request");
        assert!(sent.path().ends_with(path_end), "{model}: {}", sent.path());
        let body: Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(body["system"], json!([{"type": "text", "text": "shared", "cache_control": eph}]), "{model}");
        let rec = gw.record(r.header("x-tollgate-request-id").expect("request id"));
        assert_billed(&rec, model);
    }
}
