//! Non-streaming answers and provider errors: Anthropic `message` → `chat.completion`,
//! Anthropic error bodies → OpenAI error bodies.

use super::{AnthropicChat, JSON_TOOL_NAME};
use crate::translate::common::{chat_completion, obj};
use crate::translate::{openai_error, unix_now, TranslateError, Translator};
use serde_json::Value;

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub(super) fn finish_reason(stop: Option<&str>, json_mode: bool) -> &'static str {
    match stop {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") if json_mode => "stop",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop", // end_turn, stop_sequence, pause_turn, unknown
    }
}

/// Anthropic error type → (OpenAI error type, code).
fn map_error_type(anthropic: Option<&str>, status: u16) -> (&'static str, Option<&'static str>) {
    match anthropic {
        Some("invalid_request_error") => ("invalid_request_error", None),
        Some("authentication_error") => ("authentication_error", Some("invalid_api_key")),
        Some("permission_error") => ("permission_error", Some("permission_denied")),
        Some("not_found_error") => ("invalid_request_error", Some("not_found")),
        Some("request_too_large") => ("invalid_request_error", Some("request_too_large")),
        Some("rate_limit_error") => ("rate_limit_error", Some("rate_limit_exceeded")),
        Some("billing_error") => ("insufficient_quota", Some("insufficient_quota")),
        Some("api_error") => ("server_error", None),
        Some("overloaded_error") => ("server_error", Some("overloaded")),
        Some("timeout_error") => ("server_error", Some("timeout")),
        _ if status >= 500 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

/// Anthropic `{"type":"error","error":{type,message}}` → OpenAI error body (if JSON).
pub(super) fn anthropic_error_body(v: &Value, status: u16) -> Option<Value> {
    let err = v.get("error")?;
    let kind = err.get("type").and_then(Value::as_str);
    let message = err.get("message").and_then(Value::as_str)?;
    let (t, code) = map_error_type(kind, status);
    Some(openai_error(message, t, None, code))
}

impl AnthropicChat {
    pub(super) fn translate_response(&mut self, body: Value) -> Result<Value, TranslateError> {
        let content = body.get("content").and_then(Value::as_array).ok_or_else(|| TranslateError::bad_upstream("Anthropic answer without a 'content' array"))?;
        if let Some(id) = body.get("id").and_then(Value::as_str) {
            self.msg_id = Some(id.to_string());
        }
        if let Some(m) = body.get("model").and_then(Value::as_str) {
            self.model = Some(m.to_string());
        }
        if let Some(u) = body.get("usage") {
            self.update_usage(u);
        }
        let mut text = String::new();
        let mut json_content: Option<String> = None;
        let mut tool_calls = Vec::new();
        let mut reasoning = String::new();
        for b in content {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
                Some("tool_use") => {
                    let name = b.get("name").and_then(Value::as_str).unwrap_or("");
                    let args = b.get("input").map_or_else(|| "{}".to_string(), Value::to_string);
                    if self.json_mode && name == JSON_TOOL_NAME {
                        json_content.get_or_insert(args);
                    } else {
                        let id = b.get("id").and_then(Value::as_str).unwrap_or("");
                        self.call_ids.push(id.to_string());
                        tool_calls.push(obj!(
                            "id" => id,
                            "type" => "function",
                            "function" => obj!("name" => name, "arguments" => args),
                        ));
                    }
                }
                Some("thinking") | Some("redacted_thinking") => {
                    reasoning.push_str(b.get("thinking").and_then(Value::as_str).unwrap_or(""));
                    self.thinking.push(b.clone());
                }
                _ => {} // server tool blocks: not in the chat shape
            }
        }
        let content = match json_content {
            Some(j) => Value::String(j),
            None if text.is_empty() && !tool_calls.is_empty() => Value::Null,
            None => Value::String(text),
        };
        let mut message = obj!("role" => "assistant", "content" => content, "refusal" => Value::Null);
        if !tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls);
        }
        if !self.thinking.is_empty() {
            message["reasoning_content"] = Value::String(reasoning);
            message["thinking_blocks"] = Value::Array(self.thinking.clone());
        }
        let finish = finish_reason(body.get("stop_reason").and_then(Value::as_str), self.json_mode);
        let choices = vec![obj!("index" => 0, "message" => message, "finish_reason" => finish, "logprobs" => Value::Null)];
        Ok(chat_completion(self.chat_id(), unix_now(), self.model_name(), Value::Array(choices), self.usage().to_chat_usage()))
    }

    pub(super) fn translate_error(&self, status: u16, body: &[u8]) -> (u16, Value) {
        let upstream_status = status;
        let status = match status {
            529 => 503,
            s if !(400..=599).contains(&s) => 502,
            s => s,
        };
        let parsed = serde_json::from_slice::<Value>(body).ok();
        let body = parsed.as_ref().and_then(|v| anthropic_error_body(v, status)).unwrap_or_else(|| {
            let (t, code) = map_error_type(None, status);
            openai_error(&format!("The upstream provider returned HTTP {upstream_status}."), t, None, code)
        });
        (status, body)
    }
}

/// The fast path of [`AnthropicChat::translate_response`] for the common
/// answer (text and tool calls, no thinking): read with borrowed strings
/// into typed structs and written straight out, no `Value` tree either way
/// (issue 28: parsing into a `Value`, building one and writing it were
/// about 45k instructions of a translated request). Gives the same object;
/// `fast_and_slow_paths_agree` checks it. `None`: the slow path's case
/// (thinking, an unexpected type, not JSON).
pub(super) mod fast {
    use super::super::{AnthropicChat, JSON_TOOL_NAME};
    use super::finish_reason;
    use super::super::UsageCounts;
    use crate::translate::{unix_now, ChatUsage, Translator};
    use serde::{Deserialize, Serialize};
    use serde_json::value::RawValue;
    use serde_json::Value;
    use std::borrow::Cow;

    #[derive(Deserialize)]
    struct Msg<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        model: Option<Cow<'a, str>>,
        #[serde(borrow)]
        content: Vec<Block<'a>>,
        #[serde(borrow, default)]
        stop_reason: Option<Cow<'a, str>>,
        /// Typed: a count that is not a u64 (a float, a string) fails the
        /// parse and the answer takes the slow path, which skips it.
        #[serde(default)]
        usage: Option<Usage>,
    }

    #[derive(Deserialize)]
    struct Usage {
        #[serde(default)]
        input_tokens: Option<u64>,
        #[serde(default)]
        cache_creation_input_tokens: Option<u64>,
        #[serde(default)]
        cache_read_input_tokens: Option<u64>,
        #[serde(default)]
        output_tokens: Option<u64>,
        #[serde(default)]
        cache_creation: Option<CacheCreation>,
    }

    #[derive(Deserialize)]
    struct CacheCreation {
        #[serde(default)]
        ephemeral_5m_input_tokens: Option<u64>,
        #[serde(default)]
        ephemeral_1h_input_tokens: Option<u64>,
    }

    #[derive(Deserialize)]
    struct Block<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<Cow<'a, str>>,
        /// As written: a JSON string (or null) copied through.
        #[serde(borrow, default)]
        text: Option<&'a RawValue>,
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        name: Option<Cow<'a, str>>,
        #[serde(default)]
        input: Option<Value>,
    }

    #[derive(Serialize)]
    struct Completion<'a> {
        id: String,
        object: &'static str,
        created: u64,
        model: String,
        choices: [Choice<'a>; 1],
        usage: ChatUsage,
    }

    #[derive(Serialize)]
    struct Choice<'a> {
        index: u32,
        message: Message<'a>,
        finish_reason: &'static str,
        logprobs: (),
    }

    /// The message's text: one block's JSON string as written, or text
    /// put together here.
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Text<'a> {
        Raw(&'a RawValue),
        Own(Cow<'a, str>),
    }

    impl Text<'_> {
        fn is_empty(&self) -> bool {
            match self {
                Text::Raw(r) => r.get() == "\"\"",
                Text::Own(s) => s.is_empty(),
            }
        }
    }

    #[derive(Serialize)]
    struct Message<'a> {
        role: &'static str,
        content: Option<Text<'a>>,
        refusal: (),
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall<'a>>,
    }

    #[derive(Serialize)]
    struct ToolCall<'a> {
        id: Cow<'a, str>,
        #[serde(rename = "type")]
        kind: &'static str,
        function: Function<'a>,
    }

    #[derive(Serialize)]
    struct Function<'a> {
        name: Cow<'a, str>,
        arguments: String,
    }

    /// A text's value (a raw one unescaped: the parser checked it is a
    /// JSON string, so this cannot fail).
    fn own(t: Text) -> String {
        match t {
            Text::Raw(r) => serde_json::from_str::<String>(r.get()).unwrap_or_default(),
            Text::Own(s) => s.into_owned(),
        }
    }

    impl AnthropicChat {
        pub(in super::super) fn translate_response_bytes(&mut self, body: &[u8]) -> Option<Vec<u8>> {
            let msg: Msg = serde_json::from_slice(body).ok()?;
            // A null `text`, `id` or `name` reads as absent here and as ""
            // on the slow path: the same. Thinking: the slow path (blocks
            // kept whole).
            if msg.content.iter().any(|b| matches!(b.kind.as_deref(), Some("thinking" | "redacted_thinking"))) {
                return None;
            }
            // A text that is neither a string nor null: the slow path's
            // case (it reads it as "").
            if msg.content.iter().any(|b| b.kind.as_deref() == Some("text") && b.text.is_some_and(|t| !t.get().starts_with('"') && t.get() != "null")) {
                return None;
            }
            if let Some(id) = &msg.id {
                self.msg_id = Some(id.to_string());
            }
            if let Some(m) = &msg.model {
                self.model = Some(m.to_string());
            }
            if let Some(u) = &msg.usage {
                let ttl = |f: fn(&CacheCreation) -> Option<u64>| u.cache_creation.as_ref().and_then(f);
                self.count_usage(&UsageCounts {
                    input_tokens: u.input_tokens,
                    cache_creation_input_tokens: u.cache_creation_input_tokens,
                    cache_5m: ttl(|c| c.ephemeral_5m_input_tokens),
                    cache_1h: ttl(|c| c.ephemeral_1h_input_tokens),
                    cache_read_input_tokens: u.cache_read_input_tokens,
                    output_tokens: u.output_tokens,
                });
            }
            let mut text: Option<Text> = None;
            let mut json_content: Option<String> = None;
            let mut tool_calls = Vec::new();
            for b in msg.content {
                match b.kind.as_deref() {
                    Some("text") => {
                        let t = match b.text {
                            Some(r) if r.get() != "null" => Text::Raw(r),
                            _ => Text::Own(Cow::Borrowed("")),
                        };
                        text = Some(match text {
                            None => t,
                            Some(prev) => Text::Own(Cow::Owned(own(prev) + &own(t))),
                        });
                    }
                    Some("tool_use") => {
                        let name = b.name.unwrap_or(Cow::Borrowed(""));
                        let args = b.input.map_or_else(|| "{}".to_string(), |v| v.to_string());
                        if self.json_mode && name == JSON_TOOL_NAME {
                            json_content.get_or_insert(args);
                        } else {
                            let id = b.id.unwrap_or(Cow::Borrowed(""));
                            self.call_ids.push(id.to_string());
                            tool_calls.push(ToolCall { id, kind: "function", function: Function { name, arguments: args } });
                        }
                    }
                    _ => {}
                }
            }
            let content = match json_content {
                Some(j) => Some(Text::Own(Cow::Owned(j))),
                None if text.as_ref().is_none_or(Text::is_empty) && !tool_calls.is_empty() => None,
                None => Some(text.unwrap_or(Text::Own(Cow::Borrowed("")))),
            };
            let finish = finish_reason(msg.stop_reason.as_deref(), self.json_mode);
            let out = Completion {
                id: self.chat_id(),
                object: "chat.completion",
                created: unix_now(),
                model: self.model_name(),
                choices: [Choice { index: 0, message: Message { role: "assistant", content, refusal: (), tool_calls }, finish_reason: finish, logprobs: () }],
                usage: self.usage().chat_usage(),
            };
            serde_json::to_vec(&out).ok()
        }
    }
}
