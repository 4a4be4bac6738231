//! Small helpers shared by the translators (one copy of logic that was the
//! same in several of them).

use serde_json::{json, Value};

/// A JSON value with `null` treated as absent.
pub fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it), for ids.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// One `choices[]` entry of a `chat.completion.chunk`.
pub fn chunk_choice(index: impl Into<Value>, delta: Value, finish: Option<&str>) -> Value {
    json!({ "index": index.into(), "delta": delta, "logprobs": null, "finish_reason": finish })
}

/// A `chat.completion.chunk`; with `include_usage` it carries `"usage": null`
/// (the client asked for a usage chunk at the end).
pub fn chat_chunk(id: String, created: u64, model: String, choices: Value, include_usage: bool) -> Value {
    let mut c = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    });
    if include_usage {
        c["usage"] = Value::Null;
    }
    c
}

/// The closing usage chunk of a chat stream: no choices, the usage object.
pub fn usage_chunk(id: String, created: u64, model: String, usage: Value) -> Value {
    let mut c = chat_chunk(id, created, model, json!([]), true);
    c["usage"] = usage;
    c
}

/// A non-streaming `chat.completion` object.
pub fn chat_completion(id: String, created: u64, model: String, choices: Value, usage: Value) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage,
    })
}
