use super::*;
use serde_json::json;
use proptest::prelude::*;

// ------------------------------------------------------------------ helpers

fn tr(req: Value) -> Result<Value, TranslateError> {
    AnthropicChat::new().request(req, &Options::default())
}

fn ok(req: Value) -> Value {
    tr(req).expect("request should translate")
}

/// Asserts a 400 naming `param`, returns the error.
fn refused(req: Value, param: &str) -> TranslateError {
    let e = tr(req).expect_err("request should be refused");
    assert_eq!(e.status, 400, "{e:?}");
    assert_eq!(e.kind, "invalid_request_error");
    assert_eq!(e.param.as_deref(), Some(param), "{e:?}");
    assert_eq!(e.to_openai()["error"]["param"], json!(param));
    e
}

fn base(extra: Value) -> Value {
    let mut r = json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn msgs(m: Value) -> Value {
    json!({"model": "claude-sonnet-4-5", "messages": m})
}

const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

// ------------------------------------------------------------------ request: basics

#[test]
fn minimal_request_uses_default_max_tokens() {
    let out = AnthropicChat::new().request(base(json!({})), &Options { default_max_tokens: 1234 }).unwrap();
    assert_eq!(
        out,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 1234, "messages": [{"role": "user", "content": "Hi"}]})
    );
}

#[test]
fn max_tokens_and_max_completion_tokens() {
    assert_eq!(ok(base(json!({"max_tokens": 77})))["max_tokens"], json!(77));
    assert_eq!(ok(base(json!({"max_completion_tokens": 88})))["max_tokens"], json!(88));
    // max_completion_tokens wins over the deprecated max_tokens.
    assert_eq!(ok(base(json!({"max_completion_tokens": 88, "max_tokens": 77})))["max_tokens"], json!(88));
    refused(base(json!({"max_tokens": 0})), "max_tokens");
    refused(base(json!({"max_completion_tokens": "x"})), "max_completion_tokens");
}

#[test]
fn system_and_developer_messages() {
    let out = ok(msgs(json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ])));
    assert_eq!(out["system"], json!("Be brief."));
    assert_eq!(out["messages"], json!([{"role": "user", "content": "Hi"}]));

    let out = ok(msgs(json!([
        {"role": "system", "content": "A"},
        {"role": "developer", "content": [{"type": "text", "text": "B"}, {"type": "text", "text": "C"}]},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "D"},
    ])));
    assert_eq!(
        out["system"],
        json!([{"type": "text", "text": "A"}, {"type": "text", "text": "B"}, {"type": "text", "text": "C"}, {"type": "text", "text": "D"}])
    );
    refused(
        msgs(json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}, {"role": "user", "content": "Hi"}])),
        "messages[0].content[0]",
    );
}

#[test]
fn multi_turn_and_merging() {
    let out = ok(msgs(json!([
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
        {"role": "user", "content": "e"},
    ])));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
            {"role": "user", "content": "e"},
        ])
    );
}

#[test]
fn missing_or_empty_messages() {
    refused(json!({"model": "m"}), "messages");
    refused(json!({"model": "m", "messages": []}), "messages");
    refused(json!({"model": "m", "messages": "hi"}), "messages");
    refused(json!({"model": "m", "messages": [{"role": "system", "content": "only system"}]}), "messages");
    refused(json!({"messages": [{"role": "user", "content": "x"}]}), "model");
    refused(msgs(json!([{"role": "user"}])), "messages[0].content");
    refused(msgs(json!([{"role": "wizard", "content": "x"}])), "messages[0].role");
    refused(msgs(json!(["x"])), "messages[0]");
}

#[test]
fn images_data_and_http_urls() {
    let out = ok(msgs(json!([{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}"), "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}])));
    assert_eq!(
        out["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ])
    );
    let img = |url: &str| msgs(json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]));
    assert_eq!(ok(img(&format!("data:image/jpg;base64,{PNG_B64}")))["messages"][0]["content"][0]["source"]["media_type"], json!("image/jpeg"));
    refused(img("data:image/tiff;base64,AAAA"), "messages[0].content[0].image_url");
    refused(img("data:image/png;base64,@@not base64@@"), "messages[0].content[0].image_url");
    refused(img("data:image/png,rawdata"), "messages[0].content[0].image_url");
    refused(img("ftp://example.com/x.png"), "messages[0].content[0].image_url");
}

#[test]
fn files_audio_and_unknown_parts() {
    let pdf = "JVBERi0xLjQK";
    let out = ok(msgs(json!([{"role": "user", "content": [
        {"type": "file", "file": {"filename": "a.pdf", "file_data": format!("data:application/pdf;base64,{pdf}")}},
        {"type": "file", "file": {"file_data": "data:text/plain;base64,aGVsbG8="}},
    ]}])));
    assert_eq!(
        out["messages"][0]["content"],
        json!([
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}},
        ])
    );
    let part = |p: Value| msgs(json!([{"role": "user", "content": [{"type": "text", "text": "x"}, p]}]));
    refused(part(json!({"type": "file", "file": {"file_id": "file-abc"}})), "messages[0].content[1].file");
    refused(part(json!({"type": "file", "file": {"file_data": "data:application/zip;base64,AAAA"}})), "messages[0].content[1].file.file_data");
    let e = refused(part(json!({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}})), "messages[0].content[1]");
    assert_eq!(e.code, Some("unsupported_parameter"));
    refused(part(json!({"type": "video"})), "messages[0].content[1]");
}

#[test]
fn tool_calls_and_results_round_trip() {
    let out = ok(msgs(json!([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "25C"}]},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "now", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "call_3", "content": ""},
    ])));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "25C"}]},
                {"type": "text", "text": "Thanks"},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_3", "name": "now", "input": {}},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_3"}]},
        ])
    );
}

#[test]
fn tool_results_go_first_in_a_user_turn() {
    let out = ok(msgs(json!([
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "By the way"},
        {"role": "tool", "tool_call_id": "t1", "content": "done"},
    ])));
    assert_eq!(
        out["messages"][1],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "done"},
            {"type": "text", "text": "By the way"},
        ]})
    );
}

#[test]
fn tool_call_refusals() {
    let with_call = |args: &str| {
        msgs(json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "f", "arguments": args}},
            ]},
        ]))
    };
    refused(with_call("{not json"), "messages[1].tool_calls[1].function.arguments");
    refused(with_call("[1,2]"), "messages[1].tool_calls[1].function.arguments");
    refused(msgs(json!([{"role": "tool", "content": "x"}])), "messages[0].tool_call_id");
    refused(msgs(json!([{"role": "tool", "tool_call_id": "a", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}])), "messages[0].content[0]");
    let e = refused(msgs(json!([{"role": "function", "name": "f", "content": "x"}])), "messages[0].role");
    assert_eq!(e.code, Some("unsupported_parameter"));
    refused(
        msgs(json!([{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}])),
        "messages[0].function_call",
    );
}

#[test]
fn tools_and_tool_choice() {
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "strict": true}},
        {"type": "function", "function": {"name": "now"}},
    ]);
    let out = ok(base(json!({"tools": tools})));
    assert_eq!(
        out["tools"],
        json!([
            {"name": "get_weather", "description": "Get weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        ])
    );
    assert!(out.get("tool_choice").is_none());
    let choice = |tc: Value| ok(base(json!({"tools": tools, "tool_choice": tc})))["tool_choice"].clone();
    assert_eq!(choice(json!("auto")), json!({"type": "auto"}));
    assert_eq!(choice(json!("none")), json!({"type": "none"}));
    assert_eq!(choice(json!("required")), json!({"type": "any"}));
    assert_eq!(choice(json!({"type": "function", "function": {"name": "now"}})), json!({"type": "tool", "name": "now"}));

    let ptc = |extra: Value| {
        let mut r = base(json!({"tools": tools, "parallel_tool_calls": false}));
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        ok(r)["tool_choice"].clone()
    };
    assert_eq!(ptc(json!({})), json!({"type": "auto", "disable_parallel_tool_use": true}));
    assert_eq!(ptc(json!({"tool_choice": "required"})), json!({"type": "any", "disable_parallel_tool_use": true}));
    assert_eq!(ptc(json!({"tool_choice": "none"})), json!({"type": "none"}));
    assert!(ok(base(json!({"tools": tools, "parallel_tool_calls": true}))).get("tool_choice").is_none());

    refused(base(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]})), "tools[0].type");
    refused(base(json!({"tools": [{"type": "function", "function": {}}]})), "tools[0].function.name");
    refused(base(json!({"tools": tools, "tool_choice": "sometimes"})), "tool_choice");
    refused(base(json!({"tools": tools, "tool_choice": {"type": "allowed_tools"}})), "tool_choice");
    refused(base(json!({"tool_choice": "required"})), "tool_choice");
    // auto/none without tools: nothing to send.
    assert!(ok(base(json!({"tool_choice": "none"}))).get("tool_choice").is_none());
}

#[test]
fn response_format() {
    assert_eq!(ok(base(json!({"response_format": {"type": "text"}}))), ok(base(json!({}))));
    let out = ok(base(json!({"response_format": {"type": "json_object"}})));
    assert_eq!(out["tools"], json!([{"name": JSON_TOOL_NAME, "description": "Respond with a JSON object.", "input_schema": {"type": "object"}}]));
    assert_eq!(out["tool_choice"], json!({"type": "tool", "name": JSON_TOOL_NAME, "disable_parallel_tool_use": true}));

    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"], "additionalProperties": false});
    let out = ok(base(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "math", "description": "The answer", "schema": schema, "strict": true}}})));
    assert_eq!(out["tools"], json!([{"name": JSON_TOOL_NAME, "description": "The answer", "input_schema": schema}]));

    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    refused(base(json!({"tools": tools, "response_format": {"type": "json_object"}})), "response_format");
    refused(base(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}})), "response_format.json_schema.schema");
    refused(base(json!({"response_format": {"type": "yaml"}})), "response_format");
    refused(base(json!({"reasoning_effort": "low", "response_format": {"type": "json_object"}})), "response_format");
}

#[test]
fn sampling_parameters() {
    let out = ok(base(json!({"temperature": 0.7, "top_p": 0.9, "stop": "END", "n": 1, "user": "u-42", "stream": false})));
    assert_eq!(out["temperature"], json!(0.7));
    assert_eq!(out["top_p"], json!(0.9));
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(out["metadata"], json!({"user_id": "u-42"}));
    assert!(out.get("stream").is_none());
    assert_eq!(ok(base(json!({"stop": ["a", "b"]})))["stop_sequences"], json!(["a", "b"]));
    assert_eq!(ok(base(json!({"temperature": 1})))["temperature"], json!(1.0));
    let e = refused(base(json!({"temperature": 1.5})), "temperature");
    assert_eq!(e.code, Some("unsupported_parameter"));
    refused(base(json!({"temperature": -1})), "temperature");
    refused(base(json!({"temperature": "hot"})), "temperature");
    refused(base(json!({"top_p": 1.5})), "top_p");
    refused(base(json!({"stop": [1]})), "stop");
    refused(base(json!({"n": 2})), "n");
    refused(base(json!({"n": 0})), "n");
    refused(base(json!({"user": 5})), "user");
}

#[test]
fn streaming_flags() {
    let mut t = AnthropicChat::new();
    let out = t.request(base(json!({"stream": true, "stream_options": {"include_usage": true}})), &Options::default()).unwrap();
    assert_eq!(out["stream"], json!(true));
    assert!(t.streaming());
    assert!(t.include_usage);
    assert!(t.request_headers().is_empty());
    let mut t = AnthropicChat::new();
    t.request(base(json!({})), &Options::default()).unwrap();
    assert!(!t.streaming());
    refused(base(json!({"stream": "yes"})), "stream");
}

#[test]
fn reasoning_effort_thinking() {
    let out = AnthropicChat::new().request(base(json!({"reasoning_effort": "medium"})), &Options { default_max_tokens: 4096 }).unwrap();
    assert_eq!(out["thinking"], json!({"type": "enabled", "budget_tokens": 8192}));
    assert_eq!(out["max_tokens"], json!(4096 + 8192));
    let out = ok(base(json!({"reasoning_effort": "minimal", "max_completion_tokens": 2000})));
    assert_eq!(out["thinking"], json!({"type": "enabled", "budget_tokens": 1024}));
    assert_eq!(out["max_tokens"], json!(2000));
    assert_eq!(ok(base(json!({"reasoning_effort": "high"})))["thinking"]["budget_tokens"], json!(16384));
    assert_eq!(ok(base(json!({"reasoning_effort": "low"})))["thinking"]["budget_tokens"], json!(2048));
    assert!(ok(base(json!({"reasoning_effort": "none"}))).get("thinking").is_none());
    refused(base(json!({"reasoning_effort": "high", "max_completion_tokens": 16384})), "max_completion_tokens");
    refused(base(json!({"reasoning_effort": "low", "max_tokens": 1000})), "max_tokens");
    refused(base(json!({"reasoning_effort": "extreme"})), "reasoning_effort");
    refused(base(json!({"reasoning_effort": "low", "temperature": 0.2})), "temperature");
    refused(base(json!({"reasoning_effort": "low", "top_p": 0.5})), "top_p");
    // Neutral values are accepted (temperature 1 is Anthropic's default, top_p ≥ 0.95 is allowed).
    let out = ok(base(json!({"reasoning_effort": "low", "temperature": 1, "top_p": 0.95})));
    assert!(out.get("temperature").is_none());
    assert_eq!(out["top_p"], json!(0.95));
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    refused(base(json!({"reasoning_effort": "low", "tools": tools, "tool_choice": "required"})), "tool_choice");
    assert_eq!(ok(base(json!({"reasoning_effort": "low", "tools": tools, "tool_choice": "auto"})))["tool_choice"], json!({"type": "auto"}));
}

#[test]
fn dropped_and_refused_parameters() {
    // Dropped: they do not change the answer.
    let plain = ok(base(json!({})));
    for extra in [
        json!({"metadata": {"k": "v"}}),
        json!({"store": true}),
        json!({"seed": 7}),
        json!({"service_tier": "auto"}),
        json!({"prompt_cache_key": "abc"}),
        json!({"logprobs": false}),
        json!({"presence_penalty": 0, "frequency_penalty": 0.0}),
        json!({"logit_bias": {}}),
        json!({"modalities": ["text"]}),
        json!({"audio": null, "top_logprobs": null}),
    ] {
        assert_eq!(ok(base(extra.clone())), plain, "{extra}");
    }
    for (extra, param) in [
        (json!({"logprobs": true}), "logprobs"),
        (json!({"top_logprobs": 3}), "top_logprobs"),
        (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
        (json!({"presence_penalty": 0.5}), "presence_penalty"),
        (json!({"frequency_penalty": -1}), "frequency_penalty"),
        (json!({"audio": {"voice": "alloy", "format": "wav"}}), "audio"),
        (json!({"modalities": ["text", "audio"]}), "modalities"),
        (json!({"prediction": {"type": "content", "content": "x"}}), "prediction"),
        (json!({"web_search_options": {}}), "web_search_options"),
        (json!({"functions": [{"name": "f"}]}), "functions"),
        (json!({"function_call": "auto"}), "function_call"),
        (json!({"service_tier": "flex"}), "service_tier"),
        (json!({"verbosity": "low"}), "verbosity"),
        (json!({"frobnicate": 1}), "frobnicate"),
    ] {
        let e = refused(base(extra), param);
        assert_eq!(e.code, Some("unsupported_parameter"), "{param}");
    }
    let e = tr(json!([1])).unwrap_err();
    assert_eq!(e.status, 400);
}

// ------------------------------------------------------------------ response

fn translator(req_extra: Value) -> AnthropicChat {
    let mut t = AnthropicChat::new();
    t.request(base(req_extra), &Options::default()).unwrap();
    t
}

#[test]
fn response_text() {
    let mut t = translator(json!({}));
    let out = t
        .response(json!({
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hi! My name is "}, {"type": "text", "text": "Claude."}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 100}
        }))
        .unwrap();
    assert!(out["created"].as_u64().unwrap() > 1_700_000_000);
    let mut expected = json!({
        "id": "chatcmpl-msg_013Zva2CMHLNnXjNJJKqJ2EF", "object": "chat.completion", "created": out["created"], "model": "claude-sonnet-4-5-20250929",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi! My name is Claude.", "refusal": null}, "finish_reason": "stop", "logprobs": null}],
        "usage": {"prompt_tokens": 2205, "completion_tokens": 503, "total_tokens": 2708, "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 10}, "completion_tokens_details": {"reasoning_tokens": 0}},
    });
    assert_eq!(out, expected);
    assert_eq!(t.usage(), TokenUsage { input_tokens: 2205, output_tokens: 503, cached_tokens: 100, reasoning_tokens: 0, cache_write_tokens: 10, seen: true, ..Default::default() });
    assert_eq!(t.response_model().as_deref(), Some("claude-sonnet-4-5-20250929"));
    expected["x"] = json!(1); // the comparison above is exact
    assert_ne!(out, expected);
}

#[test]
fn response_tool_use_and_thinking() {
    let mut t = translator(json!({}));
    let out = t
        .response(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-opus-4-1",
            "content": [
                {"type": "thinking", "thinking": "Let me think", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xyz"},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA", "unit": "celsius"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
            ],
            "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 20}
        }))
        .unwrap();
    let choice = &out["choices"][0];
    assert_eq!(choice["finish_reason"], json!("tool_calls"));
    assert_eq!(
        choice["message"],
        json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
            {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}},
            {"id": "toolu_02", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
        "reasoning_content": "Let me think",
        "thinking_blocks": [{"type": "thinking", "thinking": "Let me think", "signature": "sig"}, {"type": "redacted_thinking", "data": "xyz"}]})
    );
    // Both calls of the turn remember the turn's blocks, whole.
    let memos = t.replay_memos();
    assert_eq!(memos.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), vec!["toolu_01A09q90qw90lq917835lq9", "toolu_02"]);
    assert_eq!(memos[1].1, crate::translate::replay::Memo::ThinkingBlocks(vec![json!({"type": "thinking", "thinking": "Let me think", "signature": "sig"}), json!({"type": "redacted_thinking", "data": "xyz"})]));
    assert_eq!(out["usage"]["total_tokens"], json!(30));
}

#[test]
fn response_finish_reasons() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ] {
        let out = translator(json!({}))
            .response(json!({"id": "m", "model": "c", "content": [{"type": "text", "text": "x"}], "stop_reason": stop, "usage": {"input_tokens": 1, "output_tokens": 1}}))
            .unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], json!(finish), "{stop}");
    }
    let out = translator(json!({})).response(json!({"id": "m", "model": "c", "content": [], "stop_reason": "end_turn"})).unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], json!(""));
    assert_eq!(translator(json!({})).response(json!({"id": "m"})).unwrap_err().status, 502);
    assert_eq!(translator(json!({})).response(json!("x")).unwrap_err().status, 502);
}

#[test]
fn response_json_mode() {
    let mut t = translator(json!({"response_format": {"type": "json_object"}}));
    let out = t
        .response(json!({
            "id": "msg_j", "model": "c",
            "content": [{"type": "tool_use", "id": "toolu_j", "name": JSON_TOOL_NAME, "input": {"answer": 42}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 6}
        }))
        .unwrap();
    assert_eq!(out["choices"][0]["message"], json!({"role": "assistant", "content": "{\"answer\":42}", "refusal": null}));
    assert_eq!(out["choices"][0]["finish_reason"], json!("stop"));
}

// ------------------------------------------------------------------ errors

#[test]
fn provider_errors() {
    let t = AnthropicChat::new();
    let body = |kind: &str| format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"boom {kind}"}},"request_id":"req_1"}}"#);
    for (status, kind, out_status, out_type, code) in [
        (400, "invalid_request_error", 400, "invalid_request_error", None),
        (401, "authentication_error", 401, "authentication_error", Some("invalid_api_key")),
        (403, "permission_error", 403, "permission_error", Some("permission_denied")),
        (404, "not_found_error", 404, "invalid_request_error", Some("not_found")),
        (413, "request_too_large", 413, "invalid_request_error", Some("request_too_large")),
        (429, "rate_limit_error", 429, "rate_limit_error", Some("rate_limit_exceeded")),
        (500, "api_error", 500, "server_error", None),
        (529, "overloaded_error", 503, "server_error", Some("overloaded")),
    ] {
        let (s, v) = t.error(status, body(kind).as_bytes());
        assert_eq!(s, out_status, "{kind}");
        assert_eq!(v, json!({"error": {"message": format!("boom {kind}"), "type": out_type, "param": null, "code": code}}), "{kind}");
    }
    let (s, v) = t.error(502, b"<html>Bad Gateway</html>");
    assert_eq!(s, 502);
    assert_eq!(v, json!({"error": {"message": "The upstream provider returned HTTP 502.", "type": "server_error", "param": null, "code": null}}));
    let (s, v) = t.error(529, b"overloaded");
    assert_eq!(s, 503);
    assert_eq!(v["error"]["message"], json!("The upstream provider returned HTTP 529."));
    let (s, v) = t.error(429, b"{}");
    assert_eq!(s, 429);
    assert_eq!(v["error"]["type"], json!("invalid_request_error"));
    assert_eq!(t.error(200, b"").0, 502);
}

// ------------------------------------------------------------------ streams

type Ev = (&'static str, Value);

fn text_stream() -> Vec<Ev> {
    vec![
        ("message_start", json!({"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-6", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}})),
        ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        ("ping", json!({"type": "ping"})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}})),
        ("message_stop", json!({"type": "message_stop"})),
    ]
}

fn tool_stream() -> Vec<Ev> {
    vec![
        ("message_start", json!({"type": "message_start", "message": {"id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant", "model": "claude-opus-4-6", "stop_sequence": null, "usage": {"input_tokens": 472, "output_tokens": 2}, "content": [], "stop_reason": null}})),
        ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        ("ping", json!({"type": "ping"})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Okay, let's check the weather:"}})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": " \"San Fra"}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "ncisco, CA\", \"unit\": \"fahrenheit\"}"}})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 89}})),
        ("message_stop", json!({"type": "message_stop"})),
    ]
}

fn parallel_tool_stream() -> Vec<Ev> {
    vec![
        ("message_start", json!({"type": "message_start", "message": {"id": "msg_par", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "usage": {"input_tokens": 100, "output_tokens": 1}}})),
        ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {}}})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 40}})),
        ("message_stop", json!({"type": "message_stop"})),
    ]
}

fn thinking_cache_stream() -> Vec<Ev> {
    vec![
        ("message_start", json!({"type": "message_start", "message": {"id": "msg_01think", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 3000, "output_tokens": 1}}})),
        ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "I need to find the GCD of 1071 and 462..."}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "\n\n1071 = 2 × 462 + 147"}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "The GCD is 21."}})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null}, "usage": {"input_tokens": 10, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 3000, "output_tokens": 512}})),
        ("message_stop", json!({"type": "message_stop"})),
    ]
}

fn run(t: &mut AnthropicChat, evs: &[Ev], end: Option<StreamEnd>) -> Vec<ClientEvent> {
    let mut out = Vec::new();
    for (name, data) in evs {
        t.stream_event(Some(name), &data.to_string(), &mut out);
    }
    if let Some(end) = end {
        t.stream_end(end, &mut out);
    }
    out.into_iter().map(ClientEvent::parsed).collect()
}

/// The `choices[0]` of each Data chunk (deltas + finish_reason), checking the common fields.
fn choices(out: &[ClientEvent], id: &str, model: &str) -> Vec<Value> {
    let mut v = Vec::new();
    for e in out {
        if let ClientEvent::Data(c) = e {
            assert_eq!(c["id"], json!(id));
            assert_eq!(c["object"], json!("chat.completion.chunk"));
            assert_eq!(c["model"], json!(model));
            assert!(c["created"].as_u64().unwrap() > 1_700_000_000);
            if let Some(ch) = c["choices"].as_array().and_then(|a| a.first()) {
                assert_eq!(ch["index"], json!(0));
                assert_eq!(ch["logprobs"], Value::Null);
                v.push(json!({"delta": ch["delta"], "finish_reason": ch["finish_reason"]}));
            }
        }
    }
    v
}

fn d(delta: Value) -> Value {
    json!({"delta": delta, "finish_reason": null})
}
fn fin(reason: &str) -> Value {
    json!({"delta": {}, "finish_reason": reason})
}

#[test]
fn stream_text() {
    let mut t = translator(json!({"stream": true}));
    let out = run(&mut t, &text_stream(), Some(StreamEnd::Complete));
    assert_eq!(out.last(), Some(&ClientEvent::Done));
    assert_eq!(out.len(), 5);
    assert_eq!(
        choices(&out, "chatcmpl-msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "claude-opus-4-6"),
        vec![d(json!({"role": "assistant", "content": ""})), d(json!({"content": "Hello"})), d(json!({"content": "!"})), fin("stop")]
    );
    // Without include_usage there is no `usage` key at all.
    if let ClientEvent::Data(c) = &out[0] {
        assert!(c.get("usage").is_none());
    }
    assert_eq!(t.usage(), TokenUsage { input_tokens: 25, output_tokens: 15, cached_tokens: 0, reasoning_tokens: 0, seen: true, ..Default::default() });
    assert_eq!(t.response_model().as_deref(), Some("claude-opus-4-6"));
}

#[test]
fn stream_emits_each_text_delta_at_once() {
    let mut t = translator(json!({"stream": true}));
    let evs = text_stream();
    let mut out = Vec::new();
    t.stream_event(Some("message_start"), &evs[0].1.to_string(), &mut out);
    assert_eq!(out.len(), 1);
    t.stream_event(Some("content_block_start"), &evs[1].1.to_string(), &mut out);
    t.stream_event(Some("content_block_delta"), &evs[3].1.to_string(), &mut out);
    assert_eq!(out.len(), 2);
    // The event name alone is not needed: `type` in the data decides.
    t.stream_event(None, &evs[4].1.to_string(), &mut out);
    assert_eq!(out.len(), 3);
}

#[test]
fn stream_tool_use_with_usage_chunk() {
    let mut t = translator(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let out = run(&mut t, &tool_stream(), Some(StreamEnd::Complete));
    let id = "chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U";
    assert_eq!(
        choices(&out, id, "claude-opus-4-6"),
        vec![
            d(json!({"role": "assistant", "content": ""})),
            d(json!({"content": "Okay, let's check the weather:"})),
            d(json!({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})),
            d(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]})),
            d(json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"San Fra"}}]})),
            d(json!({"tool_calls": [{"index": 0, "function": {"arguments": "ncisco, CA\", \"unit\": \"fahrenheit\"}"}}]})),
            fin("tool_calls"),
        ]
    );
    // usage: null on every choice chunk, then a usage chunk with no choices, then [DONE].
    let n = out.len();
    for e in &out[..n - 2] {
        let ClientEvent::Data(c) = e else { panic!("{e:?}") };
        assert_eq!(c.get("usage"), Some(&Value::Null));
    }
    let ClientEvent::Data(last) = &out[n - 2] else { panic!() };
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["id"], json!(id));
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    assert_eq!(out[n - 1], ClientEvent::Done);
}

#[test]
fn stream_parallel_tool_calls() {
    let mut t = translator(json!({"stream": true}));
    let out = run(&mut t, &parallel_tool_stream(), Some(StreamEnd::Complete));
    assert_eq!(
        choices(&out, "chatcmpl-msg_par", "claude-sonnet-4-5"),
        vec![
            d(json!({"role": "assistant", "content": ""})),
            d(json!({"tool_calls": [{"index": 0, "id": "toolu_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})),
            d(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]})),
            d(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]})),
            d(json!({"tool_calls": [{"index": 1, "id": "toolu_B", "type": "function", "function": {"name": "get_time", "arguments": ""}}]})),
            // No argument delta for get_time: "{}" at its block stop so clients can parse it.
            d(json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]})),
            fin("tool_calls"),
        ]
    );
    assert_eq!(out.last(), Some(&ClientEvent::Done));
}

#[test]
fn stream_thinking_is_reasoning_content_and_cache_tokens_counted() {
    let mut t = translator(json!({"stream": true, "reasoning_effort": "low"}));
    let out = run(&mut t, &thinking_cache_stream(), Some(StreamEnd::Complete));
    let block = json!({"type": "thinking", "thinking": "I need to find the GCD of 1071 and 462...\n\n1071 = 2 × 462 + 147", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."});
    assert_eq!(
        choices(&out, "chatcmpl-msg_01think", "claude-sonnet-4-5"),
        vec![
            d(json!({"role": "assistant", "content": ""})),
            d(json!({"reasoning_content": "I need to find the GCD of 1071 and 462..."})),
            d(json!({"reasoning_content": "\n\n1071 = 2 × 462 + 147"})),
            d(json!({"thinking_blocks": [block]})),
            d(json!({"content": "The GCD is 21."})),
            fin("length")
        ]
    );
    assert!(t.replay_memos().is_empty(), "no tool call: nothing to remember");
    assert_eq!(t.usage(), TokenUsage { input_tokens: 3210, output_tokens: 512, cached_tokens: 3000, reasoning_tokens: 0, cache_write_tokens: 200, seen: true, ..Default::default() });
}

#[test]
fn stream_json_mode_turns_tool_input_into_content() {
    let mut t = translator(json!({"stream": true, "response_format": {"type": "json_object"}}));
    let evs: Vec<Ev> = vec![
        ("message_start", json!({"type": "message_start", "message": {"id": "msg_j", "model": "claude-haiku-4-5", "usage": {"input_tokens": 3, "output_tokens": 1}}})),
        ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_j", "name": JSON_TOOL_NAME, "input": {}}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\": "}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "1}"}})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let out = run(&mut t, &evs, Some(StreamEnd::Complete));
    assert_eq!(
        choices(&out, "chatcmpl-msg_j", "claude-haiku-4-5"),
        vec![d(json!({"role": "assistant", "content": ""})), d(json!({"content": "{\"a\": "})), d(json!({"content": "1}"})), fin("stop")]
    );
}

#[test]
fn stream_mid_error_event() {
    let mut t = translator(json!({"stream": true}));
    let mut evs = text_stream()[..4].to_vec();
    evs.push(("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
    evs.push(("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "late"}})));
    let out = run(&mut t, &evs, Some(StreamEnd::Complete));
    assert_eq!(out.len(), 3);
    assert_eq!(out[2], ClientEvent::Data(json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}})));
    assert!(!out.contains(&ClientEvent::Done));
}

#[test]
fn stream_cut_and_end_idempotent() {
    let mut t = translator(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let out = run(&mut t, &tool_stream()[..8], Some(StreamEnd::Cut));
    let ClientEvent::Data(last) = out.last().unwrap() else { panic!() };
    assert_eq!(last["error"]["type"], json!("upstream_error"));
    assert!(last["error"]["message"].as_str().unwrap().contains("stream ended before completion"));
    assert!(!out.contains(&ClientEvent::Done));
    // Usage seen so far is still available.
    assert_eq!(t.usage().input_tokens, 472);
    assert_eq!(t.usage().output_tokens, 2);
    let mut more = Vec::new();
    t.stream_end(StreamEnd::Complete, &mut more);
    t.stream_end(StreamEnd::Cut, &mut more);
    assert!(more.is_empty());

    // "Complete" without a message_stop is reported as a cut stream too.
    let mut t = translator(json!({"stream": true}));
    let out = run(&mut t, &text_stream()[..7], Some(StreamEnd::Complete));
    assert!(matches!(out.last(), Some(ClientEvent::Data(v)) if v.get("error").is_some()));
    // Nothing at all.
    let mut t = translator(json!({"stream": true}));
    let out = run(&mut t, &[], Some(StreamEnd::Cut));
    assert_eq!(out.len(), 1);
    assert!(t.response_model().is_none());
    assert!(!t.usage().seen);
}

#[test]
fn stream_ignores_garbage_and_events_before_start() {
    let mut t = translator(json!({"stream": true}));
    let mut out = Vec::new();
    t.stream_event(Some("content_block_delta"), &text_stream()[3].1.to_string(), &mut out);
    t.stream_event(Some("message_start"), "not json", &mut out);
    t.stream_event(Some("message_start"), "[1,2]", &mut out);
    t.stream_event(None, "{}", &mut out);
    assert!(out.is_empty());
    let out = run(&mut t, &text_stream(), Some(StreamEnd::Complete));
    assert_eq!(out.len(), 5);
}

#[test]
fn stream_ignores_events_after_message_stop() {
    let mut t = translator(json!({"stream": true}));
    let mut evs = text_stream();
    evs.push(evs[3].clone());
    evs.push(evs[0].clone());
    let out = run(&mut t, &evs, Some(StreamEnd::Complete));
    assert_eq!(out.len(), 5);
    assert_eq!(out.last(), Some(&ClientEvent::Done));
}

#[test]
fn stream_message_stop_without_delta_still_finishes() {
    let mut t = translator(json!({"stream": true}));
    let mut evs = text_stream();
    evs.remove(6);
    let out = run(&mut t, &evs, Some(StreamEnd::Complete));
    let c = choices(&out, "chatcmpl-msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "claude-opus-4-6");
    assert_eq!(c.last(), Some(&fin("stop")));
    assert_eq!(out.last(), Some(&ClientEvent::Done));
}

// ------------------------------------------------------------------ properties

fn all_fixture_events() -> Vec<Ev> {
    let mut v = text_stream();
    v.extend(tool_stream());
    v.extend(parallel_tool_stream());
    v.extend(thinking_cache_stream());
    v.push(("error", json!({"type": "error", "error": {"type": "api_error", "message": "x"}})));
    v.push(("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": u64::MAX, "input_tokens": u64::MAX}})));
    v
}

#[derive(Debug, Clone)]
enum Step {
    Fixture(usize, bool),
    Garbage(String),
    Mangled(usize, String, Value),
}

fn step() -> impl Strategy<Value = Step> {
    let n = all_fixture_events().len();
    let small_json = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|i| json!(i)),
        ".{0,8}".prop_map(|s| json!(s)),
        Just(json!({})),
        Just(json!([])),
    ];
    prop_oneof![
        6 => (0..n, any::<bool>()).prop_map(|(i, named)| Step::Fixture(i, named)),
        1 => ".{0,24}".prop_map(Step::Garbage),
        2 => (0..n, prop_oneof![Just("type".to_string()), Just("index".to_string()), Just("delta".to_string()), Just("usage".to_string()), Just("message".to_string()), Just("content_block".to_string())], small_json)
            .prop_map(|(i, k, v)| Step::Mangled(i, k, v)),
    ]
}

/// Checks the invariants of a complete output; returns an error message on failure.
fn check_output(out: &[ClientEvent]) -> Result<(), String> {
    let last = out.last().ok_or("empty output")?;
    match last {
        ClientEvent::Done => {}
        ClientEvent::Data(v) if v.get("error").is_some() => {}
        e => return Err(format!("bad last event {e:?}")),
    }
    let mut id: Option<Value> = None;
    let mut first_chunk = true;
    for (i, e) in out.iter().enumerate() {
        match e {
            ClientEvent::Done => {
                if i != out.len() - 1 {
                    return Err("Done not last".into());
                }
            }
            ClientEvent::Named(..) => return Err("named event".into()),
            ClientEvent::Json(_) => return Err("a written chunk not read back (ClientEvent::parsed)".into()),
            ClientEvent::Data(v) => {
                let o = v.as_object().ok_or("data not an object")?;
                if o.contains_key("error") {
                    if i != out.len() - 1 {
                        return Err("error not last".into());
                    }
                    continue;
                }
                if o.get("object") != Some(&json!("chat.completion.chunk")) {
                    return Err(format!("not a chunk: {v}"));
                }
                match &id {
                    None => id = Some(v["id"].clone()),
                    Some(x) if x != &v["id"] => return Err("id changed".into()),
                    _ => {}
                }
                if first_chunk {
                    first_chunk = false;
                    if v["choices"][0]["delta"]["role"] != json!("assistant") {
                        return Err(format!("first chunk without role: {v}"));
                    }
                }
                serde_json::to_string(v).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// Feeds `steps` (fixture events, garbage, mangled fixtures). With `slow`,
/// every event that names `content_block_delta` spells it with an escape
/// (`\u0061`), which the `Value` path reads as the same word and the typed
/// fast path never takes (`fast_block_delta`).
fn run_steps(t: &mut AnthropicChat, steps: &[Step], slow: bool) -> Vec<ClientEvent> {
    let fixtures = all_fixture_events();
    let mut out = Vec::new();
    let feed = |t: &mut AnthropicChat, name: Option<&str>, data: String, out: &mut Vec<ClientEvent>| {
        let data = if slow { data.replace("\"content_block_delta\"", "\"content_block_delt\\u0061\"") } else { data };
        t.stream_event(name, &data, out);
    };
    for s in steps {
        match s {
            Step::Fixture(i, named) => {
                let (name, data) = &fixtures[*i];
                feed(t, if *named { Some(name) } else { None }, data.to_string(), &mut out);
            }
            Step::Garbage(g) => feed(t, Some("content_block_delta"), g.clone(), &mut out),
            Step::Mangled(i, k, v) => {
                let (name, data) = &fixtures[*i];
                let mut data = data.clone();
                data[k.as_str()] = v.clone();
                feed(t, Some(name), data.to_string(), &mut out);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_stream_never_panics_and_ends_well(steps in proptest::collection::vec(step(), 0..40), complete in any::<bool>(), usage in any::<bool>()) {
        let mut t = translator(json!({"stream": true, "stream_options": {"include_usage": usage}}));
        let mut out = run_steps(&mut t, &steps, false);
        t.stream_end(if complete { StreamEnd::Complete } else { StreamEnd::Cut }, &mut out);
        let mut out: Vec<ClientEvent> = out.into_iter().map(ClientEvent::parsed).collect();
        let n = out.len();
        t.stream_end(StreamEnd::Complete, &mut out);
        prop_assert_eq!(out.len(), n);
        if let Err(e) = check_output(&out) {
            return Err(TestCaseError::fail(format!("{e}\n{out:?}")));
        }
        let u = t.usage();
        let _ = u.to_chat_usage();
        // A Done only ever follows a complete provider stream.
        if out.last() == Some(&ClientEvent::Done) {
            prop_assert!(complete);
        }
    }

    #[test]
    fn prop_fixture_truncated_anywhere(which in 0usize..4, cut in 0usize..14, complete in any::<bool>()) {
        let evs = [text_stream(), tool_stream(), parallel_tool_stream(), thinking_cache_stream()][which].clone();
        let cut = cut.min(evs.len());
        let mut t = translator(json!({"stream": true}));
        let out = run(&mut t, &evs[..cut], Some(if complete { StreamEnd::Complete } else { StreamEnd::Cut }));
        check_output(&out).map_err(TestCaseError::fail)?;
        let whole = cut == evs.len() && complete;
        prop_assert_eq!(out.last() == Some(&ClientEvent::Done), whole);
        if whole {
            // Concatenated tool arguments parse as JSON objects, one per tool call.
            let mut args: BTreeMap<u64, String> = BTreeMap::new();
            for e in &out {
                if let ClientEvent::Data(c) = e {
                    if let Some(tcs) = c["choices"][0]["delta"]["tool_calls"].as_array() {
                        for tc in tcs {
                            args.entry(tc["index"].as_u64().unwrap()).or_default().push_str(tc["function"]["arguments"].as_str().unwrap());
                        }
                    }
                }
            }
            for a in args.values() {
                prop_assert!(serde_json::from_str::<Value>(a).map(|v| v.is_object()).unwrap_or(false), "{}", a);
            }
        }
    }

    #[test]
    fn prop_request_never_panics(req in arb_json(), msg in arb_json(), key in "[a-z_]{1,12}") {
        // Random whole bodies, and random messages / parameters inside an otherwise valid body.
        let _ = tr(req.clone());
        for r in [msgs(json!([msg.clone()])), msgs(msg.clone()), base(json!({ key.clone(): req.clone() }))] {
            match tr(r) {
                Ok(v) => {
                    prop_assert!(v["max_tokens"].as_u64().is_some());
                    prop_assert!(v["messages"].as_array().is_some_and(|m| !m.is_empty()));
                }
                Err(e) => {
                    prop_assert_eq!(e.status, 400);
                    prop_assert!(e.param.is_some());
                }
            }
        }
    }

    #[test]
    fn prop_error_never_panics(status in 0u16..1000, body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let (s, v) = AnthropicChat::new().error(status, &body);
        prop_assert!((400..600).contains(&s));
        prop_assert!(v["error"]["message"].is_string());
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|i| json!(i)),
        (0.0f64..3.0).prop_map(|f| json!(f)),
        prop_oneof![
            Just("user"), Just("assistant"), Just("tool"), Just("system"), Just("text"), Just("image_url"),
            Just("function"), Just("auto"), Just("required"), Just("{}"), Just("data:image/png;base64,AAAA"), Just("")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("role"), Just("content"), Just("type"), Just("text"), Just("tool_calls"), Just("function"),
                    Just("arguments"), Just("name"), Just("id"), Just("tool_call_id"), Just("image_url"), Just("url"),
                    Just("messages"), Just("model"), Just("file"), Just("file_data")
                ]
                .prop_map(String::from),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// ------------------------------------------------------------------ prompt caching (cache_control)

#[test]
fn cache_control_on_parts_reaches_the_matching_blocks() {
    let eph = json!({"type": "ephemeral"});
    let hour = json!({"type": "ephemeral", "ttl": "1h"});
    let out = ok(json!({
        "model": "claude-sonnet-4-5",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}, "cache_control": hour}],
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "a long shared system prompt", "cache_control": hour}, {"type": "text", "text": "tail"}]},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}, "cache_control": eph},
                {"type": "text", "text": "question"},
            ]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "result", "cache_control": eph}]},
        ],
    }));
    // The system message with parts is a block array, markers and ttl kept.
    assert_eq!(out["system"], json!([
        {"type": "text", "text": "a long shared system prompt", "cache_control": hour},
        {"type": "text", "text": "tail"},
    ]));
    assert_eq!(out["tools"][0]["cache_control"], hour);
    let user = &out["messages"][0]["content"];
    assert_eq!(user[0]["type"], "image");
    assert_eq!(user[0]["cache_control"], eph);
    assert_eq!(user[1], json!({"type": "text", "text": "question"}));
    let result = &out["messages"][2]["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["content"], json!([{"type": "text", "text": "result", "cache_control": eph}]));
}

#[test]
fn cache_control_on_a_message_marks_its_last_block() {
    let eph = json!({"type": "ephemeral", "ttl": "5m"});
    let out = ok(msgs(json!([
        {"role": "system", "content": "shared prompt", "cache_control": eph},
        {"role": "user", "content": "question", "cache_control": eph},
    ])));
    assert_eq!(out["system"], json!([{"type": "text", "text": "shared prompt", "cache_control": eph}]));
    // A single marked text stays a block (a string cannot carry the marker).
    assert_eq!(out["messages"][0]["content"], json!([{"type": "text", "text": "question", "cache_control": eph}]));
    // Unmarked, the plain forms stay as they were.
    let out = ok(msgs(json!([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}])));
    assert_eq!(out["system"], json!("s"));
    assert_eq!(out["messages"][0]["content"], json!("q"));
}

#[test]
fn at_most_four_breakpoints_and_well_formed_markers() {
    let eph = json!({"type": "ephemeral"});
    let part = |t: &str| json!({"type": "text", "text": t, "cache_control": eph});
    let four = msgs(json!([{"role": "user", "content": [part("a"), part("b"), part("c"), part("d")]}]));
    assert_eq!(ok(four)["messages"][0]["content"].as_array().unwrap().len(), 4);
    let five = msgs(json!([
        {"role": "system", "content": [part("s")]},
        {"role": "user", "content": [part("a"), part("b"), part("c"), part("d")]},
    ]));
    let e = refused(five, "messages[1].content[3].cache_control");
    assert!(e.message.contains("at most 4"), "{}", e.message);
    refused(msgs(json!([{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "persistent"}}]}])), "messages[0].content[0].cache_control.type");
    refused(msgs(json!([{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]}])), "messages[0].content[0].cache_control.ttl");
    refused(msgs(json!([{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": "ephemeral"}]}])), "messages[0].content[0].cache_control");
}

#[test]
fn cache_writes_by_ttl_are_in_the_usage() {
    let mut t = AnthropicChat::new();
    t.request(base(json!({})), &Options::default()).unwrap();
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 2000, "output_tokens": 5,
                  "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 400}},
    });
    let v = t.response(body).unwrap();
    let u = t.usage();
    assert_eq!((u.input_tokens, u.cached_tokens, u.cache_write_tokens, u.cache_write_1h_tokens), (3010, 2000, 1000, 400));
    assert_eq!(v["usage"]["prompt_tokens_details"]["cache_write_tokens"], 1000);
}

#[test]
fn claude_on_vertex_names_the_version_in_the_body_not_the_model() {
    let out = AnthropicChat::on_vertex()
        .request(json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": [{"type": "text", "text": "q", "cache_control": {"type": "ephemeral"}}]}]}), &Options::default())
        .unwrap();
    assert!(out.get("model").is_none(), "{out}");
    assert_eq!(out["anthropic_version"], "vertex-2023-10-16");
    assert_eq!(out["messages"][0]["content"][0]["cache_control"], json!({"type": "ephemeral"}));
    assert!(ok(base(json!({}))).get("anthropic_version").is_none());
}

#[test]
fn thinking_blocks_sent_back_start_the_assistant_turn_unmodified() {
    let blocks = json!([{"type": "thinking", "thinking": "Plan: call w", "signature": "sig=="}, {"type": "redacted_thinking", "data": "enc"}]);
    let mut t = AnthropicChat::new();
    let body = t
        .request(
            json!({"model": "claude-sonnet-4-5", "reasoning_effort": "low", "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "reasoning_content": "Plan: call w", "thinking_blocks": blocks.clone(),
                 "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}]}),
            &Options::default(),
        )
        .unwrap();
    let content = &body["messages"][1]["content"];
    assert_eq!(content[0], blocks[0]);
    assert_eq!(content[1], blocks[1]);
    assert_eq!(content[2]["type"], "tool_use");
    let bad = AnthropicChat::new().request(
        json!({"model": "m", "messages": [{"role": "assistant", "content": "x", "thinking_blocks": [{"type": "thinking", "thinking": "no signature"}]}]}),
        &Options::default(),
    );
    assert_eq!(bad.unwrap_err().param.as_deref(), Some("messages[0].thinking_blocks[0]"));
}

#[test]
fn claude_4_6_and_later_think_adaptively() {
    for (m, yes) in [
        ("claude-opus-4-6", true), ("claude-sonnet-4-6", true), ("claude-opus-4-7", true), ("claude-opus-5", true), ("claude-mythos-preview", true),
        ("claude-fable-5", true), ("claude-opus-4-6@20260205", true), ("anthropic.claude-opus-4-6-v1", true),
        ("claude-sonnet-4-5", false), ("claude-sonnet-4-5-20250929", false), ("claude-opus-4-1", false), ("claude-sonnet-4-20250514", false), ("claude-3-7-sonnet-latest", false),
    ] {
        assert_eq!(adaptive_thinking(m), yes, "{m}");
    }
    let mut t = AnthropicChat::new();
    let body = t.request(json!({"model": "claude-opus-4-7", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "xhigh"}), &Options::default()).unwrap();
    assert_eq!(body["thinking"], json!({"type": "adaptive"}));
    assert_eq!(body["output_config"], json!({"effort": "max"}));
    assert_eq!(body["max_tokens"], json!(4096 + 32768));
    // No fixed budget: a small maximum is the model's to respect, not a 400.
    let body = AnthropicChat::new().request(json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "medium", "max_completion_tokens": 1000}), &Options::default()).unwrap();
    assert_eq!((body["max_tokens"].clone(), body["output_config"]["effort"].clone()), (json!(1000), json!("medium")));
    // Older models keep the budget, and its refusal naming both numbers.
    let e = AnthropicChat::new().request(json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "medium", "max_completion_tokens": 1000}), &Options::default()).unwrap_err();
    assert!(e.message.contains("1000") && e.message.contains("8192"), "{}", e.message);
    let body = AnthropicChat::new().request(json!({"model": "claude-opus-4-7", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "none"}), &Options::default()).unwrap();
    assert!(body.get("thinking").is_none() && body.get("output_config").is_none());
}

// ------------------------------------------------------------------ response: the typed fast path

fn block() -> impl Strategy<Value = Value> {
    let text = ".{0,12}|\"\\\\\u{e9}\u{1F600}\n";
    prop_oneof![
        text.prop_map(|t| json!({"type": "text", "text": t})),
        Just(json!({"type": "text"})),
        Just(json!({"type": "text", "text": null})),
        (text, prop_oneof![Just(JSON_TOOL_NAME.to_string()), "[a-z]{1,6}"], any::<i32>())
            .prop_map(|(id, name, n)| json!({"type": "tool_use", "id": id, "name": name, "input": {"n": n, "s": [1, "x", null]}})),
        Just(json!({"type": "tool_use", "name": "f"})),
        Just(json!({"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}})),
        Just(json!({"text": "no type"})),
        Just(json!({"type": "thinking", "thinking": "hmm", "signature": "sig"})),
        Just(json!({"type": "text", "text": 5})),
    ]
}

fn answer() -> impl Strategy<Value = Value> {
    (
        proptest::option::of("[a-z_0-9]{1,8}"),
        proptest::option::of("claude-[a-z0-9-]{1,8}"),
        proptest::collection::vec(block(), 0..4),
        proptest::option::of(prop_oneof![Just("end_turn"), Just("max_tokens"), Just("tool_use"), Just("refusal"), Just("pause_turn"), Just("odd")]),
        proptest::option::of((0u64..5000, 0u64..5000, 0u64..100, 0u64..100)),
    )
        .prop_map(|(id, model, content, stop, usage)| {
            let mut v = json!({"type": "message", "role": "assistant", "content": content});
            if let Some(id) = id {
                v["id"] = json!(id);
            }
            if let Some(m) = model {
                v["model"] = json!(m);
            }
            if let Some(s) = stop {
                v["stop_reason"] = json!(s);
            }
            if let Some((i, o, r, w)) = usage {
                v["usage"] = json!({"input_tokens": i, "output_tokens": o, "cache_read_input_tokens": r, "cache_creation_input_tokens": w});
            }
            v
        })
}

/// Everything but `created` (the clock).
fn without_created(mut v: Value) -> Value {
    v.as_object_mut().map(|o| o.remove("created"));
    v
}

proptest! {
    /// The typed fast path gives the slow path's object and leaves the
    /// translator in the same state, or declines and changes nothing.
    #[test]
    fn fast_and_slow_paths_agree(a in answer(), json_mode in any::<bool>()) {
        let req = if json_mode { json!({"response_format": {"type": "json_object"}}) } else { json!({}) };
        let (mut fast, mut slow) = (translator(req.clone()), translator(req));
        let bytes = serde_json::to_vec(&a).unwrap();
        let expected = slow.response(a.clone());
        match fast.response_bytes(&bytes) {
            Some(out) => {
                let out: Value = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(without_created(out), without_created(expected.unwrap()));
                prop_assert_eq!(format!("{:?}", fast.usage()), format!("{:?}", slow.usage()));
                prop_assert_eq!(&fast.call_ids, &slow.call_ids);
                prop_assert_eq!(fast.response_model(), slow.response_model());
            }
            None => {
                // Declined: thinking, a type the typed path does not take,
                // or no content array. The slow path then runs on a
                // translator the attempt did not touch.
                let declined = a["content"].as_array().is_none_or(|c| c.iter().any(|b| b["type"] == "thinking" || b["text"].is_number()));
                prop_assert!(declined, "declined a plain answer: {}", a);
                prop_assert_eq!(format!("{:?}", fast.response(a).map(without_created)), format!("{:?}", expected.map(without_created)));
            }
        }
    }
}

#[test]
fn the_fast_path_takes_the_plain_answer() {
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hi \u00e9"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":2}}"#;
    let out: Value = serde_json::from_slice(&translator(json!({})).response_bytes(body).expect("the fast path")).unwrap();
    assert_eq!(out["choices"][0]["message"], json!({"role": "assistant", "content": "Hi é", "refusal": null}));
    assert_eq!((out["id"].as_str(), out["usage"]["total_tokens"].as_u64()), (Some("chatcmpl-msg_1"), Some(5)));
    assert!(translator(json!({})).response_bytes(b"not json").is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The typed fast path for `content_block_delta` (issue 28) decides as
    /// the `Value` path does, for the fixtures' events, mangled ones and
    /// garbage, in any order: the same chunks, the same state after.
    #[test]
    fn fast_and_slow_stream_paths_agree(steps in proptest::collection::vec(step(), 0..40), usage in any::<bool>(), json_mode in any::<bool>()) {
        let req = if json_mode {
            json!({"stream": true, "stream_options": {"include_usage": usage}, "response_format": {"type": "json_object"}})
        } else {
            json!({"stream": true, "stream_options": {"include_usage": usage}})
        };
        let (mut fast, mut slow) = (translator(req.clone()), translator(req));
        let mut a = run_steps(&mut fast, &steps, false);
        let mut b = run_steps(&mut slow, &steps, true);
        fast.stream_end(StreamEnd::Complete, &mut a);
        slow.stream_end(StreamEnd::Complete, &mut b);
        let a: Vec<ClientEvent> = a.into_iter().map(ClientEvent::parsed).collect();
        let b: Vec<ClientEvent> = b.into_iter().map(ClientEvent::parsed).collect();
        // `created` is the clock at message_start: the same second or the next.
        let strip = |v: Vec<ClientEvent>| -> Vec<ClientEvent> {
            v.into_iter().map(|e| match e {
                ClientEvent::Data(mut d) => { if let Some(o) = d.as_object_mut() { o.remove("created"); } ClientEvent::Data(d) }
                e => e,
            }).collect()
        };
        prop_assert_eq!(strip(a), strip(b));
        prop_assert_eq!(fast.usage(), slow.usage());
        prop_assert_eq!(fast.replay_memos(), slow.replay_memos());
    }
}
