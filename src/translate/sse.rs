//! Server-sent events both ways: a bounded parser that splits a provider's
//! stream into events as bytes arrive, and the encoder for the events sent
//! to the client.

use super::ClientEvent;

/// Longest provider event kept (a `data:` payload); a longer one is dropped
/// whole rather than grown without bound.
pub const MAX_EVENT: usize = 8 * 1024 * 1024;

/// Splits `text/event-stream` bytes into `(event, data)` pairs. State is the
/// current line and the current event's data, bounded by [`MAX_EVENT`].
///
/// Lines are found with `memchr` and read in place when a chunk holds them
/// whole (the usual case); only a line split across chunks is carried. The
/// buffers are kept from event to event (issue 28: a byte-by-byte copy and
/// three allocations per event were some 5k instructions of each translated
/// event).
#[derive(Default)]
pub struct SseParser {
    /// The start of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The current event's `event:` name, when it has one.
    event: String,
    has_event: bool,
    data: Vec<u8>,
    has_data: bool,
    oversized: bool,
}

/// Buffers above this are let go after the event that grew them, rather
/// than held for the rest of the stream.
const KEEP_CAPACITY: usize = 64 * 1024;

impl SseParser {
    /// Feed a chunk; `on_event` is called for each complete event in it.
    pub fn feed(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(Option<&str>, &str)) {
        let mut rest = chunk;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let piece = &rest[..i];
            rest = &rest[i + 1..];
            if self.line.is_empty() {
                self.line_done(strip_cr(piece), on_event);
            } else {
                self.carry(piece);
                let line = std::mem::take(&mut self.line);
                self.line_done(strip_cr(&line), on_event);
                self.line = line;
                self.line.clear();
                if self.line.capacity() > KEEP_CAPACITY {
                    self.line = Vec::new();
                }
            }
        }
        self.carry(rest);
    }

    /// Keep the start of an unfinished line, up to [`MAX_EVENT`]; past it
    /// the event is dropped.
    fn carry(&mut self, piece: &[u8]) {
        let room = MAX_EVENT.saturating_sub(self.line.len());
        if piece.len() > room {
            self.line.extend_from_slice(&piece[..room]);
            self.oversized = true;
        } else {
            self.line.extend_from_slice(piece);
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
        let (field, value) = match memchr::memchr(b':', line) {
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
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
                self.has_event = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut dyn FnMut(Option<&str>, &str)) {
        if self.has_data && !self.oversized {
            let event = self.has_event.then_some(self.event.as_str());
            on_event(event, &String::from_utf8_lossy(&self.data));
        }
        self.has_event = false;
        self.has_data = false;
        self.oversized = false;
        self.data.clear();
        if self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
        }
    }
}

/// A line without the CR of its CRLF end.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
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
            ClientEvent::Json(s) => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(s.as_bytes());
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

    /// The parser before issue 28 (a byte at a time, fresh buffers per
    /// line and event): what the one above must still give.
    fn reference(chunks: &[&[u8]]) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        let (mut line, mut event, mut data, mut has_data): (Vec<u8>, Option<String>, Vec<u8>, bool) = (Vec::new(), None, Vec::new(), false);
        let done = |line: &[u8], event: &mut Option<String>, data: &mut Vec<u8>, has_data: &mut bool, out: &mut Vec<(Option<String>, String)>| {
            if line.is_empty() {
                if *has_data {
                    out.push((event.take(), String::from_utf8_lossy(data).into_owned()));
                }
                *event = None;
                data.clear();
                *has_data = false;
                return;
            }
            if line[0] == b':' {
                return;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => (&line[..i], line[i + 1..].strip_prefix(b" ").unwrap_or(&line[i + 1..])),
                None => (line, &b""[..]),
            };
            match field {
                b"data" => {
                    if *has_data {
                        data.push(b'\n');
                    }
                    *has_data = true;
                    data.extend_from_slice(value);
                }
                b"event" => *event = Some(String::from_utf8_lossy(value).into_owned()),
                _ => {}
            }
        };
        for c in chunks {
            for &b in *c {
                if b == b'\n' {
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    done(&line, &mut event, &mut data, &mut has_data, &mut out);
                    line.clear();
                } else {
                    line.push(b);
                }
            }
        }
        if !line.is_empty() {
            done(&line, &mut event, &mut data, &mut has_data, &mut out);
        }
        done(b"", &mut event, &mut data, &mut has_data, &mut out);
        out
    }

    proptest::proptest! {
        /// Any stream of SSE-ish pieces (fields, comments, CR, LF, CRLF,
        /// non-UTF-8), cut into chunks anywhere: the same events.
        #[test]
        fn parses_as_the_reference_however_cut(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                &b"data: "[..], b"data:", b"event: ", b"event:x", b": ping", b"id: 7", b"{\"a\":1}", b"x", b" ", b":", b"\n", b"\r\n", b"\r", b"\n\n", b"\xff", b"\xc3\xa9",
            ]), 0..60),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let bytes: Vec<u8> = pieces.concat();
            let mut at: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            at.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut prev = 0;
            for c in at.into_iter().chain([bytes.len()]) {
                chunks.push(&bytes[prev..c]);
                prev = c;
            }
            proptest::prop_assert_eq!(events(&chunks), reference(&chunks));
        }
    }

    #[test]
    fn encodes_data_named_and_done() {
        let mut out = Vec::new();
        encode(&[ClientEvent::Data(json!({"a":1})), ClientEvent::Named("response.created".into(), json!({"b":2})), ClientEvent::Json("{\"c\":3}".into()), ClientEvent::Done], &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "data: {\"a\":1}\n\nevent: response.created\ndata: {\"b\":2}\n\ndata: {\"c\":3}\n\ndata: [DONE]\n\n");
    }
}
