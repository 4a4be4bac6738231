//! Small helpers shared by the translators (one copy of logic that was the
//! same in several of them).

use serde_json::Value;

/// A JSON object from `"key" => value` pairs, each value moved in with
/// `Value::from` (a `Value`, `String`, `&str`, number, `bool`, `Vec<Value>`,
/// `Option<_>`). serde_json's `json!` passes every embedded expression
/// through `to_value(&expr)`, a deep copy: a message list or an answer's
/// text embedded in `json!` is copied once per level. Use this where a
/// value built from the client's or the provider's content is embedded.
macro_rules! obj {
    ($($k:literal => $v:expr),* $(,)?) => {{
        let mut m = serde_json::Map::new();
        $( m.insert(String::from($k), serde_json::Value::from($v)); )*
        serde_json::Value::Object(m)
    }};
}
pub(crate) use obj;

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
    obj!("index" => index.into(), "delta" => delta, "logprobs" => Value::Null, "finish_reason" => finish)
}

/// A `chat.completion.chunk`; with `include_usage` it carries `"usage": null`
/// (the client asked for a usage chunk at the end).
pub fn chat_chunk(id: String, created: u64, model: String, choices: Value, include_usage: bool) -> Value {
    let mut c = obj!("id" => id, "object" => "chat.completion.chunk", "created" => created, "model" => model, "choices" => choices);
    if include_usage {
        c["usage"] = Value::Null;
    }
    c
}

/// The closing usage chunk of a chat stream: no choices, the usage object.
pub fn usage_chunk(id: String, created: u64, model: String, usage: Value) -> Value {
    let mut c = chat_chunk(id, created, model, Value::Array(Vec::new()), true);
    c["usage"] = usage;
    c
}

/// A non-streaming `chat.completion` object.
pub fn chat_completion(id: String, created: u64, model: String, choices: Value, usage: Value) -> Value {
    obj!("id" => id, "object" => "chat.completion", "created" => created, "model" => model, "choices" => choices, "usage" => usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn obj_builds_the_same_object_as_json() {
        let text = String::from("hello");
        let nested = json!({"a": [1, 2, {"b": null}]});
        let built = obj!("s" => "x", "n" => 3u64, "t" => text.clone(), "v" => nested.clone(), "none" => Option::<&str>::None, "some" => Some("y"), "null" => Value::Null, "list" => vec![Value::from(1)]);
        assert_eq!(built, json!({"s": "x", "n": 3, "t": text, "v": nested, "none": null, "some": "y", "null": null, "list": [1]}));
        assert_eq!(chat_completion("id".into(), 7, "m".into(), json!([]), json!({})), json!({"id": "id", "object": "chat.completion", "created": 7, "model": "m", "choices": [], "usage": {}}));
    }
}
