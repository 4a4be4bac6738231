//! Streams: Gemini `streamGenerateContent?alt=sse` events → `chat.completion.chunk`s.

use super::response::{finish_reason, google_error, split_parts, tool_call_json};
use super::{CandState, GeminiChat, MAX_CANDIDATES};
use crate::translate::common::{chat_chunk, chunk_choice, usage_chunk};
use crate::translate::{openai_error, ClientEvent, StreamEnd};
use serde_json::{json, Map, Value};

impl GeminiChat {
    fn chunk(&self, choices: Value) -> Value {
        chat_chunk(self.chat_id(), self.created, self.model_out(), choices, self.include_usage)
    }

    /// A candidate's closing chunk: an empty delta and its finish reason.
    pub(super) fn finish_chunk(&self, idx: usize, reason: &str) -> ClientEvent {
        ClientEvent::Data(self.chunk(json!([chunk_choice(idx, json!({}), Some(reason))])))
    }

    fn stream_complete(&self) -> bool {
        let started: Vec<&CandState> = self.cands.iter().filter(|c| c.started).collect();
        !started.is_empty() && started.iter().all(|c| c.finished)
    }

    pub(super) fn translate_stream_event(&mut self, data: &str, out: &mut Vec<ClientEvent>) {
        if self.ended || self.errored {
            return;
        }
        if self.fast_stream_event(data.trim(), out) {
            return;
        }
        let v: Value = match serde_json::from_str(data.trim()) {
            Ok(v @ Value::Object(_)) => v,
            _ => return,
        };
        if v.get("error").is_some_and(|e| e.is_object()) {
            let (_, err) = google_error(500, data.trim().as_bytes());
            out.push(ClientEvent::Data(err));
            self.errored = true;
            return;
        }
        self.observe(&v);
        let cands = v.get("candidates").and_then(Value::as_array).cloned().unwrap_or_default();
        if cands.is_empty() {
            if v.pointer("/promptFeedback/blockReason").is_some() && self.cands.is_empty() {
                self.cands.push(CandState { started: true, tool_calls: 0, finished: true });
                out.push(ClientEvent::Data(self.chunk(Value::Array(vec![chunk_choice(0, json!({ "role": "assistant", "content": "" }), None)]))));
                out.push(ClientEvent::Data(self.chunk(json!([chunk_choice(0, json!({}), Some("content_filter"))]))));
            }
            return;
        }
        for (pos, cand) in cands.iter().enumerate() {
            let idx = cand.get("index").and_then(Value::as_u64).map(|i| i as usize).unwrap_or(pos);
            if idx >= MAX_CANDIDATES {
                continue;
            }
            if self.cands.len() <= idx {
                self.cands.resize(idx + 1, CandState::default());
            }
            if self.cands[idx].finished {
                continue;
            }
            let (text, thoughts, calls) = split_parts(cand);
            let mut delta = Map::new();
            if !self.cands[idx].started {
                self.cands[idx].started = true;
                delta.insert("role".into(), json!("assistant"));
            }
            if !thoughts.is_empty() {
                delta.insert("reasoning_content".into(), Value::String(thoughts));
            }
            if !text.is_empty() {
                delta.insert("content".into(), Value::String(text));
            }
            let mut tcs = Vec::new();
            for c in &calls {
                let k = self.cands[idx].tool_calls;
                if self.single_tool_call && k >= 1 {
                    break;
                }
                self.cands[idx].tool_calls += 1;
                let id = self.call_id(idx, k, c.id.as_deref());
                self.remember(&id, c);
                tcs.push(tool_call_json(id, c, Some(k)));
            }
            if !tcs.is_empty() {
                delta.insert("tool_calls".into(), Value::Array(tcs));
            }
            if delta.len() == 1 && delta.contains_key("role") {
                delta.insert("content".into(), json!(""));
            }
            if !delta.is_empty() {
                out.push(ClientEvent::Data(self.chunk(Value::Array(vec![chunk_choice(idx, Value::Object(delta), None)]))));
            }
            if let Some(reason) = cand.get("finishReason").and_then(Value::as_str).filter(|r| !r.is_empty() && *r != "FINISH_REASON_UNSPECIFIED") {
                self.cands[idx].finished = true;
                let fr = finish_reason(reason, self.cands[idx].tool_calls > 0);
                out.push(self.finish_chunk(idx, fr));
            }
        }
    }
    pub(super) fn translate_stream_end(&mut self, end: StreamEnd, out: &mut Vec<ClientEvent>) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.errored {
            return;
        }
        if end == StreamEnd::Complete && self.stream_complete() {
            if self.include_usage {
                out.push(ClientEvent::Data(usage_chunk(self.chat_id(), self.created, self.model_out(), self.usage.to_chat_usage())));
            }
            out.push(ClientEvent::Done);
        } else {
            out.push(ClientEvent::Data(openai_error("the provider's stream ended before completion", "upstream_error", None, Some("stream_truncated"))));
        }
    }
}
