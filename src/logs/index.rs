//! The rows in memory: every kept row's columns in arrival order (oldest
//! first), the names their ids stand for, and the segments they live in.
//! About 100 bytes per row (1,000,000 rows: about 100 MB); the JSON stays
//! on disk and is read for the rows a page shows.

use super::row::Cols;
use super::segment::{self, Item, Name, Place};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One kept row.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row {
    pub cols: Cols,
    pub place: Place,
    pub seg: u32,
    /// Stable across processes and restarts: `segment key << 20 | position`.
    pub rid: u64,
}

/// A segment known to this process.
pub(super) struct Seg {
    pub name: Name,
    pub log: Arc<File>,
    /// Bytes of its `.idx` read so far (another process's segment may grow).
    parsed: u64,
    /// The file's dictionary ids → this process's.
    local: HashMap<u32, u32>,
    next_pos: u32,
    /// Rows of it still kept.
    pub live: u64,
    /// Written by this process (its rows arrive through [`Index::push`]).
    own: bool,
    /// Another process's segment that no process writes any more (read
    /// whole, never looked at again).
    closed: bool,
}

pub(super) struct Index {
    pub dir: PathBuf,
    pub rows: VecDeque<Row>,
    /// Id → name; id 0 is "none".
    pub names: Vec<String>,
    ids: HashMap<String, u32>,
    pub segs: HashMap<u32, Seg>,
    by_key: HashMap<u64, u32>,
    next_seg: u32,
    /// The newest segment key seen (a new segment's key is above it).
    pub max_key: u64,
}

impl Index {
    /// Every segment in `dir`, oldest first.
    pub fn load(dir: &Path) -> Result<Index, String> {
        let mut idx = Index {
            dir: dir.to_path_buf(),
            rows: VecDeque::new(),
            names: vec![String::new()],
            ids: HashMap::new(),
            segs: HashMap::new(),
            by_key: HashMap::new(),
            next_seg: 0,
            max_key: 0,
        };
        idx.refresh()?;
        Ok(idx)
    }

    pub fn intern(&mut self, name: Option<&str>) -> u32 {
        let Some(name) = name else { return 0 };
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    /// The id of a name, if any row ever had it.
    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Read segments other processes wrote (and grew) since the last look:
    /// at open, and while a graceful upgrade hands over.
    pub fn refresh(&mut self) -> Result<(), String> {
        let list = match std::fs::read_dir(&self.dir) {
            Ok(l) => l,
            Err(e) => return Err(format!("{}: {e}", self.dir.display())),
        };
        let mut names: Vec<Name> = list.filter_map(|e| e.ok()).filter_map(|e| Name::of(&e.path())).collect();
        names.sort();
        for name in names {
            let seg = match self.by_key.get(&name.key) {
                Some(&s) if self.segs[&s].own || self.segs[&s].closed => continue,
                Some(&s) => s,
                None => {
                    let Ok(log) = File::open(name.log(&self.dir)) else { continue };
                    self.add(name, log, false)
                }
            };
            if let Err(e) = self.read(seg) {
                log::warn!("log store {}: {e}", self.dir.display());
            }
        }
        Ok(())
    }

    /// Register a segment; its number.
    pub fn add(&mut self, name: Name, log: File, own: bool) -> u32 {
        let n = self.next_seg;
        self.next_seg += 1;
        self.max_key = self.max_key.max(name.key);
        self.by_key.insert(name.key, n);
        let parsed = if own { segment::MAGIC.len() as u64 } else { 0 };
        self.segs.insert(n, Seg { name, log: Arc::new(log), parsed, local: HashMap::new(), next_pos: 0, live: 0, own, closed: false });
        n
    }

    /// The new records of another process's segment.
    fn read(&mut self, n: u32) -> Result<(), String> {
        let path = self.segs[&n].name.idx(&self.dir);
        let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // No writer holds its lock: what is there now is all there will be.
        let closed = !segment::locked(&file);
        let len = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?.len();
        self.segs.get_mut(&n).expect("segment").closed = closed;
        let from = self.segs[&n].parsed;
        if len <= from {
            return Ok(());
        }
        let mut buf = vec![0u8; (len - from) as usize];
        file.read_exact_at(&mut buf, from).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut body = &buf[..];
        if from == 0 {
            if buf.len() < segment::MAGIC.len() {
                return Ok(());
            }
            if &buf[..8] != segment::MAGIC {
                return Err(format!("{}: not a log store index", path.display()));
            }
            body = &buf[8..];
        }
        let key = self.segs[&n].name.key;
        // Rows whose JSON is not all in the `.log` (a power loss can keep
        // the index's last write and lose the log's) are not read.
        let log_len = self.segs[&n].log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut items: Vec<(u32, String)> = Vec::new();
        let mut rows: Vec<(Cols, Place)> = Vec::new();
        let used = segment::parse(body, |i| match i {
            Item::Dict(id, name) => items.push((id, name.to_string())),
            Item::Row(c, p) => rows.push((c, p)),
        });
        let used = match used {
            Ok(u) => u,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        // Dictionary entries precede the rows that use them in the file,
        // so mapping them all first is the same.
        for (id, name) in items {
            let g = self.intern(Some(&name));
            self.segs.get_mut(&n).expect("segment").local.insert(id, g);
        }
        let seg = self.segs.get_mut(&n).expect("segment");
        seg.parsed = from + (body.as_ptr() as usize - buf.as_ptr() as usize) as u64 + used as u64;
        let map = |id: u32| if id == 0 { 0 } else { seg.local.get(&id).copied().unwrap_or(0) };
        for (mut c, p) in rows {
            seg.next_pos += 1;
            if p.offset + u64::from(p.len) + u64::from(p.content_len) > log_len {
                continue;
            }
            c.provider = map(c.provider);
            c.model = map(c.model);
            c.route = map(c.route);
            c.virtual_key = map(c.virtual_key);
            c.cache = map(c.cache);
            self.rows.push_back(Row { cols: c, place: p, seg: n, rid: segment::rid(key, seg.next_pos - 1) });
            seg.live += 1;
        }
        Ok(())
    }

    /// Rows this process wrote to its own segment `n`.
    pub fn push(&mut self, n: u32, rows: &[(Cols, Place)]) {
        let Some(seg) = self.segs.get_mut(&n) else { return };
        for &(c, p) in rows {
            self.rows.push_back(Row { cols: c, place: p, seg: n, rid: segment::rid(seg.name.key, seg.next_pos) });
            seg.next_pos += 1;
            seg.live += 1;
        }
    }

    /// Drop the oldest rows past `max_rows` and, from the oldest end, those
    /// older than `cutoff_ms` (queries never show any row older than it);
    /// delete the files of segments left empty, unless a live process still
    /// writes them. Returns the rows dropped.
    pub fn retain(&mut self, cutoff_ms: i64, max_rows: u64, writing: Option<u32>) -> usize {
        let mut n = 0;
        while let Some(front) = self.rows.front() {
            if (self.rows.len() as u64) <= max_rows && front.cols.ts_ms >= cutoff_ms {
                break;
            }
            let seg = front.seg;
            self.rows.pop_front();
            n += 1;
            if let Some(s) = self.segs.get_mut(&seg) {
                s.live = s.live.saturating_sub(1);
            }
        }
        let empty: Vec<u32> = self.segs.iter().filter(|(k, s)| s.live == 0 && Some(**k) != writing && (s.next_pos > 0 || !s.own)).map(|(k, _)| *k).collect();
        for k in empty {
            let name = self.segs[&k].name.clone();
            if segment::remove(&self.dir, &name) {
                self.segs.remove(&k);
                self.by_key.remove(&name.key);
            }
        }
        n
    }

    pub fn log_of(&self, seg: u32) -> Option<Arc<File>> {
        self.segs.get(&seg).map(|s| s.log.clone())
    }
}
