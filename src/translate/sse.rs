//! Server-sent events both ways: a bounded parser that splits a provider's
//! stream into events as bytes arrive, and the encoder for the events sent
//! to the client.

use super::ClientEvent;

/// Longest provider event kept (a `data:` payload); a longer one is dropped
/// whole rather than grown without bound.
pub const MAX_EVENT: usize = 8 * 1024 * 1024;

/// Splits `text/event-stream` bytes into `(event, data)` pairs. State is the
/// current line and the current event's data, bounded by [`MAX_EVENT`].
#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: Vec<u8>,
    has_data: bool,
    oversized: bool,
}

impl SseParser {
    /// Feed a chunk; `on_event` is called for each complete event in it.
    pub fn feed(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(Option<&str>, &str)) {
        for &b in chunk {
            if b == b'\n' {
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, on_event);
            } else if self.line.len() < MAX_EVENT {
                self.line.push(b);
            } else {
                self.oversized = true;
            }
        }
    }

    /// The stream ended: an event still open (no blank line after it) is
    /// delivered if it has data.
    pub fn finish(&mut self, on_event: &mut dyn FnMut(Option<&str>, &str)) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, on_event);
        }
        self.dispatch(on_event);
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut dyn FnMut(Option<&str>, &str)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.has_data = true;
                if self.data.len() + value.len() > MAX_EVENT {
                    self.oversized = true;
                } else {
                    self.data.extend_from_slice(value);
                }
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut dyn FnMut(Option<&str>, &str)) {
        let event = self.event.take();
        let data = std::mem::take(&mut self.data);
        let (has_data, oversized) = (self.has_data, self.oversized);
        self.has_data = false;
        self.oversized = false;
        if has_data && !oversized {
            on_event(event.as_deref(), &String::from_utf8_lossy(&data));
        }
    }
}

/// Append the client's SSE encoding of `events` to `out`.
pub fn encode(events: &[ClientEvent], out: &mut Vec<u8>) {
    for e in events {
        match e {
            ClientEvent::Data(v) => {
                out.extend_from_slice(b"data: ");
                write_json(v, out);
                out.extend_from_slice(b"\n\n");
            }
            ClientEvent::Named(name, v) => {
                out.extend_from_slice(b"event: ");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\ndata: ");
                write_json(v, out);
                out.extend_from_slice(b"\n\n");
            }
            ClientEvent::Done => out.extend_from_slice(b"data: [DONE]\n\n"),
        }
    }
}

/// `v` as JSON straight into `out` (`Value::to_string` goes through
/// `fmt::Display`: 1.6 times the instructions, and a copy).
fn write_json(v: &serde_json::Value, out: &mut Vec<u8>) {
    // Writing a Value to a Vec cannot fail (no I/O, string keys only).
    let _ = serde_json::to_writer(&mut *out, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(chunks: &[&[u8]]) -> Vec<(Option<String>, String)> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut |e, d| out.push((e.map(str::to_string), d.to_string())));
        }
        p.finish(&mut |e, d| out.push((e.map(str::to_string), d.to_string())));
        out
    }

    #[test]
    fn frames_events_split_anywhere() {
        let s = b"event: message_start\ndata: {\"a\":1}\n\n: ping\n\ndata: x\r\ndata: y\r\n\r\ndata: tail";
        let want = vec![(Some("message_start".to_string()), "{\"a\":1}".to_string()), (None, "x\ny".to_string()), (None, "tail".to_string())];
        assert_eq!(events(&[s]), want);
        for cut in 0..s.len() {
            assert_eq!(events(&[&s[..cut], &s[cut..]]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(events(&bytes), want);
    }

    #[test]
    fn oversized_events_are_dropped_and_the_next_one_kept() {
        let mut s = b"data: ".to_vec();
        s.extend(std::iter::repeat(b'x').take(MAX_EVENT + 10));
        s.extend_from_slice(b"\n\ndata: ok\n\n");
        assert_eq!(events(&[&s]), vec![(None, "ok".to_string())]);
    }

    #[test]
    fn encodes_data_named_and_done() {
        let mut out = Vec::new();
        encode(&[ClientEvent::Data(json!({"a":1})), ClientEvent::Named("response.created".into(), json!({"b":2})), ClientEvent::Done], &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "data: {\"a\":1}\n\nevent: response.created\ndata: {\"b\":2}\n\ndata: [DONE]\n\n");
    }
}
