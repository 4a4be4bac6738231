//! The query API (`GET /admin/logs`): parsing a query string into a
//! [`Filter`] (a bad value names its parameter), then one scan of the
//! columns in memory for the page of rows newest first (keyset paging on
//! `(time, row id)`) and the stats over the whole filtered set; one row by
//! request id; requests, errors and spend per virtual key over time.

use super::index::{Index, Row};
use super::row::{hash, parse_rfc3339_ms, CACHE_HIT, ERROR, FALLBACK, NO_TOKENS};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, RwLock};

/// A parsed `GET /admin/logs` query.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filter {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub route: Option<String>,
    /// An exact status, or a class `(lo, hi)` such as 400..=499.
    pub status: Option<(i64, i64)>,
    pub virtual_key: Option<String>,
    pub cache: Option<String>,
    pub async_job_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub min_latency_ms: Option<f64>,
    pub min_cost_usd: Option<f64>,
    pub q: Option<String>,
    pub limit: usize,
    /// Rows strictly older than this `(ts_ms, row id)`.
    pub cursor: Option<(i64, i64)>,
    /// `bucket_s` for the series.
    pub bucket_s: Option<i64>,
}

/// A bad parameter: its name and why.
#[derive(Debug, PartialEq)]
pub struct FilterError {
    pub param: &'static str,
    pub message: String,
}

fn bad(param: &'static str, message: impl Into<String>) -> FilterError {
    FilterError { param, message: message.into() }
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_filter(query: Option<&str>) -> Result<Filter, FilterError> {
    let mut f = Filter { limit: 100, ..Default::default() };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), decode(v));
        if v.is_empty() {
            continue; // an empty filter field is no filter
        }
        let num = |p: &'static str| v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).ok_or_else(|| bad(p, format!("`{v}` is not a non-negative number")));
        let time = |p: &'static str| parse_rfc3339_ms(&v).ok_or_else(|| bad(p, format!("`{v}` is not an RFC 3339 time")));
        match k.as_str() {
            "provider" => f.provider = Some(v),
            "model" => f.model = Some(v),
            "route" => f.route = Some(v),
            "virtual_key" => f.virtual_key = Some(v),
            "cache" => f.cache = Some(v),
            "async_job_id" => f.async_job_id = Some(v),
            "q" => f.q = Some(v),
            "status" => {
                let b = v.as_bytes();
                f.status = Some(if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && v[1..].eq_ignore_ascii_case("xx") {
                    let lo = i64::from(b[0] - b'0') * 100;
                    (lo, lo + 99)
                } else {
                    match v.parse::<i64>() {
                        Ok(s) if (100..=599).contains(&s) => (s, s),
                        _ => return Err(bad("status", format!("`{v}` is not a status (200, 429...) or a class (2xx, 4xx, 5xx)"))),
                    }
                });
            }
            "since" => f.since_ms = Some(time("since")?),
            "until" => f.until_ms = Some(time("until")?),
            "min_latency_ms" => f.min_latency_ms = Some(num("min_latency_ms")?),
            "min_cost_usd" => f.min_cost_usd = Some(num("min_cost_usd")?),
            "limit" => {
                f.limit = match v.parse::<usize>() {
                    Ok(n) if (1..=1000).contains(&n) => n,
                    _ => return Err(bad("limit", format!("`{v}` is not a number from 1 to 1000"))),
                }
            }
            "cursor" => {
                let c = v.split_once('.').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
                f.cursor = Some(c.ok_or_else(|| bad("cursor", "is not a cursor from next_cursor"))?);
            }
            "bucket_s" => {
                f.bucket_s = match v.parse::<i64>() {
                    Ok(n) if (10..=86_400 * 7).contains(&n) => Some(n),
                    _ => return Err(bad("bucket_s", format!("`{v}` is not a number of seconds from 10 to 604800"))),
                }
            }
            _ => return Err(bad("query", format!("unknown parameter `{k}`"))),
        }
    }
    if let (Some(a), Some(b)) = (f.since_ms, f.until_ms) {
        if a > b {
            return Err(bad("until", "is before since"));
        }
    }
    Ok(f)
}

/// A filter in the index's terms. `None` from [`Want::of`]: a name no row
/// ever had, so nothing matches.
struct Want {
    provider: Option<u32>,
    model: Option<u32>,
    route: Option<u32>,
    virtual_key: Option<u32>,
    cache: Option<u32>,
    job_h: Option<u64>,
    status: (u16, u16),
    since: i64,
    until: i64,
    min_latency: f64,
    min_cost: f64,
}

impl Want {
    fn of(idx: &Index, f: &Filter, cutoff_ms: i64) -> Option<Want> {
        let id = |v: &Option<String>| -> Option<Option<u32>> {
            match v {
                None => Some(None),
                Some(name) => idx.id_of(name).map(Some),
            }
        };
        let (lo, hi) = f.status.unwrap_or((0, 999));
        Some(Want {
            provider: id(&f.provider)?,
            model: id(&f.model)?,
            route: id(&f.route)?,
            virtual_key: id(&f.virtual_key)?,
            cache: id(&f.cache)?,
            job_h: f.async_job_id.as_deref().map(hash),
            status: (lo.clamp(0, 999) as u16, hi.clamp(0, 999) as u16),
            since: f.since_ms.unwrap_or(i64::MIN).max(cutoff_ms),
            until: f.until_ms.unwrap_or(i64::MAX),
            min_latency: f.min_latency_ms.unwrap_or(f64::NEG_INFINITY),
            min_cost: f.min_cost_usd.unwrap_or(f64::NEG_INFINITY),
        })
    }

    fn matches(&self, r: &Row) -> bool {
        let c = &r.cols;
        c.ts_ms >= self.since
            && c.ts_ms <= self.until
            && (self.status.0..=self.status.1).contains(&c.status)
            && self.virtual_key.is_none_or(|v| v == c.virtual_key)
            && self.provider.is_none_or(|v| v == c.provider)
            && self.model.is_none_or(|v| v == c.model)
            && self.route.is_none_or(|v| v == c.route)
            && self.cache.is_none_or(|v| v == c.cache)
            && self.job_h.is_none_or(|h| h == c.job_h)
            && (self.min_latency == f64::NEG_INFINITY || f64::from(c.latency_ms) >= self.min_latency)
            && (self.min_cost == f64::NEG_INFINITY || c.cost_usd >= self.min_cost)
    }
}

/// Stats over a filtered set.
#[derive(Default)]
struct Stats {
    requests: u64,
    errors: u64,
    tokens: u64,
    cost: f64,
    hits: u64,
    fallbacks: u64,
    latencies: Vec<f32>,
}

impl Stats {
    fn add(&mut self, r: &Row) {
        let c = &r.cols;
        self.requests += 1;
        self.errors += u64::from(c.flags & ERROR != 0);
        self.hits += u64::from(c.flags & CACHE_HIT != 0);
        self.fallbacks += u64::from(c.flags & FALLBACK != 0);
        if c.tokens != NO_TOKENS {
            self.tokens += u64::from(c.tokens);
        }
        if !c.cost_usd.is_nan() {
            self.cost += c.cost_usd;
        }
        self.latencies.push(c.latency_ms);
    }

    fn json(mut self) -> Value {
        // The lower median, as `ORDER BY latency LIMIT 1 OFFSET (n-1)/2`.
        let p50 = if self.latencies.is_empty() {
            None
        } else {
            let mid = (self.latencies.len() - 1) / 2;
            let (_, m, _) = self.latencies.select_nth_unstable_by(mid, f32::total_cmp);
            Some((f64::from(*m) * 1000.0).round() / 1000.0)
        };
        json!({
            "requests": self.requests, "errors": self.errors, "p50_latency_ms": p50, "tokens": self.tokens,
            "cost_usd": (self.cost * 1e9).round() / 1e9, "cache_hits": self.hits, "fallbacks": self.fallbacks,
        })
    }
}

/// The newest `k` rows by (time, row id), kept while scanning.
struct Newest {
    k: usize,
    heap: BinaryHeap<Reverse<(i64, u64, usize)>>,
}

impl Newest {
    fn offer(&mut self, r: &Row, at: usize) {
        let key = (r.cols.ts_ms, r.rid, at);
        if self.heap.len() < self.k {
            self.heap.push(Reverse(key));
        } else if self.heap.peek().is_some_and(|Reverse(min)| key > *min) {
            self.heap.pop();
            self.heap.push(Reverse(key));
        }
    }

    /// Positions, newest first.
    fn take(self) -> Vec<usize> {
        let mut v: Vec<(i64, u64, usize)> = self.heap.into_iter().map(|Reverse(k)| k).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.into_iter().map(|k| k.2).collect()
    }
}

/// What a page needs to read a row from disk.
struct Found {
    row: Row,
    log: Option<Arc<File>>,
}

fn read_at(f: &File, offset: u64, len: u32) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset).map_err(|e| format!("a log segment cannot be read: {e}"))?;
    Ok(buf)
}

/// The row's JSON with its content, if any.
fn row_json(found: &Found) -> Result<Value, String> {
    let Some(log) = &found.log else { return Err("a log segment is gone".into()) };
    let p = found.row.place;
    let mut v: Value = serde_json::from_slice(&read_at(log, p.offset, p.len)?).unwrap_or(Value::Null);
    if p.content_len > 0 {
        let c = read_at(log, p.offset + u64::from(p.len) + 1, p.content_len)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("content".into(), serde_json::from_slice(&c).unwrap_or(Value::Null));
        }
    }
    Ok(v)
}

/// Whether the row's captured content holds `needle` (lower case).
fn content_has(found: &Found, needle: &str) -> bool {
    let (Some(log), p) = (&found.log, found.row.place) else { return false };
    if p.content_len == 0 {
        return false;
    }
    let Ok(c) = read_at(log, p.offset + u64::from(p.len) + 1, p.content_len) else { return false };
    let Ok(c) = serde_json::from_slice::<super::Content>(&c) else { return false };
    c.request.to_lowercase().contains(needle) || c.response.to_lowercase().contains(needle)
}

fn lock(index: &RwLock<Index>) -> std::sync::RwLockReadGuard<'_, Index> {
    index.read().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn page(index: &RwLock<Index>, f: &Filter, cutoff_ms: i64) -> Result<Value, String> {
    let before = |r: &Row| f.cursor.is_none_or(|(ts, id)| (r.cols.ts_ms, r.rid as i64) < (ts, id));
    let mut stats = Stats::default();
    let mut newest = Newest { k: f.limit + 1, heap: BinaryHeap::new() };
    let mut page: Vec<Found> = Vec::new();
    {
        let idx = lock(index);
        let Some(want) = Want::of(&idx, f, cutoff_ms) else {
            return Ok(json!({ "logs": [], "next_cursor": null, "stats": Stats::default().json() }));
        };
        match &f.q {
            None => {
                for (at, r) in idx.rows.iter().enumerate() {
                    if want.matches(r) {
                        stats.add(r);
                        if before(r) {
                            newest.offer(r, at);
                        }
                    }
                }
                for at in std::mem::replace(&mut newest, Newest { k: 0, heap: BinaryHeap::new() }).take() {
                    let row = idx.rows[at];
                    page.push(Found { row, log: idx.log_of(row.seg) });
                }
            }
            Some(_) => {
                // Text search reads content from disk: collect the rows
                // with content first, then read them without the lock.
                for r in idx.rows.iter() {
                    if r.place.content_len > 0 && want.matches(r) {
                        page.push(Found { row: *r, log: idx.log_of(r.seg) });
                    }
                }
            }
        }
    }
    if let Some(q) = &f.q {
        let needle = q.to_lowercase();
        let hits: Vec<Found> = std::mem::take(&mut page).into_iter().filter(|x| content_has(x, &needle)).collect();
        for (at, x) in hits.iter().enumerate() {
            stats.add(&x.row);
            if before(&x.row) {
                newest.offer(&x.row, at);
            }
        }
        let order = newest.take();
        let mut slots: Vec<Option<Found>> = hits.into_iter().map(Some).collect();
        page = order.into_iter().filter_map(|at| slots[at].take()).collect();
    }
    let next = if page.len() > f.limit {
        page.truncate(f.limit);
        page.last().map(|x| format!("{}.{}", x.row.cols.ts_ms, x.row.rid))
    } else {
        None
    };
    let logs = page.iter().map(row_json).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "logs": logs, "next_cursor": next, "stats": stats.json() }))
}

/// One row by its request id (the newest, should an id repeat).
pub(super) fn by_request_id(index: &RwLock<Index>, id: &str, cutoff_ms: i64) -> Result<Option<Value>, String> {
    let h = hash(id);
    let found: Vec<Found> = {
        let idx = lock(index);
        let mut v: Vec<&Row> = idx.rows.iter().filter(|r| r.cols.request_h == h && r.cols.ts_ms >= cutoff_ms).collect();
        v.sort_unstable_by_key(|r| Reverse((r.cols.ts_ms, r.rid)));
        v.into_iter().map(|r| Found { row: *r, log: idx.log_of(r.seg) }).collect()
    };
    for x in &found {
        let v = row_json(x)?;
        if v.get("request_id").and_then(Value::as_str) == Some(id) {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Requests, errors and spend per virtual key per time bucket, over the
/// filtered set: `{"bucket_s", "series": [{"virtual_key", "points": [[t_ms,
/// requests, errors, cost_usd]]}]}`.
pub(super) fn series(index: &RwLock<Index>, f: &Filter, cutoff_ms: i64, now_ms: i64) -> Result<Value, String> {
    let mut f = f.clone();
    let since = *f.since_ms.get_or_insert(now_ms - 3_600_000);
    let until = f.until_ms.unwrap_or(now_ms);
    // About 60 buckets over the range unless asked.
    let bucket_s = f.bucket_s.unwrap_or_else(|| ((until - since) / 60_000).clamp(10, 86_400));
    let bucket_ms = bucket_s * 1000;
    let mut groups: HashMap<(u32, i64), (u64, u64, f64)> = HashMap::new();
    let names: Vec<(u32, String)> = {
        let idx = lock(index);
        let Some(want) = Want::of(&idx, &f, cutoff_ms) else {
            return Ok(json!({ "bucket_s": bucket_s, "since_ms": since, "until_ms": until, "series": [] }));
        };
        for r in idx.rows.iter().filter(|r| want.matches(r)) {
            let g = groups.entry((r.cols.virtual_key, r.cols.ts_ms.div_euclid(bucket_ms) * bucket_ms)).or_default();
            g.0 += 1;
            g.1 += u64::from(r.cols.flags & ERROR != 0);
            if !r.cols.cost_usd.is_nan() {
                g.2 += r.cols.cost_usd;
            }
        }
        let mut keys: Vec<u32> = groups.keys().map(|k| k.0).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter().map(|k| (k, idx.names[k as usize].clone())).collect()
    };
    let mut names = names;
    names.sort_by(|a, b| a.1.cmp(&b.1));
    let mut points: Vec<((u32, i64), (u64, u64, f64))> = groups.into_iter().collect();
    points.sort_unstable_by_key(|p| p.0 .1);
    let series: Vec<Value> = names
        .into_iter()
        .map(|(k, name)| {
            let pts: Vec<Value> = points.iter().filter(|p| p.0 .0 == k).map(|p| json!([p.0 .1, p.1 .0, p.1 .1, (p.1 .2 * 1e9).round() / 1e9])).collect();
            json!({ "virtual_key": if k == 0 { Value::Null } else { Value::String(name) }, "points": pts })
        })
        .collect();
    Ok(json!({ "bucket_s": bucket_s, "since_ms": since, "until_ms": until, "series": series }))
}
