//! Stored answers (SPEC 11), pure: the complete object assembled from the
//! events a client was sent, and that object replayed as the events of a
//! stream (role, content in pieces, tool calls, finish reason, usage,
//! `[DONE]`; or the Responses API's events), never one aggregated chunk.

use crate::translate::sse::SseParser;
use crate::translate::ClientEvent;
use serde_json::{json, Map, Value};

/// Content is replayed in pieces of about this many bytes (at word
/// boundaries), as a provider streams it.
const PIECE: usize = 12;

/// The `chat.completion` a chat stream amounts to; `None` unless the stream
/// was complete (`[DONE]`, no error event) and every choice finished.
pub fn chat_from_sse(bytes: &[u8]) -> Option<Value> {
    let mut chunks: Vec<Value> = Vec::new();
    let (mut done, mut broken) = (false, false);
    let mut p = SseParser::default();
    let mut on = |_e: Option<&str>, d: &str| {
        if d.trim() == "[DONE]" {
            done = true;
        } else {
            match serde_json::from_str::<Value>(d) {
                Ok(v) if v.get("error").is_none() => chunks.push(v),
                _ => broken = true,
            }
        }
    };
    p.feed(bytes, &mut on);
    p.finish(&mut on);
    if !done || broken || chunks.is_empty() {
        return None;
    }
    let first = &chunks[0];
    let mut choices: Vec<Map<String, Value>> = Vec::new();
    let mut usage = Value::Null;
    for c in &chunks {
        if let Some(u) = c.get("usage").filter(|u| !u.is_null()) {
            usage = u.clone();
        }
        for ch in c.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let i = ch.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            while choices.len() <= i {
                let n = choices.len();
                choices.push(json!({"index": n, "message": {"role": "assistant", "content": null}, "finish_reason": null}).as_object().cloned().unwrap_or_default());
            }
            let slot = &mut choices[i];
            let delta = ch.get("delta").cloned().unwrap_or(Value::Null);
            let msg = slot.get_mut("message").and_then(Value::as_object_mut)?;
            if let Some(r) = delta.get("role").and_then(Value::as_str) {
                msg.insert("role".into(), json!(r));
            }
            for field in ["content", "refusal", "reasoning_content"] {
                if let Some(t) = delta.get(field).and_then(Value::as_str) {
                    let cur = msg.get(field).and_then(Value::as_str).unwrap_or("").to_string();
                    msg.insert(field.into(), json!(cur + t));
                }
            }
            for tc in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let ti = tc.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let calls = msg.entry("tool_calls").or_insert_with(|| json!([])).as_array_mut()?;
                while calls.len() <= ti {
                    calls.push(json!({"id": null, "type": "function", "function": {"name": "", "arguments": ""}}));
                }
                let call = &mut calls[ti];
                if let Some(id) = tc.get("id").filter(|v| !v.is_null()) {
                    call["id"] = id.clone();
                }
                if let Some(n) = tc.pointer("/function/name").and_then(Value::as_str) {
                    let cur = call["function"]["name"].as_str().unwrap_or("").to_string();
                    call["function"]["name"] = json!(cur + n);
                }
                if let Some(a) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                    let cur = call["function"]["arguments"].as_str().unwrap_or("").to_string();
                    call["function"]["arguments"] = json!(cur + a);
                }
                if let Some(x) = tc.get("extra_content") {
                    call["extra_content"] = x.clone();
                }
            }
            if let Some(f) = ch.get("finish_reason").filter(|f| !f.is_null()) {
                slot.insert("finish_reason".into(), f.clone());
            }
        }
    }
    if choices.is_empty() || choices.iter().any(|c| c.get("finish_reason").is_none_or(Value::is_null)) {
        return None;
    }
    Some(json!({
        "id": first.get("id").cloned().unwrap_or(json!("chatcmpl-cache")),
        "object": "chat.completion",
        "created": first.get("created").cloned().unwrap_or(json!(0)),
        "model": first.get("model").cloned().unwrap_or(Value::Null),
        "system_fingerprint": first.get("system_fingerprint").cloned().unwrap_or(Value::Null),
        "choices": choices.into_iter().map(Value::Object).collect::<Vec<_>>(),
        "usage": usage,
    }))
}

/// The `response` a Responses API stream amounts to: its
/// `response.completed` event's, when the stream got there.
pub fn response_from_sse(bytes: &[u8]) -> Option<Value> {
    let mut out = None;
    let mut failed = false;
    let mut p = SseParser::default();
    let mut on = |e: Option<&str>, d: &str| {
        let Ok(v) = serde_json::from_str::<Value>(d) else { return };
        let kind = e.map(str::to_string).or_else(|| v.get("type").and_then(Value::as_str).map(str::to_string)).unwrap_or_default();
        match kind.as_str() {
            "response.completed" => out = v.get("response").cloned(),
            "response.failed" | "response.incomplete" | "error" => failed = true,
            _ => {}
        }
    };
    p.feed(bytes, &mut on);
    p.finish(&mut on);
    out.filter(|r| !failed && r.get("status").and_then(Value::as_str) == Some("completed"))
}

/// `text` in pieces of about `PIECE` bytes, split after spaces.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut last_space = None;
    for (i, c) in text.char_indices() {
        if c == ' ' {
            last_space = Some(i + 1);
        }
        if i - start >= PIECE {
            let cut = last_space.filter(|&s| s > start).unwrap_or(i);
            out.push(&text[start..cut]);
            start = cut;
            last_space = None;
        }
    }
    if start < text.len() || out.is_empty() {
        out.push(&text[start..]);
    }
    out
}

/// A stored `chat.completion` as the chunks of a stream, then `[DONE]`;
/// usage in its own last chunk when the request asked for it.
pub fn chat_events(obj: &Value, include_usage: bool) -> Vec<ClientEvent> {
    let base = |choices: Value, usage: Value| {
        ClientEvent::Data(json!({
            "id": obj.get("id").cloned().unwrap_or(Value::Null),
            "object": "chat.completion.chunk",
            "created": obj.get("created").cloned().unwrap_or(json!(0)),
            "model": obj.get("model").cloned().unwrap_or(Value::Null),
            "system_fingerprint": obj.get("system_fingerprint").cloned().unwrap_or(Value::Null),
            "choices": choices,
            "usage": usage,
        }))
    };
    let mut out = Vec::new();
    for ch in obj.get("choices").and_then(Value::as_array).into_iter().flatten() {
        let i = ch.get("index").cloned().unwrap_or(json!(0));
        let msg = ch.get("message").cloned().unwrap_or(Value::Null);
        let delta = |d: Value| json!([{"index": i, "delta": d, "logprobs": null, "finish_reason": null}]);
        out.push(base(delta(json!({"role": msg.get("role").cloned().unwrap_or(json!("assistant")), "content": ""})), Value::Null));
        for field in ["reasoning_content", "content", "refusal"] {
            if let Some(t) = msg.get(field).and_then(Value::as_str).filter(|t| !t.is_empty()) {
                for p in pieces(t) {
                    out.push(base(delta(json!({ field: p })), Value::Null));
                }
            }
        }
        for (ti, call) in msg.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let mut head = json!({"index": ti, "id": call.get("id"), "type": "function", "function": {"name": call.pointer("/function/name"), "arguments": ""}});
            if let Some(x) = call.get("extra_content") {
                head["extra_content"] = x.clone();
            }
            out.push(base(delta(json!({"tool_calls": [head]})), Value::Null));
            let args = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
            if !args.is_empty() {
                for p in pieces(args) {
                    out.push(base(delta(json!({"tool_calls": [{"index": ti, "function": {"arguments": p}}]})), Value::Null));
                }
            }
        }
        out.push(base(json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": ch.get("finish_reason")}]), Value::Null));
    }
    if include_usage {
        out.push(base(json!([]), obj.get("usage").cloned().unwrap_or(Value::Null)));
    }
    out.push(ClientEvent::Done);
    out
}

/// A stored `response` as the Responses API's stream events.
pub fn response_events(obj: &Value) -> Vec<ClientEvent> {
    let mut seq = 0u64;
    let mut out = Vec::new();
    let mut ev = |name: &str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        out.push(ClientEvent::Named(name.to_string(), v));
    };
    let mut pending = obj.clone();
    pending["status"] = json!("in_progress");
    pending["output"] = json!([]);
    pending["usage"] = Value::Null;
    ev("response.created", json!({ "response": pending.clone() }));
    ev("response.in_progress", json!({ "response": pending }));
    for (oi, item) in obj.get("output").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let id = item.get("id").cloned().unwrap_or(Value::Null);
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                let mut open = item.clone();
                open["status"] = json!("in_progress");
                open["content"] = json!([]);
                ev("response.output_item.added", json!({"output_index": oi, "item": open}));
                for (ci, part) in item.get("content").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let text = part.get("text").and_then(Value::as_str).unwrap_or("");
                    let mut empty = part.clone();
                    empty["text"] = json!("");
                    ev("response.content_part.added", json!({"item_id": id, "output_index": oi, "content_index": ci, "part": empty}));
                    for p in pieces(text) {
                        ev("response.output_text.delta", json!({"item_id": id, "output_index": oi, "content_index": ci, "delta": p, "logprobs": []}));
                    }
                    ev("response.output_text.done", json!({"item_id": id, "output_index": oi, "content_index": ci, "text": text, "logprobs": []}));
                    ev("response.content_part.done", json!({"item_id": id, "output_index": oi, "content_index": ci, "part": part}));
                }
            }
            Some("function_call") => {
                let mut open = item.clone();
                open["status"] = json!("in_progress");
                open["arguments"] = json!("");
                ev("response.output_item.added", json!({"output_index": oi, "item": open}));
                let args = item.get("arguments").and_then(Value::as_str).unwrap_or("");
                for p in pieces(args) {
                    ev("response.function_call_arguments.delta", json!({"item_id": id, "output_index": oi, "delta": p}));
                }
                ev("response.function_call_arguments.done", json!({"item_id": id, "output_index": oi, "arguments": args}));
            }
            _ => ev("response.output_item.added", json!({"output_index": oi, "item": item})),
        }
        ev("response.output_item.done", json!({"output_index": oi, "item": item}));
    }
    ev("response.completed", json!({ "response": obj }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::sse::encode;

    fn completion() -> Value {
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "gpt-4o-mini", "system_fingerprint": null,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "The capital of France is Paris, a city on the Seine.",
                 "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"city\": \"Paris\", \"fields\": [\"population\", \"area\"]}"}}]},
                 "finish_reason": "tool_calls"}],
               "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}})
    }

    #[test]
    fn a_completion_replays_as_a_stream_and_assembles_back() {
        let obj = completion();
        let events = chat_events(&obj, true);
        assert!(events.len() > 6, "content and arguments come in pieces, not one chunk: {}", events.len());
        assert_eq!(events.last(), Some(&ClientEvent::Done));
        let mut bytes = Vec::new();
        encode(&events, &mut bytes);
        assert_eq!(chat_from_sse(&bytes).unwrap(), obj);
        // Without include_usage, no usage chunk.
        let mut bytes = Vec::new();
        encode(&chat_events(&obj, false), &mut bytes);
        assert_eq!(chat_from_sse(&bytes).unwrap()["usage"], Value::Null);
    }

    #[test]
    fn only_complete_streams_are_kept() {
        let mut bytes = Vec::new();
        let events = chat_events(&completion(), true);
        encode(&events[..events.len() - 1], &mut bytes);
        assert!(chat_from_sse(&bytes).is_none(), "no [DONE]: cut");
        let mut bytes = Vec::new();
        encode(&events[..2], &mut bytes);
        bytes.extend_from_slice(b"data: {\"error\": {\"message\": \"cut\"}}\n\n");
        assert!(chat_from_sse(&bytes).is_none(), "an error event");
    }

    #[test]
    fn a_response_replays_as_its_events() {
        let obj = json!({"id": "resp_1", "object": "response", "status": "completed", "model": "m",
            "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": "Hello there, this is a longer answer in pieces", "annotations": []}]}],
            "usage": {"input_tokens": 3, "output_tokens": 9, "total_tokens": 12}});
        let events = response_events(&obj);
        let names: Vec<String> = events.iter().filter_map(|e| if let ClientEvent::Named(n, _) = e { Some(n.clone()) } else { None }).collect();
        assert_eq!(names.first().map(String::as_str), Some("response.created"));
        assert!(names.iter().filter(|n| *n == "response.output_text.delta").count() >= 2);
        let mut bytes = Vec::new();
        encode(&events, &mut bytes);
        assert_eq!(response_from_sse(&bytes).unwrap(), obj);
    }

    #[test]
    fn pieces_cover_the_text() {
        for t in ["", "short", "a much longer sentence that has to be cut into several pieces for the stream", "ünïcödé ✓ text that is long enough to be split somewhere"] {
            assert_eq!(pieces(t).concat(), t);
        }
    }
}
