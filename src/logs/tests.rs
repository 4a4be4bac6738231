use super::query::parse_filter;
use super::row::{parse_rfc3339_ms, Cols, CACHE_HIT, ERROR, FALLBACK};
use super::{Content, LogStore, DROPPED, MAX_CONTENT};
use crate::config::logs::LogsConf;
use crate::observe::access_log::{rfc3339, Record};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tollgate-logs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn now() -> u64 {
    super::writer::now_ms() as u64
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

fn conf(days: u32, rows: u64) -> LogsConf {
    LogsConf { retention_days: days, max_rows: rows, capture_content: true }
}

fn page(s: &LogStore, q: &str) -> Value {
    s.page(&parse_filter(Some(q)).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<String> {
    v["logs"].as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap().to_string()).collect()
}

fn segments(d: &Path) -> usize {
    std::fs::read_dir(d).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "idx")).count()
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
fn columns_come_from_the_typed_record() {
    let mut r = rec(3, "team-a", 502, 1000);
    r.cache = Some("semantic-hit");
    r.fallback_index = Some(1);
    r.output_tokens = None;
    r.cost_usd = None;
    let mut names = Vec::new();
    let c = Cols::of(&r, |n| {
        names.push(n.map(str::to_string));
        names.len() as u32
    });
    assert_eq!((c.ts_ms, c.status, c.tokens, c.flags), (1000, 502, 10, ERROR | FALLBACK | CACHE_HIT));
    assert!(c.cost_usd.is_nan());
    assert_eq!(names.iter().flatten().collect::<Vec<_>>(), ["anthropic", "gpt-4o", "openai", "team-a", "semantic-hit"]);
    r.status = 200;
    r.cache = Some("miss");
    r.fallback_index = Some(0);
    assert_eq!(Cols::of(&r, |_| 0).flags, 0);
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
    let s = LogStore::open(&d, conf(30, 1000)).unwrap();
    // 50 rows, two per second, over the last minute or so.
    let base = (now() - 600_000) / 1000 * 1000;
    for i in 0..50u64 {
        let vk = if i % 5 == 0 { "team-b" } else { "team-a" };
        let status = if i % 10 == 3 { 500 } else { 200 };
        let mut r = rec(i, vk, status, base + i / 2 * 1000);
        if i == 7 {
            r.content = Some(Box::new(Content::new("say Hello there", "hi")));
        }
        if i == 9 {
            r.async_job_id = Some("job-9".into());
            r.cache = Some("hit");
        }
        s.write(r);
    }
    s.flush(Duration::from_secs(5));
    let all = page(&s, "limit=1000");
    assert_eq!(all["stats"]["requests"], 50);
    assert_eq!(all["stats"]["errors"], 5);
    assert_eq!(all["stats"]["tokens"], 750);
    assert_eq!(all["stats"]["cost_usd"], 0.05);
    assert_eq!(all["stats"]["cache_hits"], 1);
    assert_eq!(all["logs"][0]["request_id"], "req-49", "newest first");
    assert_eq!(page(&s, "virtual_key=team-b")["stats"]["requests"], 10);
    assert_eq!(page(&s, "virtual_key=team-z")["stats"]["requests"], 0, "a name no row has");
    assert_eq!(page(&s, "status=5xx")["stats"]["requests"], 5);
    assert_eq!(page(&s, "status=500&virtual_key=team-a")["stats"]["requests"], 5);
    assert_eq!(page(&s, "status=5xx&virtual_key=team-b")["stats"]["requests"], 0);
    assert_eq!(page(&s, "provider=anthropic&min_latency_ms=40")["stats"]["requests"], 5);
    assert_eq!(page(&s, "min_cost_usd=0.002")["stats"]["requests"], 0);
    assert_eq!(ids(&page(&s, "async_job_id=job-9")), ["req-9"]);
    assert_eq!(ids(&page(&s, "cache=hit")), ["req-9"]);
    assert_eq!(page(&s, "q=hello")["logs"][0]["content"]["request"], "say Hello there");
    assert_eq!(page(&s, "q=hello")["stats"]["requests"], 1);
    assert_eq!(page(&s, "q=absent")["stats"]["requests"], 0);
    let since = rfc3339(UNIX_EPOCH + Duration::from_millis(base + 10_000));
    assert_eq!(page(&s, &format!("since={since}"))["stats"]["requests"], 30);
    assert_eq!(page(&s, "")["stats"]["p50_latency_ms"], 24.0);
    assert!(page(&s, "")["logs"][0].get("content").is_none());
    // Paging: every row once, in order.
    let mut seen = Vec::new();
    let mut q = "limit=7".to_string();
    loop {
        let p = page(&s, &q);
        seen.extend(ids(&p));
        match p["next_cursor"].as_str() {
            Some(cur) => q = format!("limit=7&cursor={cur}"),
            None => break,
        }
    }
    let want: Vec<String> = (0..50).rev().map(|i| format!("req-{i}")).collect();
    assert_eq!(seen, want);
    assert_eq!(s.by_request_id("req-7").unwrap().unwrap()["virtual_key"], "team-a");
    assert_eq!(s.by_request_id("req-7").unwrap().unwrap()["content"]["response"], "hi");
    assert!(s.by_request_id("nope").unwrap().is_none());
    let (from, to) = (rfc3339(UNIX_EPOCH + Duration::from_millis(base / 600_000 * 600_000)), rfc3339(UNIX_EPOCH + Duration::from_millis(base + 600_000)));
    let sr = s.series(&parse_filter(Some(&format!("since={from}&until={to}&bucket_s=600"))).unwrap(), 0).unwrap();
    let names: Vec<&str> = sr["series"].as_array().unwrap().iter().map(|x| x["virtual_key"].as_str().unwrap()).collect();
    assert_eq!(names, ["team-a", "team-b"]);
    let b_total: i64 = sr["series"][1]["points"].as_array().unwrap().iter().map(|p| p[1].as_i64().unwrap()).sum();
    assert_eq!(b_total, 10);
    // Reopened (a restart): the same rows, the same cursors.
    let cursor = page(&s, "limit=20")["next_cursor"].as_str().unwrap().to_string();
    drop(s);
    let s = LogStore::open(&d, conf(30, 1000)).unwrap();
    assert_eq!(page(&s, "limit=1000")["stats"]["requests"], 50);
    assert_eq!(page(&s, &format!("limit=1&cursor={cursor}"))["logs"][0]["request_id"], "req-29");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn retention_by_age_and_by_rows() {
    let d = dir("retain");
    let day = 86_400_000u64;
    let t = now();
    {
        let s = LogStore::open(&d, conf(30, 1000)).unwrap();
        for i in 0..20u64 {
            s.write(rec(i, "k", 200, t - (20 - i) * day + 60_000));
        }
        s.flush(Duration::from_secs(5));
        assert_eq!(page(&s, "")["stats"]["requests"], 20);
    }
    // 10 days kept: rows 10..20 (ages just under 10..1 days).
    let s = LogStore::open(&d, conf(10, 1000)).unwrap();
    assert_eq!(page(&s, "")["stats"]["requests"], 10);
    assert!(s.by_request_id("req-9").unwrap().is_none());
    drop(s);
    let s = LogStore::open(&d, conf(10, 4)).unwrap();
    assert_eq!(ids(&page(&s, "")), ["req-19", "req-18", "req-17", "req-16"]);
    assert_eq!(s.rows(), 4);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn whole_segments_are_deleted_once_no_row_of_theirs_is_kept() {
    let d = dir("segments");
    let s = LogStore::open(&d, conf(30, 1024)).unwrap(); // 1,024 rows per segment
    let t = now();
    for i in 0..3000u64 {
        s.write(rec(i, "k", 200, t));
    }
    s.flush(Duration::from_secs(10));
    assert_eq!(s.rows(), 1024);
    assert_eq!(page(&s, "limit=1")["stats"]["requests"], 1024);
    // Rows 1976..3000 are kept: in the second segment (1024..2048) and the third.
    assert_eq!(segments(&d), 2, "the first segment's files are gone");
    assert_eq!(page(&s, "limit=1000")["logs"][0]["request_id"], "req-2999");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn an_unwritable_store_drops_rows_and_counts_them() {
    let d = dir("unwritable");
    let s = LogStore::open(&d, conf(30, 1000)).unwrap();
    let t = now();
    s.write(rec(1, "k", 200, t));
    s.flush(Duration::from_secs(5));
    // A new process, whose first batch finds its directory replaced by a
    // file: no segment can be opened.
    let moved = d.with_extension("moved");
    let _ = std::fs::remove_dir_all(&moved);
    drop(s);
    let s = LogStore::open(&d, conf(30, 1000)).unwrap();
    std::fs::rename(&d, &moved).unwrap();
    std::fs::write(&d, b"not a directory").unwrap();
    let before = DROPPED.get();
    for i in 0..3 {
        s.write(rec(10 + i, "k", 200, t));
    }
    s.flush(Duration::from_secs(5));
    assert!(DROPPED.get() >= before + 3, "dropped and counted");
    std::fs::remove_file(&d).unwrap();
    std::fs::rename(&moved, &d).unwrap();
    s.write(rec(20, "k", 200, t));
    s.flush(Duration::from_secs(5));
    assert_eq!(ids(&page(&s, "")), ["req-20", "req-1"], "the store takes rows again");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_torn_index_tail_is_not_read_and_two_stores_share_a_directory() {
    let d = dir("two");
    let a = LogStore::open(&d, conf(30, 1000)).unwrap();
    let t = now();
    for i in 0..5 {
        a.write(rec(i, "k", 200, t + i));
    }
    a.flush(Duration::from_secs(5));
    // A second process (a graceful upgrade) reads the first one's rows,
    // and the ones it writes afterwards.
    let b = LogStore::open(&d, conf(30, 1000)).unwrap();
    assert_eq!(page(&b, "")["stats"]["requests"], 5);
    let cursor = page(&a, "limit=2")["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(ids(&page(&b, &format!("limit=1&cursor={cursor}"))), ["req-2"], "row ids are the same in both");
    a.write(rec(5, "k", 200, t + 5));
    a.flush(Duration::from_secs(5));
    b.write(rec(6, "k", 200, t + 6));
    b.flush(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(page(&b, "")["stats"]["requests"], 7);
    assert_eq!(page(&a, "")["stats"]["requests"], 7);
    drop((a, b));
    // A crash mid-write: half a record at the end of an index.
    let idx = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "idx")).unwrap();
    let mut bytes = std::fs::read(&idx).unwrap();
    bytes.extend_from_slice(&[b'R', 1, 2, 3]);
    std::fs::write(&idx, bytes).unwrap();
    let c = LogStore::open(&d, conf(30, 1000)).unwrap();
    assert_eq!(page(&c, "")["stats"]["requests"], 7);
    drop(c);
    // A power loss that kept the index's last write but not the log's:
    // the rows whose JSON is missing are not read, the others are.
    let log = idx.with_extension("log");
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(len - 10).unwrap();
    let c = LogStore::open(&d, conf(30, 1000)).unwrap();
    let rows = page(&c, "")["stats"]["requests"].as_u64().unwrap();
    assert!(rows == 6, "one row lost, not the segment: {rows}");
    assert_eq!(page(&c, "limit=1000")["logs"].as_array().unwrap().len(), 6);
    std::fs::remove_dir_all(d).unwrap();
}
