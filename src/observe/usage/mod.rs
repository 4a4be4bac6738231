//! Usage scanner: fed a side copy of a response body chunk by chunk, it
//! finds the model and the token counts without holding the body.
//!
//! Layers, each with bounded state:
//! * [`Decoder`]: gzip / deflate / br / zstd, decoded in small steps;
//! * SSE framing: `data:` lines are streamed into a JSON scanner reset per
//!   event, other lines skipped; nothing is buffered but a line prefix;
//! * [`JsonScan`]: a streaming JSON tokenizer that tracks the key path
//!   (depth-bounded, keys capped) and reports only scalar object members, so
//!   a 5 MB embedding array costs no memory;
//! * per-family field rules ([`Usage::apply`]).
//!
//! Normalised counts: `input_tokens` is every input token (for Anthropic
//! `input_tokens + cache_creation_input_tokens + cache_read_input_tokens`),
//! `cached_tokens` the part served from a prompt cache, `output_tokens`
//! every generated token (Gemini: candidates + thoughts), `reasoning_tokens`
//! the part spent on reasoning where the provider says so;
//! `cache_write_tokens` the part written to a prompt cache (Anthropic's
//! `cache_creation_input_tokens`), of which `cache_write_1h_tokens` with the
//! 1-hour TTL (`cache_creation.ephemeral_1h_input_tokens`), priced at their
//! own rates.

use decode::Decoder;
use json::JsonScan;
use keys::Key;

mod decode;
mod json;
mod keys;

pub use crate::providers::ApiFamily;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub model: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// Input tokens written to a prompt cache (part of `input_tokens`).
    pub cache_write_tokens: u64,
    /// The part of `cache_write_tokens` written with the 1-hour TTL.
    pub cache_write_1h_tokens: u64,
    /// Some usage field was found.
    pub seen: bool,
}

// ---------------------------------------------------------------------------
// Field rules
// ---------------------------------------------------------------------------

/// A scalar found in the body.
enum Scalar<'a> {
    Str(&'a [u8]),
    Num(u64),
}

/// Raw counters as the provider names them; normalised by [`Usage`].
#[derive(Debug, Clone, Default)]
struct Raw {
    model: Option<String>,
    input: u64,
    output: u64,
    cached: u64,
    reasoning: u64,
    // Anthropic
    cache_creation: u64,
    cache_5m: u64,
    cache_1h: u64,
    // Gemini
    thoughts: u64,
    // Vertex embeddings (`predictions[].embeddings.statistics.token_count`)
    predict_tokens: u64,
    seen: bool,
    /// Finish (stop) reasons, one per choice or candidate, at most
    /// [`MAX_FINISH_REASONS`].
    finish_reasons: Vec<String>,
}

/// Finish reasons kept per response (one per choice; `n` is small).
const MAX_FINISH_REASONS: usize = 8;

impl Raw {
    fn apply(&mut self, family: ApiFamily, path: &[Key], v: Scalar<'_>) {
        use Key as K;
        // Envelopes: Responses API SSE (`response`), Anthropic message_start
        // (`message`), Gemini JSON-array streams (`[]`).
        let path = match path {
            [K::Response, rest @ ..] if family == ApiFamily::OpenAi => rest,
            [K::Message, rest @ ..] if family == ApiFamily::Anthropic => rest,
            [K::Item, rest @ ..] => rest,
            p => p,
        };
        let n = match v {
            Scalar::Str(s) => {
                let is_model = match family {
                    ApiFamily::Gemini => path == [K::ModelVersion],
                    _ => path == [K::Model],
                };
                if is_model && !s.is_empty() {
                    self.model = Some(String::from_utf8_lossy(s).into_owned());
                }
                let is_finish = match family {
                    ApiFamily::OpenAi => path == [K::Choices, K::Item, K::FinishReason],
                    ApiFamily::Anthropic => path == [K::StopReason] || path == [K::Delta, K::StopReason],
                    ApiFamily::Gemini => path == [K::Candidates, K::Item, K::FinishReasonGemini],
                };
                if is_finish && !s.is_empty() && s.len() <= 64 && self.finish_reasons.len() < MAX_FINISH_REASONS {
                    self.finish_reasons.push(String::from_utf8_lossy(s).into_owned());
                }
                return;
            }
            Scalar::Num(n) => n,
        };
        let slot = match (family, path) {
            (ApiFamily::OpenAi, [K::Usage, K::PromptTokens | K::InputTokens]) => &mut self.input,
            (ApiFamily::OpenAi, [K::Usage, K::CompletionTokens | K::OutputTokens]) => &mut self.output,
            (ApiFamily::OpenAi, [K::Usage, K::PromptTokensDetails | K::InputTokensDetails, K::CachedTokens]) => &mut self.cached,
            (ApiFamily::OpenAi, [K::Usage, K::CompletionTokensDetails | K::OutputTokensDetails, K::ReasoningTokens]) => &mut self.reasoning,
            (ApiFamily::Anthropic, [K::Usage, K::InputTokens]) => &mut self.input,
            (ApiFamily::Anthropic, [K::Usage, K::OutputTokens]) => &mut self.output,
            (ApiFamily::Anthropic, [K::Usage, K::CacheReadInputTokens]) => &mut self.cached,
            (ApiFamily::Anthropic, [K::Usage, K::CacheCreationInputTokens]) => &mut self.cache_creation,
            (ApiFamily::Anthropic, [K::Usage, K::CacheCreation, K::Ephemeral5mInputTokens]) => &mut self.cache_5m,
            (ApiFamily::Anthropic, [K::Usage, K::CacheCreation, K::Ephemeral1hInputTokens]) => &mut self.cache_1h,
            (ApiFamily::Gemini, [K::UsageMetadata, K::PromptTokenCount]) => &mut self.input,
            (ApiFamily::Gemini, [K::UsageMetadata, K::CandidatesTokenCount]) => &mut self.output,
            (ApiFamily::Gemini, [K::UsageMetadata, K::ThoughtsTokenCount]) => &mut self.thoughts,
            (ApiFamily::Gemini, [K::UsageMetadata, K::CachedContentTokenCount]) => &mut self.cached,
            (ApiFamily::Gemini, [K::Predictions, K::Item, K::Embeddings, K::Statistics, K::TokenCount]) => {
                self.predict_tokens = self.predict_tokens.saturating_add(n);
                self.seen = true;
                return;
            }
            _ => return,
        };
        // Streams repeat cumulative counts: the latest value wins.
        *slot = n;
        self.seen = true;
    }

    fn usage(&self, family: ApiFamily) -> Usage {
        let mut writes = (0, 0);
        let (input, output, cached, reasoning) = match family {
            ApiFamily::OpenAi => (self.input, self.output, self.cached, self.reasoning),
            ApiFamily::Anthropic => {
                // The TTL breakdown, when given, accounts for every write.
                let written = self.cache_creation.max(self.cache_5m.saturating_add(self.cache_1h));
                writes = (written, self.cache_1h.min(written));
                (self.input.saturating_add(written).saturating_add(self.cached), self.output, self.cached, 0)
            }
            ApiFamily::Gemini => (
                self.input.saturating_add(self.predict_tokens),
                self.output.saturating_add(self.thoughts),
                self.cached,
                self.thoughts,
            ),
        };
        Usage {
            model: self.model.clone(),
            input_tokens: input,
            output_tokens: output,
            cached_tokens: cached,
            reasoning_tokens: reasoning,
            cache_write_tokens: writes.0,
            cache_write_1h_tokens: writes.1,
            seen: self.seen,
        }
    }
}

// ---------------------------------------------------------------------------
// SSE framing
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line: up to 5 bytes of it held to see `data:`.
    Start,
    /// Inside a `data:` line (after the optional space).
    Data,
    /// Right after `data:`: one leading space is dropped.
    DataSpace,
    /// Another field or a comment: skipped to the end of the line.
    Skip,
}

struct Sse {
    line: Line,
    prefix: Vec<u8>,
    /// The current event's JSON (fresh per event).
    json: JsonScan,
    event_has_data: bool,
    /// The last line ended with CR: a LF right after it (perhaps in the
    /// next chunk) belongs to the same line end.
    after_cr: bool,
}

impl Sse {
    fn new() -> Self {
        Sse { line: Line::Start, prefix: Vec::with_capacity(5), json: JsonScan::new(), event_has_data: false, after_cr: false }
    }

    fn feed(&mut self, data: &[u8], family: ApiFamily, raw: &mut Raw) {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            // Lines end with LF, CR or CRLF (the CRLF may straddle chunks).
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                i += 1;
                continue;
            }
            match self.line {
                Line::Start => {
                    if b == b'\n' || b == b'\r' {
                        if self.prefix.is_empty() {
                            // A blank line ends the event.
                            self.end_event(family, raw);
                        } else {
                            self.prefix.clear();
                        }
                        self.after_cr = b == b'\r';
                        i += 1;
                        continue;
                    }
                    self.prefix.push(b);
                    if self.prefix.as_slice() == b"data:" {
                        self.prefix.clear();
                        if self.event_has_data {
                            // Multi-line data: lines join with a newline.
                            self.json.feed(b"\n", family, raw);
                        }
                        self.event_has_data = true;
                        self.line = Line::DataSpace;
                    } else if !b"data:".starts_with(&self.prefix) {
                        self.prefix.clear();
                        self.line = Line::Skip;
                    }
                    i += 1;
                }
                Line::DataSpace | Line::Data => {
                    if self.line == Line::DataSpace {
                        self.line = Line::Data;
                        if b == b' ' {
                            i += 1;
                            continue;
                        }
                    }
                    let end = memchr::memchr2(b'\n', b'\r', &data[i..]).map_or(data.len(), |p| i + p);
                    self.json.feed(&data[i..end], family, raw);
                    if end < data.len() {
                        self.line = Line::Start;
                        self.after_cr = data[end] == b'\r';
                        i = end + 1;
                        continue;
                    }
                    i = end;
                }
                Line::Skip => {
                    match memchr::memchr2(b'\n', b'\r', &data[i..]) {
                        Some(p) => {
                            self.line = Line::Start;
                            self.after_cr = data[i + p] == b'\r';
                            i += p + 1;
                        }
                        None => i = data.len(),
                    }
                }
            }
        }
    }

    fn end_event(&mut self, family: ApiFamily, raw: &mut Raw) {
        if self.event_has_data {
            self.json.finish(family, raw);
        }
        self.json.reset();
        self.event_has_data = false;
    }

    fn state_bytes(&self) -> usize {
        self.prefix.capacity() + self.json.state_bytes()
    }
}

// ---------------------------------------------------------------------------
// The scanner
// ---------------------------------------------------------------------------

enum Body {
    Json(JsonScan),
    Sse(Sse),
}

pub struct UsageScanner {
    family: ApiFamily,
    /// Boxed: most answers are not encoded, and a decoder's state (about
    /// 250 bytes) would otherwise sit in every open stream's context.
    decoder: Option<Box<Decoder>>,
    body: Body,
    raw: Raw,
    usage: Usage,
    disabled: bool,
    finished: bool,
}

impl UsageScanner {
    /// `content_type` and `content_encoding` are the response's headers. An
    /// encoding the scanner cannot decode disables it (usage unknown).
    pub fn new(family: ApiFamily, content_type: Option<&str>, content_encoding: Option<&str>) -> Self {
        let sse = content_type.is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        let (decoder, disabled) = match content_encoding.map(Decoder::for_encoding) {
            None => (None, false),
            Some(Some(d)) => (d.map(Box::new), false),
            Some(None) => (None, true),
        };
        UsageScanner {
            family,
            decoder,
            body: if sse { Body::Sse(Sse::new()) } else { Body::Json(JsonScan::new()) },
            raw: Raw::default(),
            usage: Usage::default(),
            disabled,
            finished: false,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.disabled || self.finished || chunk.is_empty() {
            return;
        }
        let (family, body, raw) = (self.family, &mut self.body, &mut self.raw);
        let mut sink = |decoded: &[u8]| match body {
            Body::Json(j) => j.feed(decoded, family, raw),
            Body::Sse(s) => s.feed(decoded, family, raw),
        };
        match self.decoder.as_mut() {
            None => sink(chunk),
            Some(d) => {
                if d.write(chunk, &mut sink).is_err() {
                    // Corrupt compressed data: keep what was found, stop.
                    self.decoder = None;
                    self.disabled = true;
                }
            }
        }
        self.usage = self.raw.usage(self.family);
    }

    /// What was seen so far (valid mid-stream).
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Finish reasons seen so far (`stop`, `end_turn`, `STOP`, …), one per
    /// choice or candidate, as the provider names them.
    pub fn finish_reasons(&self) -> &[String] {
        &self.raw.finish_reasons
    }

    /// End of body: flush the decoder and the last event.
    pub fn finish(&mut self) -> &Usage {
        if !self.finished && !self.disabled {
            let (family, body, raw) = (self.family, &mut self.body, &mut self.raw);
            let mut sink = |decoded: &[u8]| match body {
                Body::Json(j) => j.feed(decoded, family, raw),
                Body::Sse(s) => s.feed(decoded, family, raw),
            };
            if let Some(d) = self.decoder.as_mut() {
                d.flush(&mut sink);
            }
            match &mut self.body {
                Body::Json(j) => j.finish(family, &mut self.raw),
                Body::Sse(s) => s.end_event(family, &mut self.raw),
            }
            self.usage = self.raw.usage(self.family);
        }
        self.finished = true;
        &self.usage
    }

    /// Bytes of state held (tests assert it stays bounded).
    pub fn state_bytes(&self) -> usize {
        let body = match &self.body {
            Body::Json(j) => j.state_bytes(),
            Body::Sse(s) => s.state_bytes(),
        };
        body + self.decoder.as_deref().map_or(0, Decoder::state_bytes)
    }
}

#[cfg(test)]
mod tests;
