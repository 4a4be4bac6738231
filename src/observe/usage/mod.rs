//! Usage scanner: fed a side copy of a response body chunk by chunk, it
//! finds the model and the token counts without holding the body.
//!
//! Layers, each with bounded state:
//! * [`Decoder`]: gzip / deflate / br / zstd, decoded in small steps;
//! * SSE framing: `data:` lines are streamed into a fresh JSON scanner per
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
//! the part spent on reasoning where the provider says so.

use decode::Decoder;

mod decode;

pub use crate::providers::ApiFamily;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub model: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
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
    fn apply(&mut self, family: ApiFamily, path: &[&str], v: Scalar<'_>) {
        // Envelopes: Responses API SSE (`response`), Anthropic message_start
        // (`message`), Gemini JSON-array streams (`[]`).
        let path = match path {
            ["response", rest @ ..] if family == ApiFamily::OpenAi => rest,
            ["message", rest @ ..] if family == ApiFamily::Anthropic => rest,
            ["[]", rest @ ..] => rest,
            p => p,
        };
        let n = match v {
            Scalar::Str(s) => {
                let is_model = match family {
                    ApiFamily::Gemini => path == ["modelVersion"],
                    _ => path == ["model"],
                };
                if is_model && !s.is_empty() {
                    self.model = Some(String::from_utf8_lossy(s).into_owned());
                }
                let is_finish = match family {
                    ApiFamily::OpenAi => path == ["choices", "[]", "finish_reason"],
                    ApiFamily::Anthropic => path == ["stop_reason"] || path == ["delta", "stop_reason"],
                    ApiFamily::Gemini => path == ["candidates", "[]", "finishReason"],
                };
                if is_finish && !s.is_empty() && s.len() <= 64 && self.finish_reasons.len() < MAX_FINISH_REASONS {
                    self.finish_reasons.push(String::from_utf8_lossy(s).into_owned());
                }
                return;
            }
            Scalar::Num(n) => n,
        };
        let slot = match (family, path) {
            (ApiFamily::OpenAi, ["usage", "prompt_tokens" | "input_tokens"]) => &mut self.input,
            (ApiFamily::OpenAi, ["usage", "completion_tokens" | "output_tokens"]) => &mut self.output,
            (ApiFamily::OpenAi, ["usage", "prompt_tokens_details" | "input_tokens_details", "cached_tokens"]) => &mut self.cached,
            (ApiFamily::OpenAi, ["usage", "completion_tokens_details" | "output_tokens_details", "reasoning_tokens"]) => {
                &mut self.reasoning
            }
            (ApiFamily::Anthropic, ["usage", "input_tokens"]) => &mut self.input,
            (ApiFamily::Anthropic, ["usage", "output_tokens"]) => &mut self.output,
            (ApiFamily::Anthropic, ["usage", "cache_read_input_tokens"]) => &mut self.cached,
            (ApiFamily::Anthropic, ["usage", "cache_creation_input_tokens"]) => &mut self.cache_creation,
            (ApiFamily::Gemini, ["usageMetadata", "promptTokenCount"]) => &mut self.input,
            (ApiFamily::Gemini, ["usageMetadata", "candidatesTokenCount"]) => &mut self.output,
            (ApiFamily::Gemini, ["usageMetadata", "thoughtsTokenCount"]) => &mut self.thoughts,
            (ApiFamily::Gemini, ["usageMetadata", "cachedContentTokenCount"]) => &mut self.cached,
            (ApiFamily::Gemini, ["predictions", "[]", "embeddings", "statistics", "token_count"]) => {
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
        let (input, output, cached, reasoning) = match family {
            ApiFamily::OpenAi => (self.input, self.output, self.cached, self.reasoning),
            ApiFamily::Anthropic => (
                self.input.saturating_add(self.cache_creation).saturating_add(self.cached),
                self.output,
                self.cached,
                0,
            ),
            ApiFamily::Gemini => (
                self.input.saturating_add(self.predict_tokens),
                self.output.saturating_add(self.thoughts),
                self.cached,
                self.thoughts,
            ),
        };
        Usage { model: self.model.clone(), input_tokens: input, output_tokens: output, cached_tokens: cached, reasoning_tokens: reasoning, seen: self.seen }
    }
}

// ---------------------------------------------------------------------------
// Streaming JSON scanner
// ---------------------------------------------------------------------------

/// Nesting tracked with key names; deeper values are skipped.
const MAX_DEPTH: usize = 32;
/// Longest key kept (longer keys match nothing we look for).
const MAX_KEY: usize = 64;
/// Longest string value kept (model names); longer ones are skipped.
const MAX_STR: usize = 256;
const MAX_NUM: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Value,
    Str { escape: bool },
    Num,
    Lit,
    Failed,
}

#[derive(Debug)]
struct Frame {
    is_obj: bool,
    key: Vec<u8>,
}

/// Member names whose scalar values `Raw::apply` may take: the last key
/// of every path it matches. A scalar under any other key is skipped before
/// its path is built or its text copied (most of a body: ids, roles,
/// content). Keep in step with `Raw::apply`.
fn wanted_leaf(key: &[u8]) -> bool {
    matches!(
        key,
        b"model"
            | b"modelVersion"
            | b"finish_reason"
            | b"stop_reason"
            | b"finishReason"
            | b"prompt_tokens"
            | b"input_tokens"
            | b"completion_tokens"
            | b"output_tokens"
            | b"cached_tokens"
            | b"reasoning_tokens"
            | b"cache_read_input_tokens"
            | b"cache_creation_input_tokens"
            | b"promptTokenCount"
            | b"candidatesTokenCount"
            | b"thoughtsTokenCount"
            | b"cachedContentTokenCount"
            | b"token_count"
    )
}

#[derive(Debug)]
struct JsonScan {
    /// Open containers; entries past `depth` are spare frames kept for
    /// their key buffers (no allocation per object or per SSE event).
    stack: Vec<Frame>,
    depth: usize,
    /// Frames deeper than MAX_DEPTH, counted only.
    overflow: usize,
    lex: Lex,
    expect_key: bool,
    str_is_key: bool,
    buf: Vec<u8>,
    buf_overflow: bool,
}

impl JsonScan {
    fn new() -> Self {
        JsonScan { stack: Vec::new(), depth: 0, overflow: 0, lex: Lex::Value, expect_key: false, str_is_key: false, buf: Vec::new(), buf_overflow: false }
    }

    fn state_bytes(&self) -> usize {
        self.stack.iter().map(|f| f.key.capacity() + std::mem::size_of::<Frame>()).sum::<usize>() + self.buf.capacity()
    }

    /// Ready for a new document (the next SSE event), keeping allocations.
    fn reset(&mut self) {
        self.depth = 0;
        self.overflow = 0;
        self.lex = Lex::Value;
        self.expect_key = false;
        self.str_is_key = false;
        self.buf.clear();
        self.buf_overflow = false;
    }

    fn top(&self) -> Option<&Frame> {
        self.depth.checked_sub(1).map(|i| &self.stack[i])
    }

    /// Is the value now starting or ending an object member that
    /// `Raw::apply` could want?
    fn wanted_value(&self) -> bool {
        self.overflow == 0 && self.top().is_some_and(|f| f.is_obj && wanted_leaf(&f.key))
    }

    fn feed(&mut self, data: &[u8], family: ApiFamily, raw: &mut Raw) {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.lex {
                Lex::Failed => return,
                Lex::Str { escape: true } => {
                    self.lex = Lex::Str { escape: false };
                    self.push_buf(b, MAX_STR);
                }
                Lex::Str { escape: false } => match b {
                    b'\\' => self.lex = Lex::Str { escape: true },
                    b'"' => {
                        self.lex = Lex::Value;
                        if self.str_is_key {
                            if let Some(top) = self.depth.checked_sub(1).filter(|_| self.overflow == 0).map(|i| &mut self.stack[i]) {
                                top.key.clear();
                                if !self.buf_overflow {
                                    top.key.extend_from_slice(&self.buf);
                                }
                            }
                        } else if !self.buf_overflow {
                            let s = std::mem::take(&mut self.buf);
                            self.scalar(Scalar::Str(&s), family, raw);
                            self.buf = s;
                        }
                        self.buf.clear();
                        self.buf_overflow = false;
                    }
                    _ => {
                        // Fast path: copy (or skip) the run up to the next quote/backslash.
                        let run = memchr::memchr2(b'"', b'\\', &data[i..]).unwrap_or(data.len() - i);
                        let limit = if self.str_is_key { MAX_KEY } else { MAX_STR };
                        if !self.buf_overflow {
                            if self.buf.len() + run <= limit {
                                self.buf.extend_from_slice(&data[i..i + run]);
                            } else {
                                self.buf_overflow = true;
                                self.buf.clear();
                            }
                        }
                        i += run;
                        continue;
                    }
                },
                Lex::Num => {
                    if b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E') {
                        self.push_buf(b, MAX_NUM);
                    } else {
                        self.finish_number(family, raw);
                        continue; // reprocess b
                    }
                }
                Lex::Lit => {
                    if b.is_ascii_alphabetic() {
                        // true / false / null: nothing to record
                    } else {
                        self.lex = Lex::Value;
                        continue;
                    }
                }
                Lex::Value => match b {
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    b'{' | b'[' => {
                        if self.depth < MAX_DEPTH && self.overflow == 0 {
                            let is_obj = b == b'{';
                            match self.stack.get_mut(self.depth) {
                                Some(f) => {
                                    f.is_obj = is_obj;
                                    f.key.clear();
                                }
                                None => self.stack.push(Frame { is_obj, key: Vec::new() }),
                            }
                            self.depth += 1;
                        } else {
                            self.overflow += 1;
                        }
                        self.expect_key = b == b'{';
                    }
                    b'}' | b']' => {
                        if self.overflow > 0 {
                            self.overflow -= 1;
                        } else if self.depth == 0 {
                            self.lex = Lex::Failed;
                            return;
                        } else {
                            self.depth -= 1;
                        }
                        self.expect_key = false;
                    }
                    b',' => self.expect_key = self.top_is_obj(),
                    b':' => self.expect_key = false,
                    b'"' => {
                        self.str_is_key = self.expect_key && self.top_is_obj();
                        self.lex = Lex::Str { escape: false };
                        self.buf.clear();
                        // A value nobody wants is skipped, not copied.
                        self.buf_overflow = !self.str_is_key && !self.wanted_value();
                    }
                    b'-' | b'0'..=b'9' => {
                        self.lex = Lex::Num;
                        self.buf.clear();
                        self.buf_overflow = !self.wanted_value();
                        self.push_buf(b, MAX_NUM);
                    }
                    b'a'..=b'z' => self.lex = Lex::Lit,
                    _ => {
                        self.lex = Lex::Failed;
                        return;
                    }
                },
            }
            i += 1;
        }
    }

    /// End of input: a number at the very end is complete.
    fn finish(&mut self, family: ApiFamily, raw: &mut Raw) {
        if self.lex == Lex::Num {
            self.finish_number(family, raw);
        }
    }

    fn top_is_obj(&self) -> bool {
        self.overflow == 0 && self.top().is_some_and(|f| f.is_obj)
    }

    fn push_buf(&mut self, b: u8, limit: usize) {
        if self.buf_overflow {
            return;
        }
        if self.buf.len() < limit {
            self.buf.push(b);
        } else {
            self.buf_overflow = true;
            self.buf.clear();
        }
    }

    fn finish_number(&mut self, family: ApiFamily, raw: &mut Raw) {
        self.lex = Lex::Value;
        if self.buf_overflow {
            return;
        }
        let n = std::str::from_utf8(&self.buf).ok().and_then(|s| {
            s.parse::<u64>().ok().or_else(|| s.parse::<f64>().ok().filter(|f| *f >= 0.0 && f.is_finite()).map(|f| f as u64))
        });
        self.buf.clear();
        if let Some(n) = n {
            self.scalar(Scalar::Num(n), family, raw);
        }
    }

    /// Report a scalar that is an object member (array items are skipped:
    /// nothing we look for is one, and embeddings are long arrays).
    fn scalar(&self, v: Scalar<'_>, family: ApiFamily, raw: &mut Raw) {
        if !self.top_is_obj() {
            return;
        }
        let mut path: [&str; MAX_DEPTH] = [""; MAX_DEPTH];
        for (i, f) in self.stack[..self.depth].iter().enumerate() {
            path[i] = if f.is_obj { std::str::from_utf8(&f.key).unwrap_or("") } else { "[]" };
        }
        raw.apply(family, &path[..self.depth], v);
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
    decoder: Option<Decoder>,
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
            Some(Some(d)) => (d, false),
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
        body + self.decoder.as_ref().map_or(0, Decoder::state_bytes)
    }
}

#[cfg(test)]
mod tests;
