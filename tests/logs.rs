//! The request log store, its API and the admin listener through the real
//! binary (SPEC 12, issue 27): rows appear, every filter, paging while rows
//! arrive, retention, a full disk drops rows (counted) and never a
//! request, secrets never in rows, and the admin token.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const VK_A: &str = "vk-team-a-secret-0001";
const VK_B: &str = "vk-team-b-secret-0002";

/// OpenAI-shaped answers; the model `fail` gets a 500 like a provider outage.
fn mock() -> Mock {
    Mock::start(|req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if body["model"] == "fail" {
            return json(500, json!({"error": {"message": "upstream down", "type": "server_error"}}));
        }
        json(200, json!({"id":"c","object":"chat.completion","model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}))
    })
}

fn start(mock: &Mock, logs: &str, extra: &str) -> Gateway {
    Gateway::start(
        &format!(
            "  logs: {logs}\n{extra}  virtual_keys:\n    - {{ name: team-a, secret: env.VK_A }}\n    - {{ name: team-b, secret: env.VK_B }}\n  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: pool, value: sk-real-pool-key }}] }}\n  prices:\n    openai:\n      gpt-4o: {{ input: 2.5, output: 10 }}\n",
            mock.url()
        ),
        "",
        &[("VK_A", VK_A), ("VK_B", VK_B)],
    )
}

fn chat(port: u16, vk: &str, model: &str) -> Response {
    post_json(port, "/openai_passthrough/v1/chat/completions", &[("x-tollgate-vk", vk)], &json!({"model": model, "messages": [{"role":"user","content":"hi"}]}))
}

fn logs(port: u16, query: &str) -> Response {
    get(port, &format!("/admin/logs{query}"), &[])
}

/// Wait (up to 5 s) until the filtered set has `n` rows.
fn wait_rows(port: u16, query: &str, n: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = logs(port, query);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        if v["stats"]["requests"].as_i64() == Some(n) || Instant::now() > deadline {
            assert_eq!(v["stats"]["requests"], n, "{query}: {v}");
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rows_appear_with_every_filter_stats_and_no_secret() {
    let m = mock();
    let gw = start(&m, "{ retention_days: 7, max_rows: 10000 }", "");
    let mut ids = Vec::new();
    for i in 0..6 {
        let r = chat(gw.port, VK_A, if i == 2 { "fail" } else { "gpt-4o" });
        ids.push(r.header("x-tollgate-request-id").unwrap().to_string());
    }
    for _ in 0..4 {
        assert_eq!(chat(gw.port, VK_B, "gpt-4o").status, 200);
    }
    let a = wait_rows(gw.metrics_port, "?virtual_key=team-a", 6);
    assert_eq!(a["stats"]["errors"], 1);
    assert_eq!(a["stats"]["tokens"], 75, "5 answered × 15 tokens");
    let cost = a["stats"]["cost_usd"].as_f64().unwrap();
    assert!((cost - 5.0 * (10.0 * 2.5 + 5.0 * 10.0) / 1e6).abs() < 1e-9, "{cost}");
    assert!(a["stats"]["p50_latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(a["logs"][0]["request_id"], ids[5].as_str(), "newest first");
    wait_rows(gw.metrics_port, "?virtual_key=team-b", 4);
    for (q, n) in [
        ("?virtual_key=team-a&status=5xx", 1),
        ("?virtual_key=team-a&status=500", 1),
        ("?virtual_key=team-a&status=2xx", 5),
        ("?provider=openai", 10),
        ("?provider=anthropic", 0),
        ("?model=gpt-4o-2024-08-06", 9),
        ("?route=%2Fopenai_passthrough", 10),
        ("?since=2000-01-01T00:00:00Z&virtual_key=team-b", 4),
        ("?since=2999-01-01T00:00:00Z", 0),
        ("?until=2000-01-01T00:00:00%2B02:00", 0),
        ("?min_latency_ms=100000", 0),
        ("?min_cost_usd=0.00001&virtual_key=team-b", 4),
        ("?min_cost_usd=1", 0),
        ("?cache=hit", 0),
        (&format!("?async_job_id=nope"), 0),
    ] {
        assert_eq!(logs(gw.metrics_port, q).json()["stats"]["requests"], n, "{q}");
    }
    // One row by id, with the record's fields.
    let one = get(gw.metrics_port, &format!("/admin/logs/{}", ids[2]), &[]);
    assert_eq!(one.status, 200);
    let one = one.json();
    assert_eq!((one["status"].as_u64(), one["virtual_key"].as_str(), one["provider_key"].as_str()), (Some(500), Some("team-a"), Some("pool")));
    assert_eq!(get(gw.metrics_port, "/admin/logs/no-such-id", &[]).status, 404);
    // Bad values: 400 naming the parameter.
    for (q, p) in [("?status=abc", "status"), ("?since=yesterday", "since"), ("?limit=5000", "limit"), ("?cursor=zz", "cursor"), ("?min_latency_ms=x", "min_latency_ms"), ("?colour=red", "colour")] {
        let r = logs(gw.metrics_port, q);
        assert_eq!(r.status, 400, "{q}");
        assert!(r.json()["error"]["message"].as_str().unwrap().contains(p), "{q}: {}", r.text());
    }
    // Series per virtual key.
    let s = get(gw.metrics_port, "/admin/logs/series?since=2000-01-01T00:00:00Z&bucket_s=3600", &[]).json();
    let per: Vec<(String, i64)> = s["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["virtual_key"].is_string())
        .map(|x| (x["virtual_key"].as_str().unwrap().to_string(), x["points"].as_array().unwrap().iter().map(|p| p[1].as_i64().unwrap()).sum()))
        .collect();
    assert_eq!(per, [("team-a".to_string(), 6), ("team-b".to_string(), 4)]);
    // No secret in the store file, the API or the page.
    let mut all = Vec::new();
    for f in std::fs::read_dir(gw.dir.join("tollgate-logs")).unwrap() {
        all.extend(std::fs::read(f.unwrap().path()).unwrap());
    }
    let all = String::from_utf8_lossy(&all).into_owned() + &logs(gw.metrics_port, "?limit=1000").text() + &get(gw.metrics_port, "/admin/", &[]).text();
    assert!(all.contains("team-a"), "the rows are in the file");
    for s in [VK_A, VK_B, "sk-real-pool-key"] {
        assert!(!all.contains(s), "{s} in the log store or the API");
    }
    assert_no_secret(&all, "the log store");
    assert_eq!(gw.metric("tollgate_logs_dropped_total", &[]), 0.0);
}

#[test]
fn paging_neither_skips_nor_repeats_while_rows_arrive() {
    let m = mock();
    let gw = start(&m, "{}", "");
    for _ in 0..12 {
        chat(gw.port, VK_A, "gpt-4o");
    }
    let before = wait_rows(gw.metrics_port, "?virtual_key=team-a&limit=1000", 12);
    let before: HashSet<String> = before["logs"].as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap().to_string()).collect();
    // New rows keep arriving while we page.
    let port = gw.port;
    let writer = std::thread::spawn(move || {
        for _ in 0..15 {
            chat(port, VK_A, "gpt-4o");
            std::thread::sleep(Duration::from_millis(30));
        }
    });
    let (mut seen, mut order) = (Vec::new(), Vec::new());
    let mut q = "?virtual_key=team-a&limit=3".to_string();
    loop {
        let p = logs(gw.metrics_port, &q).json();
        for r in p["logs"].as_array().unwrap() {
            seen.push(r["request_id"].as_str().unwrap().to_string());
            order.push(r["ts"].as_str().unwrap().to_string());
        }
        match p["next_cursor"].as_str() {
            Some(c) => q = format!("?virtual_key=team-a&limit=3&cursor={c}"),
            None => break,
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    writer.join().unwrap();
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a row repeated: {seen:?}");
    assert!(before.is_subset(&unique), "a row was skipped");
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "newest first across pages");
}

#[test]
fn retention_by_rows_and_age_at_start() {
    let m = mock();
    let mut gw = start(&m, "{ retention_days: 1, max_rows: 4 }", "");
    for _ in 0..8 {
        chat(gw.port, VK_A, "gpt-4o");
    }
    wait_rows(gw.metrics_port, "?virtual_key=team-a", 4); // max_rows, as they are written
    // A row from last week, written into the store's directory by another
    // writer (the library, as a process from before would have).
    let old = tollgate::logs::LogStore::open(&gw.dir.join("tollgate-logs"), tollgate::config::logs::LogsConf::default()).unwrap();
    let week_ago = std::time::SystemTime::now() - Duration::from_secs(7 * 86_400);
    old.write(tollgate::observe::access_log::Record { ts: tollgate::observe::access_log::rfc3339(week_ago), request_id: "old-row".into(), status: 200, ..Default::default() });
    old.flush(Duration::from_secs(5));
    drop(old);
    // A new process (graceful upgrade) applies retention as it opens.
    let mut old = gw.upgrade();
    let _ = old.wait();
    let all = logs(gw.metrics_port, "?limit=1000").json();
    let n = all["stats"]["requests"].as_i64().unwrap();
    assert!(n <= 5, "max_rows 4 (+ the new process's readiness rows): {n}");
    assert!(!all.to_string().contains("old-row"));
    assert_eq!(get(gw.metrics_port, "/admin/logs/old-row", &[]).status, 404);
}

/// A 256 KiB tmpfs mounted on a directory, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"]).arg(at).status().is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_drops_rows_counted_never_requests() {
    // The log store on a disk of its own that fills up (needs root to mount
    // a tmpfs; CI runs as root).
    if euid() != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let m = mock();
    let store = temp_dir("fulldisk");
    let Some(disk) = SmallDisk::mount(&store.join("tollgate-logs")) else { panic!("cannot mount a tmpfs on {}", store.display()) };
    let gw = start(&m, "{}", &format!("  store: {{ path: {}/tollgate.db }}\n", store.display()));
    chat(gw.port, VK_A, "gpt-4o");
    wait_rows(gw.metrics_port, "?virtual_key=team-a", 1);
    // Fill the disk.
    let filler = disk.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut f, &[b'x'; 4096]).is_ok() {}
    drop(f);
    // The segment's last pages may still take a row or two; the rest are
    // dropped and counted, and every row is one or the other.
    for _ in 0..10 {
        assert_eq!(chat(gw.port, VK_A, "gpt-4o").status, 200, "requests go on");
    }
    gw.wait_metric_at_least("tollgate_logs_dropped_total", &[], 3.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let kept = logs(gw.metrics_port, "?virtual_key=team-a").json()["stats"]["requests"].as_f64().unwrap();
        let dropped = gw.metric("tollgate_logs_dropped_total", &[]);
        if kept + dropped == 11.0 {
            break;
        }
        assert!(Instant::now() < deadline, "kept {kept} + dropped {dropped} is not the 11 requests");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Room again: rows are kept again.
    std::fs::remove_file(&filler).unwrap();
    chat(gw.port, VK_B, "gpt-4o");
    wait_rows(gw.metrics_port, "?virtual_key=team-b", 1);
    // The access log kept every record.
    assert_eq!(gw.records(12).iter().filter(|r| r["virtual_key"] == "team-a").count(), 11);
    drop(gw);
    drop(disk);
}

fn euid() -> u32 {
    std::process::Command::new("id").arg("-u").output().ok().and_then(|o| String::from_utf8(o.stdout).ok()).and_then(|s| s.trim().parse().ok()).unwrap_or(1)
}

#[test]
fn the_admin_listener_token_and_the_page() {
    let m = mock();
    let admin = free_port();
    let token = "admin-token-0123456789";
    let gw = start(&m, "{}", &format!("  admin_listen: \"127.0.0.1:{admin}\"\n  admin: {{ token: env.ADMIN_TOKEN }}\n").replace("env.ADMIN_TOKEN", token));
    chat(gw.port, VK_A, "gpt-4o");
    let auth = format!("Bearer {token}");
    // The page itself is static and open; every answer with data needs the token.
    assert_eq!(get(admin, "/admin/", &[]).status, 200);
    for path in ["/admin/logs", "/admin/logs/series", "/admin/logs/overview", "/admin/routes"] {
        assert_eq!(get(admin, path, &[]).status, 401, "{path}");
        assert_eq!(get(admin, path, &[("authorization", "Bearer wrong-token-0123456789")]).status, 401, "{path}");
        assert_ne!(get(admin, path, &[("authorization", &auth)]).status, 401, "{path}");
    }
    // The metrics listener keeps /metrics, and is not the admin API.
    assert_eq!(get(gw.metrics_port, "/metrics", &[]).status, 200);
    assert_ne!(get(gw.metrics_port, "/admin/logs", &[]).status, 200);
    // The page and its assets come from the binary, nothing from elsewhere.
    let page = get(admin, "/admin/", &[("authorization", &auth)]);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let html = page.text();
    for asset in ["/admin/assets/dashboard.js", "/admin/assets/dashboard.css"] {
        assert!(html.contains(asset), "{asset} linked");
        let r = get(admin, asset, &[("authorization", &auth)]);
        assert_eq!(r.status, 200);
        // The SVG namespace is a name, not a load.
        let text = r.text().replace("http://www.w3.org/2000/svg", "");
        assert!(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"), "{asset} loads nothing from another host");
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert_eq!(get(admin, "/admin/logs", &[("authorization", &auth)]).status, 200);
}

#[test]
fn a_non_loopback_admin_listener_without_a_token_does_not_start() {
    let dir = temp_dir("logs-admin");
    let conf = dir.join("tollgate.yaml");
    std::fs::write(&conf, format!("tollgate:\n  listen: \"127.0.0.1:{}\"\n  admin_listen: \"0.0.0.0:{}\"\n  logs: {{}}\n", free_port(), free_port())).unwrap();
    let out = std::process::Command::new(BIN).arg("-c").arg(&conf).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tollgate.admin.token"), "{err}");
    // logs off: /admin/logs says so.
    let m = mock();
    let gw = Gateway::start(&format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: p, value: sk-pool-0000000 }}] }}\n", m.url()), "", &[]);
    let r = get(gw.metrics_port, "/admin/logs", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "logs_not_configured");
}

#[test]
fn capture_content_keeps_bounded_messages_and_answers_searchable() {
    let m = mock();
    let gw = start(&m, "{ capture_content: true }", "");
    let post = |vk: &str, text: &str| post_json(gw.port, "/openai/v1/chat/completions", &[("x-tollgate-vk", vk)], &json!({"model": "openai/gpt-4o", "messages": [{"role":"user","content": text}]}));
    assert_eq!(post(VK_A, "which fruit is a PINEAPPLE?").status, 200);
    assert_eq!(post(VK_B, &"long ".repeat(10_000)).status, 200);
    let hit = wait_rows(gw.metrics_port, "?q=pineapple", 1);
    let row = &hit["logs"][0];
    assert_eq!(row["virtual_key"], "team-a");
    assert_eq!(row["content"]["request"], "user: which fruit is a PINEAPPLE?\n");
    assert_eq!(row["content"]["response"], "hi");
    let long = wait_rows(gw.metrics_port, "?virtual_key=team-b&route=%2Fopenai", 1);
    let kept = long["logs"][0]["content"]["request"].as_str().unwrap().len();
    assert!(kept <= 16 * 1024 && kept > 16_000, "bounded per row: {kept}");
    // The passthrough keeps no content, and no secret is ever in a row.
    chat(gw.port, VK_A, "gpt-4o");
    let p = wait_rows(gw.metrics_port, "?route=%2Fopenai_passthrough", 1);
    assert!(p["logs"][0].get("content").is_none());
    let all = logs(gw.metrics_port, "?limit=1000").text();
    for s in [VK_A, VK_B, "sk-real-pool-key"] {
        assert!(!all.contains(s));
    }
}
