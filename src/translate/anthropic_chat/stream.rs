//! Streams: Anthropic SSE events → `chat.completion.chunk`s, then `[DONE]`.

use super::response::{anthropic_error_body, finish_reason};
use super::{AnthropicChat, Block, JSON_TOOL_NAME};
use crate::translate::common::{chat_chunk, chunk_choice, delta_chunk, usage_chunk, Delta};
use crate::translate::{openai_error, unix_now, ClientEvent, StreamEnd, Translator};
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;

/// The string fields a `content_block_delta`'s delta may carry.
struct DeltaFields<'a> {
    text: Option<&'a str>,
    partial_json: Option<&'a str>,
    thinking: Option<&'a str>,
    signature: Option<&'a str>,
}

/// `block[field] += piece`, in place (a thinking block grows delta by delta).
fn append(block: &mut Value, field: &str, piece: &str) {
    match block.get_mut(field) {
        Some(Value::String(s)) => s.push_str(piece),
        _ => block[field] = Value::String(piece.to_string()),
    }
}

impl AnthropicChat {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        chat_chunk(self.chat_id(), self.created, self.model_name(), Value::Array(vec![chunk_choice(0, delta, finish)]), self.include_usage)
    }

    /// A chunk of one piece of text, written without a `Value`.
    fn delta(&self, delta: Delta<'_>) -> ClientEvent {
        delta_chunk(&self.chunk_id, self.created, self.model_str(), delta, self.include_usage)
    }

    fn content_chunk(&self, text: &str) -> ClientEvent {
        self.delta(Delta::Content(text))
    }

    fn args_chunk(&self, k: u32, args: &str) -> ClientEvent {
        self.delta(Delta::Arguments(k, args))
    }

    fn finish_chunk(&mut self, reason: &str, out: &mut Vec<ClientEvent>) {
        if !self.finish_sent {
            self.finish_sent = true;
            out.push(ClientEvent::Data(self.chunk(json!({}), Some(reason))));
        }
    }

    pub(super) fn translate_stream_event(&mut self, event: Option<&str>, data: &str, out: &mut Vec<ClientEvent>) {
        if self.errored || self.ended {
            return;
        }
        if self.started && !self.stop_seen && self.fast_block_delta(data, out) {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else { return };
        if !v.is_object() {
            return;
        }
        let Some(kind) = v.get("type").and_then(Value::as_str).or(event) else { return };
        match kind {
            "error" => {
                let body = anthropic_error_body(&v, 500)
                    .unwrap_or_else(|| openai_error("The upstream provider reported an error.", "server_error", None, None));
                self.errored = true;
                out.push(ClientEvent::Data(body));
                return;
            }
            "message_start" => {
                if self.started {
                    return;
                }
                let Some(msg) = v.get("message").filter(|m| m.is_object()) else { return };
                self.started = true;
                self.created = unix_now();
                if let Some(id) = msg.get("id").and_then(Value::as_str) {
                    self.msg_id = Some(id.to_string());
                }
                self.chunk_id = self.chat_id();
                if let Some(m) = msg.get("model").and_then(Value::as_str) {
                    self.model = Some(m.to_string());
                }
                if let Some(u) = msg.get("usage") {
                    self.update_usage(u);
                }
                out.push(ClientEvent::Data(self.chunk(json!({"role": "assistant", "content": ""}), None)));
                return;
            }
            _ => {}
        }
        if !self.started || self.stop_seen {
            return; // nothing before message_start, nothing after message_stop
        }
        let index = v.get("index").and_then(Value::as_u64);
        match kind {
            "content_block_start" => {
                let (Some(index), Some(cb)) = (index, v.get("content_block")) else { return };
                if self.blocks.contains_key(&index) {
                    return;
                }
                let block = match cb.get("type").and_then(Value::as_str) {
                    Some("text") if !self.json_mode => {
                        if let Some(t) = cb.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                            out.push(self.content_chunk(t));
                        }
                        Block::Text
                    }
                    Some("tool_use") => {
                        let name = cb.get("name").and_then(Value::as_str).unwrap_or("");
                        if self.json_mode && name == JSON_TOOL_NAME {
                            Block::Json { sent: false }
                        } else {
                            let k = self.tool_count;
                            self.tool_count = self.tool_count.saturating_add(1);
                            let id = cb.get("id").and_then(Value::as_str).unwrap_or("");
                            self.call_ids.push(id.to_string());
                            out.push(ClientEvent::Data(self.chunk(
                                json!({"tool_calls": [{"index": k, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                                None,
                            )));
                            let mut args_sent = false;
                            if let Some(input) = cb.get("input").filter(|i| i.as_object().is_some_and(|o| !o.is_empty())) {
                                out.push(self.args_chunk(k, &input.to_string()));
                                args_sent = true;
                            }
                            Block::Tool { k, args_sent }
                        }
                    }
                    Some("thinking") | Some("redacted_thinking") => {
                        if let Some(t) = cb.get("thinking").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                            out.push(self.delta(Delta::Reasoning(t)));
                        }
                        self.thinking_open.insert(index, cb.clone());
                        Block::Thinking
                    }
                    _ => Block::Other,
                };
                self.blocks.insert(index, block);
            }
            "content_block_delta" => {
                let (Some(index), Some(delta)) = (index, v.get("delta")) else { return };
                let field = |k: &str| delta.get(k).and_then(Value::as_str);
                let fields = DeltaFields { text: field("text"), partial_json: field("partial_json"), thinking: field("thinking"), signature: field("signature") };
                self.block_delta(index, delta.get("type").and_then(Value::as_str), fields, out);
            }
            "content_block_stop" => {
                let Some(index) = index else { return };
                match self.blocks.remove(&index) {
                    // A tool call without argument deltas: its input is `{}`.
                    Some(Block::Tool { k, args_sent: false }) => out.push(self.args_chunk(k, "{}")),
                    Some(Block::Json { sent: false }) => out.push(self.content_chunk("{}")),
                    // A thinking block is whole at its end: the client gets it
                    // to send back (with the signature).
                    Some(Block::Thinking) => {
                        if let Some(b) = self.thinking_open.remove(&index) {
                            if self.thinking_bytes <= crate::translate::replay::MAX_MEMO_BYTES {
                                out.push(ClientEvent::Data(self.chunk(json!({"thinking_blocks": [b.clone()]}), None)));
                                self.thinking.push(b);
                            }
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    self.update_usage(u);
                }
                if let Some(sr) = v.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str) {
                    let reason = finish_reason(Some(sr), self.json_mode);
                    self.finish_chunk(reason, out);
                }
            }
            "message_stop" => {
                self.stop_seen = true;
                self.blocks.clear();
                self.thinking_open.clear();
                self.finish_chunk("stop", out);
            }
            _ => {} // ping, unknown events
        }
    }

    /// A `content_block_delta`, read typed with borrowed strings (issue
    /// 28: most of a stream's events, each parsed into a `Value` before).
    /// `false`: not one, or not as expected (another type for a field, a
    /// key twice, an escaped `type`); the `Value` path then reads it, and
    /// decides as it always did (`fast_and_slow_stream_paths_agree`).
    fn fast_block_delta(&mut self, data: &str, out: &mut Vec<ClientEvent>) -> bool {
        #[derive(Deserialize)]
        struct Event<'a> {
            #[serde(rename = "type", borrow)]
            kind: &'a str,
            index: u64,
            #[serde(borrow)]
            delta: DeltaIn<'a>,
        }
        #[derive(Deserialize)]
        struct DeltaIn<'a> {
            #[serde(rename = "type", borrow, default)]
            kind: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            text: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            partial_json: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            thinking: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            signature: Option<Cow<'a, str>>,
        }
        // Not one for sure (message_start and the others): no parse here.
        static DELTA: std::sync::LazyLock<memchr::memmem::Finder<'static>> = std::sync::LazyLock::new(|| memchr::memmem::Finder::new(br#""content_block_delta""#));
        if DELTA.find(data.as_bytes()).is_none() {
            return false;
        }
        let Ok(e) = serde_json::from_str::<Event>(data) else { return false };
        if e.kind != "content_block_delta" {
            return false;
        }
        let d = &e.delta;
        let fields = DeltaFields { text: d.text.as_deref(), partial_json: d.partial_json.as_deref(), thinking: d.thinking.as_deref(), signature: d.signature.as_deref() };
        self.block_delta(e.index, d.kind.as_deref(), fields, out);
        true
    }

    /// A content block's delta, from either path.
    fn block_delta(&mut self, index: u64, dtype: Option<&str>, d: DeltaFields<'_>, out: &mut Vec<ClientEvent>) {
        let Some(block) = self.blocks.get(&index).copied() else { return };
        match (block, dtype) {
            (Block::Text, Some("text_delta")) => {
                if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                    out.push(self.content_chunk(t));
                }
            }
            (Block::Tool { k, .. }, Some("input_json_delta")) => {
                if let Some(pj) = d.partial_json.filter(|t| !t.is_empty()) {
                    out.push(self.args_chunk(k, pj));
                    self.blocks.insert(index, Block::Tool { k, args_sent: true });
                }
            }
            (Block::Json { .. }, Some("input_json_delta")) => {
                if let Some(pj) = d.partial_json.filter(|t| !t.is_empty()) {
                    out.push(self.content_chunk(pj));
                    self.blocks.insert(index, Block::Json { sent: true });
                }
            }
            (Block::Thinking, Some("thinking_delta")) => {
                let t = d.thinking.unwrap_or("");
                if !t.is_empty() {
                    out.push(self.delta(Delta::Reasoning(t)));
                    self.thinking_bytes += t.len();
                    if self.thinking_bytes <= crate::translate::replay::MAX_MEMO_BYTES {
                        if let Some(b) = self.thinking_open.get_mut(&index) {
                            append(b, "thinking", t);
                        }
                    }
                }
            }
            (Block::Thinking, Some("signature_delta")) => {
                let sig = d.signature.unwrap_or("");
                if let Some(b) = self.thinking_open.get_mut(&index) {
                    append(b, "signature", sig);
                }
            }
            _ => {} // citations_delta…
        }
    }

    pub(super) fn translate_stream_end(&mut self, end: StreamEnd, out: &mut Vec<ClientEvent>) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.errored {
            return; // the error event was the last one
        }
        if end == StreamEnd::Complete && self.stop_seen {
            if self.include_usage {
                out.push(ClientEvent::Data(usage_chunk(self.chat_id(), self.created, self.model_name(), self.usage().to_chat_usage())));
            }
            out.push(ClientEvent::Done);
        } else {
            out.push(ClientEvent::Data(openai_error(
                "The upstream provider stream ended before completion",
                "upstream_error",
                None,
                Some("stream_incomplete"),
            )));
        }
    }
}
