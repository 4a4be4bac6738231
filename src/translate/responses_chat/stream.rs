//! Streams: chat.completion.chunk events → Responses stream events.

use serde_json::{json, Value};

use super::response::{function_call_json, message_json, part_json, reasoning_json, status_for};
use super::{new_id, MsgItem, Part, PartKind, ResponsesOverChat, StreamState, ToolItem};
use crate::translate::common::{obj, present};
use crate::translate::ClientEvent;

/// Longest prefix of `s` of at most `n` bytes on a char boundary.
fn prefix_at_most(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = n;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

/// A streamed call's item, with the chat call's `extra_content` when it had
/// one (as in a whole answer).
fn tool_json(t: &ToolItem, status: &str) -> Value {
    let mut item = function_call_json(&t.id, &t.call_id, &t.name, &t.args, status);
    if let Some(x) = &t.extra {
        item["extra_content"] = x.clone();
    }
    item
}

impl ResponsesOverChat {
    fn emit(&mut self, ty: &str, mut ev: Value, out: &mut Vec<ClientEvent>) {
        ev["type"] = json!(ty);
        ev["sequence_number"] = json!(self.st.seq);
        self.st.seq += 1;
        out.push(ClientEvent::Named(ty.to_string(), ev));
    }

    fn ensure_started(&mut self, out: &mut Vec<ClientEvent>) {
        if self.st.started {
            return;
        }
        self.st.started = true;
        let r = self.response_object("in_progress", Vec::new(), Value::Null, Value::Null, Value::Null, None);
        self.emit("response.created", obj!("response" => r.clone()), out);
        self.emit("response.in_progress", obj!("response" => r), out);
    }

    /// Append to retained text within the cap.
    fn retain(st: &mut StreamState, cap: usize, piece: &str) -> Option<usize> {
        if st.capped {
            return None;
        }
        let room = cap.saturating_sub(st.retained);
        let p = prefix_at_most(piece, room);
        st.capped = p.len() < piece.len();
        st.retained += p.len();
        Some(p.len())
    }

    fn text_delta(&mut self, kind: PartKind, delta: &str, out: &mut Vec<ClientEvent>) {
        if self.st.message.is_none() {
            let id = new_id("msg");
            let output_index = self.st.next_output_index;
            self.st.next_output_index += 1;
            self.emit(
                "response.output_item.added",
                obj!("output_index" => output_index, "item" => message_json(&id, "in_progress", Value::Array(Vec::new()))),
                out,
            );
            self.st.message = Some(MsgItem { id, output_index, parts: Vec::new() });
        }
        let msg = self.st.message.as_mut().expect("message just opened");
        let (item_id, output_index) = (msg.id.clone(), msg.output_index);
        if msg.parts.last().map(|p| p.kind) != Some(kind) {
            msg.parts.push(Part { kind, text: String::new() });
            let content_index = msg.parts.len() - 1;
            self.emit(
                "response.content_part.added",
                obj!("item_id" => item_id.as_str(), "output_index" => output_index, "content_index" => content_index, "part" => part_json(kind, "")),
                out,
            );
        }
        let msg = self.st.message.as_mut().expect("message open");
        let content_index = msg.parts.len() - 1;
        if let Some(n) = Self::retain(&mut self.st, self.retain_cap, delta) {
            let part = self.st.message.as_mut().and_then(|m| m.parts.last_mut()).expect("part open");
            part.text.push_str(&delta[..n]);
        }
        match kind {
            PartKind::Text => self.emit(
                "response.output_text.delta",
                json!({ "item_id": item_id, "output_index": output_index, "content_index": content_index, "delta": delta, "logprobs": [] }),
                out,
            ),
            PartKind::Refusal => self.emit(
                "response.refusal.delta",
                json!({ "item_id": item_id, "output_index": output_index, "content_index": content_index, "delta": delta }),
                out,
            ),
        }
    }

    fn close_message(&mut self, item_status: &str, out: &mut Vec<ClientEvent>) {
        let Some(msg) = self.st.message.take() else { return };
        let mut parts = Vec::with_capacity(msg.parts.len());
        for (ci, p) in msg.parts.iter().enumerate() {
            match p.kind {
                PartKind::Text => self.emit(
                    "response.output_text.done",
                    json!({ "item_id": msg.id, "output_index": msg.output_index, "content_index": ci, "text": p.text, "logprobs": [] }),
                    out,
                ),
                PartKind::Refusal => self.emit(
                    "response.refusal.done",
                    json!({ "item_id": msg.id, "output_index": msg.output_index, "content_index": ci, "refusal": p.text }),
                    out,
                ),
            }
            let pj = part_json(p.kind, &p.text);
            self.emit(
                "response.content_part.done",
                obj!("item_id" => msg.id.as_str(), "output_index" => msg.output_index, "content_index" => ci, "part" => pj.clone()),
                out,
            );
            parts.push(pj);
        }
        let item = message_json(&msg.id, item_status, Value::Array(parts));
        self.emit("response.output_item.done", obj!("output_index" => msg.output_index, "item" => item.clone()), out);
        self.st.done_items.push((msg.output_index, item));
    }

    fn tool_delta(&mut self, tc: &Value, position: usize, out: &mut Vec<ClientEvent>) {
        let chat_index = tc.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
        let f = &tc["function"];
        let name = f.get("name").and_then(Value::as_str);
        let args = match f.get("arguments") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let pos = match self.st.tools.iter().position(|t| t.chat_index == chat_index) {
            Some(p) => p,
            None => {
                // Responses streams items one after the other: the message
                // ends where the tool calls begin.
                self.close_message("completed", out);
                let id = new_id("fc");
                let call_id = tc.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned).unwrap_or_else(|| new_id("call"));
                let name = name.unwrap_or("").to_string();
                let output_index = self.st.next_output_index;
                self.st.next_output_index += 1;
                self.emit(
                    "response.output_item.added",
                    obj!("output_index" => output_index, "item" => function_call_json(&id, &call_id, &name, "", "in_progress")),
                    out,
                );
                self.st.tools.push(ToolItem { chat_index, id, output_index, call_id, name, args: String::new(), extra: None });
                self.st.tools.len() - 1
            }
        };
        {
            let t = &mut self.st.tools[pos];
            if let Some(x) = tc.get("extra_content").filter(|x| x.is_object()) {
                t.extra = Some(x.clone());
            }
            if t.name.is_empty() {
                if let Some(n) = name {
                    t.name = n.to_string();
                }
            }
        }
        if args.is_empty() {
            return;
        }
        if let Some(n) = Self::retain(&mut self.st, self.retain_cap, &args) {
            self.st.tools[pos].args.push_str(&args[..n]);
        }
        let t = &self.st.tools[pos];
        let (item_id, output_index) = (t.id.clone(), t.output_index);
        self.emit(
            "response.function_call_arguments.delta",
            json!({ "item_id": item_id, "output_index": output_index, "delta": args }),
            out,
        );
    }

    fn close_items(&mut self, out: &mut Vec<ClientEvent>) {
        let (_, _, item_status) = status_for(self.st.finish.as_deref());
        self.close_message(item_status, out);
        let tools = std::mem::take(&mut self.st.tools);
        for t in tools {
            self.emit(
                "response.function_call_arguments.done",
                json!({ "item_id": t.id, "output_index": t.output_index, "name": t.name, "arguments": t.args }),
                out,
            );
            let item = tool_json(&t, item_status);
            self.emit("response.output_item.done", obj!("output_index" => t.output_index, "item" => item.clone()), out);
            self.st.done_items.push((t.output_index, item));
        }
    }

    fn output_so_far(&self, open_status: &str) -> Vec<Value> {
        let mut items = self.st.done_items.clone();
        if let Some(m) = &self.st.message {
            let parts: Vec<Value> = m.parts.iter().map(|p| part_json(p.kind, &p.text)).collect();
            items.push((m.output_index, message_json(&m.id, open_status, Value::Array(parts))));
        }
        for t in &self.st.tools {
            items.push((t.output_index, tool_json(t, open_status)));
        }
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// Close what is open and emit `response.completed` / `response.incomplete`.
    pub(super) fn finish_stream(&mut self, out: &mut Vec<ClientEvent>) {
        if self.st.terminated {
            return;
        }
        self.ensure_started(out);
        self.close_items(out);
        let (status, incomplete, _) = status_for(self.st.finish.as_deref());
        let usage = self.usage_value(self.st.usage.as_ref());
        let r = self.response_object(status, self.output_so_far("completed"), usage, incomplete, Value::Null, self.st.model.as_deref());
        self.st.terminated = true;
        let ty = if status == "completed" { "response.completed" } else { "response.incomplete" };
        self.emit(ty, obj!("response" => r), out);
    }

    /// An `error` event, then `response.failed` (the terminal event).
    pub(super) fn fail(&mut self, err: &Value, out: &mut Vec<ClientEvent>) {
        if self.st.terminated {
            return;
        }
        self.ensure_started(out);
        let message = err.get("message").and_then(Value::as_str).unwrap_or("the provider stream failed").to_string();
        let code = err.get("code").and_then(Value::as_str).or_else(|| err.get("type").and_then(Value::as_str));
        let param = err.get("param").and_then(Value::as_str);
        self.emit("error", json!({ "code": code, "message": message, "param": param }), out);
        let failed_code = if code == Some("rate_limit_exceeded") { "rate_limit_exceeded" } else { "server_error" };
        let usage = self.usage_value(self.st.usage.as_ref());
        let r = self.response_object(
            "failed",
            self.output_so_far("incomplete"),
            usage,
            Value::Null,
            json!({ "code": failed_code, "message": message }),
            self.st.model.as_deref(),
        );
        self.st.terminated = true;
        self.emit("response.failed", obj!("response" => r), out);
    }

    fn on_chunk(&mut self, v: &Value, out: &mut Vec<ClientEvent>) {
        if self.st.terminated || !v.is_object() {
            return;
        }
        if let Some(err) = present(v.get("error")) {
            let err = if err.is_object() { err.clone() } else { json!({ "message": err.as_str().unwrap_or("the provider stream failed") }) };
            self.fail(&err, out);
            return;
        }
        self.ensure_started(out);
        if let Some(m) = v.get("model").and_then(Value::as_str) {
            self.st.model = Some(m.to_string());
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.st.usage = Some(u.clone());
        }
        let Some(choices) = v.get("choices").and_then(Value::as_array) else { return };
        for c in choices {
            // Only choice 0 (this route never asks for n > 1).
            if c.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            let d = &c["delta"];
            if let Some(t) = d.get("reasoning_content").and_then(Value::as_str) {
                if let Some(n) = Self::retain(&mut self.st, self.retain_cap, t) {
                    self.st.reasoning_text.push_str(&t[..n]);
                }
            }
            if let Some(b) = d.get("thinking_blocks").and_then(Value::as_array) {
                self.st.reasoning_blocks.extend(b.iter().cloned());
            }
            let answering = d.get("content").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) || d.get("tool_calls").is_some() || c.get("finish_reason").and_then(Value::as_str).is_some();
            if answering {
                self.flush_reasoning(out);
            }
            if let Some(t) = d.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                if !self.st.tools.is_empty() {
                    // Text after tool calls: a new message item after them.
                    self.close_items_keep_finish(out);
                }
                self.text_delta(PartKind::Text, t, out);
            }
            if let Some(r) = d.get("refusal").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                self.text_delta(PartKind::Refusal, r, out);
            }
            if let Some(calls) = d.get("tool_calls").and_then(Value::as_array) {
                for (i, tc) in calls.iter().enumerate() {
                    if tc.is_object() {
                        self.tool_delta(tc, i, out);
                    }
                }
            }
            if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
                self.st.finish = Some(f.to_string());
                self.close_items(out);
            }
        }
    }

    /// The reasoning gathered so far as one `reasoning` item, before the
    /// answer's first text or call (added and done at once: its summary is
    /// whole by then).
    fn flush_reasoning(&mut self, out: &mut Vec<ClientEvent>) {
        if self.st.reasoning_text.is_empty() && self.st.reasoning_blocks.is_empty() {
            return;
        }
        let id = new_id("rs");
        let output_index = self.st.next_output_index;
        self.st.next_output_index += 1;
        let text = std::mem::take(&mut self.st.reasoning_text);
        let blocks = std::mem::take(&mut self.st.reasoning_blocks);
        self.emit("response.output_item.added", obj!("output_index" => output_index, "item" => reasoning_json(&id, "", &[], "in_progress")), out);
        let item = reasoning_json(&id, &text, &blocks, "completed");
        self.emit("response.output_item.done", obj!("output_index" => output_index, "item" => item.clone()), out);
        self.st.done_items.push((output_index, item));
    }

    /// Close the open items as completed (not yet the end of the stream).
    fn close_items_keep_finish(&mut self, out: &mut Vec<ClientEvent>) {
        let saved = self.st.finish.take();
        self.close_items(out);
        self.st.finish = saved;
    }

    pub(super) fn translate(&mut self, events: Vec<ClientEvent>, out: &mut Vec<ClientEvent>) {
        for e in events {
            match e {
                ClientEvent::Data(v) => self.on_chunk(&v, out),
                ClientEvent::Json(_) => {
                    if let Some(v) = e.value() {
                        self.on_chunk(&v, out);
                    }
                }
                ClientEvent::Done => self.finish_stream(out),
                // An inner translator that already speaks Responses events.
                ClientEvent::Named(..) => {}
            }
        }
    }
}
