//! The answer as the trace sees it: finish reasons
//! (`gen_ai.response.finish_reasons`) and, with `capture_content`, the
//! generated text and tool calls as `gen_ai.output.messages` (one
//! `{"role": "assistant", "parts": [...], "finish_reason"}` per choice or
//! candidate), bounded like the input (see [`super::content`]).
//!
//! Fed whole answers or stream events, in the OpenAI shape (what the
//! `/openai` route sends its client, translated or not) or a provider's own
//! (passthrough routes): Chat Completions objects and chunks, Responses API
//! objects and `response.*` events, Anthropic messages and stream events,
//! Gemini responses and stream chunks. Streams are accumulated delta by
//! delta, within the budget.

use super::content::{anthropic_blocks, gemini_parts, Budget};
use crate::providers::ApiFamily;
use crate::translate::ClientEvent;
use serde_json::{json, Value};

/// Choices (or candidates) followed; `n` is small.
const MAX_CHOICES: usize = 8;

#[derive(Debug)]
enum Part {
    Text(String),
    /// id, name, arguments (JSON text, as streamed).
    Tool(Option<String>, Option<String>, String),
    /// Anything else, by type.
    Other(Value),
}

#[derive(Debug, Default)]
struct Choice {
    parts: Vec<Part>,
    finish: Option<String>,
}

/// The answer so far.
#[derive(Debug, Default)]
pub struct Answer {
    /// Content is kept (`capture_content`); finish reasons always are.
    capture: bool,
    choices: Vec<Choice>,
    budget: Budget,
}

impl Answer {
    pub fn new(capture: bool) -> Answer {
        Answer { capture, ..Answer::default() }
    }

    pub fn capture(&self) -> bool {
        self.capture
    }

    /// Finish reasons, in choice order.
    pub fn finish_reasons(&self) -> Vec<String> {
        self.choices.iter().filter_map(|c| c.finish.clone()).collect()
    }

    pub fn truncated(&self) -> bool {
        self.budget.truncated
    }

    /// `gen_ai.output.messages` (JSON), with content captured and seen.
    pub fn output_messages(&self) -> Option<String> {
        if !self.capture || self.choices.iter().all(|c| c.parts.is_empty()) {
            return None;
        }
        let msgs: Vec<Value> = self
            .choices
            .iter()
            .map(|c| {
                let parts: Vec<Value> = c
                    .parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => json!({"type": "text", "content": t}),
                        Part::Tool(id, name, args) => json!({"type": "tool_call", "id": id, "name": name, "arguments": args}),
                        Part::Other(v) => v.clone(),
                    })
                    .collect();
                json!({"role": "assistant", "parts": parts, "finish_reason": c.finish})
            })
            .collect();
        Some(Value::Array(msgs).to_string())
    }

    fn choice(&mut self, i: usize) -> Option<&mut Choice> {
        if i >= MAX_CHOICES {
            return None;
        }
        while self.choices.len() <= i {
            self.choices.push(Choice::default());
        }
        self.choices.get_mut(i)
    }

    fn finish(&mut self, i: usize, reason: Option<&str>) {
        if let (Some(r), Some(c)) = (reason.filter(|r| !r.is_empty() && r.len() <= 64), self.choice(i)) {
            c.finish = Some(r.to_string());
        }
    }

    /// Append streamed text to choice `i`.
    fn text(&mut self, i: usize, t: &str) {
        if !self.capture || t.is_empty() || i >= MAX_CHOICES {
            return;
        }
        if !matches!(self.choices.get(i).and_then(|c| c.parts.last()), Some(Part::Text(_))) && !self.budget.part() {
            return;
        }
        let t = self.budget.text(t).to_string();
        let Some(c) = self.choice(i) else { return };
        match c.parts.last_mut() {
            Some(Part::Text(s)) => s.push_str(&t),
            _ => c.parts.push(Part::Text(t)),
        }
    }

    /// A tool call on choice `i`: a new one when `new`, else more arguments
    /// for the last.
    fn tool(&mut self, i: usize, new: bool, id: Option<&str>, name: Option<&str>, args: &str) {
        if !self.capture || i >= MAX_CHOICES || (new && !self.budget.part()) {
            return;
        }
        let args = self.budget.text(args).to_string();
        let Some(c) = self.choice(i) else { return };
        match c.parts.last_mut() {
            Some(Part::Tool(_, _, a)) if !new => a.push_str(&args),
            _ => c.parts.push(Part::Tool(id.map(str::to_string), name.map(str::to_string), args)),
        }
    }

    /// Whole parts (already bounded) for choice `i`.
    fn parts(&mut self, i: usize, parts: Vec<Value>) {
        if let Some(c) = self.choice(i) {
            c.parts.extend(parts.into_iter().map(|p| match p["type"].as_str() {
                Some("text") => Part::Text(p["content"].as_str().unwrap_or("").to_string()),
                Some("tool_call") => Part::Tool(
                    p["id"].as_str().map(str::to_string),
                    p["name"].as_str().map(str::to_string),
                    p["arguments"].as_str().unwrap_or("").to_string(),
                ),
                _ => Part::Other(p),
            }));
        }
    }

    /// An event the `/openai` route sends its client.
    pub fn client_event(&mut self, e: &ClientEvent) {
        if let Some(v) = e.value() {
            self.event(ApiFamily::OpenAi, &v);
        }
    }

    /// A whole (non-streamed) answer.
    pub fn object(&mut self, family: ApiFamily, v: &Value) {
        match family {
            ApiFamily::OpenAi if v.get("choices").is_some() => {
                for (n, ch) in v["choices"].as_array().into_iter().flatten().enumerate() {
                    let i = index(ch, n);
                    self.finish(i, ch.get("finish_reason").and_then(Value::as_str));
                    let m = &ch["message"];
                    if let Some(t) = m.get("content").and_then(Value::as_str) {
                        self.text(i, t);
                    }
                    for call in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                        let f = &call["function"];
                        self.tool(i, true, call["id"].as_str(), f["name"].as_str(), f["arguments"].as_str().unwrap_or(""));
                    }
                }
            }
            ApiFamily::OpenAi => self.responses_object(v),
            ApiFamily::Anthropic => {
                self.finish(0, v.get("stop_reason").and_then(Value::as_str));
                if self.capture {
                    let parts = anthropic_blocks(v.get("content"), &mut self.budget);
                    self.parts(0, parts);
                }
            }
            ApiFamily::Gemini => self.gemini(v),
        }
    }

    /// A Responses API object (`response.completed` carries one too).
    fn responses_object(&mut self, v: &Value) {
        let reason = match v.get("status").and_then(Value::as_str) {
            Some("completed") => Some("stop"),
            Some("incomplete") => v.pointer("/incomplete_details/reason").and_then(Value::as_str).or(Some("incomplete")),
            Some("failed") => Some("error"),
            _ => None,
        };
        self.finish(0, reason);
        if !self.capture {
            return;
        }
        for item in v.get("output").and_then(Value::as_array).into_iter().flatten() {
            match item.get("type").and_then(Value::as_str) {
                Some("message") => {
                    for c in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                        if let Some(t) = c.get("text").and_then(Value::as_str) {
                            self.text(0, t);
                        }
                    }
                }
                Some("function_call") => self.tool(0, true, item["call_id"].as_str(), item["name"].as_str(), item["arguments"].as_str().unwrap_or("")),
                _ => {}
            }
        }
    }

    /// One stream event's data (JSON).
    pub fn event(&mut self, family: ApiFamily, v: &Value) {
        match family {
            ApiFamily::OpenAi => {
                if let Some(choices) = v.get("choices").and_then(Value::as_array) {
                    for (n, ch) in choices.iter().enumerate() {
                        let i = index(ch, n);
                        self.finish(i, ch.get("finish_reason").and_then(Value::as_str));
                        let d = &ch["delta"];
                        if let Some(t) = d.get("content").and_then(Value::as_str) {
                            self.text(i, t);
                        }
                        for call in d.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                            let f = &call["function"];
                            let new = call.get("id").is_some_and(|id| !id.is_null());
                            self.tool(i, new, call["id"].as_str(), f["name"].as_str(), f["arguments"].as_str().unwrap_or(""));
                        }
                    }
                    return;
                }
                match v.get("type").and_then(Value::as_str) {
                    // Deltas are not needed: the final object has the text.
                    Some("response.completed" | "response.incomplete" | "response.failed") => self.responses_object(&v["response"]),
                    _ => {}
                }
            }
            ApiFamily::Anthropic => match v.get("type").and_then(Value::as_str) {
                Some("content_block_start") => {
                    let b = &v["content_block"];
                    match b.get("type").and_then(Value::as_str) {
                        Some("text") => self.text(0, b["text"].as_str().unwrap_or("")),
                        Some("tool_use") => self.tool(0, true, b["id"].as_str(), b["name"].as_str(), ""),
                        _ => {}
                    }
                }
                Some("content_block_delta") => {
                    let d = &v["delta"];
                    match d.get("type").and_then(Value::as_str) {
                        Some("text_delta") => self.text(0, d["text"].as_str().unwrap_or("")),
                        Some("input_json_delta") => self.tool(0, false, None, None, d["partial_json"].as_str().unwrap_or("")),
                        _ => {}
                    }
                }
                Some("message_delta") => self.finish(0, v.pointer("/delta/stop_reason").and_then(Value::as_str)),
                _ => {}
            },
            ApiFamily::Gemini => self.gemini(v),
        }
    }

    /// A Gemini response or stream chunk (the same shape; chunks add text).
    fn gemini(&mut self, v: &Value) {
        for (n, cand) in v.get("candidates").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let i = index(cand, n);
            self.finish(i, cand.get("finishReason").and_then(Value::as_str));
            if !self.capture {
                continue;
            }
            for p in cand.pointer("/content/parts").and_then(Value::as_array).into_iter().flatten() {
                match p.get("text").and_then(Value::as_str) {
                    Some(t) => self.text(i, t),
                    None => {
                        let parts = gemini_parts(Some(&Value::Array(vec![p.clone()])), &mut self.budget);
                        self.parts(i, parts);
                    }
                }
            }
        }
    }
}

/// A choice's `index`, else its position.
fn index(v: &Value, position: usize) -> usize {
    v.get("index").and_then(Value::as_u64).map_or(position, |i| i as usize)
}
