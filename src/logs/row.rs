//! A record as a row: the columns the filters and stats read, taken from
//! the typed record, and RFC 3339 times.

use crate::observe::access_log::Record;

/// The fixed columns of one row, read from the typed record: what every
/// filter and stat of the API needs without reading the row's JSON.
/// Strings are dictionary ids (0 = none) given by the caller's `intern`;
/// the request id and the async job id are 64-bit hashes (looked up, then
/// checked against the JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Cols {
    pub ts_ms: i64,
    pub latency_ms: f32,
    /// Input plus output tokens; `u32::MAX` when the record has none.
    pub tokens: u32,
    /// `NaN` when the record has no cost.
    pub cost_usd: f64,
    pub status: u16,
    pub flags: u8,
    pub provider: u32,
    pub model: u32,
    pub route: u32,
    pub virtual_key: u32,
    pub cache: u32,
    pub request_h: u64,
    /// 0 without a job.
    pub job_h: u64,
}

pub(super) const ERROR: u8 = 1;
pub(super) const FALLBACK: u8 = 2;
pub(super) const CACHE_HIT: u8 = 4;
pub(super) const NO_TOKENS: u32 = u32::MAX;

/// The hash of a request or job id (stable across processes: it is stored).
pub(super) fn hash(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes()) | 1
}

impl Cols {
    pub fn of(rec: &Record, mut intern: impl FnMut(Option<&str>) -> u32) -> Cols {
        let status = rec.status;
        let tokens = match (rec.input_tokens, rec.output_tokens) {
            (None, None) => NO_TOKENS,
            (a, b) => (a.unwrap_or(0) + b.unwrap_or(0)).min(u64::from(NO_TOKENS - 1)) as u32,
        };
        let mut flags = 0;
        if status >= 400 || status == 0 || rec.error.is_some() {
            flags |= ERROR;
        }
        if rec.fallback_index.is_some_and(|i| i > 0) {
            flags |= FALLBACK;
        }
        if rec.cache.is_some_and(|c| c.contains("hit")) {
            flags |= CACHE_HIT;
        }
        Cols {
            ts_ms: parse_rfc3339_ms(&rec.ts).unwrap_or(0),
            latency_ms: rec.duration_ms as f32,
            tokens,
            cost_usd: rec.cost_usd.unwrap_or(f64::NAN),
            status,
            flags,
            provider: intern(rec.provider),
            model: intern(rec.model.as_deref()),
            route: intern(rec.route),
            virtual_key: intern(rec.virtual_key.as_deref()),
            cache: intern(rec.cache),
            request_h: hash(&rec.request_id),
            job_h: rec.async_job_id.as_deref().map_or(0, hash),
        }
    }
}

/// Milliseconds since the epoch of an RFC 3339 time (`Z` or `±hh:mm`,
/// fraction optional).
pub fn parse_rfc3339_ms(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            ms *= 10;
        }
    }
    let offset_s = match &t[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && o.as_bytes()[3] == b':' => {
            let v = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset_s) * 1000 + ms)
}
