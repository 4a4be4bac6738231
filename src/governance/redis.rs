//! A small Redis client: RESP2 over one TCP connection, for the counters
//! several gateway instances share (`shared_counters`). It sends pipelines
//! of commands and reads their replies; every call is bounded by a timeout.
//! A failed or timed-out call drops the connection (its state is unknown)
//! and the next call reconnects.
//!
//! Written here rather than taken from a crate: the gateway needs three
//! commands over one connection with a hard deadline, and the full clients
//! bring their own connection managers and runtimes for far more.

use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::config::RedisConf;

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            Reply::Bulk(Some(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Reply::Int(i) => Some(*i as f64),
            Reply::Bulk(Some(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }
}

/// Encode one command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Largest reply element accepted: the gateway's replies are tiny.
const MAX_BULK: usize = 1 << 20;
const MAX_DEPTH: usize = 8;

/// Parse one reply from the front of `buf`: `Ok(None)` when more bytes are
/// needed, else the reply and the bytes it used.
pub fn parse(buf: &[u8]) -> io::Result<Option<(Reply, usize)>> {
    parse_at(buf, 0, 0)
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("redis protocol: {msg}"))
}

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let i = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..i], at + i + 2))
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> io::Result<Option<(Reply, usize)>> {
    if depth > MAX_DEPTH {
        return Err(bad("nested too deep"));
    }
    let Some(&kind) = buf.get(at) else { return Ok(None) };
    let Some((l, next)) = line(buf, at + 1) else {
        if buf.len() - at > 4096 {
            return Err(bad("line too long"));
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(l).map_err(|_| bad("not UTF-8"))?;
    let num = || text.parse::<i64>().map_err(|_| bad("bad number"));
    Ok(Some(match kind {
        b'+' => (Reply::Simple(text.to_string()), next - at),
        b'-' => (Reply::Error(text.to_string()), next - at),
        b':' => (Reply::Int(num()?), next - at),
        b'$' => {
            let n = num()?;
            if n < 0 {
                (Reply::Bulk(None), next - at)
            } else {
                let n = n as usize;
                if n > MAX_BULK {
                    return Err(bad("bulk too large"));
                }
                if buf.len() < next + n + 2 {
                    return Ok(None);
                }
                if &buf[next + n..next + n + 2] != b"\r\n" {
                    return Err(bad("bulk not terminated"));
                }
                (Reply::Bulk(Some(buf[next..next + n].to_vec())), next + n + 2 - at)
            }
        }
        b'*' => {
            let n = num()?;
            if n < 0 {
                (Reply::Array(None), next - at)
            } else {
                if n as usize > 1024 {
                    return Err(bad("array too large"));
                }
                let mut items = Vec::with_capacity(n as usize);
                let mut pos = next;
                for _ in 0..n {
                    match parse_at(buf, pos, depth + 1)? {
                        Some((r, used)) => {
                            items.push(r);
                            pos += used;
                        }
                        None => return Ok(None),
                    }
                }
                (Reply::Array(Some(items)), pos - at)
            }
        }
        _ => return Err(bad("unknown reply type")),
    }))
}

pub struct RedisClient {
    conf: RedisConf,
    conn: Mutex<Option<Conn>>,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RedisClient {
    pub fn new(conf: RedisConf) -> Self {
        RedisClient { conf, conn: Mutex::new(None) }
    }

    pub fn conf(&self) -> &RedisConf {
        &self.conf
    }

    /// Send `cmds` as one pipeline; the replies in order. Redis error
    /// replies are returned as `Reply::Error`, not as `Err`.
    pub async fn pipeline(&self, cmds: &[Vec<Vec<u8>>]) -> io::Result<Vec<Reply>> {
        match tokio::time::timeout(self.conf.timeout, self.pipeline_inner(cmds)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("redis: no answer within {:?}", self.conf.timeout))),
        }
    }

    async fn pipeline_inner(&self, cmds: &[Vec<Vec<u8>>]) -> io::Result<Vec<Reply>> {
        let mut slot = self.conn.lock().await;
        // Taken out while in use: if this future is dropped (timeout) or
        // fails half way, the connection is closed, never reused.
        let mut conn = match slot.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        let replies = exchange(&mut conn, cmds).await?;
        *slot = Some(conn);
        Ok(replies)
    }

    async fn connect(&self) -> io::Result<Conn> {
        let stream = TcpStream::connect((self.conf.host.as_str(), self.conf.port)).await?;
        stream.set_nodelay(true)?;
        let mut conn = Conn { stream, buf: Vec::with_capacity(512) };
        let mut setup = Vec::new();
        if let Some(p) = &self.conf.password {
            setup.push(vec![b"AUTH".to_vec(), p.as_bytes().to_vec()]);
        }
        if self.conf.db != 0 {
            setup.push(vec![b"SELECT".to_vec(), self.conf.db.to_string().into_bytes()]);
        }
        if !setup.is_empty() {
            for r in exchange(&mut conn, &setup).await? {
                if let Reply::Error(e) = r {
                    // The error text never echoes the password.
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("redis: {e}")));
                }
            }
        }
        Ok(conn)
    }
}

async fn exchange(conn: &mut Conn, cmds: &[Vec<Vec<u8>>]) -> io::Result<Vec<Reply>> {
    let mut out = Vec::new();
    for c in cmds {
        let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
        encode(&args, &mut out);
    }
    conn.stream.write_all(&out).await?;
    let mut replies = Vec::with_capacity(cmds.len());
    while replies.len() < cmds.len() {
        match parse(&conn.buf)? {
            Some((r, used)) => {
                conn.buf.drain(..used);
                replies.push(r);
            }
            None => {
                let mut chunk = [0u8; 4096];
                let n = conn.stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "redis closed the connection"));
                }
                conn.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reply_kind_and_waits_for_more() {
        let wire = b"+OK\r\n-ERR bad\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$1\r\nx\r\n";
        let mut pos = 0;
        let mut got = Vec::new();
        while pos < wire.len() {
            let (r, used) = parse(&wire[pos..]).unwrap().unwrap();
            got.push(r);
            pos += used;
        }
        assert_eq!(
            got,
            vec![
                Reply::Simple("OK".into()),
                Reply::Error("ERR bad".into()),
                Reply::Int(42),
                Reply::Bulk(Some(b"abc".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![Reply::Int(1), Reply::Bulk(Some(b"x".to_vec()))])),
            ]
        );
        // Every strict prefix of a reply asks for more bytes.
        let one = b"*2\r\n:1\r\n$5\r\nhello\r\n";
        for cut in 0..one.len() {
            assert_eq!(parse(&one[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b"$5\r\nhelloXX").is_err());
        assert_eq!(Reply::Bulk(Some(b"1.25".to_vec())).as_f64(), Some(1.25));
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        let mut out = Vec::new();
        encode(&[b"INCRBY", b"k", b"5"], &mut out);
        assert_eq!(out, b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$1\r\n5\r\n");
    }
}
