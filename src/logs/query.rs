//! The query API's filters and SQL (`GET /admin/logs`): parsing a query
//! string into a [`Filter`] (a bad value names its parameter), the page of
//! rows newest first with keyset paging on `(ts_ms, id)`, stats over the
//! filtered set, one row by request id, and per-virtual-key series.

use super::row::parse_rfc3339_ms;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};

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
    /// Rows strictly older than this `(ts_ms, id)`.
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

/// The WHERE clause for a filter (without the cursor) and its parameters.
fn where_clause(f: &Filter) -> (String, Vec<Sql>) {
    let mut w: Vec<&str> = Vec::new();
    let mut p: Vec<Sql> = Vec::new();
    let eq = |col: &'static str, v: &Option<String>, w: &mut Vec<&str>, p: &mut Vec<Sql>| {
        if let Some(v) = v {
            w.push(col);
            p.push(Sql::Text(v.clone()));
        }
    };
    eq("provider = ?", &f.provider, &mut w, &mut p);
    eq("model = ?", &f.model, &mut w, &mut p);
    eq("route = ?", &f.route, &mut w, &mut p);
    eq("virtual_key = ?", &f.virtual_key, &mut w, &mut p);
    eq("cache = ?", &f.cache, &mut w, &mut p);
    eq("async_job_id = ?", &f.async_job_id, &mut w, &mut p);
    if let Some((lo, hi)) = f.status {
        if lo == hi {
            w.push("status = ?");
            p.push(Sql::Integer(lo));
        } else {
            w.push("status BETWEEN ? AND ?");
            p.push(Sql::Integer(lo));
            p.push(Sql::Integer(hi));
        }
    }
    if let Some(t) = f.since_ms {
        w.push("ts_ms >= ?");
        p.push(Sql::Integer(t));
    }
    if let Some(t) = f.until_ms {
        w.push("ts_ms <= ?");
        p.push(Sql::Integer(t));
    }
    if let Some(x) = f.min_latency_ms {
        w.push("latency_ms >= ?");
        p.push(Sql::Real(x));
    }
    if let Some(x) = f.min_cost_usd {
        w.push("cost_usd >= ?");
        p.push(Sql::Real(x));
    }
    if let Some(q) = &f.q {
        w.push("instr(lower(content), lower(?)) > 0");
        p.push(Sql::Text(q.clone()));
    }
    let sql = if w.is_empty() { "1".to_string() } else { w.join(" AND ") };
    (sql, p)
}

fn row_json(record: String, content: Option<String>) -> Value {
    let mut v: Value = serde_json::from_str(&record).unwrap_or(Value::Null);
    if let (Some(c), Some(o)) = (content, v.as_object_mut()) {
        o.insert("content".into(), serde_json::from_str(&c).unwrap_or(Value::Null));
    }
    v
}

/// A page of rows and the stats over the whole filtered set.
pub struct Page;

impl Page {
    pub fn run(c: &Connection, f: &Filter) -> rusqlite::Result<Value> {
        let (w, p) = where_clause(f);
        let (mut sql, mut params) = (format!("SELECT id, ts_ms, record, content FROM logs WHERE {w}"), p.clone());
        if let Some((ts, id)) = f.cursor {
            sql.push_str(" AND (ts_ms < ? OR (ts_ms = ? AND id < ?))");
            params.extend([Sql::Integer(ts), Sql::Integer(ts), Sql::Integer(id)]);
        }
        sql.push_str(" ORDER BY ts_ms DESC, id DESC LIMIT ?");
        params.push(Sql::Integer(f.limit as i64 + 1));
        let mut st = c.prepare(&sql)?;
        let mut rows: Vec<(i64, i64, Value)> = st
            .query_map(rusqlite::params_from_iter(params), |r| Ok((r.get(0)?, r.get(1)?, row_json(r.get(2)?, r.get(3)?))))?
            .collect::<Result<_, _>>()?;
        let next = if rows.len() > f.limit {
            rows.truncate(f.limit);
            rows.last().map(|(id, ts, _)| format!("{ts}.{id}"))
        } else {
            None
        };
        let stats = stats(c, &w, &p)?;
        Ok(json!({ "logs": rows.into_iter().map(|r| r.2).collect::<Vec<_>>(), "next_cursor": next, "stats": stats }))
    }
}

fn stats(c: &Connection, w: &str, p: &[Sql]) -> rusqlite::Result<Value> {
    let (requests, errors, tokens, cost, hits, fallbacks): (i64, i64, i64, f64, i64, i64) = c.query_row(
        &format!(
            "SELECT COUNT(*), COALESCE(SUM(is_error), 0), COALESCE(SUM(tokens), 0), COALESCE(SUM(cost_usd), 0.0),
                COALESCE(SUM(cache LIKE '%hit%'), 0), COALESCE(SUM(fallback), 0) FROM logs WHERE {w}"
        ),
        rusqlite::params_from_iter(p.iter()),
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
    )?;
    let p50: Option<f64> = if requests == 0 {
        None
    } else {
        let mut params = p.to_vec();
        params.push(Sql::Integer((requests - 1) / 2));
        c.query_row(&format!("SELECT latency_ms FROM logs WHERE {w} ORDER BY latency_ms LIMIT 1 OFFSET ?"), rusqlite::params_from_iter(params), |r| r.get(0))
            .optional()?
    };
    Ok(json!({
        "requests": requests, "errors": errors, "p50_latency_ms": p50, "tokens": tokens,
        "cost_usd": (cost * 1e9).round() / 1e9, "cache_hits": hits, "fallbacks": fallbacks,
    }))
}

/// One row by its request id (the newest, should an id repeat).
pub fn by_request_id(c: &Connection, id: &str) -> rusqlite::Result<Option<Value>> {
    c.query_row("SELECT record, content FROM logs WHERE request_id = ?1 ORDER BY id DESC LIMIT 1", [id], |r| Ok(row_json(r.get(0)?, r.get(1)?))).optional()
}

/// Requests, errors and spend per virtual key per time bucket, over the
/// filtered set: `{"bucket_s", "series": [{"virtual_key", "points": [[t_ms,
/// requests, errors, cost_usd]]}]}`.
pub fn series(c: &Connection, f: &Filter, now_ms: i64) -> rusqlite::Result<Value> {
    let mut f = f.clone();
    let since = *f.since_ms.get_or_insert(now_ms - 3_600_000);
    let until = f.until_ms.unwrap_or(now_ms);
    // About 60 buckets over the range unless asked.
    let bucket_s = f.bucket_s.unwrap_or_else(|| ((until - since) / 60_000).clamp(10, 86_400));
    let bucket_ms = bucket_s * 1000;
    let (w, p) = where_clause(&f);
    // bucket_ms is a number computed here, not client text.
    let sql = format!(
        "SELECT COALESCE(virtual_key, ''), (ts_ms / {bucket_ms}) * {bucket_ms} AS b, COUNT(*), SUM(is_error), COALESCE(SUM(cost_usd), 0.0)
         FROM logs WHERE {w} GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let mut st = c.prepare(&sql)?;
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    let rows = st.query_map(rusqlite::params_from_iter(p), |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get::<_, f64>(4)?)))?;
    for r in rows {
        let (vk, b, n, e, cost) = r?;
        if out.last().is_none_or(|(k, _)| *k != vk) {
            out.push((vk.clone(), Vec::new()));
        }
        if let Some(last) = out.last_mut() {
            last.1.push(json!([b, n, e, (cost * 1e9).round() / 1e9]));
        }
    }
    let series: Vec<Value> = out.into_iter().map(|(k, pts)| json!({ "virtual_key": if k.is_empty() { Value::Null } else { Value::String(k) }, "points": pts })).collect();
    Ok(json!({ "bucket_s": bucket_s, "since_ms": since, "until_ms": until, "series": series }))
}
