//! OpenAI Chat Completions ↔ Gemini `generateContent` /
//! `streamGenerateContent?alt=sse` (the same body serves the Gemini API and
//! Vertex AI).
//!
//! Rules that are a choice rather than a fact of either API:
//!
//! * `system`/`developer` messages → `systemInstruction.parts`, one text part
//!   per text, in order, wherever they appear in `messages`.
//! * Media: a `data:<mime>;base64,<data>` URL → `inlineData`; an `http(s)://`
//!   or `gs://` URL → `fileData` whose `mimeType` is guessed from the URL
//!   path's extension ([`mime_from_ext`]); for `image_url` an unknown
//!   extension falls back to `image/jpeg`; for `file` parts (raw base64 named
//!   by `filename`) an unknown extension is a 400. `image_url.detail` is
//!   ignored.
//! * Tool-call ids: Gemini's `functionCall.id` when given, else
//!   `call_{responseId}_{candidate}_{ordinal}`. On the way back, a `tool`
//!   message's `tool_call_id` is resolved to the function name through the
//!   assistant `tool_calls` earlier in the same request. Ids are not sent to
//!   Gemini (both APIs match responses to calls by name and order).
//! * Thought signatures (Gemini 3 needs them replayed with function calls)
//!   ride on each tool call as `extra_content.google.thought_signature`
//!   (Google's own OpenAI-compatibility convention) and are sent back as
//!   `thoughtSignature` on the `functionCall` part; the gateway also
//!   remembers them by tool-call id ([`crate::translate::replay`]) for
//!   clients that rebuild the message without them.
//! * `reasoning_effort`: `none`/`minimal` → `thinkingBudget` 0, `low` 1024,
//!   `medium` 8192, `high` 24576 (the budgets Google's own OpenAI layer
//!   uses); `includeThoughts` when the budget is not 0. Thought parts are
//!   never content: they come back as `reasoning_content` (streamed as
//!   `delta.reasoning_content`).
//! * `logprobs: true` / `top_logprobs > 0` are refused (400): the Gemini
//!   logprobs result is not translated.
//! * `parallel_tool_calls: false` is honoured by passing on only the first
//!   function call of each candidate.
//! * A prompt blocked by Gemini (`promptFeedback.blockReason`, no candidates)
//!   → one choice with empty content and `finish_reason: content_filter`.
//! * Errors: Google `status` → OpenAI type as listed in [`google_error`];
//!   an unknown status falls back to the type of the HTTP status.

use super::common::now_nanos;
use super::{unix_now, ClientEvent, Options, StreamEnd, TokenUsage, TranslateError, Translator};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

mod fast;
mod request;
mod response;
mod stream;
mod typed_request;
#[cfg(test)]
mod tests;

pub use request::mime_from_ext;
pub use response::google_error;

/// Most candidates tracked in a stream (Gemini allows `candidateCount` ≤ 8).
const MAX_CANDIDATES: usize = 16;

/// Per-candidate bookkeeping in a stream.
#[derive(Debug, Clone, Default)]
struct CandState {
    started: bool,
    tool_calls: usize,
    finished: bool,
}

/// OpenAI Chat Completions ↔ Gemini `generateContent`.
#[derive(Debug, Default)]
pub struct GeminiChat {
    model: String,
    stream: bool,
    include_usage: bool,
    single_tool_call: bool,
    created: u64,
    id: Option<String>,
    resp_model: Option<String>,
    usage: TokenUsage,
    cands: Vec<CandState>,
    ended: bool,
    errored: bool,
    /// The answer's tool-call ids and their thought signatures (the replay
    /// memos, SPEC 8).
    call_ids: Vec<String>,
    signatures: Vec<(String, String)>,
}

impl GeminiChat {
    pub fn new() -> Self {
        Self::default()
    }

    /// `responseId` (or a generated one) fixed at the first answer seen.
    fn observe(&mut self, v: &Value) {
        let text = |k: &str| v.get(k).and_then(Value::as_str);
        let usage = v.get("usageMetadata").filter(|u| u.is_object()).map(parse_usage);
        self.observe_parts(text("responseId"), text("modelVersion"), usage);
    }

    /// What [`Self::observe`] keeps of an answer, given its parts (read
    /// from a `Value` or typed by the fast path).
    fn observe_parts(&mut self, response_id: Option<&str>, model_version: Option<&str>, usage: Option<TokenUsage>) {
        if self.id.is_none() {
            let rid = response_id.filter(|s| !s.is_empty()).map(str::to_owned);
            self.id = Some(rid.unwrap_or_else(gen_id));
            self.created = unix_now();
        }
        if let Some(m) = model_version.filter(|s| !s.is_empty()) {
            self.resp_model = Some(m.to_owned());
        }
        if let Some(u) = usage {
            self.usage = u;
        }
    }

    fn chat_id(&self) -> String {
        format!("chatcmpl-{}", self.id.as_deref().unwrap_or(""))
    }

    /// The model the answer names, else the request's.
    fn model_str(&self) -> &str {
        self.resp_model.as_deref().unwrap_or(&self.model)
    }

    fn model_out(&self) -> String {
        self.model_str().to_owned()
    }

    fn remember(&mut self, id: &str, call: &response::Call) {
        if self.call_ids.len() < crate::translate::replay::MAX_IDS {
            self.call_ids.push(id.to_owned());
            if let Some(sig) = &call.signature {
                self.signatures.push((id.to_owned(), sig.clone()));
            }
        }
    }

    fn call_id(&self, cand: usize, ordinal: usize, given: Option<&str>) -> String {
        match given {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => {
                let rid: String = self.id.as_deref().unwrap_or("").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
                format!("call_{rid}_{cand}_{ordinal}")
            }
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique-enough id when Gemini gives no `responseId`.
fn gen_id() -> String {
    let nanos = now_nanos();
    format!("{:x}{:04x}", nanos, COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff)
}

/// `usageMetadata` → normalised usage.
fn parse_usage(u: &Value) -> TokenUsage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    usage_of(n("promptTokenCount"), n("candidatesTokenCount"), n("thoughtsTokenCount"), n("cachedContentTokenCount"))
}

/// `usageMetadata`'s counts (absent ones 0) → normalised usage.
fn usage_of(prompt: Option<u64>, candidates: Option<u64>, thoughts: Option<u64>, cached: Option<u64>) -> TokenUsage {
    let thoughts = thoughts.unwrap_or(0);
    TokenUsage {
        input_tokens: prompt.unwrap_or(0),
        output_tokens: candidates.unwrap_or(0) + thoughts,
        cached_tokens: cached.unwrap_or(0),
        reasoning_tokens: thoughts,
        seen: true,
        ..Default::default()
    }
}

impl Translator for GeminiChat {
    fn request(&mut self, req: Value, _opts: &Options) -> Result<Value, TranslateError> {
        self.translate_request(req)
    }

    fn typed_request(&mut self, req: &crate::translate::chat_request::ChatRequest<'_>, _opts: &Options) -> Option<Vec<u8>> {
        self.translate_typed_request(req)
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

    fn stream_event(&mut self, _event: Option<&str>, data: &str, out: &mut Vec<ClientEvent>) {
        self.translate_stream_event(data, out)
    }

    fn stream_end(&mut self, end: StreamEnd, out: &mut Vec<ClientEvent>) {
        self.translate_stream_end(end, out)
    }

    fn error(&self, status: u16, body: &[u8]) -> (u16, Value) {
        google_error(status, body)
    }

    fn usage(&self) -> TokenUsage {
        self.usage.clone()
    }

    fn response_model(&self) -> Option<String> {
        self.resp_model.clone()
    }

    fn replay_memos(&self) -> Vec<(String, crate::translate::replay::Memo)> {
        crate::translate::replay::memos_of(&self.call_ids, &[], &self.signatures)
    }
}
