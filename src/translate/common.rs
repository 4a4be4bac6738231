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

/// What a streamed chunk's one delta carries, in [`delta_chunk`].
#[derive(Debug, Clone, Copy)]
pub enum Delta<'a> {
    /// `{"content": text}`
    Content(&'a str),
    /// `{"reasoning_content": text}`
    Reasoning(&'a str),
    /// `{"tool_calls": [{"function": {"arguments": text}, "index": k}]}`
    Arguments(u32, &'a str),
}

/// A `chat.completion.chunk` with one choice (index 0, no finish reason)
/// whose delta is one piece of text: a stream's common chunk, written
/// straight to JSON (issue 28: building it as a `Value` and writing that
/// was some 9k instructions per event). The same bytes as
/// `chat_chunk(id, created, model, [chunk_choice(0, delta, None)], include_usage)`
/// (`delta_chunk_is_chat_chunk`): fields in the sorted order serde_json's
/// map gives them.
pub fn delta_chunk(id: &str, created: u64, model: &str, delta: Delta<'_>, include_usage: bool) -> super::ClientEvent {
    use serde::Serialize;
    #[derive(Serialize)]
    struct Chunk<'a> {
        choices: [Choice<'a>; 1],
        created: u64,
        id: &'a str,
        model: &'a str,
        object: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<()>,
    }
    #[derive(Serialize)]
    struct Choice<'a> {
        delta: DeltaOut<'a>,
        finish_reason: (),
        index: u32,
        logprobs: (),
    }
    #[derive(Serialize)]
    #[serde(untagged)]
    enum DeltaOut<'a> {
        Content { content: &'a str },
        Reasoning { reasoning_content: &'a str },
        Arguments { tool_calls: [Call<'a>; 1] },
    }
    #[derive(Serialize)]
    struct Call<'a> {
        function: Arguments<'a>,
        index: u32,
    }
    #[derive(Serialize)]
    struct Arguments<'a> {
        arguments: &'a str,
    }
    let delta = match delta {
        Delta::Content(content) => DeltaOut::Content { content },
        Delta::Reasoning(reasoning_content) => DeltaOut::Reasoning { reasoning_content },
        Delta::Arguments(index, arguments) => DeltaOut::Arguments { tool_calls: [Call { function: Arguments { arguments }, index }] },
    };
    let chunk = Chunk {
        choices: [Choice { delta, finish_reason: (), index: 0, logprobs: () }],
        created,
        id,
        model,
        object: "chat.completion.chunk",
        usage: include_usage.then_some(()),
    };
    // Writing borrowed strings and numbers to a String cannot fail.
    super::ClientEvent::Json(serde_json::to_string(&chunk).unwrap_or_default())
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

    proptest::proptest! {
        /// The written chunk is byte for byte the `Value` one it replaces.
        #[test]
        fn delta_chunk_is_chat_chunk(id in "\\PC{0,12}|[\"\\\\\\x00-\\x1f]{0,4}", model in "\\PC{0,12}", text in "\\PC{0,24}|[\"\\\\\\x00-\\x1f\\u{7f}\\u{2028}]{0,6}", created: u64, k: u32, kind in 0u8..3, include_usage: bool) {
            let (delta, value) = match kind {
                0 => (Delta::Content(&text), obj!("content" => text.as_str())),
                1 => (Delta::Reasoning(&text), obj!("reasoning_content" => text.as_str())),
                _ => (Delta::Arguments(k, &text), obj!("tool_calls" => vec![obj!("index" => k, "function" => obj!("arguments" => text.as_str()))])),
            };
            let want = serde_json::to_string(&chat_chunk(id.clone(), created, model.clone(), Value::Array(vec![chunk_choice(0, value, None)]), include_usage)).unwrap();
            let super::super::ClientEvent::Json(got) = delta_chunk(&id, created, &model, delta, include_usage) else { panic!("not a written chunk") };
            proptest::prop_assert_eq!(got, want);
        }
    }
}
