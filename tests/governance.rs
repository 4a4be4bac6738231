//! Governance through the real binary (SPEC 2, issue 5): virtual keys,
//! rate limits, budgets that survive a restart, provider key pools with
//! failover, and Vertex service-account OAuth against a local token endpoint.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn completion(model: &str, input: u64, output: u64) -> Value {
    json!({"id":"c","object":"chat.completion","model":model,"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":input,"completion_tokens":output,"total_tokens":input+output}})
}

fn openai_mock(input: u64, output: u64) -> Mock {
    Mock::start(move |_| json(200, completion("gpt-4o-2024-08-06", input, output)))
}

fn section(mock: &Mock, vks: &str, extra: &str) -> String {
    format!(
        "{extra}  virtual_keys:\n{vks}  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: pool, value: sk-real-pool }}] }}\n    anthropic: {{ base_url: \"{}\", keys: [{{ name: a, value: sk-real-ant }}] }}\n",
        mock.url(),
        mock.url()
    )
}

fn chat(port: u16, headers: &[(&str, &str)], model: &str) -> Response {
    post_json(port, "/openai_passthrough/v1/chat/completions", headers, &json!({"model": model, "messages": [{"role":"user","content":"hi"}]}))
}

#[test]
fn virtual_keys_are_checked_and_never_forwarded() {
    let mock = openai_mock(10, 5);
    let hex: String = tollgate::config::virtual_keys::sha256(b"vk-team-b").iter().map(|b| format!("{b:02x}")).collect();
    let vks = format!(
        "    - {{ name: team-a, secret: env.VK_A, providers: [openai], models: [\"gpt-4o*\"] }}\n    - {{ name: team-b, secret: \"sha256:{hex}\" }}\n"
    );
    let gw = Gateway::start(&section(&mock, &vks, "  require_virtual_key: true\n"), "", &[("VK_A", "vk-team-a")]);
    let p = gw.port;

    let r = chat(p, &[], "gpt-4o");
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (401, Some("virtual_key_required")));
    let r = chat(p, &[("authorization", "Bearer dummy-key")], "gpt-4o");
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (401, Some("virtual_key_invalid")));
    let r = chat(p, &[("x-tollgate-vk", "vk-wrong")], "gpt-4o");
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (401, Some("virtual_key_invalid")));
    assert_eq!(mock.count(), 0);

    // Presented three ways: both control headers and the SDK's own api key.
    for h in [("x-tollgate-vk", "vk-team-a"), ("x-bf-vk", "vk-team-a"), ("authorization", "Bearer vk-team-a"), ("x-tollgate-vk", "vk-team-b")] {
        let r = chat(p, &[h], "gpt-4o-mini");
        assert_eq!(r.status, 200, "{h:?}: {}", r.text());
        let up = mock.take().remove(0);
        assert_eq!(up.header("authorization"), Some("Bearer sk-real-pool"));
        assert!(!format!("{:?}", up.head).contains("vk-team"), "a virtual key reached the provider");
        let rec = gw.record(r.header("x-tollgate-request-id").unwrap());
        assert_eq!(rec["virtual_key"], if h.1 == "vk-team-b" { "team-b" } else { "team-a" });
    }

    // Provider and model allow-lists.
    let r = post_json(p, "/anthropic_passthrough/v1/messages", &[("x-tollgate-vk", "vk-team-a")], &json!({"model":"claude-sonnet-4-5"}));
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (403, Some("forbidden")));
    let r = chat(p, &[("x-tollgate-vk", "vk-team-a")], "o3");
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (403, Some("forbidden")));
    assert_eq!(post_json(p, "/anthropic_passthrough/v1/messages", &[("x-tollgate-vk", "vk-team-b")], &json!({"model":"claude"})).status, 200);
    mock.take();

    let m = gw.metrics();
    assert_eq!(metric_value(&m, "tollgate_virtual_key_rejections_total", &[("reason", "missing")]), 1.0);
    assert_eq!(metric_value(&m, "tollgate_virtual_key_rejections_total", &[("reason", "invalid")]), 2.0);
    assert_eq!(metric_value(&m, "tollgate_virtual_key_rejections_total", &[("reason", "provider")]), 1.0);
    assert_eq!(metric_value(&m, "tollgate_virtual_key_rejections_total", &[("reason", "model")]), 1.0);
    assert!(metric_value(&m, "tollgate_cost_usd_total", &[("virtual_key", "team-a")]) > 0.0, "spend by virtual key");
}

#[test]
fn request_and_token_rate_limits_answer_429_with_retry_after() {
    let mock = openai_mock(600, 400);
    let vks = "    - { name: rpm, secret: env.VK_R, requests_per_minute: 3 }\n    - { name: tpm, secret: env.VK_T, tokens_per_minute: 1500 }\n";
    let gw = Gateway::start(&section(&mock, vks, ""), "", &[("VK_R", "vk-r"), ("VK_T", "vk-t")]);
    for _ in 0..3 {
        assert_eq!(chat(gw.port, &[("x-tollgate-vk", "vk-r")], "gpt-4o").status, 200);
    }
    let r = chat(gw.port, &[("x-tollgate-vk", "vk-r")], "gpt-4o");
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (429, Some("rate_limited")));
    let wait: u64 = r.header("retry-after").expect("retry-after").parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    // Each response costs 1000 tokens: the second goes through (1500 left
    // before it), overshooting; the third waits for the bucket to refill.
    // Tokens are debited in the logging phase, after the client has the
    // response: wait for each record before the next request.
    assert_eq!(chat(gw.port, &[("x-tollgate-vk", "vk-t")], "gpt-4o").status, 200);
    gw.records(5);
    assert_eq!(chat(gw.port, &[("x-tollgate-vk", "vk-t")], "gpt-4o").status, 200);
    gw.records(6);
    let r = chat(gw.port, &[("x-tollgate-vk", "vk-t")], "gpt-4o");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(mock.take().len(), 5, "refused requests never reach the provider");
    assert_eq!(gw.metric("tollgate_virtual_key_rejections_total", &[("reason", "requests_per_minute")]), 1.0);
    assert_eq!(gw.metric("tollgate_virtual_key_rejections_total", &[("reason", "tokens_per_minute")]), 1.0);
}

/// The spend the store holds for virtual key `vk` (summed over its periods:
/// each test's key has one).
fn stored_spend(db: &std::path::Path, vk: &str) -> f64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT COALESCE(SUM(usd), 0) FROM spend WHERE vk = ?1", [vk], |r| r.get(0)).unwrap()
}

#[test]
fn budget_is_enforced_and_survives_a_restart() {
    // gpt-4o: 2.5 in / 10 out per million: 100k in + 10k out = 0.35 USD.
    let mock = openai_mock(100_000, 10_000);
    let dir = temp_dir("budget");
    let state = dir.join("tollgate.db");
    let vks = "    - { name: capped, secret: env.VK_C, budget: { usd: 1.0, period: month } }\n";
    let extra = format!("  store: {{ path: {} }}\n", state.display());
    let gw = Gateway::start(&section(&mock, vks, &extra), "", &[("VK_C", "vk-c")]);
    for _ in 0..2 {
        assert_eq!(chat(gw.port, &[("x-tollgate-vk", "vk-c")], "gpt-4o").status, 200);
    }
    gw.records(2); // logged, so counted
    assert!((gw.metric("tollgate_virtual_key_spend_usd", &[("virtual_key", "capped")]) - 0.70).abs() < 1e-9);
    // Flushed within two seconds; then the process is killed (no drain).
    std::thread::sleep(Duration::from_millis(2500));
    drop(gw);
    assert!((stored_spend(&state, "capped") - 0.70).abs() < 1e-9);

    let gw = Gateway::start(&section(&mock, vks, &extra), "", &[("VK_C", "vk-c")]);
    assert!((gw.metric("tollgate_virtual_key_spend_usd", &[("virtual_key", "capped")]) - 0.70).abs() < 1e-9, "restart lost the spend: {}", gw.metrics());
    // 0.70 < 1.00: one more goes through (and overshoots to 1.05); then 402.
    assert_eq!(chat(gw.port, &[("x-tollgate-vk", "vk-c")], "gpt-4o").status, 200);
    let r = chat(gw.port, &[("x-tollgate-vk", "vk-c")], "gpt-4o");
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (402, Some("budget_exceeded")));
    assert_eq!(mock.take().len(), 3);
    assert_eq!(gw.metric("tollgate_virtual_key_rejections_total", &[("reason", "budget")]), 1.0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn spend_is_flushed_on_graceful_stop() {
    let mock = openai_mock(100_000, 10_000);
    let dir = temp_dir("flush");
    let state = dir.join("tollgate.db");
    let vks = "    - { name: capped, secret: env.VK_C, budget: { usd: 5.0, period: day } }\n";
    let extra = format!("  store: {{ path: {} }}\n", state.display());
    let mut gw = Gateway::start(&section(&mock, vks, &extra), "", &[("VK_C", "vk-c")]);
    let r = chat(gw.port, &[("x-tollgate-vk", "vk-c")], "gpt-4o");
    assert_eq!(r.status, 200);
    gw.record(r.header("x-tollgate-request-id").unwrap());
    // Stopped at once, well inside the two-second flush window.
    let status = gw.terminate();
    assert!(status.success(), "{status}");
    assert!((stored_spend(&state, "capped") - 0.35).abs() < 1e-9);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_key_that_answers_429_rests_and_traffic_moves_to_the_other() {
    let hits_a = Arc::new(AtomicUsize::new(0));
    let h = hits_a.clone();
    let mock = Mock::start(move |req| {
        if req.header("authorization") == Some("Bearer sk-key-a") {
            h.fetch_add(1, Ordering::Relaxed);
            Reply::Json(429, vec![("retry-after".into(), "30".into())], json!({"error":{"message":"Rate limit reached","type":"requests"}}).to_string())
        } else {
            json(200, completion("gpt-4o", 1, 1))
        }
    });
    let gw = Gateway::start(
        &format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: a, value: sk-key-a, weight: 50 }}, {{ name: b, value: sk-key-b, weight: 1 }}] }}\n", mock.url()),
        "",
        &[],
    );
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(chat(gw.port, &[], "gpt-4o").status);
    }
    // Key a (weight 50) is picked first almost surely; its 429 goes to the
    // client as the provider sent it, then a rests for 30 s.
    assert_eq!(hits_a.load(Ordering::Relaxed), 1, "statuses {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1);
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 29);
    assert_eq!(gw.metric("tollgate_provider_key_healthy", &[("provider", "openai"), ("key", "a")]), 0.0);
    assert_eq!(gw.metric("tollgate_provider_key_healthy", &[("provider", "openai"), ("key", "b")]), 1.0);
}

#[test]
fn connect_failures_move_to_the_next_key_endpoint() {
    let mock = Mock::start(|_| json(200, completion("gpt-4o", 1, 1)));
    let dead = free_port();
    let gw = Gateway::start(
        &format!(
            "  timeouts: {{ connect_ms: 500 }}\n  providers:\n    azure:\n      keys:\n        - {{ name: dead, value: k-dead, endpoint: \"http://127.0.0.1:{dead}\", weight: 100 }}\n        - {{ name: live, value: k-live, endpoint: \"{}\", weight: 1 }}\n",
            mock.url()
        ),
        "",
        &[],
    );
    for _ in 0..5 {
        let r = post_json(gw.port, "/azure_passthrough/openai/deployments/d/chat/completions?api-version=2024-10-21", &[], &json!({"messages":[]}));
        assert_eq!(r.status, 200, "{}", r.text());
        let rec = gw.record(r.header("x-tollgate-request-id").unwrap());
        assert_eq!(rec["provider_key"], "live");
    }
    assert!(mock.take().iter().all(|r| r.header("api-key") == Some("k-live")));
}

#[test]
fn vertex_service_account_tokens_are_minted_cached_and_refreshed_after_401() {
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    let exchanges = Arc::new(AtomicUsize::new(0));
    let ex = exchanges.clone();
    let token_mock = Mock::start(move |req| {
        let body = String::from_utf8_lossy(&req.body).to_string();
        assert!(body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"), "{body}");
        let assertion = body.split("assertion=").nth(1).unwrap_or("");
        assert_eq!(assertion.split('.').count(), 3, "not a JWT: {assertion}");
        let n = ex.fetch_add(1, Ordering::Relaxed) + 1;
        json(200, json!({"access_token": format!("ya29.minted-{n}"), "expires_in": 3600, "token_type": "Bearer"}))
    });
    let reject_first = Arc::new(AtomicUsize::new(0));
    let rf = reject_first.clone();
    let vertex = Mock::start(move |req| {
        let auth = req.header("authorization").unwrap_or("").to_string();
        if auth == "Bearer ya29.minted-1" && rf.load(Ordering::Relaxed) == 1 {
            return json(401, json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}));
        }
        json(200, json!({"candidates": [], "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1}, "modelVersion": "gemini-2.5-flash"}))
    });
    let dir = temp_dir("sa");
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let sa = json!({
        "type": "service_account", "project_id": "sa-project", "private_key_id": "k1",
        "private_key": String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        "client_email": "gw@sa-project.iam.gserviceaccount.com",
        "token_uri": format!("{}/token", token_mock.url()),
    });
    let sa_path = dir.join("sa.json");
    std::fs::write(&sa_path, sa.to_string()).unwrap();
    let gw = Gateway::start(
        &format!("  providers:\n    vertex: {{ base_url: \"{}\", location: us-central1, keys: [{{ name: sa, service_account_file: {} }}] }}\n", vertex.url(), sa_path.display()),
        "",
        &[],
    );
    let express = "/genai_passthrough/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent";
    let call = || post_json(gw.port, express, &[("x-goog-api-key", "dummy-key")], &json!({"contents": []}));
    assert_eq!(call().status, 200);
    assert_eq!(call().status, 200);
    let reqs = vertex.take();
    assert_eq!(exchanges.load(Ordering::Relaxed), 1, "the token is cached");
    for r in &reqs {
        assert_eq!(r.header("authorization"), Some("Bearer ya29.minted-1"));
        assert!(r.header("x-goog-api-key").is_none());
        // OAuth needs a project path: inserted from the service account.
        assert_eq!(r.path(), "/v1beta1/projects/sa-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent");
    }
    // The provider rejects the token once: that answer passes through, the
    // token is dropped, the next request gets a fresh one.
    reject_first.store(1, Ordering::Relaxed);
    assert_eq!(call().status, 401);
    assert_eq!(call().status, 200);
    assert_eq!(exchanges.load(Ordering::Relaxed), 2);
    assert_eq!(vertex.take().last().unwrap().header("authorization"), Some("Bearer ya29.minted-2"));
    // No key material or token in the records.
    let log = std::fs::read_to_string(&gw.log_path).unwrap();
    assert!(!log.contains("PRIVATE KEY") && !log.contains("ya29.minted"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sighup_reloads_keys_without_dropping_streams_and_refuses_a_bad_file() {
    let events: Vec<String> = (0..8).map(|i| json!({"choices":[{"delta":{"content":format!("t{i}")}}]}).to_string()).collect();
    let mock = Mock::start(move |req| {
        if String::from_utf8_lossy(&req.body).contains("\"stream\":true") {
            Reply::Sse { events: events.clone(), delay: Duration::from_millis(150) }
        } else {
            json(200, completion("gpt-4o", 1, 1))
        }
    });
    let vks = "    - { name: first, secret: env.VK_1 }\n";
    let gw = Gateway::start(
        &format!("  require_virtual_key: true\n  virtual_keys:\n{vks}  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: one, value: sk-one }}] }}\n", mock.url()),
        "",
        &[("VK_1", "vk-first"), ("VK_2", "vk-second")],
    );
    let port = gw.port;
    // A stream of 8 events over ~1.2 s runs across the reload.
    let stream = std::thread::spawn(move || {
        post_json(port, "/openai_passthrough/v1/chat/completions", &[("x-tollgate-vk", "vk-first")], &json!({"model":"gpt-4o","stream":true,"messages":[]}))
    });
    std::thread::sleep(Duration::from_millis(300));
    gw.edit_config("name: first, secret: env.VK_1", "name: second, secret: env.VK_2");
    gw.edit_config("name: one, value: sk-one", "name: two, value: sk-two");
    gw.signal("HUP");
    gw.wait_stderr("reload: configuration from", 1);
    // New requests see the new keys at once.
    let r = chat(port, &[("x-tollgate-vk", "vk-first")], "gpt-4o");
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (401, Some("virtual_key_invalid")));
    let r = chat(port, &[("x-tollgate-vk", "vk-second")], "gpt-4o");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.record(r.header("x-tollgate-request-id").unwrap())["provider_key"], "two");
    // The stream that started before the reload finished whole, on its key.
    let s = stream.join().unwrap();
    assert_eq!(s.status, 200);
    assert_eq!(sse_data(&s.body).len(), 8, "stream cut by the reload: {}", s.text());
    let ups = mock.take();
    assert_eq!(ups[0].header("authorization"), Some("Bearer sk-one"));
    assert_eq!(ups.last().unwrap().header("authorization"), Some("Bearer sk-two"));

    // A file that does not validate is refused; the running config stays.
    gw.edit_config("name: two, value: sk-two", "name: two, valeu: sk-two");
    gw.signal("HUP");
    gw.wait_stderr("reload refused", 1);
    assert!(gw.stderr().contains("valeu"), "the log names the bad key: {}", gw.stderr());
    assert_eq!(chat(port, &[("x-tollgate-vk", "vk-second")], "gpt-4o").status, 200);
    assert_eq!(mock.take()[0].header("authorization"), Some("Bearer sk-two"));
    assert_eq!(gw.metric("tollgate_config_reloads_total", &[("result", "success")]), 1.0);
    assert_eq!(gw.metric("tollgate_config_reloads_total", &[("result", "failure")]), 1.0);
}

/// A throwaway redis-server on a free loopback port (Debian's package,
/// installed by `make deps`).
struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; `make deps` installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, port }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn redis_backed_gateways_share_one_limit_and_fall_back_when_it_is_down() {
    // Fixed one-minute windows: do not straddle a minute boundary.
    let sec = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if sec > 45 {
        std::thread::sleep(Duration::from_secs(61 - sec));
    }
    let mut redis = RedisServer::start();
    // 100k in + 10k out of gpt-4o = 0.35 USD a request.
    let mock = openai_mock(100_000, 10_000);
    let vks = "    - { name: fleet, secret: env.VK_F, requests_per_minute: 3 }\n    - { name: cap, secret: env.VK_C, budget: { usd: 0.5, period: day } }\n";
    let extra = format!("  redis: {{ url: \"redis://127.0.0.1:{}/3\", key_prefix: \"tg-test-{}\", timeout_ms: 300 }}\n", redis.port, std::process::id());
    let env = [("VK_F", "vk-f"), ("VK_C", "vk-c")];
    let a = Gateway::start(&section(&mock, vks, &extra), "", &env);
    let b = Gateway::start(&section(&mock, vks, &extra), "", &env);
    let fleet = [("x-tollgate-vk", "vk-f")];
    assert_eq!(chat(a.port, &fleet, "gpt-4o").status, 200);
    assert_eq!(chat(b.port, &fleet, "gpt-4o").status, 200);
    assert_eq!(chat(a.port, &fleet, "gpt-4o").status, 200);
    // Each instance alone has used fewer than 3; together they used 3.
    let r = chat(b.port, &fleet, "gpt-4o");
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (429, Some("rate_limited")), "{}", r.text());
    let wait: u64 = r.header("retry-after").expect("retry-after").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(chat(a.port, &fleet, "gpt-4o").status, 429);

    // Budget: spend on a counts on b.
    let cap = [("x-tollgate-vk", "vk-c")];
    assert_eq!(chat(a.port, &cap, "gpt-4o").status, 200);
    a.records(4);
    assert_eq!(chat(b.port, &cap, "gpt-4o").status, 200, "0.35 of 0.50 spent");
    b.records(3);
    let r = chat(a.port, &cap, "gpt-4o");
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (402, Some("budget_exceeded")));
    assert!((b.metric("tollgate_virtual_key_spend_usd", &[("virtual_key", "cap")]) - 0.70).abs() < 1e-6, "fleet-wide spend");
    assert_eq!(mock.take().len(), 5, "refused requests never reach the provider");

    // Redis gone: requests are served on local counters and the failure is
    // counted (a's own spend for `cap` is 0.35 < 0.50).
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    assert_eq!(chat(a.port, &cap, "gpt-4o").status, 200);
    assert!(a.metric("tollgate_redis_errors_total", &[("op", "admit")]) >= 1.0);
    a.wait_stderr("using this instance's local counters", 1);
}
