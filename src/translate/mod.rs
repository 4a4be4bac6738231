//! Translation between the OpenAI API that clients speak on `/openai` and a
//! provider's native API (SPEC 8), as Envoy AI Gateway's `internal/translator`
//! does it: one type per (client API, provider API) pair behind one trait,
//! [`Translator`], whose methods mirror the proxy phases:
//!
//! * request body: the client's OpenAI request (parsed JSON, or read
//!   typed when it has the common shape: [`chat_request`]) → the
//!   provider's request body;
//! * response body, non-streaming: the provider's whole JSON answer → the
//!   OpenAI object;
//! * response body, streaming: one provider SSE event at a time → zero or
//!   more OpenAI events, sent at once (never batched); then end of stream;
//! * error: a provider error body → OpenAI's error shape and status.
//!
//! Usage (tokens) is read from the provider's own answer as it passes.
//! Pairs hold only bounded state per request (ids, indexes, the usage seen,
//! tool-call bookkeeping), never the text of a stream.
//!
//! Nothing here does I/O: the gateway frames SSE, bounds the bodies and calls
//! these methods. Each pair has its tests in its own file.

use serde_json::{json, Value};

pub mod anthropic_chat;
pub mod chat_request;
pub mod common;
pub mod gemini_chat;
pub mod gemini_embeddings;
pub mod replay;
pub mod responses_chat;
pub mod sse;

/// Settings from config that change a translation.
#[derive(Debug, Clone)]
pub struct Options {
    /// `openai_compat.default_max_tokens`: for providers that require a
    /// maximum (Anthropic) when the request names none.
    pub default_max_tokens: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { default_max_tokens: 4096 }
    }
}

/// Token usage in the gateway's normalised form (the same rules as the usage
/// scanner of the passthrough routes): `input_tokens` is every input token
/// (for Anthropic `input_tokens + cache_creation_input_tokens +
/// cache_read_input_tokens`), `cached_tokens` the part of it read from a
/// prompt cache, `output_tokens` every generated token (Gemini: candidates +
/// thoughts), `reasoning_tokens` the part of the output spent on reasoning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// Input tokens written to a prompt cache (part of `input_tokens`).
    pub cache_write_tokens: u64,
    /// The part of `cache_write_tokens` written with the 1-hour TTL.
    pub cache_write_1h_tokens: u64,
    /// Some usage was reported by the provider.
    pub seen: bool,
}

impl TokenUsage {
    /// OpenAI chat `usage` object for this usage.
    pub fn to_chat_usage(&self) -> Value {
        serde_json::to_value(self.chat_usage()).expect("plain numbers")
    }

    /// The same object typed, for a pair's fast path to write out directly
    /// (the fields in the order a `Value` object writes them).
    pub fn chat_usage(&self) -> ChatUsage {
        ChatUsage {
            completion_tokens: self.output_tokens,
            completion_tokens_details: ReasoningDetails { reasoning_tokens: self.reasoning_tokens },
            prompt_tokens: self.input_tokens,
            // Prompt-cache writes (Anthropic), where there were any.
            prompt_tokens_details: CachedDetails { cache_write_tokens: Some(self.cache_write_tokens).filter(|n| *n > 0), cached_tokens: self.cached_tokens },
            total_tokens: self.input_tokens + self.output_tokens,
        }
    }
}

/// OpenAI chat `usage`, typed: see [`TokenUsage::chat_usage`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChatUsage {
    pub completion_tokens: u64,
    pub completion_tokens_details: ReasoningDetails,
    pub prompt_tokens: u64,
    pub prompt_tokens_details: CachedDetails,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReasoningDetails {
    pub reasoning_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CachedDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    pub cached_tokens: u64,
}

/// A request the gateway refuses before sending anything (a 400 in OpenAI's
/// error shape naming the parameter), or a provider answer that cannot be
/// translated (502).
#[derive(Debug, Clone, PartialEq)]
pub struct TranslateError {
    pub status: u16,
    /// OpenAI error `type`: `invalid_request_error` for 400s.
    pub kind: &'static str,
    pub message: String,
    /// The request parameter at fault (`messages[2].content[0].image_url`).
    pub param: Option<String>,
    /// OpenAI error `code`, e.g. `unsupported_parameter`.
    pub code: Option<&'static str>,
}

impl TranslateError {
    /// A parameter the provider cannot honour.
    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError { status: 400, kind: "invalid_request_error", message: message.into(), param: Some(param.into()), code: Some("unsupported_parameter") }
    }
    /// A parameter with a wrong shape or value.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError { status: 400, kind: "invalid_request_error", message: message.into(), param: Some(param.into()), code: Some("invalid_value") }
    }
    /// A request body that is not a JSON object.
    pub fn invalid_body(message: impl Into<String>) -> Self {
        TranslateError { status: 400, kind: "invalid_request_error", message: message.into(), param: None, code: None }
    }
    /// The provider's answer could not be understood.
    pub fn bad_upstream(message: impl Into<String>) -> Self {
        TranslateError { status: 502, kind: "upstream_error", message: message.into(), param: None, code: Some("bad_upstream_response") }
    }
    /// `{"error": {"message", "type", "param", "code"}}`.
    pub fn to_openai(&self) -> Value {
        openai_error(&self.message, self.kind, self.param.as_deref(), self.code)
    }
}

/// OpenAI's error body.
pub fn openai_error(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": param, "code": code } })
}

/// One event for the client's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `data: {json}` (chat completion chunks).
    Data(Value),
    /// `data: {json}` with the JSON already written: a stream's common
    /// chunk (a piece of text, reasoning or tool arguments), made without a
    /// `Value` tree ([`common::delta_chunk`]). [`Self::value`] reads it back
    /// for the consumers that need one (tracing, the Responses API).
    Json(String),
    /// `event: {name}` + `data: {json}` (Responses API stream events).
    Named(String, Value),
    /// `data: [DONE]` (the end of a chat completions stream).
    Done,
}

impl ClientEvent {
    /// The event's JSON as a `Value` (`None` for `[DONE]`); a written
    /// chunk is parsed.
    pub fn value(&self) -> Option<std::borrow::Cow<'_, Value>> {
        use std::borrow::Cow;
        match self {
            ClientEvent::Data(v) | ClientEvent::Named(_, v) => Some(Cow::Borrowed(v)),
            ClientEvent::Json(s) => serde_json::from_str(s).ok().map(Cow::Owned),
            ClientEvent::Done => None,
        }
    }

    /// A written chunk as [`ClientEvent::Data`] (the tests compare values).
    #[cfg(test)]
    pub fn parsed(self) -> ClientEvent {
        match self {
            ClientEvent::Json(s) => ClientEvent::Data(serde_json::from_str(&s).expect("a written chunk is JSON")),
            e => e,
        }
    }
}

/// How a provider stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The provider said it was done (Anthropic `message_stop`, Gemini's last
    /// candidate with a `finishReason`).
    Complete,
    /// The provider stream stopped before that (connection cut, timeout).
    Cut,
}

/// A whole (2xx) answer's bytes → the client's: the pair's typed fast path
/// ([`Translator::response_bytes`]) unless `seen` wants the client's object
/// as a `Value` (a traced request's span records it), else through
/// [`Translator::response`].
pub fn whole_answer(tr: &mut dyn Translator, body: &[u8], seen: Option<&mut dyn FnMut(&Value)>) -> Result<Vec<u8>, TranslateError> {
    if seen.is_none() {
        if let Some(bytes) = tr.response_bytes(body) {
            return Ok(bytes);
        }
    }
    let answer = serde_json::from_slice(body).map_err(|_| TranslateError::bad_upstream("the provider's answer was cut or is not JSON"))?;
    let v = tr.response(answer)?;
    if let Some(f) = seen {
        f(&v);
    }
    Ok(serde_json::to_vec(&v).unwrap_or_default())
}

/// One (client API, provider API) pair. A value is made per request: the
/// request phase may keep what the response phase needs (the model, whether
/// the client asked for usage in its stream, tool names by call id).
pub trait Translator: Send {
    /// The client's request body → the provider's. `req["model"]` already
    /// holds the provider's own model name (the `provider/` prefix removed).
    fn request(&mut self, req: Value, opts: &Options) -> Result<Value, TranslateError>;

    /// [`Self::request`] from the typed reading of a request of the common
    /// shape ([`chat_request::ChatRequest`], `model` already the
    /// provider's), straight to the provider's body: the bytes `request`
    /// would give, serialised, and the same state kept. `None`: this pair
    /// does not take it this way (a parameter it treats specially, a value
    /// `request` refuses); nothing was changed, and `request` is called
    /// with the request as a `Value`.
    fn typed_request(&mut self, _req: &chat_request::ChatRequest<'_>, _opts: &Options) -> Option<Vec<u8>> {
        None
    }

    /// Did the translated request ask for a stream? (Valid after `request`.)
    fn streaming(&self) -> bool;

    /// Headers the provider request needs besides auth, content-type and
    /// the API version the gateway sets (e.g. an `anthropic-beta` feature).
    fn request_headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// A successful (2xx) non-streaming provider answer → the client's object.
    fn response(&mut self, body: Value) -> Result<Value, TranslateError>;

    /// [`Self::response`] from the answer's bytes straight to the client's,
    /// for a pair with a typed fast path (no `Value` tree either way).
    /// `None`: this answer takes `response` (nothing was changed).
    fn response_bytes(&mut self, _body: &[u8]) -> Option<Vec<u8>> {
        None
    }

    /// One provider SSE event (`event:` name if any, `data:` text) → events
    /// for the client, pushed to `out` in order. Malformed events are skipped
    /// (never a panic).
    fn stream_event(&mut self, event: Option<&str>, data: &str, out: &mut Vec<ClientEvent>);

    /// The provider stream ended; push the closing events (for chat: a usage
    /// chunk when asked for, then [`ClientEvent::Done`]; for a cut stream an
    /// error event `{"error": {...}}` and no `Done`).
    fn stream_end(&mut self, end: StreamEnd, out: &mut Vec<ClientEvent>);

    /// A provider error answer (status ≥ 400, body whole but bounded, maybe
    /// not JSON) → the status and OpenAI error body for the client.
    fn error(&self, status: u16, body: &[u8]) -> (u16, Value);

    /// Usage seen so far in the provider's answer.
    fn usage(&self) -> TokenUsage;

    /// The model the provider says answered, once seen.
    fn response_model(&self) -> Option<String>;

    /// What the answer's tool calls need replayed with the next turn
    /// (SPEC 8, "Reasoning models"), by tool-call id. Valid once the answer
    /// is complete; empty for a pair with nothing to replay.
    fn replay_memos(&self) -> Vec<(String, replay::Memo)> {
        Vec::new()
    }
}

/// Unix seconds now, for `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
