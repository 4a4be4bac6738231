use super::query::{by_request_id, parse_filter, series, Page};
use super::row::{parse_rfc3339_ms, Content, Row, MAX_CONTENT};
use super::writer::{connect, insert, migrate, retain};
use super::{Entry, LogStore, DROPPED};
use crate::config::logs::LogsConf;
use crate::observe::access_log::{rfc3339, Record};
use std::time::{Duration, UNIX_EPOCH};

fn dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tollgate-logs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rec(i: u64, vk: &str, status: u16, ts_ms: u64) -> Record {
    Record {
        ts: rfc3339(UNIX_EPOCH + Duration::from_millis(ts_ms)),
        request_id: format!("req-{i}"),
        method: "POST".into(),
        route: Some("openai"),
        provider: Some(if i % 2 == 0 { "openai" } else { "anthropic" }),
        status,
        duration_ms: i as f64,
        model: Some("gpt-4o".into()),
        input_tokens: Some(10),
        output_tokens: Some(5),
        cost_usd: Some(0.001),
        virtual_key: Some(vk.into()),
        ..Default::default()
    }
}

#[test]
fn rfc3339_round_trips() {
    for ms in [0u64, 1_700_000_000_123, 951_782_400_000, 4_102_444_799_999] {
        assert_eq!(parse_rfc3339_ms(&rfc3339(UNIX_EPOCH + Duration::from_millis(ms))), Some(ms as i64));
    }
    assert_eq!(parse_rfc3339_ms("2023-11-14T23:13:20.5+01:00"), Some(1_700_000_000_500));
    assert_eq!(parse_rfc3339_ms("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
    for bad in ["", "yesterday", "2023-11-14", "2023-13-01T00:00:00Z", "2023-11-14T22:13:20", "2023-11-14T22:13:20.Z"] {
        assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
    }
}

#[test]
fn rows_read_new_fields_from_the_record() {
    let mut v = serde_json::to_value(rec(3, "team-a", 502, 1000)).unwrap();
    v["cache"] = "hit".into();
    v["fallback_index"] = 1.into();
    let r = Row::of(&v);
    assert_eq!((r.cache.as_deref(), r.fallback, r.is_error, r.tokens, r.ts_ms), (Some("hit"), true, true, Some(15), 1000));
    v["cache"] = serde_json::json!({ "status": "semantic_hit" });
    assert_eq!(Row::of(&v).cache.as_deref(), Some("semantic_hit"));
    let c = Content::new(&"é".repeat(MAX_CONTENT), "ok");
    assert!(c.request.len() <= MAX_CONTENT && c.request.len() > MAX_CONTENT - 2);
}

#[test]
fn filters_parse_and_bad_ones_name_the_parameter() {
    let f = parse_filter(Some("provider=openai&status=4xx&since=2023-11-14T22%3A13%3A20Z&limit=5&cursor=10.3&q=hello+world&virtual_key=")).unwrap();
    assert_eq!(f.provider.as_deref(), Some("openai"));
    assert_eq!(f.status, Some((400, 499)));
    assert_eq!(f.since_ms, Some(1_700_000_000_000));
    assert_eq!((f.limit, f.cursor, f.q.as_deref(), f.virtual_key), (5, Some((10, 3)), Some("hello world"), None));
    assert_eq!(parse_filter(Some("status=429")).unwrap().status, Some((429, 429)));
    for (q, p) in [
        ("status=abc", "status"),
        ("status=700", "status"),
        ("since=yesterday", "since"),
        ("until=1", "until"),
        ("limit=1001", "limit"),
        ("limit=0", "limit"),
        ("cursor=x", "cursor"),
        ("min_latency_ms=-1", "min_latency_ms"),
        ("min_cost_usd=nan", "min_cost_usd"),
        ("since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z", "until"),
        ("colour=red", "query"),
    ] {
        assert_eq!(parse_filter(Some(q)).unwrap_err().param, p, "{q}");
    }
}

#[test]
fn queries_filter_page_and_count() {
    let d = dir("query");
    let mut c = connect(&d.join("l.db")).unwrap();
    migrate(&c).unwrap();
    let mut batch = Vec::new();
    for i in 0..50u64 {
        let vk = if i % 5 == 0 { "team-b" } else { "team-a" };
        let status = if i % 10 == 3 { 500 } else { 200 };
        let content = (i == 7).then(|| Content::new("say Hello there", "hi"));
        batch.push(Entry { record: rec(i, vk, status, 1_000_000 + i / 2 * 1000), content });
    }
    insert(&mut c, &batch).unwrap();
    let page = |q: &str| Page::run(&c, &parse_filter(Some(q)).unwrap()).unwrap();
    let all = page("limit=1000");
    assert_eq!(all["stats"]["requests"], 50);
    assert_eq!(all["stats"]["errors"], 5);
    assert_eq!(all["stats"]["tokens"], 750);
    assert_eq!(all["logs"][0]["request_id"], "req-49", "newest first");
    assert_eq!(page("virtual_key=team-b")["stats"]["requests"], 10);
    assert_eq!(page("status=5xx")["stats"]["requests"], 5);
    assert_eq!(page("status=5xx&virtual_key=team-b")["stats"]["requests"], 0);
    assert_eq!(page("provider=anthropic&min_latency_ms=40")["stats"]["requests"], 5);
    assert_eq!(page("q=hello")["logs"][0]["content"]["request"], "say Hello there");
    assert_eq!(page("q=hello")["stats"]["requests"], 1);
    assert_eq!(page("since=1970-01-01T00:16:50Z")["stats"]["requests"], 30);
    assert_eq!(page("")["stats"]["p50_latency_ms"], 24.0);
    // Paging: every row once, in order.
    let mut seen = Vec::new();
    let mut q = "limit=7".to_string();
    loop {
        let p = page(&q);
        seen.extend(p["logs"].as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap().to_string()));
        match p["next_cursor"].as_str() {
            Some(cur) => q = format!("limit=7&cursor={cur}"),
            None => break,
        }
    }
    let want: Vec<String> = (0..50).rev().map(|i| format!("req-{i}")).collect();
    assert_eq!(seen, want);
    assert_eq!(by_request_id(&c, "req-7").unwrap().unwrap()["virtual_key"], "team-a");
    assert!(by_request_id(&c, "nope").unwrap().is_none());
    let s = series(&c, &parse_filter(Some("since=1970-01-01T00:00:00Z&until=1970-01-01T00:20:00Z&bucket_s=600")).unwrap(), 0).unwrap();
    let names: Vec<&str> = s["series"].as_array().unwrap().iter().map(|x| x["virtual_key"].as_str().unwrap()).collect();
    assert_eq!(names, ["team-a", "team-b"]);
    let b_total: i64 = s["series"][1]["points"].as_array().unwrap().iter().map(|p| p[1].as_i64().unwrap()).sum();
    assert_eq!(b_total, 10);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn retention_by_age_and_by_rows() {
    let d = dir("retain");
    let mut c = connect(&d.join("l.db")).unwrap();
    migrate(&c).unwrap();
    let day = 86_400_000u64;
    let now = 100 * day;
    let batch: Vec<Entry> = (0..20u64).map(|i| Entry { record: rec(i, "k", 200, now - (20 - i) * day), content: None }).collect();
    insert(&mut c, &batch).unwrap();
    // 10 days kept: rows 10..20 (ages 10..1 days); age exactly 10 days stays.
    retain(&c, 10, 1000, now as i64).unwrap();
    let n: i64 = c.query_row("SELECT COUNT(*) FROM logs", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 10);
    retain(&c, 10, 4, now as i64).unwrap();
    let ids: Vec<String> = c.prepare("SELECT request_id FROM logs ORDER BY id").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(ids, ["req-16", "req-17", "req-18", "req-19"]);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_locked_store_drops_rows_and_counts_them() {
    let d = dir("locked");
    let path = d.join("l.db");
    let store = LogStore::open(&path, LogsConf::default()).unwrap();
    // Recent rows: retention (30 days) runs with the first batch.
    let now = super::writer::now_ms() as u64;
    let rec = |i, vk, status, _| rec(i, vk, status, now);
    store.write(Entry { record: rec(1, "k", 200, 1000), content: None });
    store.flush(Duration::from_secs(5));
    let lock = rusqlite::Connection::open(&path).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let before = DROPPED.get();
    for i in 0..3 {
        store.write(Entry { record: rec(i, "k", 200, 1000), content: None });
    }
    store.flush(Duration::from_secs(5));
    assert!(DROPPED.get() >= before + 3);
    lock.execute_batch("COMMIT").unwrap();
    store.write(Entry { record: rec(9, "k", 200, 1000), content: None });
    store.flush(Duration::from_secs(5));
    let n: i64 = store.reader().unwrap().query_row("SELECT COUNT(*) FROM logs", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 2, "the store takes rows again once unlocked");
    std::fs::remove_dir_all(d).unwrap();
}
