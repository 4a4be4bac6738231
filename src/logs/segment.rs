//! The files of the log store: segments, each a pair written only by the
//! process that created it.
//!
//! * `<key>-<pid>.log`: the rows' JSON, one access record per line, then
//!   the captured content as a second line when there is one;
//! * `<key>-<pid>.idx`: [`MAGIC`], then records: a dictionary entry (`D`:
//!   id, length, the name) or a row (`R`: its [`Cols`], where its JSON
//!   starts in the `.log` and how long it is). A row only names ids the
//!   same file defined before it, so each file reads on its own.
//!
//! `key` is the segment's start time in milliseconds, unique in the
//! directory (a segment is created with `O_EXCL`, the next millisecond on a
//! clash), and a row's stable id is `key << 20 | position` ([`rid`]).
//!
//! The `.log` part of a batch is written before its `.idx` part, so an
//! index record always points at bytes that exist; a torn record at the end
//! of an `.idx` (a crash mid-write) is not read, and a failed write is cut
//! back off both files.

use super::row::Cols;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub(super) const MAGIC: &[u8; 8] = b"TGLOGI01";
const DICT: u8 = b'D';
const ROW: u8 = b'R';
/// A row record: tag, columns (64 bytes), offset, JSON and content lengths.
pub(super) const ROW_LEN: usize = 1 + 64 + 8 + 4 + 4;
/// Rows per segment at most: the position takes 20 bits of the row id.
pub(super) const MAX_SEGMENT_ROWS: u32 = (1 << 20) - 1;

/// A row's stable id: its segment's key and its position in the segment.
pub(super) fn rid(key: u64, pos: u32) -> u64 {
    key << 20 | u64::from(pos)
}

/// Where a row's JSON is in its segment's `.log`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Place {
    pub offset: u64,
    pub len: u32,
    /// The content line after it (0: none).
    pub content_len: u32,
}

pub(super) fn encode_dict(out: &mut Vec<u8>, id: u32, name: &str) {
    let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
    out.push(DICT);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
}

pub(super) fn encode_row(out: &mut Vec<u8>, c: &Cols, p: Place) {
    out.push(ROW);
    out.extend_from_slice(&c.ts_ms.to_le_bytes());
    out.extend_from_slice(&c.latency_ms.to_le_bytes());
    out.extend_from_slice(&c.tokens.to_le_bytes());
    out.extend_from_slice(&c.cost_usd.to_le_bytes());
    out.extend_from_slice(&c.status.to_le_bytes());
    out.push(c.flags);
    out.push(0);
    for id in [c.provider, c.model, c.route, c.virtual_key, c.cache] {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(&c.request_h.to_le_bytes());
    out.extend_from_slice(&c.job_h.to_le_bytes());
    out.extend_from_slice(&p.offset.to_le_bytes());
    out.extend_from_slice(&p.len.to_le_bytes());
    out.extend_from_slice(&p.content_len.to_le_bytes());
}

/// One record of an `.idx`.
#[derive(Debug, PartialEq)]
pub(super) enum Item<'a> {
    Dict(u32, &'a str),
    Row(Cols, Place),
}

/// The whole records in `b` (an `.idx` after its magic) and the bytes they
/// take; a torn record at the end is left for later.
pub(super) fn parse(b: &[u8], mut each: impl FnMut(Item)) -> Result<usize, String> {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            DICT => {
                if i + 7 > b.len() {
                    break;
                }
                let id = u32::from_le_bytes(b[i + 1..i + 5].try_into().expect("4 bytes"));
                let n = usize::from(u16::from_le_bytes([b[i + 5], b[i + 6]]));
                if i + 7 + n > b.len() {
                    break;
                }
                let name = std::str::from_utf8(&b[i + 7..i + 7 + n]).map_err(|_| format!("a name at byte {i} is not UTF-8"))?;
                each(Item::Dict(id, name));
                i += 7 + n;
            }
            ROW => {
                if i + ROW_LEN > b.len() {
                    break;
                }
                let r = &b[i + 1..i + ROW_LEN];
                let u32_at = |o: usize| u32::from_le_bytes(r[o..o + 4].try_into().expect("4 bytes"));
                let u64_at = |o: usize| u64::from_le_bytes(r[o..o + 8].try_into().expect("8 bytes"));
                let c = Cols {
                    ts_ms: u64_at(0) as i64,
                    latency_ms: f32::from_bits(u32_at(8)),
                    tokens: u32_at(12),
                    cost_usd: f64::from_bits(u64_at(16)),
                    status: u16::from_le_bytes([r[24], r[25]]),
                    flags: r[26],
                    provider: u32_at(28),
                    model: u32_at(32),
                    route: u32_at(36),
                    virtual_key: u32_at(40),
                    cache: u32_at(44),
                    request_h: u64_at(48),
                    job_h: u64_at(56),
                };
                let p = Place { offset: u64_at(64), len: u32_at(72), content_len: u32_at(76) };
                each(Item::Row(c, p));
                i += ROW_LEN;
            }
            t => return Err(format!("unknown record {t:#x} at byte {i}")),
        }
    }
    Ok(i)
}

/// A segment's files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Name {
    pub key: u64,
    pub pid: u32,
}

impl Name {
    pub fn of(path: &Path) -> Option<Name> {
        let stem = path.file_name()?.to_str()?.strip_suffix(".idx")?;
        let (k, p) = stem.split_once('-')?;
        Some(Name { key: k.parse().ok()?, pid: p.parse().ok()? })
    }
    pub fn log(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{:013}-{}.log", self.key, self.pid))
    }
    pub fn idx(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{:013}-{}.idx", self.key, self.pid))
    }
}

/// A new segment of this process, open for appending; its `.idx` holds an
/// exclusive `flock` while open, so no other process deletes it.
pub(super) struct Writing {
    pub name: Name,
    pub log: File,
    pub idx: File,
    pub log_len: u64,
    pub idx_len: u64,
}

impl Writing {
    pub fn create(dir: &Path, now_ms: u64, after: u64) -> std::io::Result<Writing> {
        let mut key = now_ms.max(after + 1);
        let pid = std::process::id();
        loop {
            let name = Name { key, pid };
            let opened = OpenOptions::new().create_new(true).append(true).mode(0o600).open(name.idx(dir));
            match opened {
                Ok(mut idx) => {
                    // SAFETY: flock on a descriptor this function owns.
                    unsafe { libc::flock(idx.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
                    let log = OpenOptions::new().create(true).append(true).mode(0o600).open(name.log(dir))?;
                    idx.write_all(MAGIC)?;
                    let log_len = log.metadata()?.len();
                    return Ok(Writing { name, log, idx, log_len, idx_len: MAGIC.len() as u64 });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => key += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Append one batch: the JSON first, then the index records. On a
    /// failure both files are cut back to where they were.
    pub fn append(&mut self, log: &[u8], idx: &[u8]) -> std::io::Result<()> {
        let res = self.log.write_all(log).and_then(|_| self.idx.write_all(idx));
        match res {
            Ok(()) => {
                self.log_len += log.len() as u64;
                self.idx_len += idx.len() as u64;
                Ok(())
            }
            Err(e) => {
                let cut = self.log.set_len(self.log_len).and_then(|_| self.idx.set_len(self.idx_len));
                if let Err(c) = cut {
                    return Err(std::io::Error::new(e.kind(), format!("{e}; and the segment could not be cut back: {c}")));
                }
                Err(e)
            }
        }
    }
}

/// Whether a live process holds the segment's lock (it still writes it).
pub(super) fn locked(idx: &File) -> bool {
    // SAFETY: flock on a descriptor the caller owns; a shared lock taken
    // here is released when `idx` is closed.
    unsafe { libc::flock(idx.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

/// Delete a segment unless a live process still writes it.
pub(super) fn remove(dir: &Path, name: &Name) -> bool {
    let Ok(f) = File::open(name.idx(dir)) else { return false };
    // SAFETY: flock on a descriptor owned here.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return false;
    }
    let _ = std::fs::remove_file(name.log(dir));
    std::fs::remove_file(name.idx(dir)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_waits() {
        let c = Cols { ts_ms: 1_700_000_000_123, latency_ms: 12.5, tokens: 15, cost_usd: 0.25, status: 429, flags: 3, provider: 1, model: 2, route: 3, virtual_key: 4, cache: 0, request_h: 99, job_h: 7 };
        let p = Place { offset: 1234, len: 700, content_len: 40 };
        let mut b = Vec::new();
        encode_dict(&mut b, 4, "team-a");
        encode_row(&mut b, &c, p);
        let whole = b.len();
        encode_row(&mut b, &c, p);
        b.truncate(b.len() - 3);
        let mut got = Vec::new();
        let used = parse(&b, |i| got.push(format!("{i:?}"))).unwrap();
        assert_eq!(used, whole);
        assert_eq!(got, [format!("{:?}", Item::Dict(4, "team-a")), format!("{:?}", Item::Row(c, p))]);
        assert!(parse(&[b'x'], |_| {}).is_err());
    }

    #[test]
    fn names_and_ids() {
        let n = Name::of(Path::new("/x/1700000000123-42.idx")).unwrap();
        assert_eq!(n, Name { key: 1_700_000_000_123, pid: 42 });
        assert_eq!(n.log(Path::new("/x")), Path::new("/x/1700000000123-42.log"));
        assert!(Name::of(Path::new("/x/a.log")).is_none());
        assert!(rid(2, 0) > rid(1, MAX_SEGMENT_ROWS));
    }
}
