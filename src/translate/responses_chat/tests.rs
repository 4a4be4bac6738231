use super::*;
use proptest::prelude::*;

/// OpenAI-shaped identity: the chat side as it is.
struct FakeChat {
    stream: bool,
    usage: TokenUsage,
}

impl FakeChat {
    fn boxed() -> Box<dyn Translator> {
        Box::new(FakeChat { stream: false, usage: TokenUsage::default() })
    }
}

impl Translator for FakeChat {
    fn request(&mut self, req: Value, _opts: &Options) -> Result<Value, TranslateError> {
        self.stream = req["stream"] == json!(true);
        Ok(req)
    }
    fn streaming(&self) -> bool {
        self.stream
    }
    fn request_headers(&self) -> Vec<(&'static str, String)> {
        vec![("x-fake", "1".into())]
    }
    fn response(&mut self, body: Value) -> Result<Value, TranslateError> {
        if body.get("bad").is_some() {
            return Err(TranslateError::bad_upstream("bad"));
        }
        Ok(body)
    }
    fn stream_event(&mut self, _event: Option<&str>, data: &str, out: &mut Vec<ClientEvent>) {
        if data.trim() == "[DONE]" {
            out.push(ClientEvent::Done);
        } else if let Ok(v) = serde_json::from_str::<Value>(data) {
            if v.is_object() {
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    self.usage = TokenUsage {
                        input_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
                        output_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
                        seen: true,
                        ..Default::default()
                    };
                }
                out.push(ClientEvent::Data(v));
            }
        }
    }
    fn stream_end(&mut self, end: StreamEnd, out: &mut Vec<ClientEvent>) {
        match end {
            StreamEnd::Complete => out.push(ClientEvent::Done),
            StreamEnd::Cut => out.push(ClientEvent::Data(super::super::openai_error("stream cut", "upstream_error", None, Some("stream_cut")))),
        }
    }
    fn error(&self, status: u16, _body: &[u8]) -> (u16, Value) {
        (status, json!({"error": {"message": "fake"}}))
    }
    fn usage(&self) -> TokenUsage {
        self.usage.clone()
    }
    fn response_model(&self) -> Option<String> {
        Some("fake-model".into())
    }
}

fn adapter() -> ResponsesOverChat {
    ResponsesOverChat::new(FakeChat::boxed())
}

fn req(v: Value) -> Result<Value, TranslateError> {
    adapter().request(v, &Options::default())
}

fn ok(v: Value) -> Value {
    req(v).expect("request translates")
}

fn refused(v: Value) -> TranslateError {
    let e = req(v).expect_err("request must be refused");
    assert_eq!(e.status, 400);
    e
}

// ---------------------------------------------------------------- requests

#[test]
fn string_input_is_one_user_message() {
    let c = ok(json!({"model": "m", "input": "hi"}));
    assert_eq!(c, json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
}

#[test]
fn instructions_lead_as_system() {
    let c = ok(json!({"model": "m", "instructions": "be brief", "input": "hi"}));
    assert_eq!(c["messages"], json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]));
}

#[test]
fn message_items_all_roles_and_parts() {
    let c = ok(json!({"model": "m", "input": [
        {"role": "system", "content": "sys"},
        {"role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,AA==", "filename": "a.pdf"}
        ]},
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": "seen", "annotations": []}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "a"}, {"type": "output_text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}
    ]}));
    assert_eq!(c["messages"], json!([
        {"role": "system", "content": "sys"},
        {"role": "system", "content": "dev"},
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA==", "filename": "a.pdf"}}
        ]},
        {"role": "assistant", "content": "seen"},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": null, "refusal": "no"}
    ]));
}

#[test]
fn function_calls_merge_and_outputs_become_tool_messages() {
    let c = ok(json!({"model": "m", "input": [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "get", "arguments": "{\"city\":\"a\"}", "status": "completed"},
        {"type": "function_call", "call_id": "c2", "name": "get", "arguments": "{\"city\":\"b\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "assistant", "content": "I'll check"},
        {"type": "function_call", "call_id": "c3", "name": "more", "arguments": "{}"}
    ]}));
    assert_eq!(c["messages"], json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"a\"}"}},
            {"id": "c2", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"b\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "rain"}]},
        {"role": "assistant", "content": "I'll check", "tool_calls": [
            {"id": "c3", "type": "function", "function": {"name": "more", "arguments": "{}"}}
        ]}
    ]));
}

#[test]
fn function_call_after_tool_output_starts_new_assistant_message() {
    let c = ok(json!({"model": "m", "input": [
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "x"},
        {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"}
    ]}));
    let m = c["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[2]["tool_calls"][0]["id"], "c2");
    assert_eq!(m[0]["tool_calls"].as_array().unwrap().len(), 1);
}

#[test]
fn tools_choice_and_sampling() {
    let c = ok(json!({
        "model": "m", "input": "x",
        "tools": [{"type": "function", "name": "get", "description": "d", "parameters": {"type": "object"}, "strict": true},
                  {"type": "function", "name": "bare"}],
        "tool_choice": {"type": "function", "name": "get"},
        "parallel_tool_calls": false,
        "max_output_tokens": 100, "temperature": 0.5, "top_p": 0.9,
        "reasoning": {"effort": "high", "summary": "auto"},
        "user": "u1", "metadata": {"k": "v"}, "store": true, "truncation": "auto", "include": ["reasoning.encrypted_content"],
        "background": false
    }));
    assert_eq!(c, json!({
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "get", "description": "d", "parameters": {"type": "object"}, "strict": true}},
                  {"type": "function", "function": {"name": "bare"}}],
        "tool_choice": {"type": "function", "function": {"name": "get"}},
        "parallel_tool_calls": false,
        "max_completion_tokens": 100, "temperature": 0.5, "top_p": 0.9,
        "reasoning_effort": "high",
        "user": "u1"
    }));
    for s in ["auto", "none", "required"] {
        assert_eq!(ok(json!({"model": "m", "input": "x", "tool_choice": s}))["tool_choice"], json!(s));
    }
}

#[test]
fn text_formats() {
    let f = |fmt: Value| ok(json!({"model": "m", "input": "x", "text": {"format": fmt}}))["response_format"].clone();
    assert_eq!(f(json!({"type": "text"})), json!({"type": "text"}));
    assert_eq!(f(json!({"type": "json_object"})), json!({"type": "json_object"}));
    assert_eq!(
        f(json!({"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": true, "description": "d"})),
        json!({"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": true, "description": "d"}})
    );
    assert!(ok(json!({"model": "m", "input": "x", "text": {"verbosity": "low"}})).get("response_format").is_none());
}

#[test]
fn stream_asks_for_usage() {
    let mut a = adapter();
    let c = a.request(json!({"model": "m", "input": "x", "stream": true}), &Options::default()).unwrap();
    assert_eq!(c["stream"], true);
    assert_eq!(c["stream_options"], json!({"include_usage": true}));
    assert!(a.streaming());
    assert_eq!(a.request_headers(), vec![("x-fake", "1".to_string())]);
    let mut b = adapter();
    let c = b.request(json!({"model": "m", "input": "x", "stream": false}), &Options::default()).unwrap();
    assert!(c.get("stream").is_none() && c.get("stream_options").is_none());
    assert!(!b.streaming());
}

#[test]
fn nulls_are_absent() {
    let c = ok(json!({"model": "m", "input": "x", "previous_response_id": null, "tools": null, "temperature": null}));
    assert_eq!(c, json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
}

#[test]
fn refusals_name_the_parameter() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}), "previous_response_id", "unsupported_parameter"),
        (json!({"model": "m", "input": "x", "conversation": "conv_1"}), "conversation", "unsupported_parameter"),
        (json!({"model": "m", "input": "x", "background": true}), "background", "unsupported_parameter"),
        (json!({"model": "m", "input": "x", "frobnicate": 1}), "frobnicate", "unsupported_parameter"),
        (json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]}), "tools[1].type", "unsupported_parameter"),
        (json!({"model": "m", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": []}]}), "tools[0].type", "unsupported_parameter"),
        (json!({"model": "m", "input": "x", "tools": [{"type": "code_interpreter"}]}), "tools[0].type", "unsupported_parameter"),
        (json!({"model": "m", "input": "x", "tools": [{"type": "computer_use_preview"}]}), "tools[0].type", "unsupported_parameter"),
        (json!({"model": "m", "input": "x", "tools": [{"type": "mcp"}]}), "tools[0].type", "unsupported_parameter"),
        (json!({"model": "m", "input": "x", "tools": [{"type": "image_generation"}]}), "tools[0].type", "unsupported_parameter"),
        (json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}), "input[0].content[0].file_id", "unsupported_parameter"),
        (json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]}), "input[0].content[0].file_id", "unsupported_parameter"),
        (json!({"model": "m", "input": [{"role": "user", "content": "a"}, {"type": "item_reference", "id": "x"}]}), "input[1].type", "unsupported_parameter"),
        (json!({"model": "m", "input": [{"role": "tool", "content": "a"}]}), "input[0].role", "invalid_value"),
        (json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}), "input[0].call_id", "invalid_value"),
        (json!({"model": "m", "input": 3}), "input", "invalid_value"),
        (json!({"model": "m"}), "input", "invalid_value"),
        (json!({"model": "m", "input": "x", "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}}), "tool_choice.type", "unsupported_parameter"),
        (json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}), "text.format.type", "invalid_value"),
        (json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}), "text.format.name", "invalid_value"),
        (json!({"model": "m", "input": "x", "truncation": "sometimes"}), "truncation", "invalid_value"),
        (json!({"model": "m", "input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://x"}]}]}), "input[0].content[0].type", "unsupported_parameter"),
    ];
    for (body, param, code) in cases {
        let e = refused(body.clone());
        assert_eq!(e.param.as_deref(), Some(param), "{body}");
        assert_eq!(e.code, Some(code), "{body}");
        assert_eq!(e.to_openai()["error"]["param"], json!(param));
    }
}

// --------------------------------------------------------------- responses

fn prepared(r: Value) -> ResponsesOverChat {
    let mut a = adapter();
    a.request(r, &Options::default()).unwrap();
    a
}

#[test]
fn text_response() {
    let mut a = prepared(json!({"model": "m", "input": "hi", "instructions": "sys", "metadata": {"k": "v"}, "temperature": 0.2}));
    let r = a.response(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "m-2025",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                  "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 1}}
    })).unwrap();
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(r["id"].as_str().unwrap(), a.response_id());
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "m-2025");
    assert_eq!(r["instructions"], "sys");
    assert_eq!(r["metadata"], json!({"k": "v"}));
    assert_eq!(r["temperature"], 0.2);
    assert_eq!(r["parallel_tool_calls"], true);
    assert_eq!(r["tool_choice"], "auto");
    assert_eq!(r["tools"], json!([]));
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["incomplete_details"], Value::Null);
    assert_eq!(r["text"], json!({"format": {"type": "text"}}));
    let out = r["output"].as_array().unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["type"], "message");
    assert!(out[0]["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(out[0]["status"], "completed");
    assert_eq!(out[0]["role"], "assistant");
    assert_eq!(out[0]["content"], json!([{"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}]));
    assert_eq!(r["usage"], json!({
        "input_tokens": 10, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 13
    }));
}

#[test]
fn parallel_tool_call_response() {
    let tools = json!([{"type": "function", "name": "get", "parameters": {"type": "object"}}]);
    let mut a = prepared(json!({"model": "m", "input": "x", "tools": tools, "tool_choice": "required"}));
    let r = a.response(json!({
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"a\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"b\"}"}}
        ]}}]
    })).unwrap();
    assert_eq!(r["status"], "completed");
    assert_eq!(r["tools"], tools);
    assert_eq!(r["tool_choice"], "required");
    let out = r["output"].as_array().unwrap();
    assert_eq!(out.len(), 2);
    for (o, (cid, city)) in out.iter().zip([("call_a", "a"), ("call_b", "b")]) {
        assert_eq!(o["type"], "function_call");
        assert!(o["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(o["call_id"], cid);
        assert_eq!(o["name"], "get");
        assert_eq!(o["arguments"], format!("{{\"city\":\"{city}\"}}"));
        assert_eq!(o["status"], "completed");
    }
    assert_ne!(out[0]["id"], out[1]["id"]);
    assert_eq!(r["usage"], Value::Null);
}

#[test]
fn length_and_content_filter_are_incomplete() {
    for (fr, reason) in [("length", "max_output_tokens"), ("content_filter", "content_filter")] {
        let mut a = prepared(json!({"model": "m", "input": "x", "max_output_tokens": 5}));
        let r = a.response(json!({"choices": [{"index": 0, "message": {"content": "trunc"}, "finish_reason": fr}]})).unwrap();
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"], json!({"reason": reason}));
        assert_eq!(r["output"][0]["status"], "incomplete");
        assert_eq!(r["max_output_tokens"], 5);
        assert_eq!(r["model"], "m");
    }
}

#[test]
fn text_and_tool_call_response_and_refusal() {
    let mut a = prepared(json!({"model": "m", "input": "x"}));
    let r = a.response(json!({"choices": [{"message": {"content": "let me", "tool_calls": [
        {"id": "c", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]})).unwrap();
    assert_eq!(r["output"][0]["type"], "message");
    assert_eq!(r["output"][1]["type"], "function_call");
    let r = prepared(json!({"model": "m", "input": "x"}))
        .response(json!({"choices": [{"message": {"content": null, "refusal": "no way"}, "finish_reason": "stop"}]})).unwrap();
    assert_eq!(r["output"][0]["content"], json!([{"type": "refusal", "refusal": "no way"}]));
}

#[test]
fn bad_responses() {
    let mut a = prepared(json!({"model": "m", "input": "x"}));
    assert_eq!(a.response(json!({"choices": []})).unwrap_err().status, 502);
    assert_eq!(a.response(json!({"bad": 1})).unwrap_err().status, 502);
    assert_eq!(a.error(429, b"x").0, 429);
    assert_eq!(a.response_model().as_deref(), Some("fake-model"));
}

#[test]
fn ids_are_unique() {
    let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id("resp")).collect();
    assert_eq!(ids.len(), 1000);
    assert_ne!(adapter().response_id(), adapter().response_id());
}

// ----------------------------------------------------------------- streams

fn chunk(delta: Value, finish: Option<&str>) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "model": "m-s", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).to_string()
}

fn usage_chunk() -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "model": "m-s", "choices": [],
           "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}}).to_string()
}

fn run(a: &mut ResponsesOverChat, datas: &[String], end: Option<StreamEnd>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for d in datas {
        a.stream_event(None, d, &mut out);
    }
    if let Some(e) = end {
        a.stream_end(e, &mut out);
    }
    out.into_iter()
        .map(|e| match e {
            ClientEvent::Named(n, v) => (n, v),
            other => panic!("not a named event: {other:?}"),
        })
        .collect()
}

fn streaming_adapter() -> ResponsesOverChat {
    prepared(json!({"model": "m", "input": "x", "stream": true, "tools": [{"type": "function", "name": "get"}]}))
}

fn types(evs: &[(String, Value)]) -> Vec<&str> {
    evs.iter().map(|(n, _)| n.as_str()).collect()
}

fn check_seq(evs: &[(String, Value)]) {
    for (i, (n, v)) in evs.iter().enumerate() {
        assert_eq!(v["type"], json!(n));
        assert_eq!(v["sequence_number"], json!(i as u64), "{n}");
    }
}

#[test]
fn text_stream() {
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": "Hel"}), None),
        chunk(json!({"content": "lo"}), None),
        chunk(json!({}), Some("stop")),
        usage_chunk(),
        "[DONE]".to_string(),
    ], Some(StreamEnd::Complete));
    assert_eq!(types(&evs), vec![
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]);
    check_seq(&evs);
    assert_eq!(evs[0].1["response"]["status"], "in_progress");
    assert_eq!(evs[0].1["response"]["output"], json!([]));
    assert_eq!(evs[0].1["response"]["id"], json!(a.response_id()));
    let item_id = evs[2].1["item"]["id"].clone();
    assert_eq!(evs[2].1["item"]["status"], "in_progress");
    assert_eq!(evs[2].1["output_index"], 0);
    assert_eq!(evs[8].1["item"]["id"], item_id);
    for e in &evs[3..8] {
        assert_eq!(e.1["item_id"], item_id);
    }
    let deltas: String = evs.iter().filter(|(n, _)| n == "response.output_text.delta").map(|(_, v)| v["delta"].as_str().unwrap()).collect();
    assert_eq!(deltas, "Hello");
    assert_eq!(evs[6].1["text"], "Hello");
    let fin = &evs[9].1["response"];
    assert_eq!(fin["status"], "completed");
    assert_eq!(fin["model"], "m-s");
    assert_eq!(fin["output"][0]["content"][0]["text"], deltas);
    assert_eq!(fin["output"][0]["id"], item_id);
    assert_eq!(fin["usage"]["input_tokens"], 7);
    assert_eq!(fin["usage"]["output_tokens"], 5);
    assert_eq!(fin["usage"]["total_tokens"], 12);
    assert_eq!(fin["id"], evs[0].1["response"]["id"]);
}

#[test]
fn tool_call_stream_two_calls() {
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[
        chunk(json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": ""}}]}), None),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]}), None),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":1}"}}]}), None),
        chunk(json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "get", "arguments": "{}"}}]}), None),
        chunk(json!({}), Some("tool_calls")),
        usage_chunk(),
    ], Some(StreamEnd::Complete));
    assert_eq!(types(&evs), vec![
        "response.created", "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]);
    check_seq(&evs);
    assert_eq!(evs[2].1["item"]["call_id"], "call_1");
    assert_eq!(evs[2].1["item"]["name"], "get");
    assert_eq!(evs[2].1["item"]["arguments"], "");
    assert_eq!(evs[5].1["output_index"], 1);
    assert_eq!(evs[7].1["arguments"], "{\"city\":1}");
    assert_eq!(evs[7].1["name"], "get");
    assert_eq!(evs[9].1["arguments"], "{}");
    let fin = &evs[11].1["response"];
    let out = fin["output"].as_array().unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["arguments"], "{\"city\":1}");
    assert_eq!(out[0]["call_id"], "call_1");
    assert_eq!(out[1]["call_id"], "call_2");
    assert_eq!(out[0]["status"], "completed");
    assert_eq!(fin["tools"], json!([{"type": "function", "name": "get"}]));
}

#[test]
fn text_then_tool_call_stream() {
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[
        chunk(json!({"content": "Checking"}), None),
        chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get", "arguments": "{}"}}]}), None),
        chunk(json!({}), Some("tool_calls")),
        usage_chunk(),
    ], Some(StreamEnd::Complete));
    assert_eq!(types(&evs), vec![
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]);
    check_seq(&evs);
    let fin = &evs[12].1["response"];
    assert_eq!(fin["output"][0]["type"], "message");
    assert_eq!(fin["output"][0]["content"][0]["text"], "Checking");
    assert_eq!(fin["output"][1]["type"], "function_call");
    assert_eq!(evs[8].1["output_index"], 1);
}

#[test]
fn length_stream_is_incomplete() {
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[chunk(json!({"content": "ab"}), None), chunk(json!({}), Some("length"))], Some(StreamEnd::Complete));
    let (n, v) = evs.last().unwrap();
    assert_eq!(n, "response.incomplete");
    assert_eq!(v["response"]["incomplete_details"], json!({"reason": "max_output_tokens"}));
    assert_eq!(v["response"]["output"][0]["status"], "incomplete");
    check_seq(&evs);
}

#[test]
fn cut_stream_fails() {
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[chunk(json!({"content": "par"}), None)], Some(StreamEnd::Cut));
    assert_eq!(types(&evs), vec![
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "error", "response.failed",
    ]);
    check_seq(&evs);
    assert_eq!(evs[5].1["message"], "stream cut");
    assert_eq!(evs[5].1["code"], "stream_cut");
    let r = &evs[6].1["response"];
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "server_error");
    assert_eq!(r["output"][0]["content"][0]["text"], "par");
    assert_eq!(r["output"][0]["status"], "incomplete");
}

#[test]
fn inner_error_mid_stream_fails_once() {
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[
        chunk(json!({"content": "a"}), None),
        json!({"error": {"message": "overloaded", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}).to_string(),
        chunk(json!({"content": "b"}), None),
    ], Some(StreamEnd::Complete));
    let t = types(&evs);
    assert_eq!(&t[t.len() - 2..], &["error", "response.failed"]);
    assert_eq!(t.iter().filter(|n| n.starts_with("response.failed") || **n == "response.completed").count(), 1);
    assert_eq!(evs.last().unwrap().1["response"]["error"]["code"], "rate_limit_exceeded");
    check_seq(&evs);
}

#[test]
fn empty_stream_still_completes_and_cut_empty_fails() {
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[], Some(StreamEnd::Complete));
    assert_eq!(types(&evs), vec!["response.created", "response.in_progress", "response.completed"]);
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[], Some(StreamEnd::Cut));
    assert_eq!(types(&evs), vec!["response.created", "response.in_progress", "error", "response.failed"]);
}

#[test]
fn nothing_after_terminal() {
    let mut a = streaming_adapter();
    let mut evs = run(&mut a, &[chunk(json!({"content": "a"}), Some("stop")), "[DONE]".into()], None);
    assert_eq!(evs.last().unwrap().0, "response.completed");
    evs.extend(run(&mut a, &[chunk(json!({"content": "b"}), None)], Some(StreamEnd::Complete)));
    assert_eq!(evs.last().unwrap().0, "response.completed");
    assert_eq!(evs.iter().filter(|(n, _)| n == "response.completed").count(), 1);
}

#[test]
fn refusal_stream() {
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[chunk(json!({"refusal": "no"}), None), chunk(json!({}), Some("stop"))], Some(StreamEnd::Complete));
    assert_eq!(types(&evs), vec![
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.refusal.delta", "response.refusal.done", "response.content_part.done", "response.output_item.done", "response.completed",
    ]);
    assert_eq!(evs[8].1["response"]["output"][0]["content"], json!([{"type": "refusal", "refusal": "no"}]));
}

#[test]
fn retention_cap_truncates_final_text_but_forwards_deltas() {
    let mut a = streaming_adapter().with_retain_cap(5);
    let evs = run(&mut a, &[
        chunk(json!({"content": "abc"}), None),
        chunk(json!({"content": "dé"}), None), // 'é' is 2 bytes: crosses the cap
        chunk(json!({"content": "fgh"}), None),
        chunk(json!({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}), None),
        chunk(json!({}), Some("tool_calls")),
    ], Some(StreamEnd::Complete));
    let deltas: String = evs.iter().filter(|(n, _)| n == "response.output_text.delta").map(|(_, v)| v["delta"].as_str().unwrap()).collect();
    assert_eq!(deltas, "abcdéfgh");
    let arg_deltas: Vec<&str> = evs.iter().filter(|(n, _)| n == "response.function_call_arguments.delta").map(|(_, v)| v["delta"].as_str().unwrap()).collect();
    assert_eq!(arg_deltas, vec!["{\"a\":1}"]);
    let fin = &evs.last().unwrap().1["response"];
    assert_eq!(fin["status"], "completed");
    assert_eq!(fin["output"][0]["content"][0]["text"], "abcd");
    assert_eq!(fin["output"][1]["arguments"], "");
}

#[test]
fn usage_from_inner_when_no_usage_chunk_in_final() {
    // The fake records usage from the usage chunk; a chunk carrying usage on
    // a non-object is ignored, and with no usage at all the final has null.
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[chunk(json!({"content": "a"}), Some("stop"))], Some(StreamEnd::Complete));
    assert_eq!(evs.last().unwrap().1["response"]["usage"], Value::Null);
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[chunk(json!({"content": "a"}), Some("stop")), usage_chunk()], Some(StreamEnd::Complete));
    assert_eq!(evs.last().unwrap().1["response"]["usage"]["total_tokens"], 12);
    assert_eq!(a.usage().input_tokens, 7);
}

/// Required fields of each event, as in openai-python's
/// `types/responses/response_*_event.py` models.
fn required_fields(ty: &str) -> &'static [&'static str] {
    match ty {
        "response.created" | "response.in_progress" | "response.completed" | "response.incomplete" | "response.failed" => &["response"],
        "response.output_item.added" | "response.output_item.done" => &["item", "output_index"],
        "response.content_part.added" | "response.content_part.done" => &["content_index", "item_id", "output_index", "part"],
        "response.output_text.delta" => &["content_index", "delta", "item_id", "logprobs", "output_index"],
        "response.output_text.done" => &["content_index", "item_id", "logprobs", "output_index", "text"],
        "response.refusal.delta" => &["content_index", "delta", "item_id", "output_index"],
        "response.refusal.done" => &["content_index", "item_id", "output_index", "refusal"],
        "response.function_call_arguments.delta" => &["delta", "item_id", "output_index"],
        "response.function_call_arguments.done" => &["arguments", "item_id", "output_index", "name"],
        "error" => &["message"],
        other => panic!("unexpected event type {other}"),
    }
}

/// Response fields the SDK's `Response` model requires.
const RESPONSE_REQUIRED: &[&str] = &["id", "created_at", "model", "object", "output", "parallel_tool_calls", "tool_choice", "tools"];

fn check_shapes(evs: &[(String, Value)]) {
    for (n, v) in evs {
        for f in required_fields(n) {
            assert!(v.get(*f).is_some_and(|x| !x.is_null()), "{n} lacks {f}: {v}");
        }
        if let Some(r) = v.get("response") {
            for f in RESPONSE_REQUIRED {
                assert!(r.get(*f).is_some_and(|x| !x.is_null()), "{n}.response lacks {f}");
            }
        }
    }
}

/// Checks the SDK's required fields on the streams used in the SDK check;
/// with XLATE_DUMP=1 also prints them for that check
/// (`XLATE_DUMP=1 cargo test sdk_shapes -- --nocapture`).
#[test]
fn sdk_shapes() {
    let dump = std::env::var_os("XLATE_DUMP").is_some();
    let mut a = streaming_adapter();
    let evs = run(&mut a, &[
        chunk(json!({"content": "Checking"}), None),
        chunk(json!({"refusal": "r"}), None),
        chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get", "arguments": "{}"}}]}), None),
        chunk(json!({}), Some("tool_calls")),
        usage_chunk(),
    ], Some(StreamEnd::Complete));
    let mut a = streaming_adapter();
    let evs2 = run(&mut a, &[chunk(json!({"content": "x"}), Some("length"))], Some(StreamEnd::Complete));
    let mut a = streaming_adapter();
    let evs3 = run(&mut a, &[chunk(json!({"content": "x"}), None)], Some(StreamEnd::Cut));
    for (tag, evs) in [("EVENT", &evs), ("EVENT2", &evs2), ("EVENT3", &evs3)] {
        check_shapes(evs);
        check_seq(evs);
        if dump {
            for (n, v) in evs.iter() {
                println!("{tag} {n} {v}");
            }
        }
    }
    let mut a = prepared(json!({"model": "m", "input": "x", "instructions": "i", "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "get"}, "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": true}}, "reasoning": {"effort": "low"}}));
    let r = a.response(json!({"model": "m", "choices": [{"message": {"content": "hello", "tool_calls": [{"id": "c", "function": {"name": "get", "arguments": "{}"}}]}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})).unwrap();
    for f in RESPONSE_REQUIRED {
        assert!(r.get(*f).is_some_and(|x| !x.is_null()), "response lacks {f}");
    }
    assert_eq!(r["text"]["format"]["type"], "json_schema");
    assert_eq!(r["reasoning"]["effort"], "low");
    if dump {
        println!("OBJECT {r}");
    }
}

// ----------------------------------------------------------- property test

fn piece() -> impl Strategy<Value = String> {
    let text = "[a-zé ]{0,6}";
    prop_oneof![
        text.prop_map(|t| chunk(json!({"content": t}), None)),
        text.prop_map(|t| chunk(json!({"refusal": t}), None)),
        (0u64..3, text, proptest::option::of("[a-z]{1,3}")).prop_map(|(i, args, name)| {
            let mut f = json!({"arguments": args});
            if let Some(n) = name {
                f["name"] = json!(n);
            }
            chunk(json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "function": f}]}), None)
        }),
        prop_oneof![Just("stop"), Just("length"), Just("tool_calls"), Just("content_filter")].prop_map(|f| chunk(json!({}), Some(f))),
        Just(usage_chunk()),
        Just("[DONE]".to_string()),
        Just(json!({"error": {"message": "boom"}}).to_string()),
        Just(json!({"error": "plain"}).to_string()),
        "\\PC{0,12}",
        Just(json!({"choices": [{"index": 0, "delta": {"content": 5, "tool_calls": [7, {"function": null}]}}]}).to_string()),
        Just(json!({"choices": "x", "usage": 3, "model": 1}).to_string()),
        Just("[1,2]".to_string()),
        Just(json!({"choices": [{"index": 1, "delta": {"content": "other choice"}}]}).to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn arbitrary_streams_keep_the_invariants(
        pieces in proptest::collection::vec(piece(), 0..25),
        end in prop_oneof![Just(None), Just(Some(StreamEnd::Complete)), Just(Some(StreamEnd::Cut))],
        cap in prop_oneof![Just(DEFAULT_RETAIN_CAP), 0usize..8],
    ) {
        let mut a = streaming_adapter().with_retain_cap(cap);
        let mut out = Vec::new();
        for p in &pieces {
            a.stream_event(None, p, &mut out);
        }
        if let Some(e) = end {
            a.stream_end(e, &mut out);
        }
        let terminal = |n: &str| matches!(n, "response.completed" | "response.incomplete" | "response.failed");
        let mut last_seq: Option<u64> = None;
        let mut names = Vec::new();
        for e in &out {
            let ClientEvent::Named(n, v) = e else { panic!("not named: {e:?}") };
            prop_assert!(v.is_object());
            prop_assert_eq!(&v["type"], &json!(n));
            let s = v["sequence_number"].as_u64().expect("sequence_number");
            if let Some(l) = last_seq { prop_assert!(s > l); }
            last_seq = Some(s);
            names.push(n.clone());
        }
        let terminals = names.iter().filter(|n| terminal(n)).count();
        if end.is_some() {
            prop_assert!(!names.is_empty());
        }
        if !names.is_empty() {
            prop_assert_eq!(names[0].as_str(), "response.created");
            // A stream that was ended, or that saw [DONE] / an error, closed once.
            if end.is_some() {
                prop_assert_eq!(terminals, 1);
                prop_assert!(terminal(names.last().unwrap()));
            } else {
                prop_assert!(terminals <= 1);
                if terminals == 1 { prop_assert!(terminal(names.last().unwrap())); }
            }
        }
        // Every text delta reaches the final object (within the cap).
        if let Some(ClientEvent::Named(n, v)) = out.last() {
            if n == "response.completed" || n == "response.incomplete" {
                let deltas: String = out.iter().filter_map(|e| match e {
                    ClientEvent::Named(n, v) if n == "response.output_text.delta" => v["delta"].as_str().map(str::to_owned),
                    _ => None,
                }).collect();
                let finals: String = v["response"]["output"].as_array().unwrap().iter()
                    .filter(|o| o["type"] == "message")
                    .flat_map(|o| o["content"].as_array().unwrap().iter().filter(|p| p["type"] == "output_text").map(|p| p["text"].as_str().unwrap().to_owned()).collect::<Vec<_>>())
                    .collect();
                if cap == DEFAULT_RETAIN_CAP {
                    prop_assert_eq!(finals, deltas);
                } else {
                    prop_assert!(finals.len() <= cap);
                }
            }
        }
    }
}

/// Prompt-cache breakpoints on Responses content parts and tools reach
/// Anthropic on the matching blocks (through the chat translation).
#[test]
fn cache_control_on_parts_and_tools_reaches_anthropic() {
    use crate::translate::anthropic_chat::AnthropicChat;
    let eph = json!({"type": "ephemeral", "ttl": "1h"});
    let mut t = ResponsesOverChat::new(Box::new(AnthropicChat::new()));
    let out = t
        .request(
            json!({
                "model": "claude-sonnet-4-5",
                "instructions": null,
                "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "cache_control": eph}],
                "input": [
                    {"role": "system", "content": [{"type": "input_text", "text": "long shared prompt", "cache_control": eph}]},
                    {"role": "user", "content": [{"type": "input_text", "text": "question", "cache_control": {"type": "ephemeral"}}]},
                ],
            }),
            &Options::default(),
        )
        .unwrap();
    assert_eq!(out["system"], json!([{"type": "text", "text": "long shared prompt", "cache_control": eph}]));
    assert_eq!(out["tools"][0]["cache_control"], eph);
    assert_eq!(out["messages"][0]["content"], json!([{"type": "text", "text": "question", "cache_control": {"type": "ephemeral"}}]));
}

/// Claude's thinking through the Responses API: a `reasoning` item (summary
/// and the blocks, opaque) before the calls, and the blocks back at the head
/// of the assistant turn when the client sends the output items back.
#[test]
fn thinking_maps_to_a_reasoning_item_and_back() {
    use crate::translate::anthropic_chat::AnthropicChat;
    let mut t = ResponsesOverChat::new(Box::new(AnthropicChat::new()));
    t.request(json!({"model": "claude-sonnet-4-5", "input": "weather?", "reasoning": {"effort": "low"}, "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}}]}), &Options::default()).unwrap();
    let blocks = json!([{"type": "thinking", "thinking": "call w", "signature": "sig"}, {"type": "redacted_thinking", "data": "enc"}]);
    let out = t
        .response(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "stop_reason": "tool_use",
            "content": [blocks[0].clone(), blocks[1].clone(), {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}],
            "usage": {"input_tokens": 5, "output_tokens": 9}}))
        .unwrap();
    let output = out["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["summary"], json!([{"type": "summary_text", "text": "call w"}]));
    assert_eq!(output[1]["type"], "function_call");
    assert_eq!(t.replay_memos().len(), 1, "the inner pair's memos");
    // The output items sent back as input.
    let mut input = vec![json!({"role": "user", "content": "weather?"})];
    input.extend(output.iter().cloned());
    input.push(json!({"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"}));
    let mut next = ResponsesOverChat::new(Box::new(AnthropicChat::new()));
    let body = next.request(json!({"model": "claude-sonnet-4-5", "input": input, "reasoning": {"effort": "low"}}), &Options::default()).unwrap();
    let content = &body["messages"][1]["content"];
    assert_eq!(content[0], blocks[0]);
    assert_eq!(content[1], blocks[1]);
    assert_eq!(content[2]["type"], "tool_use");
    // Another provider's reasoning state is dropped, not sent.
    let mut other = ResponsesOverChat::new(Box::new(AnthropicChat::new()));
    let body = other
        .request(json!({"model": "m", "input": [{"role": "user", "content": "x"}, {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA-openai"},
            {"type": "function_call", "call_id": "c", "name": "w", "arguments": "{}"}, {"type": "function_call_output", "call_id": "c", "output": "y"}]}), &Options::default())
        .unwrap();
    assert_eq!(body["messages"][1]["content"][0]["type"], "tool_use");
}

/// Streamed: the reasoning item is complete before the first call's item.
#[test]
fn streamed_thinking_is_one_reasoning_item_before_the_answer() {
    let mut t = ResponsesOverChat::new(FakeChat::boxed());
    t.request(json!({"model": "m", "input": "x", "stream": true}), &Options::default()).unwrap();
    let chunk = |delta: Value, fin: Value| json!({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": fin}]}).to_string();
    let mut out = Vec::new();
    for data in [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"reasoning_content": "think "}), Value::Null),
        chunk(json!({"reasoning_content": "hard"}), Value::Null),
        chunk(json!({"thinking_blocks": [{"type": "thinking", "thinking": "think hard", "signature": "s"}]}), Value::Null),
        chunk(json!({"content": "Done."}), Value::Null),
        chunk(json!({}), json!("stop")),
        "[DONE]".to_string(),
    ] {
        t.stream_event(None, &data, &mut out);
    }
    let named: Vec<(String, Value)> = out.iter().filter_map(|e| if let ClientEvent::Named(n, v) = e { Some((n.clone(), v.clone())) } else { None }).collect();
    let done: Vec<&Value> = named.iter().filter(|(n, _)| n == "response.output_item.done").map(|(_, v)| &v["item"]).collect();
    assert_eq!(done[0]["type"], "reasoning");
    assert_eq!(done[0]["summary"][0]["text"], "think hard");
    assert_eq!(crate::translate::replay::decode_blocks(done[0]["encrypted_content"].as_str().unwrap()).unwrap()[0]["signature"], "s");
    assert_eq!(done[1]["type"], "message");
    let completed = &named.last().unwrap().1["response"]["output"];
    assert_eq!(completed[0]["type"], "reasoning");
    assert_eq!(completed[1]["content"][0]["text"], "Done.");
}

/// Gemini's thought signature rides on a streamed call's item as on a whole
/// answer's, so a client sending the items back carries it.
#[test]
fn a_streamed_calls_signature_stays_on_its_item() {
    let mut t = ResponsesOverChat::new(FakeChat::boxed());
    t.request(json!({"model": "m", "input": "x", "stream": true}), &Options::default()).unwrap();
    let sig = json!({"google": {"thought_signature": "c2ln"}});
    let mut out = Vec::new();
    for data in [
        json!({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}, "extra_content": sig}]}, "finish_reason": null}]}).to_string(),
        json!({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}).to_string(),
        "[DONE]".to_string(),
    ] {
        t.stream_event(None, &data, &mut out);
    }
    let items: Vec<Value> = out.iter().filter_map(|e| if let ClientEvent::Named(n, v) = e { (n == "response.output_item.done").then(|| v["item"].clone()) } else { None }).collect();
    assert_eq!(items[0]["extra_content"], sig);
    let completed = out.iter().rev().find_map(|e| if let ClientEvent::Named(n, v) = e { (n == "response.completed").then(|| v.clone()) } else { None }).unwrap();
    assert_eq!(completed["response"]["output"][0]["extra_content"], sig);
}
