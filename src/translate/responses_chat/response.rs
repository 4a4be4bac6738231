//! Response objects: a chat.completion → a Responses `response`.

use serde_json::{json, Value};

use super::{new_id, PartKind, ResponsesOverChat};
use crate::translate::common::obj;
use crate::translate::{unix_now, TokenUsage, TranslateError};

fn chat_usage_to_responses(u: &Value) -> Value {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let input = n(&u["prompt_tokens"]);
    let output = n(&u["completion_tokens"]);
    let total = u["total_tokens"].as_u64().unwrap_or(input + output);
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": n(&u["prompt_tokens_details"]["cached_tokens"]),
            "cache_write_tokens": n(&u["prompt_tokens_details"]["cache_write_tokens"]),
        },
        "output_tokens": output,
        "output_tokens_details": { "reasoning_tokens": n(&u["completion_tokens_details"]["reasoning_tokens"]) },
        "total_tokens": total,
    })
}

fn token_usage_to_responses(u: &TokenUsage) -> Value {
    chat_usage_to_responses(&u.to_chat_usage())
}

/// (status, incomplete_details, item status) for a chat finish_reason.
pub(super) fn status_for(finish: Option<&str>) -> (&'static str, Value, &'static str) {
    match finish {
        Some("length") => ("incomplete", json!({ "reason": "max_output_tokens" }), "incomplete"),
        Some("content_filter") => ("incomplete", json!({ "reason": "content_filter" }), "incomplete"),
        _ => ("completed", Value::Null, "completed"),
    }
}

pub(super) fn part_json(kind: PartKind, text: &str) -> Value {
    match kind {
        PartKind::Text => json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] }),
        PartKind::Refusal => json!({ "type": "refusal", "refusal": text }),
    }
}

pub(super) fn message_json(id: &str, status: &str, parts: Value) -> Value {
    obj!("type" => "message", "id" => id, "status" => status, "role" => "assistant", "content" => parts)
}

/// A `reasoning` item: the reasoning text as its summary, and Anthropic's
/// thinking blocks (if any) as its opaque `encrypted_content`.
pub(super) fn reasoning_json(id: &str, text: &str, blocks: &[Value], status: &str) -> Value {
    let summary = if text.is_empty() { json!([]) } else { json!([{ "type": "summary_text", "text": text }]) };
    let encrypted = if blocks.is_empty() { Value::Null } else { Value::String(crate::translate::replay::encode_blocks(blocks)) };
    json!({ "type": "reasoning", "id": id, "summary": summary, "encrypted_content": encrypted, "status": status })
}

pub(super) fn function_call_json(id: &str, call_id: &str, name: &str, args: &str, status: &str) -> Value {
    json!({ "type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": args, "status": status })
}

impl ResponsesOverChat {
    pub(super) fn response_object(&self, status: &str, output: Vec<Value>, usage: Value, incomplete: Value, error: Value, model: Option<&str>) -> Value {
        let e = &self.echo;
        let model = model.map(|m| json!(m)).unwrap_or_else(|| e.model.clone());
        let completed_at = if status == "completed" { json!(unix_now()) } else { Value::Null };
        obj!(
            "id" => self.id.as_str(),
            "object" => "response",
            "created_at" => self.created_at,
            "completed_at" => completed_at,
            "status" => status,
            "background" => false,
            "error" => error,
            "incomplete_details" => incomplete,
            "instructions" => e.instructions.clone(),
            "max_output_tokens" => e.max_output_tokens.clone(),
            "model" => model,
            "output" => output,
            "parallel_tool_calls" => e.parallel_tool_calls,
            "previous_response_id" => Value::Null,
            "reasoning" => e.reasoning.clone(),
            "store" => e.store.clone(),
            "temperature" => e.temperature.clone(),
            "text" => e.text.clone(),
            "tool_choice" => e.tool_choice.clone(),
            "tools" => e.tools.clone(),
            "top_p" => e.top_p.clone(),
            "truncation" => e.truncation.clone(),
            "usage" => usage,
            "user" => e.user.clone(),
            "metadata" => e.metadata.clone(),
        )
    }

    pub(super) fn usage_value(&self, chat_usage: Option<&Value>) -> Value {
        match chat_usage.filter(|u| u.is_object()) {
            Some(u) => chat_usage_to_responses(u),
            None => {
                let u = self.inner.usage();
                if u.seen { token_usage_to_responses(&u) } else { Value::Null }
            }
        }
    }

    pub(super) fn chat_completion_to_response(&self, chat: &Value) -> Result<Value, TranslateError> {
        let choice = chat.get("choices").and_then(|c| c.get(0)).filter(|c| c.is_object()).ok_or_else(|| TranslateError::bad_upstream("chat completion without choices"))?;
        let msg = &choice["message"];
        let finish = choice.get("finish_reason").and_then(Value::as_str);
        let (status, incomplete, item_status) = status_for(finish);
        let mut output = Vec::new();
        let text = msg.get("reasoning_content").and_then(Value::as_str).unwrap_or("");
        let blocks = msg.get("thinking_blocks").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        if !text.is_empty() || !blocks.is_empty() {
            output.push(reasoning_json(&new_id("rs"), text, blocks, item_status));
        }
        let mut parts = Vec::new();
        match &msg["content"] {
            Value::String(s) if !s.is_empty() => parts.push(part_json(PartKind::Text, s)),
            Value::Array(a) => {
                for p in a {
                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                        parts.push(part_json(PartKind::Text, t));
                    }
                }
            }
            _ => {}
        }
        if let Some(r) = msg.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
            parts.push(part_json(PartKind::Refusal, r));
        }
        if !parts.is_empty() {
            output.push(message_json(&new_id("msg"), item_status, Value::Array(parts)));
        }
        if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
            for c in calls {
                let f = &c["function"];
                let name = f["name"].as_str().unwrap_or("");
                let args = match &f["arguments"] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                let call_id = c["id"].as_str().map(str::to_owned).unwrap_or_else(|| new_id("call"));
                let mut item = function_call_json(&new_id("fc"), &call_id, name, &args, item_status);
                if let Some(x) = c.get("extra_content").filter(|x| x.is_object()) {
                    item["extra_content"] = x.clone();
                }
                output.push(item);
            }
        }
        let usage = self.usage_value(chat.get("usage"));
        Ok(self.response_object(status, output, usage, incomplete, Value::Null, chat.get("model").and_then(Value::as_str)))
    }
}
