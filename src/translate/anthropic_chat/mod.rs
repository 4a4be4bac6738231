//! OpenAI Chat Completions (client) ↔ Anthropic Messages API (provider).
//!
//! * [`Translator::request`]: `POST /v1/chat/completions` body → `POST /v1/messages` body.
//! * [`Translator::response`]: Anthropic `message` → `chat.completion`.
//! * [`Translator::stream_event`] / [`Translator::stream_end`]: Anthropic SSE events →
//!   `chat.completion.chunk`s, one provider event at a time, then `[DONE]`.
//! * [`Translator::error`]: Anthropic error body → OpenAI error body and status.
//!
//! Decisions (see also the tests):
//! * `system`/`developer` messages (anywhere in the list) become the top-level `system`:
//!   a string when there is a single text, else text blocks in order.
//! * Consecutive turns of the same Anthropic role are merged (tool results and a following
//!   user message share one user turn).
//! * `response_format` `json_object`/`json_schema` is done with a forced synthetic tool
//!   named [`JSON_TOOL_NAME`]; its input is returned as the message `content` (a JSON string),
//!   finish_reason `stop`. Combining it with client `tools` or with `reasoning_effort`
//!   (thinking forbids forced tool use) is refused with a 400 naming `response_format`.
//!   Text blocks that the model might emit besides the synthetic tool are dropped in that mode.
//! * `reasoning_effort` → `thinking: {type: enabled, budget_tokens}` with the budgets of
//!   [`thinking_budget`]; for Claude 4.6 and later ([`adaptive_thinking`]) `thinking: {type:
//!   adaptive}` and `output_config.effort` ([`adaptive_effort`]: minimal and low → low, medium,
//!   high, xhigh → max), the default maximum still leaving the budget's room. Without an explicit max the request's `max_tokens` becomes
//!   `default_max_tokens + budget`; an explicit max not above the budget is a 400 naming it.
//!   `none` disables thinking. Thinking counts in `completion_tokens` as Anthropic bills it.
//! * Thinking comes back as `reasoning_content` (the thinking text) and `thinking_blocks`
//!   (every `thinking` / `redacted_thinking` block whole, signatures included) on the message;
//!   streamed as `delta.reasoning_content`, and each block whole in `delta.thinking_blocks`
//!   when it ends. An assistant turn sent back with `thinking_blocks` starts with those blocks,
//!   unmodified, as Anthropic requires of a tool-using turn with thinking on
//!   ([`crate::translate::replay`]). The blocks of a streamed answer are held until it ends
//!   (bounded by [`crate::translate::replay::MAX_MEMO_BYTES`]).
//! * Stream events that arrive before `message_start` are ignored (except `error`); the
//!   stream always ends with `[DONE]` (complete) or an `{"error": ...}` event (cut, or
//!   `Complete` announced without a `message_stop`, or a provider `error` event).


use super::common::present;
use super::{ClientEvent, Options, StreamEnd, TokenUsage, TranslateError, Translator};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

mod messages;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;
mod typed_request;

/// Name of the synthetic tool used for `response_format` JSON modes.
pub const JSON_TOOL_NAME: &str = "json_response";

/// Usage numbers above this are clamped (no overflow on garbage input).
const USAGE_CAP: u64 = 1 << 40;

/// Thinking budget (tokens) for an OpenAI `reasoning_effort`; `None` = no thinking.
/// `minimal` 1024 (Anthropic's minimum), `low` 2048, `medium` 8192, `high` 16384, `xhigh` 32768.
pub fn thinking_budget(effort: &str) -> Option<Option<u64>> {
    match effort {
        "none" => Some(None),
        "minimal" => Some(Some(1024)),
        "low" => Some(Some(2048)),
        "medium" => Some(Some(8192)),
        "high" => Some(Some(16384)),
        "xhigh" => Some(Some(32768)),
        _ => None,
    }
}

/// Does `model` take adaptive thinking (`thinking: {type: adaptive}` with
/// `output_config.effort`)? Claude 4.6 and later do, and from 4.7 (and the
/// Mythos and Fable families) only that: `enabled` with a budget is a 400
/// there. Older models take only a budget.
pub fn adaptive_thinking(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    let m = m.trim_start_matches("anthropic.").trim_start_matches("claude-");
    let mut parts = m.split(['-', '@', '.']);
    let family = parts.next().unwrap_or("");
    if matches!(family, "mythos" | "fable") {
        return true;
    }
    if !matches!(family, "opus" | "sonnet" | "haiku") {
        return false;
    }
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    // A date (claude-sonnet-4-20250514) is not a minor version.
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).filter(|n| *n < 100).unwrap_or(0);
    (major, minor) >= (4, 6)
}

/// OpenAI `reasoning_effort` → Anthropic's adaptive `effort`.
pub fn adaptive_effort(effort: &str) -> Option<&'static str> {
    match effort {
        "minimal" | "low" => Some("low"),
        "medium" => Some("medium"),
        "high" => Some("high"),
        "xhigh" => Some("max"),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A client tool call: its ordinal among tool calls, whether arguments were sent.
    Tool { k: u32, args_sent: bool },
    /// The synthetic JSON tool: whether content was sent.
    Json { sent: bool },
    /// thinking or redacted_thinking: built in `thinking_open`.
    Thinking,
    /// server tools…: not forwarded.
    Other,
}

/// The OpenAI Chat Completions ↔ Anthropic Messages translator (one value per request).
#[derive(Debug, Clone)]
pub struct AnthropicChat {
    /// Claude on Vertex: the model is in the URL, not the body, and the
    /// body names `anthropic_version`.
    vertex: bool,
    // From the request.
    stream: bool,
    include_usage: bool,
    json_mode: bool,
    req_model: String,
    // From the answer.
    msg_id: Option<String>,
    /// A stream's chunk id (`chat_id()` once `message_start` named it).
    chunk_id: String,
    model: Option<String>,
    created: u64,
    in_tokens: u64,
    cache_creation: u64,
    /// `cache_creation.ephemeral_{5m,1h}_input_tokens`.
    cache_5m: u64,
    cache_1h: u64,
    cache_read: u64,
    out_tokens: u64,
    usage_seen: bool,
    /// The answer's thinking blocks, whole, and its tool calls' ids (the
    /// replay memos, SPEC 8).
    thinking: Vec<Value>,
    /// Thinking text streamed so far: past the memo bound the blocks are no
    /// longer held (a whole answer's are bounded by `replay::memos_of`).
    thinking_bytes: usize,
    call_ids: Vec<String>,
    /// Thinking blocks being streamed, by index.
    thinking_open: BTreeMap<u64, Value>,
    // Stream state (bounded: open blocks only).
    started: bool,
    blocks: BTreeMap<u64, Block>,
    tool_count: u32,
    finish_sent: bool,
    stop_seen: bool,
    errored: bool,
    ended: bool,
}

impl Default for AnthropicChat {
    fn default() -> Self {
        Self::new()
    }
}
fn unsupported(param: impl Into<String>, msg: impl Into<String>) -> TranslateError {
    TranslateError::unsupported(param, msg)
}
fn invalid(param: impl Into<String>, msg: impl Into<String>) -> TranslateError {
    TranslateError::invalid(param, msg)
}

/// `obj[key]`, with JSON `null` treated as absent.
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    present(obj.get(key))
}

impl AnthropicChat {
    pub fn new() -> Self {
        AnthropicChat {
            vertex: false,
            stream: false,
            include_usage: false,
            json_mode: false,
            req_model: String::new(),
            msg_id: None,
            chunk_id: String::new(),
            model: None,
            created: 0,
            in_tokens: 0,
            cache_creation: 0,
            cache_5m: 0,
            cache_1h: 0,
            cache_read: 0,
            out_tokens: 0,
            usage_seen: false,
            thinking: Vec::new(),
            thinking_bytes: 0,
            call_ids: Vec::new(),
            thinking_open: BTreeMap::new(),
            started: false,
            blocks: BTreeMap::new(),
            tool_count: 0,
            finish_sent: false,
            stop_seen: false,
            errored: false,
            ended: false,
        }
    }

    /// Claude on Vertex AI (rawPredict / streamRawPredict).
    pub fn on_vertex() -> Self {
        AnthropicChat { vertex: true, ..Self::new() }
    }

    /// The model the answer names, else the request's.
    fn model_str(&self) -> &str {
        self.model.as_deref().unwrap_or(&self.req_model)
    }

    fn model_name(&self) -> String {
        self.model_str().to_owned()
    }

    fn chat_id(&self) -> String {
        format!("chatcmpl-{}", self.msg_id.as_deref().unwrap_or("unknown"))
    }

    fn update_usage(&mut self, u: &Value) {
        let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
        let ttl = |k: &str| u.get("cache_creation").and_then(|c| field(c, k));
        self.count_usage(&UsageCounts {
            input_tokens: field(u, "input_tokens"),
            cache_creation_input_tokens: field(u, "cache_creation_input_tokens"),
            cache_5m: ttl("ephemeral_5m_input_tokens"),
            cache_1h: ttl("ephemeral_1h_input_tokens"),
            cache_read_input_tokens: field(u, "cache_read_input_tokens"),
            output_tokens: field(u, "output_tokens"),
        });
    }

    /// An answer's `usage` counts, each where given (read from a `Value` or
    /// typed by the fast path); the latest given value wins.
    fn count_usage(&mut self, u: &UsageCounts) {
        let cap = |n: Option<u64>| n.map(|n| n.min(USAGE_CAP));
        if let Some(n) = cap(u.input_tokens) {
            self.in_tokens = n;
            self.usage_seen = true;
        }
        if let Some(n) = cap(u.cache_creation_input_tokens) {
            self.cache_creation = n;
            self.usage_seen = true;
        }
        if let Some(n) = cap(u.cache_5m) {
            self.cache_5m = n;
        }
        if let Some(n) = cap(u.cache_1h) {
            self.cache_1h = n;
        }
        if let Some(n) = cap(u.cache_read_input_tokens) {
            self.cache_read = n;
            self.usage_seen = true;
        }
        if let Some(n) = cap(u.output_tokens) {
            self.out_tokens = n;
            self.usage_seen = true;
        }
    }
}

/// Anthropic `usage` counts as given (see [`AnthropicChat::count_usage`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct UsageCounts {
    pub input_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_5m: Option<u64>,
    pub cache_1h: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

impl Translator for AnthropicChat {
    fn request(&mut self, req: Value, opts: &Options) -> Result<Value, TranslateError> {
        match req {
            Value::Object(obj) => self.translate_request(obj, opts),
            _ => Err(TranslateError {
                status: 400,
                kind: "invalid_request_error",
                message: "The request body must be a JSON object.".into(),
                param: None,
                code: Some("invalid_value"),
            }),
        }
    }

    fn typed_request(&mut self, req: &crate::translate::chat_request::ChatRequest<'_>, opts: &Options) -> Option<Vec<u8>> {
        self.translate_typed_request(req, opts)
    }

    fn streaming(&self) -> bool {
        self.stream
    }

    fn response(&mut self, body: Value) -> Result<Value, TranslateError> {
        self.translate_response(body)
    }

    fn response_bytes(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        self.translate_response_bytes(body)
    }

    fn stream_event(&mut self, event: Option<&str>, data: &str, out: &mut Vec<ClientEvent>) {
        self.translate_stream_event(event, data, out)
    }

    fn stream_end(&mut self, end: StreamEnd, out: &mut Vec<ClientEvent>) {
        self.translate_stream_end(end, out)
    }

    fn error(&self, status: u16, body: &[u8]) -> (u16, Value) {
        self.translate_error(status, body)
    }

    fn usage(&self) -> TokenUsage {
        // The TTL breakdown, when given, accounts for every write.
        let written = self.cache_creation.max(self.cache_5m + self.cache_1h);
        TokenUsage {
            input_tokens: self.in_tokens + written + self.cache_read,
            output_tokens: self.out_tokens,
            cached_tokens: self.cache_read,
            reasoning_tokens: 0,
            cache_write_tokens: written,
            cache_write_1h_tokens: self.cache_1h.min(written),
            seen: self.usage_seen,
        }
    }

    fn response_model(&self) -> Option<String> {
        self.model.clone()
    }

    fn replay_memos(&self) -> Vec<(String, crate::translate::replay::Memo)> {
        if self.thinking_bytes > crate::translate::replay::MAX_MEMO_BYTES {
            return Vec::new();
        }
        crate::translate::replay::memos_of(&self.call_ids, &self.thinking, &[])
    }
}
