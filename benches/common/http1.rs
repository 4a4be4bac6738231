//! Minimal HTTP/1.1 framing shared by the benchmark mock provider and the
//! load driver (included with `#[path]`, not a bench target of its own).
//!
//! Only what the benchmark needs: a message head (request or status line plus
//! headers), and bodies framed by `content-length`, `chunked` or EOF, read
//! incrementally so that a 1 GB body never sits in memory: `read_body` hands
//! each piece to a callback and keeps at most one socket read buffered.
#![allow(dead_code)]

use bytes::{Buf, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

pub const READ_CHUNK: usize = 64 * 1024;
const MAX_HEAD: usize = 64 * 1024;

pub struct Head {
    /// Request line (`POST /x HTTP/1.1`) or status line (`HTTP/1.1 200 OK`).
    pub first: String,
    /// Header names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// `connection: close`, or HTTP/1.0 without keep-alive.
    pub close: bool,
}

pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
    UntilEof,
}

impl Head {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Request line parts: (method, target).
    pub fn request(&self) -> (&str, &str) {
        let mut it = self.first.split(' ');
        (it.next().unwrap_or(""), it.next().unwrap_or(""))
    }

    /// Status code of a status line (0 when unparsable).
    pub fn status(&self) -> u16 {
        self.first.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    pub fn request_body(&self) -> BodyKind {
        if self.chunked {
            BodyKind::Chunked
        } else {
            match self.content_length {
                Some(0) | None => BodyKind::None,
                Some(n) => BodyKind::Length(n),
            }
        }
    }

    /// Body framing of a response to a request with method `method`.
    pub fn response_body(&self, method: &str) -> BodyKind {
        let status = self.status();
        if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
            BodyKind::None
        } else if self.chunked {
            BodyKind::Chunked
        } else {
            match self.content_length {
                Some(0) => BodyKind::None,
                Some(n) => BodyKind::Length(n),
                None => BodyKind::UntilEof,
            }
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn eof(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg.to_string())
}

/// One read into `buf`; returns the byte count (0 at EOF).
pub async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    r.read_buf(buf).await
}

/// Reads a message head. `Ok(None)`: the peer closed before sending a byte
/// (the normal end of a keep-alive connection).
pub async fn read_head<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> io::Result<Option<Head>> {
    let mut searched = 0usize;
    loop {
        let from = searched.saturating_sub(3);
        if let Some(i) = find(&buf[from..], b"\r\n\r\n") {
            let end = from + i;
            let raw = buf.split_to(end + 4);
            return parse_head(&raw[..end]).map(Some);
        }
        searched = buf.len();
        if buf.len() > MAX_HEAD {
            return Err(invalid("message head too large"));
        }
        if fill(r, buf).await? == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(eof("connection closed inside a message head"));
        }
    }
}

fn parse_head(raw: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(raw).map_err(|_| invalid("non-UTF-8 head"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("").to_string();
    let mut head = Head { first, headers: Vec::new(), content_length: None, chunked: false, close: false };
    if head.first.ends_with("HTTP/1.0") || head.first.starts_with("HTTP/1.0") {
        head.close = true;
    }
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim().to_string();
        match k.as_str() {
            "content-length" => head.content_length = v.parse().ok(),
            "transfer-encoding" => head.chunked = v.to_ascii_lowercase().contains("chunked"),
            "connection" => {
                let l = v.to_ascii_lowercase();
                if l.contains("close") {
                    head.close = true;
                } else if l.contains("keep-alive") {
                    head.close = false;
                }
            }
            _ => {}
        }
        head.headers.push((k, v));
    }
    Ok(head)
}

async fn line_end<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        if let Some(i) = find(&buf[..], b"\r\n") {
            return Ok(i);
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("chunk line too long"));
        }
        if fill(r, buf).await? == 0 {
            return Err(eof("connection closed inside a chunk line"));
        }
    }
}

async fn pass_bytes<R, F>(r: &mut R, buf: &mut BytesMut, mut rem: u64, on_data: &mut F) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    F: FnMut(&[u8]),
{
    while rem > 0 {
        if buf.is_empty() && fill(r, buf).await? == 0 {
            return Err(eof("connection closed inside a body"));
        }
        let take = rem.min(buf.len() as u64) as usize;
        on_data(&buf[..take]);
        buf.advance(take);
        rem -= take as u64;
    }
    Ok(())
}

/// Reads one body, handing each piece to `on_data` as it arrives. Returns the
/// body length (decoded, for chunked).
pub async fn read_body<R, F>(r: &mut R, buf: &mut BytesMut, kind: BodyKind, mut on_data: F) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    F: FnMut(&[u8]),
{
    match kind {
        BodyKind::None => Ok(0),
        BodyKind::Length(n) => {
            pass_bytes(r, buf, n, &mut on_data).await?;
            Ok(n)
        }
        BodyKind::UntilEof => {
            let mut total = 0u64;
            loop {
                if !buf.is_empty() {
                    on_data(&buf[..]);
                    total += buf.len() as u64;
                    buf.clear();
                }
                if fill(r, buf).await? == 0 {
                    return Ok(total);
                }
            }
        }
        BodyKind::Chunked => {
            let mut total = 0u64;
            loop {
                let e = line_end(r, buf).await?;
                let line = std::str::from_utf8(&buf[..e]).map_err(|_| invalid("bad chunk size"))?;
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(hex, 16).map_err(|_| invalid("bad chunk size"))?;
                buf.advance(e + 2);
                if size == 0 {
                    // Trailer section, up to the empty line.
                    loop {
                        let e = line_end(r, buf).await?;
                        buf.advance(e + 2);
                        if e == 0 {
                            return Ok(total);
                        }
                    }
                }
                pass_bytes(r, buf, size, &mut on_data).await?;
                total += size;
                while buf.len() < 2 {
                    if fill(r, buf).await? == 0 {
                        return Err(eof("connection closed after a chunk"));
                    }
                }
                buf.advance(2);
            }
        }
    }
}

/// Reads `VmRSS` and `VmHWM` (bytes) from /proc/<pid>/status.
pub fn proc_mem(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// utime + stime of /proc/<pid>/stat, in clock ticks (all threads).
pub fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ": state is field 3, utime 14 and stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}
