//! OpenAI **Responses API** over any OpenAI **Chat Completions** translator.
//!
//! [`ResponsesOverChat`] wraps an inner [`Translator`] whose client side speaks
//! Chat Completions (chat → Anthropic, chat → Gemini, ...):
//!
//! * request: Responses request → chat.completions request → `inner.request`;
//! * response: `inner.response` (a chat.completion) → a Responses `response`;
//! * stream: `inner.stream_event` / `inner.stream_end` (chat.completion.chunk
//!   events) → Responses stream events (`ClientEvent::Named(type, json)` with
//!   a strictly increasing `sequence_number` from 0).
//!
//! The gateway keeps no conversation state: `previous_response_id`,
//! `conversation` and `background: true` are refused; `store` and `metadata`
//! are accepted, echoed in the response object and never stored.
//!
//! Bounded state: the stream keeps the text and tool arguments of the output
//! for the closing events and the final response object, up to a cap
//! ([`DEFAULT_RETAIN_CAP`], 8 MiB total over all items). Above the cap the
//! deltas are still all forwarded, but the `*.done` events and the final
//! `response.completed` object carry only the first cap bytes (cut on a char
//! boundary); status is not changed.
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use super::common::now_nanos;
use super::{unix_now, ClientEvent, Options, StreamEnd, TokenUsage, TranslateError, Translator};

mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

/// Bytes of output text + tool arguments a stream retains for its closing
/// events and final object.
pub const DEFAULT_RETAIN_CAP: usize = 8 << 20;

static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `prefix_` + time + a process-wide counter: unique per process.
fn new_id(prefix: &str) -> String {
    let n = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = now_nanos();
    format!("{prefix}_{nanos:016x}{n:08x}")
}

/// What the response phase echoes from the request.
#[derive(Debug, Clone)]
struct Echo {
    model: Value,
    instructions: Value,
    tools: Value,
    tool_choice: Value,
    parallel_tool_calls: bool,
    temperature: Value,
    top_p: Value,
    max_output_tokens: Value,
    text: Value,
    reasoning: Value,
    metadata: Value,
    user: Value,
    truncation: Value,
    store: Value,
}

impl Default for Echo {
    fn default() -> Self {
        Echo {
            model: Value::Null,
            instructions: Value::Null,
            tools: json!([]),
            tool_choice: json!("auto"),
            parallel_tool_calls: true,
            temperature: Value::Null,
            top_p: Value::Null,
            max_output_tokens: Value::Null,
            text: json!({ "format": { "type": "text" } }),
            reasoning: Value::Null,
            metadata: json!({}),
            user: Value::Null,
            truncation: json!("disabled"),
            store: Value::Null,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Refusal,
}

#[derive(Debug)]
struct Part {
    kind: PartKind,
    text: String,
}

/// The open assistant message of a stream.
#[derive(Debug)]
struct MsgItem {
    id: String,
    output_index: u64,
    parts: Vec<Part>,
}

/// An open function call of a stream.
#[derive(Debug)]
struct ToolItem {
    chat_index: u64,
    id: String,
    output_index: u64,
    call_id: String,
    name: String,
    args: String,
    /// The chat call's `extra_content` (Gemini's thought signature).
    extra: Option<Value>,
}

#[derive(Debug, Default)]
struct StreamState {
    seq: u64,
    started: bool,
    terminated: bool,
    next_output_index: u64,
    message: Option<MsgItem>,
    tools: Vec<ToolItem>,
    /// Closed items by output index (kept in index order).
    done_items: Vec<(u64, Value)>,
    retained: usize,
    /// The retention cap was hit: nothing more is retained (so retained text
    /// stays a prefix of what was streamed).
    capped: bool,
    finish: Option<String>,
    usage: Option<Value>,
    model: Option<String>,
    /// Reasoning not yet sent as an item: its text and thinking blocks.
    reasoning_text: String,
    reasoning_blocks: Vec<Value>,
}

/// Responses API client side over a Chat Completions translator.
pub struct ResponsesOverChat {
    inner: Box<dyn Translator>,
    echo: Echo,
    id: String,
    created_at: u64,
    retain_cap: usize,
    st: StreamState,
}

impl ResponsesOverChat {
    pub fn new(inner: Box<dyn Translator>) -> Self {
        ResponsesOverChat {
            inner,
            echo: Echo::default(),
            id: new_id("resp"),
            created_at: unix_now(),
            retain_cap: DEFAULT_RETAIN_CAP,
            st: StreamState::default(),
        }
    }

    /// Change the stream retention cap (bytes of text + arguments kept).
    pub fn with_retain_cap(mut self, bytes: usize) -> Self {
        self.retain_cap = bytes;
        self
    }

    /// The `resp_...` id of this response.
    pub fn response_id(&self) -> &str {
        &self.id
    }
}

impl Translator for ResponsesOverChat {
    fn request(&mut self, req: Value, opts: &Options) -> Result<Value, TranslateError> {
        let chat = self.translate_request(&req)?;
        self.inner.request(chat, opts)
    }

    fn streaming(&self) -> bool {
        self.inner.streaming()
    }

    fn request_headers(&self) -> Vec<(&'static str, String)> {
        self.inner.request_headers()
    }

    fn response(&mut self, body: Value) -> Result<Value, TranslateError> {
        let chat = self.inner.response(body)?;
        self.chat_completion_to_response(&chat)
    }

    fn stream_event(&mut self, event: Option<&str>, data: &str, out: &mut Vec<ClientEvent>) {
        let mut scratch = Vec::new();
        self.inner.stream_event(event, data, &mut scratch);
        self.translate(scratch, out);
    }

    fn stream_end(&mut self, end: StreamEnd, out: &mut Vec<ClientEvent>) {
        let mut scratch = Vec::new();
        self.inner.stream_end(end, &mut scratch);
        self.translate(scratch, out);
        if !self.st.terminated {
            match end {
                StreamEnd::Complete => self.finish_stream(out),
                StreamEnd::Cut => self.fail(&json!({ "message": "the provider stream was cut before its end", "code": "stream_cut" }), out),
            }
        }
    }

    fn error(&self, status: u16, body: &[u8]) -> (u16, Value) {
        self.inner.error(status, body)
    }

    fn usage(&self) -> TokenUsage {
        self.inner.usage()
    }

    fn replay_memos(&self) -> Vec<(String, crate::translate::replay::Memo)> {
        self.inner.replay_memos()
    }

    fn response_model(&self) -> Option<String> {
        self.inner.response_model()
    }
}
