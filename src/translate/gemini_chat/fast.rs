//! The fast path of [`GeminiChat::translate_response`] for the common
//! answer (text and thought parts, no function calls): read with borrowed
//! strings into typed structs and written straight out, no `Value` tree
//! either way (issue 28). It gives the slow path's object and leaves the
//! translator in the same state (`fast_and_slow_paths_agree` in tests.rs);
//! `None` (nothing changed) for what the slow path does differently or
//! checks: function calls, no candidates (a blocked prompt), a field of an
//! unexpected type, not JSON. Stream events have theirs too
//! ([`GeminiChat::fast_stream_event`]), for the text of one candidate.

use super::response::finish_reason;
use super::{usage_of, GeminiChat};
use crate::translate::ChatUsage;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    #[serde(borrow, default)]
    response_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    candidates: Option<Vec<Candidate<'a>>>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow, default)]
    parts: Option<Vec<Part<'a>>>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    thought: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
}

impl UsageMetadata {
    fn token_usage(&self) -> crate::translate::TokenUsage {
        usage_of(self.prompt_token_count, self.candidates_token_count, self.thoughts_token_count, self.cached_content_token_count)
    }
}

impl Candidate<'_> {
    /// Its parts' text and thought text, each put together in order.
    fn text_and_thoughts(&self) -> (String, String) {
        let (mut text, mut thoughts) = (String::new(), String::new());
        for p in self.content.as_ref().and_then(|c| c.parts.as_ref()).into_iter().flatten() {
            match (p.thought, &p.text) {
                (Some(true), t) => thoughts.push_str(t.as_deref().unwrap_or("")),
                (_, Some(t)) => text.push_str(t),
                (_, None) => {}
            }
        }
        (text, thoughts)
    }
}

/// What the typed structs may read: a JSON object (serde would read a
/// struct from an array too) with no function call anywhere (the slow
/// path's: ids, signatures, the replay memos). The quoted name can only be
/// a member name or a string equal to it, never part of a longer string's
/// text.
fn plain_object(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"\"functionCall\"").is_none() && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[derive(Serialize)]
struct Completion {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    choices: Vec<Choice>,
    usage: ChatUsage,
}

#[derive(Serialize)]
struct Choice {
    index: usize,
    message: Message,
    logprobs: (),
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message {
    role: &'static str,
    content: String,
    refusal: (),
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
}

impl GeminiChat {
    pub(super) fn translate_response_bytes(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        if !plain_object(body) {
            return None;
        }
        let answer: Answer = serde_json::from_slice(body).ok()?;
        let cands = answer.candidates.filter(|c| !c.is_empty())?;
        self.observe_parts(answer.response_id.as_deref(), answer.model_version.as_deref(), answer.usage_metadata.as_ref().map(UsageMetadata::token_usage));
        let choices = cands
            .into_iter()
            .enumerate()
            .map(|(pos, cand)| {
                let (text, thoughts) = cand.text_and_thoughts();
                let reason = cand.finish_reason.as_deref().unwrap_or("STOP");
                Choice {
                    index: cand.index.map_or(pos, |i| i as usize),
                    message: Message { role: "assistant", content: text, refusal: (), reasoning_content: Some(thoughts).filter(|t| !t.is_empty()) },
                    logprobs: (),
                    finish_reason: finish_reason(reason, false),
                }
            })
            .collect();
        let out = Completion { id: self.chat_id(), object: "chat.completion", created: self.created, model: self.model_out(), choices, usage: self.usage.chat_usage() };
        serde_json::to_vec(&out).ok()
    }
}

impl GeminiChat {
    /// The fast path of a stream event, for the common one: one candidate
    /// (index 0) already started, text or thought parts (not both), no
    /// function call, no error. Read typed with borrowed strings, its chunk
    /// written without a `Value` (issue 28). `false` (nothing changed): the
    /// slow path's case. `fast_and_slow_stream_paths_agree` in tests.rs.
    pub(super) fn fast_stream_event(&mut self, data: &str, out: &mut Vec<crate::translate::ClientEvent>) -> bool {
        use crate::translate::common::{delta_chunk, Delta};
        let bytes = data.as_bytes();
        // And error events (`"error"`, quoted: a member name or a string
        // equal to it): the slow path's too.
        if !plain_object(bytes) || memchr::memmem::find(bytes, b"\"error\"").is_some() {
            return false;
        }
        let Ok(answer) = serde_json::from_str::<Answer>(data) else { return false };
        let Some(cands) = answer.candidates else { return false };
        let [cand] = &cands[..] else { return false };
        if cand.index.unwrap_or(0) != 0 || !self.cands.first().is_some_and(|c| c.started && !c.finished) {
            return false;
        }
        let (text, thoughts) = cand.text_and_thoughts();
        if !text.is_empty() && !thoughts.is_empty() {
            return false; // one delta with both: the slow path's object
        }
        self.observe_parts(answer.response_id.as_deref(), answer.model_version.as_deref(), answer.usage_metadata.as_ref().map(UsageMetadata::token_usage));
        let delta = if !text.is_empty() {
            Some(Delta::Content(&text))
        } else if !thoughts.is_empty() {
            Some(Delta::Reasoning(&thoughts))
        } else {
            None
        };
        if let Some(d) = delta {
            out.push(delta_chunk(&self.chat_id(), self.created, self.model_str(), d, self.include_usage));
        }
        if let Some(reason) = cand.finish_reason.as_deref().filter(|r| !r.is_empty() && *r != "FINISH_REASON_UNSPECIFIED") {
            self.cands[0].finished = true;
            let fr = finish_reason(reason, self.cands[0].tool_calls > 0);
            out.push(self.finish_chunk(0, fr));
        }
        true
    }
}
