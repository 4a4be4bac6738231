//! The request log store's queries at 1,000,000 rows (SPEC 12, issue 27:
//! filtered queries answer in p50 ≤ 50 ms). Fills a log store through the
//! real writer (30 days of rows, 20 virtual keys, 5 providers, 2% 5xx and
//! 3% 4xx), then times `GET /admin/logs` queries (page + stats) and the
//! per-key series, 20 runs each, and prints p50 and p95.
//!
//! `cargo bench --bench logs_query` (ROWS=... to change the size; the
//! filled store is kept in $TMPDIR/tollgate-logs-bench-<rows>/ and reused).
//! Also prints how long opening the filled store takes (reading its
//! segments' index files) and the memory its rows take.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate::config::logs::LogsConf;
use tollgate::logs::{parse_filter, LogStore};
use tollgate::observe::access_log::{rfc3339, Record};

fn main() {
    let rows: u64 = std::env::var("ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let path = std::env::temp_dir().join(format!("tollgate-logs-bench-{rows}"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let span = 29 * 86_400_000u64;
    let conf = LogsConf { retention_days: 30, max_rows: rows + 1, capture_content: false };
    let rss0 = rss_kib();
    let t0 = Instant::now();
    let store = LogStore::open(&path, conf.clone()).unwrap();
    let opened = t0.elapsed();
    let have = store.rows() as u64;
    if have < rows {
        let t = Instant::now();
        let providers = ["openai", "anthropic", "azure", "gemini", "vertex"];
        for i in have..rows {
            let status = match i % 100 {
                0 | 1 => 500,
                2..=4 => 429,
                _ => 200,
            };
            store.write(Record {
                    ts: rfc3339(UNIX_EPOCH + Duration::from_millis(now - span + i * span / rows)),
                    request_id: format!("{i:032x}"),
                    method: "POST".into(),
                    route: Some("/openai"),
                    provider: Some(providers[(i % 5) as usize]),
                    path: "/openai/v1/chat/completions".into(),
                    status,
                    duration_ms: (i % 997) as f64,
                    model: Some(format!("model-{}", i % 7)),
                    input_tokens: Some(100),
                    output_tokens: Some(20),
                    cost_usd: Some(0.0004),
                    virtual_key: Some(format!("team-{}", i % 20)),
                    provider_key: Some("main".into()),
                    ..Default::default()
                });
            if i % 20_000 == 19_999 {
                store.flush(Duration::from_secs(60));
            }
        }
        store.flush(Duration::from_secs(60));
        println!("filled {} rows in {:.1} s ({:.0} rows/s through the writer)", rows - have, t.elapsed().as_secs_f64(), (rows - have) as f64 / t.elapsed().as_secs_f64());
    }
    let n = store.rows();
    let size: u64 = std::fs::read_dir(&path).unwrap().filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
    println!("{n} rows, {:.0} MB on disk; opening the store took {:.0} ms (with {have} rows), its rows take {:.0} MB of memory", size as f64 / 1e6, opened.as_secs_f64() * 1000.0, rss_kib().saturating_sub(rss0) as f64 / 1024.0);
    // A store filled by an earlier run: its "now" is its newest row, so the
    // last hour and day hold the rows they held then.
    let now = if have >= rows {
        let v = store.page(&parse_filter(Some("limit=1")).unwrap()).unwrap();
        v["logs"][0]["ts"].as_str().and_then(tollgate::logs::parse_rfc3339_ms).map_or(now, |ms| ms as u64)
    } else {
        now
    };
    let t = |ms: u64| rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
    let hour = format!("since={}", t(now - 3_600_000));
    let day = format!("since={}", t(now - 86_400_000));
    let queries = [
        format!("{hour}"),
        format!("{hour}&virtual_key=team-3"),
        format!("{day}&virtual_key=team-3"),
        format!("{day}&provider=anthropic"),
        format!("{day}&status=5xx"),
        format!("{day}&virtual_key=team-3&status=4xx"),
        format!("since={}&until={}&virtual_key=team-7", t(now - 7 * 86_400_000), t(now - 6 * 86_400_000)),
        "virtual_key=team-3&limit=100".to_string(),
        "status=500&limit=100".to_string(),
        "limit=100".to_string(),
    ];
    println!("{:<90} {:>9} {:>9} {:>8}", "GET /admin/logs?…  (page of 100 + stats over the filtered set)", "p50 ms", "p95 ms", "matched");
    for q in &queries {
        let f = parse_filter(Some(q)).unwrap();
        let mut times = Vec::new();
        let mut matched = 0;
        for _ in 0..20 {
            let s = Instant::now();
            let v = store.page(&f).unwrap();
            times.push(s.elapsed().as_secs_f64() * 1000.0);
            matched = v["stats"]["requests"].as_i64().unwrap();
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("{:<90} {:>9.2} {:>9.2} {:>8}", q.replace(&t(now - 3_600_000), "now-1h").replace(&t(now - 86_400_000), "now-24h"), times[10], times[18], matched);
    }
    for q in [format!("{day}&bucket_s=3600"), format!("{hour}")] {
        let f = parse_filter(Some(&q)).unwrap();
        let mut times = Vec::new();
        for _ in 0..20 {
            let s = Instant::now();
            store.series(&f, now as i64).unwrap();
            times.push(s.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("{:<90} {:>9.2} {:>9.2}", format!("series?{}", q.replace(&t(now - 3_600_000), "now-1h").replace(&t(now - 86_400_000), "now-24h")), times[10], times[18]);
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}
