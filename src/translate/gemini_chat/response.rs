//! Non-streaming answers and provider errors: Gemini `GenerateContentResponse` →
//! `chat.completion`, Google error bodies → OpenAI error bodies.

use super::GeminiChat;
use crate::translate::common::{chat_completion, obj};
use crate::translate::{openai_error, TranslateError};
use serde_json::{json, Value};

/// Gemini `finishReason` → OpenAI `finish_reason`.
pub(super) fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" | "IMAGE_PROHIBITED_CONTENT" => {
            "content_filter"
        }
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

/// One function call of a candidate.
pub(super) struct Call {
    name: String,
    args: Value,
    pub(super) id: Option<String>,
    pub(super) signature: Option<String>,
}

/// A candidate's parts → (text, thought text, function calls).
pub(super) fn split_parts(cand: &Value) -> (String, String, Vec<Call>) {
    let mut text = String::new();
    let mut thoughts = String::new();
    let mut calls = Vec::new();
    let parts = cand.pointer("/content/parts").and_then(Value::as_array);
    for p in parts.into_iter().flatten() {
        if let Some(fc) = p.get("functionCall") {
            let name = fc.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
            let args = fc.get("args").cloned().filter(|a| a.is_object()).unwrap_or_else(|| json!({}));
            let id = fc.get("id").and_then(Value::as_str).map(str::to_owned);
            let signature = p.get("thoughtSignature").and_then(Value::as_str).map(str::to_owned);
            calls.push(Call { name, args, id, signature });
            continue;
        }
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            thoughts.push_str(p.get("text").and_then(Value::as_str).unwrap_or(""));
            continue;
        }
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
    }
    (text, thoughts, calls)
}

pub(super) fn tool_call_json(id: String, call: &Call, index: Option<usize>) -> Value {
    let mut tc = json!({
        "id": id,
        "type": "function",
        "function": { "name": call.name, "arguments": call.args.to_string() },
    });
    if let Some(i) = index {
        tc["index"] = json!(i);
    }
    if let Some(sig) = &call.signature {
        tc["extra_content"] = json!({ "google": { "thought_signature": sig } });
    }
    tc
}
impl GeminiChat {
    pub(super) fn translate_response(&mut self, body: Value) -> Result<Value, TranslateError> {
        if !body.is_object() {
            return Err(TranslateError::bad_upstream("the provider's answer is not a JSON object"));
        }
        self.observe(&body);
        let cands = body.get("candidates").and_then(Value::as_array).filter(|c| !c.is_empty());
        let mut choices = Vec::new();
        match cands {
            Some(cands) => {
                for (pos, cand) in cands.iter().enumerate() {
                    let idx = cand.get("index").and_then(Value::as_u64).map(|i| i as usize).unwrap_or(pos);
                    let (text, thoughts, mut calls) = split_parts(cand);
                    if self.single_tool_call {
                        calls.truncate(1);
                    }
                    let reason = cand.get("finishReason").and_then(Value::as_str).unwrap_or("STOP");
                    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) };
                    let mut msg = obj!("role" => "assistant", "content" => content, "refusal" => Value::Null);
                    if !calls.is_empty() {
                        let tcs: Vec<Value> = calls
                            .iter()
                            .enumerate()
                            .map(|(k, c)| {
                                let id = self.call_id(idx, k, c.id.as_deref());
                                self.remember(&id, c);
                                tool_call_json(id, c, None)
                            })
                            .collect();
                        msg["tool_calls"] = Value::Array(tcs);
                    }
                    if !thoughts.is_empty() {
                        msg["reasoning_content"] = Value::String(thoughts);
                    }
                    choices.push(obj!(
                        "index" => idx,
                        "message" => msg,
                        "logprobs" => Value::Null,
                        "finish_reason" => finish_reason(reason, !calls.is_empty()),
                    ));
                }
            }
            None => {
                if body.pointer("/promptFeedback/blockReason").is_none() {
                    return Err(TranslateError::bad_upstream("the provider's answer has no candidates"));
                }
                choices.push(json!({
                    "index": 0,
                    "message": { "role": "assistant", "content": "", "refusal": null },
                    "logprobs": null,
                    "finish_reason": "content_filter",
                }));
            }
        }
        Ok(chat_completion(self.chat_id(), self.created, self.model_out(), Value::Array(choices), self.usage.to_chat_usage()))
    }
}

/// OpenAI error type for an HTTP status (used when Google gives no known
/// `status`).
fn type_for_http(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

/// A Google API error (`{"error": {"code", "message", "status", "details"}}`,
/// or a one-element array of it) → the client's status and OpenAI error body.
///
/// `status` → type: INVALID_ARGUMENT → invalid_request_error,
/// UNAUTHENTICATED → authentication_error, PERMISSION_DENIED →
/// permission_error, NOT_FOUND → not_found_error, RESOURCE_EXHAUSTED →
/// rate_limit_error (HTTP 429), INTERNAL/UNAVAILABLE/DEADLINE_EXCEEDED →
/// api_error; any other by the HTTP status. The HTTP status is kept, except
/// 400 INVALID_ARGUMENT "API key not valid" (reason API_KEY_INVALID) → 401
/// authentication_error with code `invalid_api_key`. `code` is the Google
/// status in lower case. A body that is not a Google error → a generic
/// message with the status.
pub fn google_error(status: u16, body: &[u8]) -> (u16, Value) {
    let status = if status < 400 { 502 } else { status };
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| match v {
        Value::Array(a) => a.first().and_then(|e| e.get("error")).cloned(),
        _ => v.get("error").cloned(),
    });
    let Some(err) = err.filter(|e| e.is_object()) else {
        let msg = format!("the provider answered with HTTP status {status}");
        return (status, openai_error(&msg, type_for_http(status), None, None));
    };
    let message = err.get("message").and_then(Value::as_str).unwrap_or("the provider returned an error").to_owned();
    let gstatus = err.get("status").and_then(Value::as_str).unwrap_or("");
    let key_invalid = gstatus == "INVALID_ARGUMENT"
        && (message.contains("API key not valid")
            || err.get("details").and_then(Value::as_array).is_some_and(|d| d.iter().any(|x| x.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))));
    if key_invalid {
        return (401, openai_error(&message, "authentication_error", None, Some("invalid_api_key")));
    }
    let (out_status, kind) = match gstatus {
        "INVALID_ARGUMENT" => (status, "invalid_request_error"),
        "UNAUTHENTICATED" => (status, "authentication_error"),
        "PERMISSION_DENIED" => (status, "permission_error"),
        "NOT_FOUND" => (status, "not_found_error"),
        "RESOURCE_EXHAUSTED" => (429, "rate_limit_error"),
        "INTERNAL" | "UNAVAILABLE" | "DEADLINE_EXCEEDED" | "UNKNOWN" => (status, "api_error"),
        _ => (status, type_for_http(status)),
    };
    let code = if gstatus.is_empty() { None } else { Some(gstatus.to_ascii_lowercase()) };
    (out_status, openai_error(&message, kind, None, code.as_deref()))
}
