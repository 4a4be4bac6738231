use super::response::finish_reason;
use serde_json::json;
use super::*;
use proptest::prelude::*;

fn opts() -> Options {
    Options::default()
}

fn req(t: &mut GeminiChat, v: Value) -> Value {
    t.request(v, &opts()).expect("request translates")
}

fn refused(v: Value) -> TranslateError {
    GeminiChat::new().request(v.clone(), &opts()).expect_err(&v.to_string())
}

fn datas(out: &[ClientEvent]) -> Vec<Value> {
    out.iter()
        .map(|e| match e {
            ClientEvent::Data(v) => v.clone(),
            ClientEvent::Json(s) => serde_json::from_str(s).expect("a written chunk is JSON"),
            ClientEvent::Done => json!("[DONE]"),
            ClientEvent::Named(n, _) => panic!("unexpected named event {n}"),
        })
        .collect()
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

// ---------- request ----------

#[test]
fn basic_request_and_generation_config() {
    let mut t = GeminiChat::new();
    let body = req(
        &mut t,
        json!({
            "model": "gemini-2.5-flash",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": "Hi", "name": "bob"},
                {"role": "assistant", "content": "Salut"},
                {"role": "user", "content": [{"type": "text", "text": "Again"}]}
            ],
            "max_tokens": 100,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": "END",
            "n": 2,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "logprobs": false,
            "user": "u", "store": false, "metadata": {"a": "b"}, "service_tier": "auto",
            "stream": false
        }),
    );
    assert_eq!(
        body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Salut"}]},
                {"role": "user", "parts": [{"text": "Again"}]}
            ],
            "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use French."}]},
            "generationConfig": {
                "maxOutputTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"],
                "candidateCount": 2, "seed": 7, "presencePenalty": 0.5, "frequencyPenalty": -0.5
            }
        })
    );
    assert!(!t.streaming());
}

#[test]
fn max_completion_tokens_wins_and_stop_array() {
    let body = req(&mut GeminiChat::new(), json!({"model": "m", "messages": [user("x")], "max_tokens": 5, "max_completion_tokens": 9, "stop": ["a", "b"]}));
    assert_eq!(body["generationConfig"], json!({"maxOutputTokens": 9, "stopSequences": ["a", "b"]}));
    let body = req(&mut GeminiChat::new(), json!({"model": "m", "messages": [user("x")], "temperature": null, "modalities": ["text"], "logit_bias": {}}));
    assert_eq!(body, json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}]}));
}

#[test]
fn media_parts() {
    let body = req(
        &mut GeminiChat::new(),
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.WEBP?x=1#y"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/render?id=3"}},
            {"type": "image_url", "image_url": {"url": "gs://bucket/doc.pdf"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "report.PDF"}}
        ]}]}),
    );
    assert_eq!(
        body["contents"][0]["parts"],
        json!([
            {"text": "look"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.WEBP?x=1#y"}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/render?id=3"}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/doc.pdf"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            {"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
        ])
    );
}

#[test]
fn tool_calls_and_results() {
    let body = req(
        &mut GeminiChat::new(),
        json!({"model": "m", "messages": [
            user("weather in Paris and Rome?"),
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                 "extra_content": {"google": {"thought_signature": "c2ln"}}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "noon"}]},
            user("thanks")
        ]}),
    );
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "weather in Paris and Rome?"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "get_time", "args": {}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}}
            ]},
            {"role": "user", "parts": [{"text": "thanks"}]}
        ])
    );
}

#[test]
fn tool_result_that_is_json_but_not_object_is_wrapped() {
    let body = req(
        &mut GeminiChat::new(),
        json!({"model": "m", "messages": [
            user("q"),
            {"role": "assistant", "content": "let me check", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "[1,2]"}
        ]}),
    );
    assert_eq!(body["contents"][1]["parts"], json!([{"text": "let me check"}, {"functionCall": {"name": "f", "args": {}}}]));
    assert_eq!(body["contents"][2]["parts"], json!([{"functionResponse": {"name": "f", "response": {"content": "[1,2]"}}}]));
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather", "strict": true,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "noargs"}}
    ])
}

#[test]
fn tools_and_tool_choice() {
    let decls = json!([{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather",
         "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}},
        {"name": "noargs"}
    ]}]);
    let cases = [
        (Value::Null, None),
        (json!("auto"), Some(json!({"mode": "AUTO"}))),
        (json!("none"), Some(json!({"mode": "NONE"}))),
        (json!("required"), Some(json!({"mode": "ANY"}))),
        (json!({"type": "function", "function": {"name": "noargs"}}), Some(json!({"mode": "ANY", "allowedFunctionNames": ["noargs"]}))),
        (
            json!({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}}),
            Some(json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})),
        ),
    ];
    for (tc, fcc) in cases {
        let body = req(&mut GeminiChat::new(), json!({"model": "m", "messages": [user("x")], "tools": tools(), "tool_choice": tc, "parallel_tool_calls": true}));
        assert_eq!(body["tools"], decls, "{tc}");
        assert_eq!(body.get("toolConfig").cloned(), fcc.map(|f| json!({"functionCallingConfig": f})), "{tc}");
    }
    // allowed_tools auto: only the allowed declarations are sent
    let body = req(
        &mut GeminiChat::new(),
        json!({"model": "m", "messages": [user("x")], "tools": tools(),
               "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "noargs"}}]}}}),
    );
    assert_eq!(body["tools"], json!([{"functionDeclarations": [{"name": "noargs"}]}]));
    assert_eq!(body["toolConfig"], json!({"functionCallingConfig": {"mode": "AUTO"}}));
}

#[test]
fn response_format() {
    let body = req(&mut GeminiChat::new(), json!({"model": "m", "messages": [user("x")], "response_format": {"type": "json_object"}}));
    assert_eq!(body["generationConfig"], json!({"responseMimeType": "application/json"}));
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]});
    let body = req(
        &mut GeminiChat::new(),
        json!({"model": "m", "messages": [user("x")], "response_format": {"type": "json_schema", "json_schema": {"name": "s", "strict": true, "schema": schema}}}),
    );
    assert_eq!(body["generationConfig"], json!({"responseMimeType": "application/json", "responseJsonSchema": schema}));
    let body = req(&mut GeminiChat::new(), json!({"model": "m", "messages": [user("x")], "response_format": {"type": "text"}}));
    assert!(body.get("generationConfig").is_none());
}

#[test]
fn reasoning_effort_budgets() {
    for (level, budget) in [("none", 0), ("minimal", 0), ("low", 1024), ("medium", 8192), ("high", 24576)] {
        let body = req(&mut GeminiChat::new(), json!({"model": "m", "messages": [user("x")], "reasoning_effort": level}));
        assert_eq!(body["generationConfig"]["thinkingConfig"], json!({"thinkingBudget": budget, "includeThoughts": budget > 0}), "{level}");
    }
}

#[test]
fn streaming_flag_and_include_usage() {
    let mut t = GeminiChat::new();
    let body = req(&mut t, json!({"model": "m", "messages": [user("x")], "stream": true, "stream_options": {"include_usage": true}}));
    assert!(body.get("stream").is_none() && body.get("model").is_none());
    assert!(t.streaming() && t.include_usage);
}

#[test]
fn refusals_name_the_parameter() {
    let m = || json!([user("x")]);
    let tc = |args: &str| json!([user("x"), {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}]}]);
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"model": "m"}), "messages", "invalid_value"),
        (json!({"model": "m", "messages": []}), "messages", "invalid_value"),
        (json!({"model": "m", "messages": [{"role": "system", "content": "only system"}]}), "messages", "invalid_value"),
        (json!({"model": "m", "messages": m(), "frobnicate": 1}), "frobnicate", "unsupported_parameter"),
        (json!({"model": "m", "messages": m(), "logit_bias": {"50256": -100}}), "logit_bias", "unsupported_parameter"),
        (json!({"model": "m", "messages": m(), "audio": {"voice": "alloy", "format": "wav"}}), "audio", "unsupported_parameter"),
        (json!({"model": "m", "messages": m(), "modalities": ["text", "audio"]}), "modalities", "unsupported_parameter"),
        (json!({"model": "m", "messages": m(), "prediction": {"type": "content", "content": "x"}}), "prediction", "unsupported_parameter"),
        (json!({"model": "m", "messages": m(), "web_search_options": {}}), "web_search_options", "unsupported_parameter"),
        (json!({"model": "m", "messages": m(), "functions": [{"name": "f"}]}), "functions", "unsupported_parameter"),
        (json!({"model": "m", "messages": m(), "logprobs": true}), "logprobs", "unsupported_parameter"),
        (json!({"model": "m", "messages": m(), "top_logprobs": 3}), "top_logprobs", "unsupported_parameter"),
        (json!({"model": "m", "messages": m(), "reasoning_effort": "max"}), "reasoning_effort", "invalid_value"),
        (json!({"model": "m", "messages": m(), "temperature": "hot"}), "temperature", "invalid_value"),
        (json!({"model": "m", "messages": m(), "n": 0}), "n", "invalid_value"),
        (json!({"model": "m", "messages": m(), "stop": [1]}), "stop", "invalid_value"),
        (json!({"model": "m", "messages": m(), "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}), "response_format.json_schema.schema", "invalid_value"),
        (json!({"model": "m", "messages": m(), "tool_choice": "required"}), "tool_choice", "invalid_value"),
        (json!({"model": "m", "messages": m(), "tools": [{"type": "web_search"}]}), "tools[0].type", "unsupported_parameter"),
        (json!({"model": "m", "messages": m(), "tools": tools(), "tool_choice": {"type": "function", "function": {"name": "nope"}}}), "tool_choice.function.name", "invalid_value"),
        (json!({"model": "m", "messages": tc("{not json")}), "messages[1].tool_calls[0].function.arguments", "invalid_value"),
        (json!({"model": "m", "messages": tc("[1]")}), "messages[1].tool_calls[0].function.arguments", "invalid_value"),
        (json!({"model": "m", "messages": [user("x"), {"role": "tool", "tool_call_id": "ghost", "content": "r"}]}), "messages[1].tool_call_id", "invalid_value"),
        (json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}), "messages[0].role", "invalid_value"),
        (json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}), "messages[0].role", "unsupported_parameter"),
        (json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}), "messages[0].content[0].image_url.url", "invalid_value"),
        (json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]}]}), "messages[0].content[0].image_url.url", "invalid_value"),
        (json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "flac"}}]}]}), "messages[0].content[0].input_audio.format", "invalid_value"),
        (json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-123"}}]}]}), "messages[0].content[0].file.file_id", "unsupported_parameter"),
        (json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": "AAAA", "filename": "blob.xyz"}}]}]}), "messages[0].content[0].file.file_data", "invalid_value"),
        (json!({"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}, user("x")]}), "messages[0].content[0].type", "invalid_value"),
        (json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]}), "messages[0].content[0].type", "invalid_value"),
    ];
    for (v, param, code) in cases {
        let e = refused(v.clone());
        assert_eq!((e.status, e.kind, e.param.as_deref(), e.code), (400, "invalid_request_error", Some(param), Some(code)), "{v}");
        assert_eq!(e.to_openai()["error"]["param"], json!(param));
    }
}

// ---------- response ----------

fn text_response() -> Value {
    json!({
        "candidates": [{
            "content": {"parts": [{"text": "AI learns "}, {"text": "patterns."}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 12, "totalTokenCount": 20,
                          "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}]},
        "modelVersion": "gemini-2.0-flash",
        "responseId": "mD1qaPSwL8"
    })
}

#[test]
fn text_response_translates() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "gemini-2.0-flash", "messages": [user("x")]}));
    let out = t.response(text_response()).unwrap();
    assert!(out["created"].as_u64().unwrap() > 1_600_000_000);
    let mut out2 = out.clone();
    out2["created"] = json!(0);
    assert_eq!(
        out2,
        json!({
            "id": "chatcmpl-mD1qaPSwL8", "object": "chat.completion", "created": 0, "model": "gemini-2.0-flash",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "AI learns patterns.", "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": 12, "total_tokens": 20,
                      "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
        })
    );
    assert_eq!(t.response_model().as_deref(), Some("gemini-2.0-flash"));
    assert_eq!(t.usage(), TokenUsage { input_tokens: 8, output_tokens: 12, seen: true, ..Default::default() });
}

#[test]
fn thoughts_cache_and_usage() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "gemini-2.5-pro", "messages": [user("x")], "reasoning_effort": "high"}));
    let out = t
        .response(json!({
            "candidates": [{"content": {"parts": [{"text": "Let me think about primes...", "thought": true}, {"text": "There are infinitely many."}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 40, "thoughtsTokenCount": 300, "cachedContentTokenCount": 1024, "totalTokenCount": 1540},
            "modelVersion": "gemini-2.5-pro-preview-05-06", "responseId": "r1"
        }))
        .unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "There are infinitely many.");
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 1200, "completion_tokens": 340, "total_tokens": 1540,
               "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 300}})
    );
    assert_eq!(t.usage(), TokenUsage { input_tokens: 1200, output_tokens: 340, cached_tokens: 1024, reasoning_tokens: 300, seen: true, ..Default::default() });
    assert_eq!(t.response_model().as_deref(), Some("gemini-2.5-pro-preview-05-06"));
}

fn parallel_calls_response() -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "U0lH"},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}
            ]},
            "finishReason": "STOP", "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 10, "totalTokenCount": 60},
        "modelVersion": "gemini-2.5-flash", "responseId": "resp-42"
    })
}

#[test]
fn parallel_function_calls() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "gemini-2.5-flash", "messages": [user("x")], "tools": tools()}));
    let out = t.response(parallel_calls_response()).unwrap();
    assert_eq!(
        out["choices"][0],
        json!({
            "index": 0,
            "message": {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"id": "call_resp-42_0_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                 "extra_content": {"google": {"thought_signature": "U0lH"}}},
                {"id": "call_resp-42_0_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            "logprobs": null,
            "finish_reason": "tool_calls"
        })
    );
    // parallel_tool_calls: false keeps the first call only
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "tools": tools(), "parallel_tool_calls": false}));
    let out = t.response(parallel_calls_response()).unwrap();
    assert_eq!(out["choices"][0]["message"]["tool_calls"].as_array().unwrap().len(), 1);
}

#[test]
fn gemini_function_call_id_is_used() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")]}));
    let out = t
        .response(json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"id": "fc-9", "name": "f", "args": {}}}]}, "finishReason": "STOP"}], "responseId": "r"}))
        .unwrap();
    assert_eq!(out["choices"][0]["message"]["tool_calls"][0]["id"], "fc-9");
    assert_eq!(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{}");
}

#[test]
fn finish_reasons_and_multiple_candidates() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "n": 3}));
    let out = t
        .response(json!({"candidates": [
            {"content": {"role": "model", "parts": [{"text": "a"}]}, "finishReason": "MAX_TOKENS", "index": 0},
            {"finishReason": "SAFETY", "index": 1, "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]},
            {"content": {"role": "model", "parts": [{"text": "c"}]}, "finishReason": "OTHER", "index": 2}
        ], "responseId": "r"}))
        .unwrap();
    let got: Vec<(u64, &str, &str)> = out["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["index"].as_u64().unwrap(), c["finish_reason"].as_str().unwrap(), c["message"]["content"].as_str().unwrap()))
        .collect();
    assert_eq!(got, vec![(0, "length", "a"), (1, "content_filter", ""), (2, "stop", "c")]);
    for (r, want) in [("RECITATION", "content_filter"), ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"), ("IMAGE_SAFETY", "content_filter"), ("MALFORMED_FUNCTION_CALL", "stop"), ("STOP", "stop")] {
        assert_eq!(finish_reason(r, false), want, "{r}");
    }
    assert_eq!(finish_reason("MAX_TOKENS", true), "length");
    assert_eq!(finish_reason("STOP", true), "tool_calls");
}

#[test]
fn blocked_prompt() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "gemini-2.0-flash", "messages": [user("x")]}));
    let out = t
        .response(json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH"}]},
                         "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}, "modelVersion": "gemini-2.0-flash", "responseId": "b"}))
        .unwrap();
    assert_eq!(out["choices"], json!([{"index": 0, "message": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": "content_filter"}]));
    assert_eq!(out["usage"]["prompt_tokens"], 7);
    let e = GeminiChat::new().response(json!({"usageMetadata": {}})).unwrap_err();
    assert_eq!(e.status, 502);
    assert_eq!(GeminiChat::new().response(json!("x")).unwrap_err().status, 502);
}

#[test]
fn multi_turn_tool_round_trip() {
    let tools = tools();
    let mut first = GeminiChat::new();
    let q = json!({"model": "gemini-2.5-flash", "messages": [user("weather in Paris and Rome?")], "tools": tools});
    req(&mut first, q.clone());
    let answer = first.response(parallel_calls_response()).unwrap();
    let msg = answer["choices"][0]["message"].clone();
    let calls = msg["tool_calls"].as_array().unwrap();
    let mut messages = q["messages"].as_array().unwrap().clone();
    messages.push(msg.clone());
    // the client answers in reverse order, which must not matter
    messages.push(json!({"role": "tool", "tool_call_id": calls[1]["id"], "content": "{\"temp\": 25}"}));
    messages.push(json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"}));
    let mut second = GeminiChat::new();
    let body = req(&mut second, json!({"model": "gemini-2.5-flash", "messages": messages, "tools": q["tools"]}));
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "weather in Paris and Rome?"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "U0lH"},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 25}}},
                {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}
            ]}
        ])
    );
}

// ---------- stream ----------

fn sse(v: Value) -> String {
    v.to_string()
}

fn text_stream() -> Vec<String> {
    vec![
        sse(json!({"candidates": [{"content": {"parts": [{"text": "The"}], "role": "model"}, "index": 0}],
                   "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}, "modelVersion": "gemini-2.0-flash", "responseId": "s1"})),
        sse(json!({"candidates": [{"content": {"parts": [{"text": " sky is"}], "role": "model"}, "index": 0}],
                   "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}, "modelVersion": "gemini-2.0-flash", "responseId": "s1"})),
        sse(json!({"candidates": [{"content": {"parts": [{"text": " blue."}], "role": "model"}, "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 6, "totalTokenCount": 11}, "modelVersion": "gemini-2.0-flash", "responseId": "s1"})),
    ]
}

fn run(t: &mut GeminiChat, events: &[String], end: StreamEnd) -> Vec<Value> {
    let mut out = Vec::new();
    for e in events {
        t.stream_event(None, e, &mut out);
    }
    t.stream_end(end, &mut out);
    let mut v = datas(&out);
    for c in v.iter_mut() {
        if c.get("created").is_some() {
            c["created"] = json!(0);
        }
    }
    v
}

fn ch(choices: Value, usage: bool) -> Value {
    let mut c = json!({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 0, "model": "gemini-2.0-flash", "choices": choices});
    if usage {
        c["usage"] = Value::Null;
    }
    c
}

#[test]
fn text_stream_with_usage() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "gemini-2.0-flash", "messages": [user("x")], "stream": true, "stream_options": {"include_usage": true}}));
    let got = run(&mut t, &text_stream(), StreamEnd::Complete);
    let d = |delta: Value, fr: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": fr}]);
    let mut last = ch(json!([]), false);
    last["usage"] = json!({"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}});
    assert_eq!(
        got,
        vec![
            ch(d(json!({"role": "assistant", "content": "The"}), Value::Null), true),
            ch(d(json!({"content": " sky is"}), Value::Null), true),
            ch(d(json!({"content": " blue."}), Value::Null), true),
            ch(d(json!({}), json!("stop")), true),
            last,
            json!("[DONE]"),
        ]
    );
    assert_eq!(t.usage(), TokenUsage { input_tokens: 5, output_tokens: 6, seen: true, ..Default::default() });
}

#[test]
fn text_stream_without_usage_has_no_usage_key() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "gemini-2.0-flash", "messages": [user("x")], "stream": true}));
    let got = run(&mut t, &text_stream(), StreamEnd::Complete);
    assert_eq!(got.len(), 5);
    assert!(got[..4].iter().all(|c| c.get("usage").is_none()));
    assert_eq!(got[4], json!("[DONE]"));
}

#[test]
fn function_call_stream() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "gemini-2.0-flash", "messages": [user("x")], "tools": tools(), "stream": true}));
    let events = vec![
        sse(json!({"candidates": [{"content": {"role": "model", "parts": [{"thought": true, "text": "planning"}]}, "index": 0}], "responseId": "s1", "modelVersion": "gemini-2.0-flash"})),
        sse(json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"}]}, "index": 0}], "responseId": "s1", "modelVersion": "gemini-2.0-flash"})),
        sse(json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]}, "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 10, "thoughtsTokenCount": 4, "totalTokenCount": 34}, "responseId": "s1", "modelVersion": "gemini-2.0-flash"})),
    ];
    let got = run(&mut t, &events, StreamEnd::Complete);
    let d = |delta: Value, fr: Value| ch(json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": fr}]), false);
    let call = |k: usize, city: &str| json!([{"index": k, "id": format!("call_s1_0_{k}"), "type": "function", "function": {"name": "get_weather", "arguments": format!("{{\"city\":\"{city}\"}}")}}]);
    let mut paris = call(0, "Paris");
    paris[0]["extra_content"] = json!({"google": {"thought_signature": "c2ln"}});
    assert_eq!(
        got,
        vec![
            d(json!({"role": "assistant", "reasoning_content": "planning"}), Value::Null),
            d(json!({"tool_calls": paris}), Value::Null),
            d(json!({"tool_calls": call(1, "Rome")}), Value::Null),
            d(json!({}), json!("tool_calls")),
            json!("[DONE]"),
        ]
    );
    assert_eq!(t.usage(), TokenUsage { input_tokens: 20, output_tokens: 14, reasoning_tokens: 4, cached_tokens: 0, seen: true, ..Default::default() });
    // Only the signed call is remembered (Gemini signs the first call of a step).
    assert_eq!(t.replay_memos(), vec![("call_s1_0_0".to_string(), crate::translate::replay::Memo::ThoughtSignature("c2ln".into()))]);
}

#[test]
fn stream_parallel_calls_in_one_chunk_and_parallel_false() {
    let chunk = sse(json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "a", "args": {}}}, {"functionCall": {"name": "b", "args": {"x": 1}}}]}, "finishReason": "STOP", "index": 0}], "responseId": "s1", "modelVersion": "gemini-2.0-flash"}));
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "stream": true}));
    let got = run(&mut t, std::slice::from_ref(&chunk), StreamEnd::Complete);
    let tcs = &got[0]["choices"][0]["delta"]["tool_calls"];
    assert_eq!(tcs.as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(got[0]["choices"][0]["delta"]["role"], "assistant");
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "stream": true, "parallel_tool_calls": false}));
    let got = run(&mut t, &[chunk], StreamEnd::Complete);
    assert_eq!(got[0]["choices"][0]["delta"]["tool_calls"].as_array().unwrap().len(), 1);
    assert_eq!(got[1]["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn stream_cut_and_unfinished() {
    let cut_err = json!({"error": {"message": "the provider's stream ended before completion", "type": "upstream_error", "param": null, "code": "stream_truncated"}});
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "stream": true, "stream_options": {"include_usage": true}}));
    let got = run(&mut t, &text_stream()[..2], StreamEnd::Cut);
    assert_eq!(got.len(), 3);
    assert_eq!(got[2], cut_err);
    // a clean end of the connection without any finishReason is a cut too
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "stream": true}));
    let got = run(&mut t, &text_stream()[..2], StreamEnd::Complete);
    assert_eq!(got.last().unwrap(), &cut_err);
    // Cut after the finish chunk still reports the cut
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "stream": true}));
    let got = run(&mut t, &text_stream(), StreamEnd::Cut);
    assert_eq!(got.last().unwrap(), &cut_err);
}

#[test]
fn stream_error_event_and_garbage() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "stream": true}));
    let events = vec![
        "not json".to_owned(),
        "[1,2]".to_owned(),
        text_stream()[0].clone(),
        sse(json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})),
        text_stream()[1].clone(),
    ];
    let got = run(&mut t, &events, StreamEnd::Complete);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], json!({"error": {"message": "The model is overloaded.", "type": "api_error", "param": null, "code": "unavailable"}}));
}

#[test]
fn stream_safety_and_blocked_prompt() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "stream": true}));
    let got = run(
        &mut t,
        &[sse(json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}, "responseId": "s1", "modelVersion": "gemini-2.0-flash"}))],
        StreamEnd::Complete,
    );
    let d = |delta: Value, fr: Value| ch(json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": fr}]), false);
    assert_eq!(got, vec![d(json!({"role": "assistant", "content": ""}), Value::Null), d(json!({}), json!("content_filter")), json!("[DONE]")]);
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "stream": true}));
    let events = vec![
        text_stream()[0].clone(),
        sse(json!({"candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": true}]}], "responseId": "s1", "modelVersion": "gemini-2.0-flash"})),
        text_stream()[1].clone(),
    ];
    let got = run(&mut t, &events, StreamEnd::Complete);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[1]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(got[2], json!("[DONE]"));
}

#[test]
fn stream_two_candidates() {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "stream": true, "n": 2}));
    let events = vec![
        sse(json!({"candidates": [{"content": {"parts": [{"text": "A"}], "role": "model"}, "index": 0}, {"content": {"parts": [{"text": "B"}], "role": "model"}, "index": 1}], "responseId": "s1", "modelVersion": "gemini-2.0-flash"})),
        sse(json!({"candidates": [{"content": {"parts": [{"text": "!"}], "role": "model"}, "finishReason": "STOP", "index": 0}], "responseId": "s1", "modelVersion": "gemini-2.0-flash"})),
    ];
    // candidate 1 never finished: not complete
    let got = run(&mut t, &events, StreamEnd::Complete);
    assert!(got.last().unwrap().get("error").is_some());
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "m", "messages": [user("x")], "stream": true, "n": 2}));
    let mut events = events;
    events.push(sse(json!({"candidates": [{"content": {"parts": [{"text": "?"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1}], "responseId": "s1", "modelVersion": "gemini-2.0-flash"})));
    let got = run(&mut t, &events, StreamEnd::Complete);
    let summary: Vec<(u64, Value, Value)> = got[..got.len() - 1]
        .iter()
        .map(|c| (c["choices"][0]["index"].as_u64().unwrap(), c["choices"][0]["delta"].clone(), c["choices"][0]["finish_reason"].clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, json!({"role": "assistant", "content": "A"}), Value::Null),
            (1, json!({"role": "assistant", "content": "B"}), Value::Null),
            (0, json!({"content": "!"}), Value::Null),
            (0, json!({}), json!("stop")),
            (1, json!({"content": "?"}), Value::Null),
            (1, json!({}), json!("length")),
        ]
    );
    assert_eq!(got.last().unwrap(), &json!("[DONE]"));
}

// ---------- errors ----------

#[test]
fn error_mapping() {
    let g = |code: u16, status: &str, msg: &str| format!(r#"{{"error":{{"code":{code},"message":"{msg}","status":"{status}","details":[]}}}}"#);
    let cases = [
        (400, g(400, "INVALID_ARGUMENT", "bad field"), 400, "invalid_request_error"),
        (401, g(401, "UNAUTHENTICATED", "no creds"), 401, "authentication_error"),
        (403, g(403, "PERMISSION_DENIED", "denied"), 403, "permission_error"),
        (404, g(404, "NOT_FOUND", "models/x is not found"), 404, "not_found_error"),
        (429, g(429, "RESOURCE_EXHAUSTED", "quota"), 429, "rate_limit_error"),
        (500, g(500, "INTERNAL", "oops"), 500, "api_error"),
        (503, g(503, "UNAVAILABLE", "overloaded"), 503, "api_error"),
        (400, g(400, "FAILED_PRECONDITION", "location not supported"), 400, "invalid_request_error"),
    ];
    for (status, body, want_status, kind) in cases {
        let (s, v) = GeminiChat::new().error(status, body.as_bytes());
        assert_eq!((s, v["error"]["type"].as_str()), (want_status, Some(kind)), "{body}");
        assert_eq!(v["error"]["param"], Value::Null);
        assert!(v["error"]["message"].as_str().unwrap().len() > 2);
    }
    let (s, v) = google_error(429, g(429, "RESOURCE_EXHAUSTED", "quota").as_bytes());
    assert_eq!((s, v), (429, json!({"error": {"message": "quota", "type": "rate_limit_error", "param": null, "code": "resource_exhausted"}})));
}

#[test]
fn bad_api_key_is_401() {
    let body = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
    let (s, v) = GeminiChat::new().error(400, body);
    assert_eq!(s, 401);
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    // array form (streamGenerateContent without alt=sse)
    let arr = format!("[{}]", std::str::from_utf8(body).unwrap());
    assert_eq!(GeminiChat::new().error(400, arr.as_bytes()).0, 401);
}

#[test]
fn non_json_error() {
    let (s, v) = GeminiChat::new().error(502, b"<html>Bad Gateway</html>");
    assert_eq!((s, v["error"]["type"].as_str()), (502, Some("api_error")));
    assert!(v["error"]["message"].as_str().unwrap().contains("502"));
    let (s, v) = GeminiChat::new().error(429, b"");
    assert_eq!((s, v["error"]["type"].as_str()), (429, Some("rate_limit_error")));
}

#[test]
fn mime_rule() {
    assert_eq!(mime_from_ext("https://a/b/c.JPG?q=.png"), Some("image/jpeg"));
    assert_eq!(mime_from_ext("https://a.com/b"), None);
    assert_eq!(mime_from_ext("https://a.com/dir.png/file"), None);
    assert_eq!(mime_from_ext("x.mp4"), Some("video/mp4"));
}

// ---------- properties ----------

fn fixture_events() -> Vec<String> {
    let mut v = text_stream();
    v.push(parallel_calls_response().to_string());
    v.push(sse(json!({"promptFeedback": {"blockReason": "SAFETY"}})));
    v.push(sse(json!({"candidates": [{"finishReason": "SAFETY", "index": 1}]})));
    v.push(sse(json!({"candidates": [{"index": 99999999999u64, "content": {"parts": [{"text": "far"}]}}]})));
    v.push(sse(json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": 5, "args": [1]}}, {"text": 3}, {"thought": "yes"}]}}]})));
    v.push(sse(json!({"error": {"code": 500, "message": "boom", "status": "INTERNAL"}})));
    v.push(sse(json!({"usageMetadata": {"promptTokenCount": -1, "candidatesTokenCount": "x"}})));
    v.push(sse(json!({"candidates": "nope", "responseId": 7})));
    v.push("".to_owned());
    v.push("[DONE]".to_owned());
    v
}

fn check_output(out: &[ClientEvent]) -> Result<(), TestCaseError> {
    prop_assert!(!out.is_empty());
    let out: Vec<ClientEvent> = out.iter().cloned().map(ClientEvent::parsed).collect();
    for (i, e) in out.iter().enumerate() {
        match e {
            ClientEvent::Data(v) => {
                prop_assert!(v.is_object());
                let is_chunk = v.get("object") == Some(&json!("chat.completion.chunk"));
                let is_err = v.get("error").is_some();
                prop_assert!(is_chunk || is_err, "bad event {v}");
                if is_err {
                    prop_assert_eq!(i, out.len() - 1, "error must be last");
                }
            }
            ClientEvent::Done => prop_assert_eq!(i, out.len() - 1, "Done must be last"),
            ClientEvent::Named(..) => prop_assert!(false, "named event in chat stream"),
            ClientEvent::Json(_) => unreachable!("read back above"),
        }
    }
    let last = out.last().unwrap();
    let ok_end = *last == ClientEvent::Done || matches!(last, ClientEvent::Data(v) if v.get("error").is_some());
    prop_assert!(ok_end);
    Ok(())
}

#[derive(Debug, Clone)]
enum Ev {
    Fixture(usize),
    Garbage(String),
    Truncated(usize, usize),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0usize..64).prop_map(Ev::Fixture),
        ".{0,40}".prop_map(Ev::Garbage),
        (0usize..64, 0usize..400).prop_map(|(a, b)| Ev::Truncated(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn any_event_sequence_is_safe(
        events in proptest::collection::vec(ev(), 0..12),
        include_usage in any::<bool>(),
        single in any::<bool>(),
        cut in any::<bool>(),
    ) {
        let fx = fixture_events();
        let mut t = GeminiChat::new();
        t.request(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true,
                         "stream_options": {"include_usage": include_usage}, "parallel_tool_calls": !single}), &Options::default()).unwrap();
        let mut out = Vec::new();
        for e in &events {
            let data = match e {
                Ev::Fixture(i) => fx[i % fx.len()].clone(),
                Ev::Garbage(s) => s.clone(),
                Ev::Truncated(i, n) => {
                    let s = &fx[i % fx.len()];
                    s.char_indices().map(|(k, _)| k).nth(*n).map(|k| s[..k].to_owned()).unwrap_or_else(|| s.clone())
                }
            };
            t.stream_event(Some("message"), &data, &mut out);
        }
        t.stream_end(if cut { StreamEnd::Cut } else { StreamEnd::Complete }, &mut out);
        t.stream_end(StreamEnd::Complete, &mut out);
        check_output(&out)?;
        if cut {
            prop_assert!(*out.last().unwrap() != ClientEvent::Done);
        }
        for e in out.into_iter().map(ClientEvent::parsed) {
            if let ClientEvent::Data(v) = e {
                if let Some(choices) = v.get("choices").and_then(Value::as_array) {
                    prop_assert!(choices.len() <= 1);
                    if include_usage { prop_assert!(v.get("usage").is_some()); } else { prop_assert!(v.get("usage").is_none()); }
                }
            }
        }
    }

    #[test]
    fn shuffled_fixture_never_panics(perm in Just((0..fixture_events().len()).collect::<Vec<_>>()).prop_shuffle(), take in 0usize..20) {
        let fx = fixture_events();
        let mut t = GeminiChat::new();
        t.request(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true}), &Options::default()).unwrap();
        let mut out = Vec::new();
        for i in perm.into_iter().take(take) {
            t.stream_event(None, &fx[i], &mut out);
        }
        t.stream_end(StreamEnd::Complete, &mut out);
        check_output(&out)?;
    }

    #[test]
    fn non_streaming_and_error_never_panic(body in ".{0,60}", status in 0u16..700, idx in 0usize..64) {
        let fx = fixture_events();
        let mut t = GeminiChat::new();
        let _ = t.response(serde_json::from_str(&fx[idx % fx.len()]).unwrap_or(Value::Null));
        let (s, v) = t.error(status, body.as_bytes());
        prop_assert!(s >= 400);
        prop_assert!(v["error"]["message"].is_string() && v["error"]["type"].is_string());
    }

    #[test]
    fn stop_and_text_survive(texts in proptest::collection::vec("[a-zA-Z0-9 ]{0,12}", 1..5)) {
        let messages: Vec<Value> = texts.iter().map(|t| json!({"role": "user", "content": t})).collect();
        let body = GeminiChat::new().request(json!({"model": "m", "messages": messages, "stop": texts}), &Options::default()).unwrap();
        let got: Vec<&str> = body["contents"].as_array().unwrap().iter().map(|c| c["parts"][0]["text"].as_str().unwrap()).collect();
        prop_assert_eq!(got, texts.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(body["contents"].as_array().unwrap().iter().all(|c| c["role"] == "user"), true);
    }
}

#[test]
fn cached_content_passes_through_as_cached_content() {
    let req = |extra: Value| {
        let mut r = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        GeminiChat::new().request(r, &Options::default())
    };
    let out = req(json!({"cached_content": "cachedContents/abc123"})).unwrap();
    assert_eq!(out["cachedContent"], "cachedContents/abc123");
    let out = req(json!({"extra_body": {"google": {"cached_content": "cachedContents/xyz"}}})).unwrap();
    assert_eq!(out["cachedContent"], "cachedContents/xyz");
    assert!(req(json!({})).unwrap().get("cachedContent").is_none());
    assert_eq!(req(json!({"cached_content": 5})).unwrap_err().param.as_deref(), Some("cached_content"));
    assert_eq!(req(json!({"extra_body": {"google": {"thinking_config": {}}}})).unwrap_err().param.as_deref(), Some("extra_body.google.thinking_config"));
    // Its tokens are priced as cached input.
    let mut t = GeminiChat::new();
    t.request(json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}), &Options::default()).unwrap();
    t.response(json!({"candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP"}],
                     "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 3, "cachedContentTokenCount": 900}})).unwrap();
    let u = t.usage();
    assert_eq!((u.input_tokens, u.cached_tokens, u.cache_write_tokens), (1000, 900, 0));
}

// ---------- the typed fast path of a whole answer (issue 28) ----------

fn gemini_part() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[a-z é\"\\\\\n]{0,12}".prop_map(|t| json!({"text": t})),
        2 => ("[a-z ]{0,8}", any::<bool>()).prop_map(|(t, th)| json!({"text": t, "thought": th})),
        1 => Just(json!({"thought": true})),
        1 => Just(json!({"inlineData": {"mimeType": "image/png", "data": "AAAA"}})),
        1 => Just(json!({"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "c2ln"})),
        1 => Just(json!({"text": 7})),
    ]
}

fn gemini_candidate() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(0u64..4),
        proptest::collection::vec(gemini_part(), 0..4),
        proptest::option::of(prop_oneof![Just("STOP"), Just("MAX_TOKENS"), Just("SAFETY"), Just("OTHER")]),
    )
        .prop_map(|(index, parts, reason)| {
            let mut c = json!({"content": {"parts": parts, "role": "model"}});
            if let Some(i) = index {
                c["index"] = json!(i);
            }
            if let Some(r) = reason {
                c["finishReason"] = json!(r);
            }
            c
        })
}

fn gemini_answer() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(prop_oneof![Just(""), Just("resp-1"), Just("r/2 é")]),
        proptest::option::of(prop_oneof![Just(""), Just("gemini-2.5-flash")]),
        proptest::option::of(proptest::collection::vec(gemini_candidate(), 0..3)),
        proptest::option::of((0u64..5000, 0u64..5000, proptest::option::of(0u64..300), 0u64..100)),
        any::<bool>(),
    )
        .prop_map(|(rid, model, cands, usage, blocked)| {
            let mut v = json!({});
            if let Some(r) = rid {
                v["responseId"] = json!(r);
            }
            if let Some(m) = model {
                v["modelVersion"] = json!(m);
            }
            if let Some(c) = cands {
                v["candidates"] = json!(c);
            }
            if let Some((p, c, t, cached)) = usage {
                v["usageMetadata"] = json!({"promptTokenCount": p, "candidatesTokenCount": c, "cachedContentTokenCount": cached, "totalTokenCount": p + c});
                if let Some(t) = t {
                    v["usageMetadata"]["thoughtsTokenCount"] = json!(t);
                }
            }
            if blocked {
                v["promptFeedback"] = json!({"blockReason": "SAFETY"});
            }
            v
        })
}

/// The client's object less what the clock and a generated id make differ.
fn comparable(mut v: Value, generated_id: bool) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("created");
        if generated_id {
            // And the tool-call ids made from it.
            o.remove("id");
            for c in o.get_mut("choices").and_then(Value::as_array_mut).into_iter().flatten() {
                for tc in c["message"].get_mut("tool_calls").and_then(Value::as_array_mut).into_iter().flatten() {
                    tc.as_object_mut().map(|t| t.remove("id"));
                }
            }
        }
    }
    v
}

fn gemini_translator() -> GeminiChat {
    let mut t = GeminiChat::new();
    req(&mut t, json!({"model": "gemini-2.5-flash", "messages": [user("x")]}));
    t
}

proptest! {
    /// The typed fast path gives the slow path's object and leaves the
    /// translator in the same state, or declines and changes nothing.
    #[test]
    fn fast_and_slow_paths_agree(a in gemini_answer()) {
        let (mut fast, mut slow) = (gemini_translator(), gemini_translator());
        let bytes = serde_json::to_vec(&a).unwrap();
        let generated_id = a["responseId"].as_str().is_none_or(str::is_empty);
        let expected = slow.response(a.clone());
        match fast.response_bytes(&bytes) {
            Some(out) => {
                let out: Value = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(comparable(out, generated_id), comparable(expected.unwrap(), generated_id));
                prop_assert_eq!(fast.usage(), slow.usage());
                prop_assert_eq!(fast.response_model(), slow.response_model());
                prop_assert_eq!(fast.replay_memos().len(), 0);
            }
            None => {
                let cands = a["candidates"].as_array();
                let declined = cands.is_none_or(|c| c.is_empty())
                    || bytes.windows(14).any(|w| w == b"\"functionCall\"")
                    || cands.is_some_and(|c| c.iter().any(|c| c["content"]["parts"].as_array().is_some_and(|p| p.iter().any(|p| p["text"].is_number()))));
                prop_assert!(declined, "declined a plain answer: {}", a);
                let again = fast.response(a).map(|v| comparable(v, generated_id));
                prop_assert_eq!(format!("{:?}", again), format!("{:?}", expected.map(|v| comparable(v, generated_id))));
            }
        }
    }
}

#[test]
fn the_fast_path_takes_the_plain_answer() {
    let mut t = gemini_translator();
    let out: Value = serde_json::from_slice(&t.response_bytes(&serde_json::to_vec(&text_response()).unwrap()).expect("the fast path")).unwrap();
    assert_eq!(out["choices"][0]["message"], json!({"role": "assistant", "content": "AI learns patterns.", "refusal": null}));
    assert_eq!((out["id"].as_str(), out["usage"]["total_tokens"].as_u64()), (Some("chatcmpl-mD1qaPSwL8"), Some(20)));
    // Not an object: the slow path's 502.
    assert!(gemini_translator().response_bytes(b"[{\"candidates\": []}]").is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The typed fast path of stream events (issue 28) decides as the
    /// `Value` path does: the same chunks, usage and model, over any
    /// sequence of answers as stream events. The slow run carries a member
    /// `"zz": "error"` in each event, which the `Value` path ignores and
    /// the fast path always declines.
    #[test]
    fn fast_and_slow_stream_paths_agree(events in proptest::collection::vec(gemini_answer(), 1..8), include_usage in any::<bool>(), cut in any::<bool>()) {
        let start = || {
            let mut t = GeminiChat::new();
            t.request(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": {"include_usage": include_usage}}), &Options::default()).unwrap();
            t
        };
        let (mut fast, mut slow) = (start(), start());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for e in &events {
            let data = e.to_string();
            fast.stream_event(None, &data, &mut a);
            slow.stream_event(None, &format!("{{\"zz\":\"error\",{}", &data[1..]).replace(",}", "}"), &mut b);
        }
        let end = if cut { StreamEnd::Cut } else { StreamEnd::Complete };
        fast.stream_end(end, &mut a);
        slow.stream_end(end, &mut b);
        // The clock, and an id generated when the provider gave none.
        let strip = |v: Vec<ClientEvent>| -> Vec<ClientEvent> {
            v.into_iter().map(ClientEvent::parsed).map(|e| match e {
                ClientEvent::Data(mut d) => {
                    if let Some(o) = d.as_object_mut() {
                        o.remove("created");
                        o.remove("id");
                        // And the tool-call ids made from a generated one.
                        for c in o.get_mut("choices").and_then(Value::as_array_mut).into_iter().flatten() {
                            for tc in c["delta"].get_mut("tool_calls").and_then(Value::as_array_mut).into_iter().flatten() {
                                tc.as_object_mut().map(|t| t.remove("id"));
                            }
                        }
                    }
                    ClientEvent::Data(d)
                }
                e => e,
            }).collect()
        };
        prop_assert_eq!(strip(a), strip(b));
        prop_assert_eq!(fast.usage(), slow.usage());
        prop_assert_eq!(fast.response_model(), slow.response_model());
    }
}

#[test]
fn a_streamed_text_event_takes_the_fast_path() {
    let mut t = GeminiChat::new();
    t.request(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true}), &Options::default()).unwrap();
    let mut out = Vec::new();
    let ev = |text: &str| json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}}], "responseId": "r1", "modelVersion": "gemini-2.5-flash"}).to_string();
    t.stream_event(None, &ev("Hel"), &mut out);
    assert!(matches!(out[0], ClientEvent::Data(_)), "the first chunk (with the role) is the slow path's");
    assert!(t.fast_stream_event(&ev("lo"), &mut out));
    assert!(matches!(&out[1], ClientEvent::Json(s) if s.contains("\"content\":\"lo\"")));
}
