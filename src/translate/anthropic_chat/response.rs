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
