//! The writer thread: each batch appended to this process's segment in two
//! writes, the rows added to the index, retention each minute; a batch the
//! disk refuses is dropped and counted.

use super::index::Index;
use super::row::Cols;
use super::segment::{self, Place, Writing};
use super::{Entry, LogStore, DROPPED, INTERVAL};
use std::collections::HashSet;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A segment is closed after this long, so age retention frees its file.
const SEGMENT_AGE: Duration = Duration::from_secs(3600);

pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// This process's open segment.
struct Current {
    w: Writing,
    seg: u32,
    /// Dictionary ids this segment's file defines.
    defined: HashSet<u32>,
    rows: u32,
    opened: Instant,
}

/// Rows per segment: an eighth of `max_rows`, so deleting whole segments
/// keeps the files within about an eighth of the rows kept.
pub(super) fn segment_rows(max_rows: u64) -> u32 {
    (max_rows / 8).clamp(1024, u64::from(segment::MAX_SEGMENT_ROWS)) as u32
}

pub(super) struct Writer<'a> {
    index: &'a RwLock<Index>,
    cap: u32,
    cur: Option<Current>,
    last_warning: Option<Instant>,
}

impl<'a> Writer<'a> {
    pub fn new(index: &'a RwLock<Index>, max_rows: u64) -> Writer<'a> {
        Writer { index, cap: segment_rows(max_rows), cur: None, last_warning: None }
    }

    /// The segment being written, if any (retention keeps its files).
    pub fn writing(&self) -> Option<u32> {
        self.cur.as_ref().map(|c| c.seg)
    }

    fn warn(&mut self, what: String) {
        if self.last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            self.last_warning = Some(Instant::now());
            log::warn!("{what}");
        }
    }

    /// A segment with room, opening a new one when needed.
    fn room(&mut self) -> Option<u32> {
        if let Some(c) = &self.cur {
            if c.rows < self.cap && c.opened.elapsed() < SEGMENT_AGE {
                return Some(self.cap - c.rows);
            }
        }
        self.cur = None; // closes the files, releases the lock
        let (dir, after) = {
            let idx = self.index.read().unwrap_or_else(|e| e.into_inner());
            (idx.dir.clone(), idx.max_key)
        };
        let opened = Writing::create(&dir, now_ms() as u64, after).and_then(|w| {
            let log = std::fs::File::open(w.name.log(&dir))?;
            Ok((w, log))
        });
        match opened {
            Ok((w, log)) => {
                let seg = self.index.write().unwrap_or_else(|e| e.into_inner()).add(w.name.clone(), log, true);
                self.cur = Some(Current { w, seg, defined: HashSet::new(), rows: 0, opened: Instant::now() });
                Some(self.cap)
            }
            Err(e) => {
                self.warn(format!("log store {}: cannot open a segment: {e}", dir.display()));
                None
            }
        }
    }

    /// Write a batch; rows that cannot be written are dropped and counted.
    pub fn write(&mut self, batch: &[Entry]) {
        let mut rest = batch;
        while !rest.is_empty() {
            let Some(room) = self.room() else {
                DROPPED.inc_by(rest.len() as u64);
                return;
            };
            let (chunk, next) = rest.split_at(rest.len().min(room as usize));
            rest = next;
            self.chunk(chunk);
        }
    }

    fn chunk(&mut self, chunk: &[Entry]) {
        let cur = self.cur.as_mut().expect("a segment");
        let (mut log, mut ib) = (Vec::with_capacity(chunk.iter().map(|e| e.json.len() + 1).sum()), Vec::new());
        let mut rows: Vec<(Cols, Place)> = Vec::with_capacity(chunk.len());
        let mut new_ids: Vec<u32> = Vec::new();
        {
            let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
            for e in chunk {
                let cols = Cols::of(&e.record, |name| {
                    let id = idx.intern(name);
                    if id != 0 && !cur.defined.contains(&id) && !new_ids.contains(&id) {
                        segment::encode_dict(&mut ib, id, &idx.names[id as usize]);
                        new_ids.push(id);
                    }
                    id
                });
                let offset = cur.w.log_len + log.len() as u64;
                log.extend_from_slice(&e.json);
                log.push(b'\n');
                let mut content_len = 0;
                if let Some(c) = &e.record.content {
                    let at = log.len();
                    if serde_json::to_writer(&mut log, c).is_ok() {
                        content_len = (log.len() - at) as u32;
                        log.push(b'\n');
                    } else {
                        log.truncate(at);
                    }
                }
                let place = Place { offset, len: e.json.len() as u32, content_len };
                segment::encode_row(&mut ib, &cols, place);
                rows.push((cols, place));
            }
        }
        match cur.w.append(&log, &ib) {
            Ok(()) => {
                cur.defined.extend(new_ids);
                cur.rows += rows.len() as u32;
                let seg = cur.seg;
                self.index.write().unwrap_or_else(|e| e.into_inner()).push(seg, &rows);
            }
            Err(e) => {
                DROPPED.inc_by(rows.len() as u64);
                let dir = self.index.read().unwrap_or_else(|e| e.into_inner()).dir.clone();
                if e.to_string().contains("cut back") {
                    self.cur = None; // a new segment next time
                }
                self.warn(format!("log store {}: {} rows dropped: {e}", dir.display(), rows.len()));
            }
        }
    }
}

pub(super) fn run(store: &LogStore) {
    let shared = &store.shared;
    let mut writer = Writer::new(&store.index, store.conf.max_rows);
    let mut batch: Vec<Entry> = Vec::new();
    let mut last_retention = Instant::now();
    loop {
        let asked = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.flush_asked == q.flush_done {
                q = shared.wake.wait_timeout(q, INTERVAL).unwrap_or_else(|e| e.into_inner()).0;
            }
            std::mem::swap(&mut batch, &mut q.rows);
            q.bytes = 0;
            q.flush_asked
        };
        if !batch.is_empty() {
            writer.write(&batch);
            batch.clear();
            store.retain(writer.writing(), false);
        }
        if last_retention.elapsed() >= Duration::from_secs(60) {
            last_retention = Instant::now();
            store.retain(writer.writing(), true);
        }
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.flush_done = asked;
        shared.done.notify_all();
    }
}
