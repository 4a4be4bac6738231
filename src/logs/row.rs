//! A record as a row: the filter columns read from the record's JSON (so
//! fields other work adds, such as `cache`, are picked up when present), and
//! bounded content.

use serde_json::Value;

/// Bytes of content kept per row, for the request and the answer each.
pub const MAX_CONTENT: usize = 16 * 1024;

/// What `capture_content` keeps: the request's messages and the answer's
/// text, each cut at [`MAX_CONTENT`] bytes (on a character boundary).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Content {
    pub request: String,
    pub response: String,
}

impl Content {
    pub fn new(request: &str, response: &str) -> Content {
        Content { request: cut(request).to_string(), response: cut(response).to_string() }
    }
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_CONTENT {
        return s;
    }
    let mut end = MAX_CONTENT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The columns of one row.
#[derive(Debug, PartialEq)]
pub(super) struct Row {
    pub ts_ms: i64,
    pub request_id: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub route: Option<String>,
    pub status: i64,
    pub virtual_key: Option<String>,
    pub cache: Option<String>,
    pub async_job_id: Option<String>,
    pub latency_ms: f64,
    pub cost_usd: Option<f64>,
    pub tokens: Option<i64>,
    pub is_error: bool,
    pub fallback: bool,
}

fn s(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

impl Row {
    pub fn of(rec: &Value) -> Row {
        let status = rec.get("status").and_then(Value::as_i64).unwrap_or(0);
        let tokens = match (rec.get("input_tokens").and_then(Value::as_i64), rec.get("output_tokens").and_then(Value::as_i64)) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        // `cache` as a word ("hit", "miss", "semantic_hit"...), or an object
        // with one; a bool reads as hit/miss.
        let cache = match rec.get("cache") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Bool(b)) => Some(if *b { "hit" } else { "miss" }.to_string()),
            Some(Value::Object(o)) => ["status", "result", "kind"].iter().find_map(|k| o.get(*k).and_then(Value::as_str)).map(str::to_string),
            _ => None,
        };
        let fallback = rec.get("fallback_index").and_then(Value::as_i64).is_some_and(|i| i > 0);
        Row {
            ts_ms: rec.get("ts").and_then(Value::as_str).and_then(parse_rfc3339_ms).unwrap_or(0),
            request_id: s(rec, "request_id").unwrap_or_default(),
            provider: s(rec, "provider"),
            model: s(rec, "model"),
            route: s(rec, "route"),
            status,
            virtual_key: s(rec, "virtual_key"),
            cache,
            async_job_id: s(rec, "async_job_id"),
            latency_ms: rec.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0),
            cost_usd: rec.get("cost_usd").and_then(Value::as_f64),
            tokens,
            is_error: status >= 400 || status == 0 || rec.get("error").is_some_and(|e| !e.is_null()),
            fallback,
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
