use super::answer::Answer;
use super::content::{input_messages, Budget, MAX_CONTENT_BYTES};
use super::raw::RawBody;
use crate::providers::ApiFamily;
use crate::translate::ClientEvent;
use serde_json::{json, Value};

#[test]
fn openai_input_in_the_conventions_shape() {
    let body = json!({"messages": [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
    ]});
    let mut b = Budget::default();
    let v = input_messages(ApiFamily::OpenAi, &body, &mut b).unwrap();
    assert_eq!(
        v,
        json!([
            {"role": "system", "parts": [{"type": "text", "content": "Be brief"}]},
            {"role": "user", "parts": [{"type": "text", "content": "What is this?"}, {"type": "image_url"}]},
            {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "look", "arguments": "{\"x\":1}"}]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "a cat"}]},
        ])
    );
    assert!(!v.to_string().contains("AAAA"), "image data never captured");
    assert!(!b.truncated);
    // Responses API: instructions and a string input.
    let v = input_messages(ApiFamily::OpenAi, &json!({"instructions": "Be brief", "input": "Hi"}), &mut Budget::default()).unwrap();
    assert_eq!(v[1], json!({"role": "user", "parts": [{"type": "text", "content": "Hi"}]}));
}

#[test]
fn gemini_and_anthropic_input() {
    let g = json!({"systemInstruction": {"parts": [{"text": "Be brief"}]}, "contents": [
        {"role": "user", "parts": [{"text": "Hi"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
    ]});
    let v = input_messages(ApiFamily::Gemini, &g, &mut Budget::default()).unwrap();
    assert_eq!(v[0]["role"], "system");
    assert_eq!(v[1]["parts"], json!([{"type": "text", "content": "Hi"}, {"type": "inlineData"}]));
    assert_eq!(v[2], json!({"role": "assistant", "parts": [{"type": "tool_call", "id": null, "name": "f", "arguments": "{\"a\":1}"}]}));
    let a = json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}]}]});
    let v = input_messages(ApiFamily::Anthropic, &a, &mut Budget::default()).unwrap();
    assert_eq!(v, json!([{"role": "user", "parts": [{"type": "tool_call_response", "id": "t1", "response": "42"}]}]));
    assert!(input_messages(ApiFamily::Anthropic, &json!({}), &mut Budget::default()).is_none());
}

#[test]
fn budget_cuts_text_and_stops_many_parts() {
    let long = "é".repeat(MAX_CONTENT_BYTES);
    let mut b = Budget::default();
    let v = input_messages(ApiFamily::OpenAi, &json!({"messages": [{"role": "user", "content": long}, {"role": "user", "content": "later"}]}), &mut b).unwrap();
    assert!(b.truncated);
    let kept = v[0]["parts"][0]["content"].as_str().unwrap();
    assert!(kept.len() < MAX_CONTENT_BYTES && long.starts_with(kept));
    assert_eq!(v.as_array().unwrap().len(), 1, "nothing after the budget is spent");
    // Ten thousand empty messages cost their parts.
    let many: Vec<Value> = (0..10_000).map(|_| json!({"role": "user", "content": ""})).collect();
    let mut b = Budget::default();
    let v = input_messages(ApiFamily::OpenAi, &json!({ "messages": many }), &mut b).unwrap();
    assert!(b.truncated && v.to_string().len() < 4 * MAX_CONTENT_BYTES, "{}", v.to_string().len());
}

#[test]
fn streamed_chat_chunks_accumulate_text_tools_and_reasons() {
    let mut a = Answer::new(true);
    for v in [
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "lo"}}, {"index": 1, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
        json!({"choices": [{"index": 1, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}, {"index": 1, "delta": {}, "finish_reason": "tool_calls"}]}),
    ] {
        a.client_event(&ClientEvent::Data(v));
    }
    a.client_event(&ClientEvent::Done);
    assert_eq!(a.finish_reasons(), ["stop", "tool_calls"]);
    let out: Value = serde_json::from_str(&a.output_messages().unwrap()).unwrap();
    assert_eq!(
        out,
        json!([
            {"role": "assistant", "parts": [{"type": "text", "content": "Hello"}], "finish_reason": "stop"},
            {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": "{\"a\":1}"}], "finish_reason": "tool_calls"},
        ])
    );
    // Without capture: the reasons only.
    let mut a = Answer::new(false);
    a.client_event(&ClientEvent::Data(json!({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "length"}]})));
    assert_eq!(a.finish_reasons(), ["length"]);
    assert!(a.output_messages().is_none());
}

#[test]
fn responses_gemini_and_anthropic_answers() {
    let mut a = Answer::new(true);
    let done = json!({"type": "response.completed", "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}]}});
    a.client_event(&ClientEvent::Named("response.completed".into(), done));
    assert_eq!(a.finish_reasons(), ["max_output_tokens"]);
    assert!(a.output_messages().unwrap().contains("\"Hi\""));

    let mut a = Answer::new(true);
    a.event(ApiFamily::Gemini, &json!({"candidates": [{"content": {"parts": [{"text": "Hi "}]}}]}));
    a.event(ApiFamily::Gemini, &json!({"candidates": [{"content": {"parts": [{"text": "there"}]}, "finishReason": "STOP"}]}));
    assert_eq!(a.finish_reasons(), ["STOP"]);
    assert!(a.output_messages().unwrap().contains("\"Hi there\""));

    let mut a = Answer::new(true);
    for v in [
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
    ] {
        a.event(ApiFamily::Anthropic, &v);
    }
    let out: Value = serde_json::from_str(&a.output_messages().unwrap()).unwrap();
    assert_eq!(out[0], json!({"role": "assistant", "parts": [{"type": "tool_call", "id": "t1", "name": "f", "arguments": "{\"a\":1}"}], "finish_reason": "tool_use"}));
}

#[test]
fn streamed_answer_text_is_bounded() {
    let mut a = Answer::new(true);
    let chunk = json!({"choices": [{"index": 0, "delta": {"content": "x".repeat(1000)}}]});
    for _ in 0..100 {
        a.event(ApiFamily::OpenAi, &chunk);
    }
    assert!(a.truncated());
    let out: Value = serde_json::from_str(&a.output_messages().unwrap()).unwrap();
    let text = out[0]["parts"][0]["content"].as_str().unwrap();
    assert!(text.len() <= MAX_CONTENT_BYTES && text.len() > MAX_CONTENT_BYTES / 2, "{}", text.len());
}

#[test]
fn raw_bodies_sse_whole_and_too_large() {
    let mut a = Answer::new(true);
    let mut r = RawBody::response(ApiFamily::OpenAi, Some("text/event-stream"), None).unwrap();
    r.feed(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\nda", &mut a);
    r.feed(b"ta: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", &mut a);
    assert!(r.finish(&mut a).unwrap().is_none());
    assert!(a.output_messages().unwrap().contains("\"Hi!\""));
    assert!(RawBody::response(ApiFamily::OpenAi, Some("application/json"), Some("gzip")).is_none(), "compressed: not read");
    let mut r = RawBody::request(ApiFamily::OpenAi);
    r.feed(&vec![b' '; super::raw::MAX_BODY], &mut a);
    r.feed(b"{}", &mut a);
    assert!(r.finish(&mut a).is_err(), "too large: truncated");
    let mut r = RawBody::request(ApiFamily::OpenAi);
    r.feed(b"{\"messages\":[]}", &mut a);
    assert_eq!(r.finish(&mut a).unwrap(), Some(json!({"messages": []})));
}
