//! Prompt content for `capture_content`, in the shape the OpenTelemetry
//! GenAI semantic conventions give `gen_ai.input.messages`: a JSON array of
//! `{"role", "parts": [...]}` where a part is `{"type": "text", "content"}`,
//! `{"type": "tool_call", "id", "name", "arguments"}`,
//! `{"type": "tool_call_response", "id", "response"}`, or, for anything
//! else (images, files, audio), just its `type` (never its data).
//!
//! Bounded: the text of all parts together is cut at [`MAX_CONTENT_BYTES`]
//! (each part also counts a few bytes, so thousands of tiny parts stop too);
//! what did not fit is left out, the JSON stays valid, and the span says
//! `tollgate.content_truncated`.

use crate::providers::ApiFamily;
use serde_json::{json, Value};

/// Text kept per attribute (input or output), all parts together.
pub const MAX_CONTENT_BYTES: usize = 16 * 1024;

/// What a part costs besides its text.
const PART_COST: usize = 16;

/// The bytes left for content; once spent, everything else is dropped.
#[derive(Debug)]
pub struct Budget {
    left: usize,
    pub truncated: bool,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { left: MAX_CONTENT_BYTES, truncated: false }
    }
}

impl Budget {
    /// Room for one more part?
    pub fn part(&mut self) -> bool {
        if self.left < PART_COST {
            self.truncated = true;
            return false;
        }
        self.left -= PART_COST;
        true
    }

    /// The prefix of `s` that fits (cut on a character boundary).
    pub fn text<'a>(&mut self, s: &'a str) -> &'a str {
        if s.len() <= self.left {
            self.left -= s.len();
            return s;
        }
        self.truncated = true;
        let mut end = self.left;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.left = 0;
        &s[..end]
    }

    pub fn spent(&self) -> bool {
        self.left < PART_COST
    }
}

/// A text part, if there is room.
fn text_part(b: &mut Budget, s: &str) -> Option<Value> {
    b.part().then(|| json!({"type": "text", "content": b.text(s)}))
}

/// A JSON value as text (tool arguments and results), bounded.
fn json_text(b: &mut Budget, v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(b.text(s).to_string()),
        Value::Null => Value::Null,
        other => Value::String(b.text(&other.to_string()).to_string()),
    }
}

fn generic_part(b: &mut Budget, kind: &str) -> Option<Value> {
    b.part().then(|| json!({"type": kind}))
}

/// The request's messages in the conventions' shape, or `None` when the
/// body has none.
pub fn input_messages(family: ApiFamily, body: &Value, b: &mut Budget) -> Option<Value> {
    let mut out = Vec::new();
    match family {
        ApiFamily::OpenAi => openai_input(body, b, &mut out),
        ApiFamily::Anthropic => anthropic_input(body, b, &mut out),
        ApiFamily::Gemini => gemini_input(body, b, &mut out),
    }
    (!out.is_empty()).then_some(Value::Array(out))
}

fn push(out: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    if !parts.is_empty() {
        out.push(json!({"role": role, "parts": parts}));
    }
}

/// Chat Completions `messages`, or a Responses API `instructions` + `input`.
fn openai_input(body: &Value, b: &mut Budget, out: &mut Vec<Value>) {
    if let Some(i) = body.get("instructions").and_then(Value::as_str) {
        push(out, "system", text_part(b, i).into_iter().collect());
    }
    match body.get("input") {
        Some(Value::String(s)) => push(out, "user", text_part(b, s).into_iter().collect()),
        Some(Value::Array(items)) => {
            for item in items {
                if b.spent() {
                    b.truncated = true;
                    break;
                }
                match item.get("type").and_then(Value::as_str) {
                    Some("function_call") => {
                        let part = b.part().then(|| {
                            json!({"type": "tool_call", "id": item.get("call_id"), "name": item.get("name"), "arguments": json_text(b, item.get("arguments").unwrap_or(&Value::Null))})
                        });
                        push(out, "assistant", part.into_iter().collect());
                    }
                    Some("function_call_output") => {
                        let part = b.part().then(|| json!({"type": "tool_call_response", "id": item.get("call_id"), "response": json_text(b, item.get("output").unwrap_or(&Value::Null))}));
                        push(out, "tool", part.into_iter().collect());
                    }
                    _ => {
                        let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                        let parts = openai_content(item.get("content"), b);
                        push(out, role, parts);
                    }
                }
            }
        }
        _ => {}
    }
    for m in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
        if b.spent() {
            b.truncated = true;
            break;
        }
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        if role == "tool" {
            let part = b.part().then(|| json!({"type": "tool_call_response", "id": m.get("tool_call_id"), "response": json_text(b, m.get("content").unwrap_or(&Value::Null))}));
            push(out, "tool", part.into_iter().collect());
            continue;
        }
        let mut parts = openai_content(m.get("content"), b);
        for call in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            if !b.part() {
                break;
            }
            let f = call.get("function").unwrap_or(&Value::Null);
            parts.push(json!({"type": "tool_call", "id": call.get("id"), "name": f.get("name"), "arguments": json_text(b, f.get("arguments").unwrap_or(&Value::Null))}));
        }
        push(out, role, parts);
    }
}

/// A message's `content`: a string or typed parts (`text`, `input_text`,
/// `output_text`, `image_url`, …).
fn openai_content(content: Option<&Value>, b: &mut Budget) -> Vec<Value> {
    match content {
        Some(Value::String(s)) => text_part(b, s).into_iter().collect(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| {
                let kind = p.get("type").and_then(Value::as_str).unwrap_or("unknown");
                match (kind, p.get("text").and_then(Value::as_str)) {
                    ("text" | "input_text" | "output_text", Some(t)) => text_part(b, t),
                    _ => generic_part(b, kind),
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Anthropic Messages: `system` + `messages` of content blocks.
fn anthropic_input(body: &Value, b: &mut Budget, out: &mut Vec<Value>) {
    match body.get("system") {
        Some(Value::String(s)) => push(out, "system", text_part(b, s).into_iter().collect()),
        Some(Value::Array(blocks)) => {
            let parts = blocks.iter().filter_map(|x| x.get("text").and_then(Value::as_str)).filter_map(|t| text_part(b, t)).collect();
            push(out, "system", parts);
        }
        _ => {}
    }
    for m in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
        if b.spent() {
            b.truncated = true;
            break;
        }
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        push(out, role, anthropic_blocks(m.get("content"), b));
    }
}

/// Anthropic content: a string or blocks (`text`, `tool_use`,
/// `tool_result`, `image`, `thinking`, …). Also the answer's `content`.
pub fn anthropic_blocks(content: Option<&Value>, b: &mut Budget) -> Vec<Value> {
    match content {
        Some(Value::String(s)) => text_part(b, s).into_iter().collect(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|x| match x.get("type").and_then(Value::as_str).unwrap_or("unknown") {
                "text" => text_part(b, x.get("text").and_then(Value::as_str).unwrap_or("")),
                "tool_use" => b.part().then(|| json!({"type": "tool_call", "id": x.get("id"), "name": x.get("name"), "arguments": json_text(b, x.get("input").unwrap_or(&Value::Null))})),
                "tool_result" => b.part().then(|| json!({"type": "tool_call_response", "id": x.get("tool_use_id"), "response": json_text(b, x.get("content").unwrap_or(&Value::Null))})),
                other => generic_part(b, other),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Gemini: `systemInstruction` + `contents` of parts (`model` is the
/// assistant).
fn gemini_input(body: &Value, b: &mut Budget, out: &mut Vec<Value>) {
    let system = body.get("systemInstruction").or_else(|| body.get("system_instruction"));
    if let Some(s) = system {
        push(out, "system", gemini_parts(s.get("parts"), b));
    }
    for c in body.get("contents").and_then(Value::as_array).into_iter().flatten() {
        if b.spent() {
            b.truncated = true;
            break;
        }
        let role = match c.get("role").and_then(Value::as_str) {
            Some("model") => "assistant",
            Some(r) => r,
            None => "user",
        };
        push(out, role, gemini_parts(c.get("parts"), b));
    }
}

/// Gemini parts (`text`, `functionCall`, `functionResponse`, `inlineData`,
/// …). Also a candidate's `content.parts`.
pub fn gemini_parts(parts: Option<&Value>, b: &mut Budget) -> Vec<Value> {
    parts
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                return text_part(b, t);
            }
            if let Some(f) = p.get("functionCall").or_else(|| p.get("function_call")) {
                return b.part().then(|| json!({"type": "tool_call", "id": f.get("id"), "name": f.get("name"), "arguments": json_text(b, f.get("args").unwrap_or(&Value::Null))}));
            }
            if let Some(f) = p.get("functionResponse").or_else(|| p.get("function_response")) {
                return b.part().then(|| json!({"type": "tool_call_response", "id": f.get("id").or_else(|| f.get("name")), "response": json_text(b, f.get("response").unwrap_or(&Value::Null))}));
            }
            let kind = p.as_object().and_then(|o| o.keys().next()).map_or("unknown", String::as_str);
            generic_part(b, kind)
        })
        .collect()
}
