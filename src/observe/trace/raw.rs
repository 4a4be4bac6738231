//! `capture_content` on passthrough routes: the request and the answer are
//! relayed as bytes, so a side copy is read here, only when content is
//! captured (nothing is kept or parsed otherwise).
//!
//! * A request body is kept up to [`MAX_BODY`] and parsed at its end; a
//!   larger one is not captured (marked truncated).
//! * An SSE answer is split into events as it passes (the translators'
//!   bounded parser) and each event's JSON feeds the [`Answer`]; a whole
//!   JSON answer is kept up to [`MAX_BODY`] and read at its end (a JSON
//!   array, as Gemini streams without `alt=sse`, is read element by
//!   element). A compressed answer is not captured.

use super::answer::Answer;
use crate::providers::ApiFamily;
use crate::translate::sse::SseParser;
use serde_json::Value;

/// Largest body kept for parsing.
pub const MAX_BODY: usize = 1024 * 1024;

/// A body being read for content.
pub struct RawBody {
    family: ApiFamily,
    buf: Vec<u8>,
    over: bool,
    sse: Option<SseParser>,
}

impl RawBody {
    /// A request body.
    pub fn request(family: ApiFamily) -> RawBody {
        RawBody { family, buf: Vec::new(), over: false, sse: None }
    }

    /// An answer, unless it is compressed.
    pub fn response(family: ApiFamily, content_type: Option<&str>, content_encoding: Option<&str>) -> Option<RawBody> {
        if content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            return None;
        }
        let sse = content_type.is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        Some(RawBody { family, buf: Vec::new(), over: false, sse: sse.then(SseParser::default) })
    }

    pub fn family(&self) -> ApiFamily {
        self.family
    }

    /// Keep a chunk (whole bodies), or feed its events to `answer` (SSE).
    pub fn feed(&mut self, chunk: &[u8], answer: &mut Answer) {
        let family = self.family;
        if let Some(p) = self.sse.as_mut() {
            p.feed(chunk, &mut |_, data| event(family, data, answer));
            return;
        }
        if self.over || self.buf.len() + chunk.len() > MAX_BODY {
            self.over = true;
            self.buf = Vec::new();
            return;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The body ended: the whole request's JSON (`None` when too large or
    /// not JSON). For an answer, the rest goes to `answer`.
    pub fn finish(mut self, answer: &mut Answer) -> Result<Option<Value>, Truncated> {
        let family = self.family;
        if let Some(p) = self.sse.as_mut() {
            p.finish(&mut |_, data| event(family, data, answer));
            return Ok(None);
        }
        if self.over {
            return Err(Truncated);
        }
        Ok(serde_json::from_slice(&self.buf).ok())
    }
}

/// A body too large to capture.
#[derive(Debug)]
pub struct Truncated;

fn event(family: ApiFamily, data: &str, answer: &mut Answer) {
    if let Ok(v) = serde_json::from_str::<Value>(data) {
        answer.event(family, &v);
    }
}

/// A whole answer: one object, or a JSON array of stream chunks.
pub fn whole_answer(family: ApiFamily, v: &Value, answer: &mut Answer) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| answer.event(family, i)),
        _ => answer.object(family, v),
    }
}
