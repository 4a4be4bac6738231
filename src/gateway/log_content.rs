//! Content for the request log store (`logs.capture_content`, SPEC 12), on
//! `/openai`: the request's messages as text, and the answer's text as the
//! client received it (JSON or SSE), read through a [`ContentSink`] that
//! keeps a bounded copy of what passes. Each is cut at
//! [`crate::logs::MAX_CONTENT`] bytes.

use super::sink::Sink;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use serde_json::Value;

/// Bytes of the answer kept to read its text from.
const MAX_COPY: usize = 256 * 1024;

fn text_of(content: &Value, out: &mut String) {
    match content {
        Value::String(s) => out.push_str(s),
        Value::Array(parts) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str).or_else(|| p.as_str()) {
                    out.push_str(t);
                    out.push(' ');
                }
            }
        }
        _ => {}
    }
}

/// The request as text: `role: content` per message (chat), or the `input`
/// (responses, embeddings) or `prompt` (completions).
pub(super) fn request_text(req: &Value) -> String {
    let mut out = String::new();
    if let Some(msgs) = req.get("messages").and_then(Value::as_array) {
        for m in msgs {
            out.push_str(m.get("role").and_then(Value::as_str).unwrap_or("?"));
            out.push_str(": ");
            if let Some(c) = m.get("content") {
                text_of(c, &mut out);
            }
            out.push('\n');
            if out.len() > crate::logs::MAX_CONTENT {
                break;
            }
        }
    } else if let Some(i) = req.get("input").or_else(|| req.get("prompt")) {
        match i {
            Value::Array(items) => {
                for it in items {
                    match it.get("content") {
                        Some(c) => text_of(c, &mut out),
                        None => text_of(&Value::Array(vec![it.clone()]), &mut out),
                    }
                }
            }
            other => text_of(other, &mut out),
        }
    }
    out
}

fn answer_of(v: &Value, out: &mut String) {
    if let Some(choices) = v.get("choices").and_then(Value::as_array) {
        for c in choices {
            for k in ["message", "delta"] {
                if let Some(t) = c.get(k).and_then(|m| m.get("content")) {
                    text_of(t, out);
                }
            }
            if let Some(t) = c.get("text").and_then(Value::as_str) {
                out.push_str(t);
            }
        }
    }
    // Responses API: the stream's text deltas, or the whole output.
    if v.get("type").and_then(Value::as_str) == Some("response.output_text.delta") {
        if let Some(d) = v.get("delta").and_then(Value::as_str) {
            out.push_str(d);
        }
    }
    if let Some(items) = v.get("output").and_then(Value::as_array) {
        for it in items {
            if let Some(c) = it.get("content") {
                text_of(c, out);
            }
        }
    }
}

/// The answer's text from the body the client received.
pub(super) fn answer_text(body: &[u8]) -> String {
    let mut out = String::new();
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        answer_of(&v, &mut out);
        return out;
    }
    for line in body.split(|&b| b == b'\n') {
        let Some(data) = line.strip_prefix(b"data:") else { continue };
        if let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii()) {
            answer_of(&v, &mut out);
        }
    }
    out
}

/// A [`Sink`] that passes everything on and keeps a bounded copy.
pub(super) struct ContentSink<'a> {
    pub inner: &'a mut dyn Sink,
    pub copy: Vec<u8>,
}

#[async_trait]
impl Sink for ContentSink<'_> {
    async fn head(&mut self, head: ResponseHeader) -> Result<()> {
        self.inner.head(head).await
    }
    async fn body(&mut self, data: Option<Bytes>, end: bool) -> Result<()> {
        if let Some(d) = &data {
            let room = MAX_COPY.saturating_sub(self.copy.len());
            self.copy.extend_from_slice(&d[..d.len().min(room)]);
        }
        self.inner.body(data, end).await
    }
    async fn gone(&mut self) {
        self.inner.gone().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_and_answer_text() {
        let req = json!({"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hello"},{"type":"image_url","image_url":{"url":"x"}}]}]});
        assert_eq!(request_text(&req), "system: be brief\nuser: hello \n");
        assert_eq!(request_text(&json!({"input":"embed me"})), "embed me");
        let json_answer = json!({"choices":[{"message":{"role":"assistant","content":"Hi there"}}]}).to_string();
        assert_eq!(answer_text(json_answer.as_bytes()), "Hi there");
        let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(answer_text(sse.as_bytes()), "Hello");
        let resp = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Yo\"}\n\n";
        assert_eq!(answer_text(resp.as_bytes()), "Yo");
    }
}
