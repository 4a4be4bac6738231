//! The streaming JSON tokenizer under the usage scanner: tracks the key
//! path (depth-bounded, keys capped) and reports only scalar object members
//! that a field rule may read, so a 5 MB embedding array costs no memory.

use super::keys::Key;
use super::{ApiFamily, Raw, Scalar};

/// Nesting tracked with key names; deeper values are skipped.
const MAX_DEPTH: usize = 32;
/// Longest key read (longer keys match nothing we look for).
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

#[derive(Debug, Clone, Copy)]
struct Frame {
    is_obj: bool,
    /// The current member's name (objects only).
    key: Key,
}

#[derive(Debug)]
pub(super) struct JsonScan {
    /// Open containers; entries past `depth` are spare (no allocation per
    /// object or per SSE event).
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
    pub(super) fn new() -> Self {
        JsonScan { stack: Vec::new(), depth: 0, overflow: 0, lex: Lex::Value, expect_key: false, str_is_key: false, buf: Vec::new(), buf_overflow: false }
    }

    pub(super) fn state_bytes(&self) -> usize {
        self.stack.capacity() * std::mem::size_of::<Frame>() + self.buf.capacity()
    }

    /// Ready for a new document (the next SSE event), keeping allocations.
    pub(super) fn reset(&mut self) {
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
        self.overflow == 0 && self.top().is_some_and(|f| f.is_obj && f.key.is_leaf())
    }

    pub(super) fn feed(&mut self, data: &[u8], family: ApiFamily, raw: &mut Raw) {
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
                                top.key = if self.buf_overflow { Key::Other } else { Key::of(&self.buf) };
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
                                Some(f) => *f = Frame { is_obj, key: Key::Other },
                                None => self.stack.push(Frame { is_obj, key: Key::Other }),
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
    pub(super) fn finish(&mut self, family: ApiFamily, raw: &mut Raw) {
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
        let mut path = [Key::Other; MAX_DEPTH];
        for (i, f) in self.stack[..self.depth].iter().enumerate() {
            path[i] = if f.is_obj { f.key } else { Key::Item };
        }
        raw.apply(family, &path[..self.depth], v);
    }
}
