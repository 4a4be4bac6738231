//! Operating tollgate (issue 6): graceful upgrades under load, the systemd
//! unit, and the shipped alert rules and dashboard.

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn two_upgrades_in_a_row_under_load_lose_no_request_and_cut_no_stream() {
    let events: Vec<String> = (0..10).map(|i| json!({"i": i}).to_string()).collect();
    let ev = events.clone();
    let mock = Mock::start(move |req| {
        if req.path().ends_with("/stream") {
            Reply::Sse { events: ev.clone(), delay: Duration::from_millis(150) }
        } else {
            json(200, json!({"ok": true}))
        }
    });
    let mut gw = Gateway::start(
        &format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-up }}] }}\n", mock.url()),
        "grace_period_seconds: 2\ngraceful_shutdown_timeout_seconds: 10",
        &[],
    );
    let port = gw.port;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, streams_ok, streams_cut) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let failures: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let mut workers = Vec::new();
    for w in 0..4 {
        let (stop, ok, failed, streams_ok, streams_cut, failures, events) =
            (stop.clone(), ok.clone(), failed.clone(), streams_ok.clone(), streams_cut.clone(), failures.clone(), events.clone());
        workers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if w < 2 {
                    let r = raw_request(port, b"GET /openai_passthrough/v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
                    match r {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(r) => {
                            failures.lock().unwrap().push(format!("status {}: {}", r.status, r.text()));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            failures.lock().unwrap().push(format!("request: {e}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    thread::sleep(Duration::from_millis(10));
                } else {
                    let r = raw_request(port, b"GET /openai_passthrough/v1/stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
                    match r {
                        Ok(r) if r.status == 200 && sse_data(&r.body) == events => streams_ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            failures.lock().unwrap().push(format!("stream: {:?}", other.map(|r| (r.status, r.text()))));
                            streams_cut.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }
        }));
    }
    thread::sleep(Duration::from_secs(1));
    let old1 = gw.upgrade();
    thread::sleep(Duration::from_secs(3));
    let old2 = gw.upgrade();
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    for mut old in [old1, old2] {
        let deadline = Instant::now() + Duration::from_secs(15);
        while old.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "an old process did not finish draining");
            thread::sleep(Duration::from_millis(100));
        }
    }
    let (ok, failed, sok, scut) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), streams_ok.load(Ordering::Relaxed), streams_cut.load(Ordering::Relaxed));
    assert_eq!((failed, scut), (0, 0), "failures: {:?}", failures.lock().unwrap());
    assert!(ok > 50, "only {ok} requests went through");
    assert!(sok >= 8, "only {sok} streams completed");
    // The newest process serves on.
    assert_eq!(get(gw.port, "/healthz", &[]).status, 200);
    // Every request has its record, written by whichever process served it.
    let records = gw.records(ok + sok);
    let served = records.iter().filter(|r| r["route"] == "/openai_passthrough" && r["status"] == 200).count();
    assert_eq!(served, ok + sok, "records: {served}, requests: {}", ok + sok);
}

/// Issue 18: 16 kept-alive connections sending back to back and 4 reading
/// SSE streams, through 5 graceful upgrades and a SIGTERM drain: no request
/// fails, every stream is whole, every request has one record.
#[test]
fn upgrades_and_a_stop_under_keep_alive_load_lose_no_request() {
    drain_load::run(drain_load::DrainLoad { connections: 16, streams: 4, upgrades: 5, every: Duration::from_millis(2500) });
}

/// A stream longer than the grace period finishes on the stopping process
/// (within graceful_shutdown_timeout_seconds), its record is written once,
/// and the process exits as soon as it is done; a stream longer than both
/// is cut when the timeout ends.
#[test]
fn streams_in_flight_finish_within_the_shutdown_timeout() {
    let events: Vec<String> = (0..15).map(|i| json!({ "i": i }).to_string()).collect();
    let ev = events.clone();
    let mock = Mock::start(move |_| Reply::Sse { events: ev.clone(), delay: Duration::from_millis(200) });
    let section = format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-drain-stream }}] }}\n", mock.url());
    for (top, whole) in [("grace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 10", true), ("grace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1", false)] {
        let mut gw = Gateway::start(&section, top, &[]);
        let mut conn = send_request(gw.port, "GET", "/openai_passthrough/v1/stream", &[("x-request-id", "long-stream")], b"", Duration::from_secs(20));
        let head = read_head(&mut conn).unwrap().unwrap();
        assert!(head.start.contains(" 200 "), "{head:?}");
        // The stream runs 3 s; the stop comes after its first bytes.
        let t = Instant::now();
        let reader = thread::spawn(move || {
            let mut body = Vec::new();
            let _ = conn.read_to_end(&mut body);
            body
        });
        thread::sleep(Duration::from_millis(300));
        let status = gw.terminate();
        let stopped_after = t.elapsed();
        let body = reader.join().unwrap();
        // The raw chunked bytes: the chunk-size lines are no `data:` lines.
        let got = sse_data(&body);
        assert!(status.success(), "exit: {status}");
        if whole {
            assert_eq!(got, events, "the stream was cut");
            assert!(stopped_after < Duration::from_secs(6), "the process lingered {stopped_after:?} after the stream ended");
            let recs: Vec<_> = gw.records(1).into_iter().filter(|r| r["request_id"] == "long-stream").collect();
            assert_eq!(recs.len(), 1, "{recs:?}");
            assert_eq!(recs[0]["status"], 200);
        } else {
            assert!(got.len() < events.len(), "a stream longer than the shutdown timeout was not cut");
            assert!(stopped_after < Duration::from_secs(3), "stopped after {stopped_after:?}");
        }
    }
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/tollgate.service")).unwrap();
    for directive in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "LimitNOFILE=",
        "EnvironmentFile=",
        "Restart=on-failure",
        "User=tollgate",
        "ExecReload=/bin/kill -QUIT $MAINPID",
        "ExecReload=/usr/local/bin/tollgate -u -d -c /etc/tollgate/tollgate.yaml",
    ] {
        assert!(unit.contains(directive), "unit lacks {directive:?}");
    }
    // systemd-analyze checks the executables exist: point them at the
    // binary under test.
    let dir = temp_dir("unit");
    let path = dir.join("tollgate.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/tollgate", BIN)).unwrap();
    let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze (package systemd) is installed by `make deps`");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains(&path.display().to_string()), "systemd-analyze verify: {stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Metric names (`tollgate_...`) used in a text, histogram suffixes folded.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("tollgate_") {
        let start = i + pos;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let mut name = text[start..end].to_string();
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(n) = name.strip_suffix(suffix) {
                name = n.to_string();
            }
        }
        out.insert(name);
        i = end;
    }
    out
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics() {
    // Families without samples are not exported, so drive traffic that
    // touches every metric: a priced completion, an upstream failure, a
    // virtual-key rejection.
    let mock = Mock::start(|_| {
        json(200, json!({"id":"c1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}))
    });
    let section = format!(
        "  require_virtual_key: true\n  virtual_keys: [{{ name: t, secret: env.T_VK, budget: {{ usd: 1, period: day }} }}]\n  timeouts: {{ connect_ms: 300 }}\n  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-m }}] }}\n    anthropic: {{ base_url: \"http://127.0.0.1:{}\", keys: [{{ name: k, value: sk-a }}] }}\n  routing:\n    models:\n      smart: {{ targets: [{{ model: openai/gpt-4o-mini }}] }}\n",
        mock.url(),
        free_port()
    );
    let gw = Gateway::start(&section, "", &[("T_VK", "vk-secret")]);
    let vk = [("x-tollgate-vk", "vk-secret")];
    assert_eq!(post_json(gw.port, "/openai_passthrough/v1/chat/completions", &vk, &json!({"model":"gpt-4o-mini","messages":[]})).status, 200);
    assert_eq!(post_json(gw.port, "/anthropic_passthrough/v1/messages", &vk, &json!({"model":"claude"})).status, 502);
    assert_eq!(get(gw.port, "/openai_passthrough/v1/models", &[]).status, 401);
    // /openai through an alias: attempts and the cooldown gauge (SPEC 10).
    assert_eq!(post_json(gw.port, "/openai/v1/chat/completions", &vk, &json!({"model":"smart","messages":[{"role":"user","content":"hi"}]})).status, 200);
    gw.records(4);
    let exported: BTreeSet<String> = gw
        .metrics()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    assert!(exported.len() >= 15, "{exported:?}");
    let root = env!("CARGO_MANIFEST_DIR");
    for file in ["conf/alerts.yml", "conf/grafana-dashboard.json", "README.md"] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let used = metric_names(&text);
        assert!(!used.is_empty() || file == "README.md", "{file} names no metric");
        for name in used {
            // README mentions the prefix itself and tollgate_ in paths.
            if name == "tollgate_" || !name.starts_with("tollgate_") || name.len() <= "tollgate_".len() {
                continue;
            }
            assert!(exported.contains(&name), "{file} uses {name}, which the binary does not export");
        }
    }
    // The dashboard is valid JSON with panels.
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!("{root}/conf/grafana-dashboard.json")).unwrap()).unwrap();
    assert!(dash["panels"].as_array().unwrap().len() >= 10);
}

#[test]
fn shipped_configs_pass_the_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    for file in ["conf/tollgate.yaml", "systemd/tollgate.yaml"] {
        let out = std::process::Command::new(BIN).args(["-t", "-c", &format!("{root}/{file}")]).output().unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn daemon_mode_writes_its_pid_and_sigterm_stops_it() {
    let mock = Mock::start(|_| json(200, json!({"ok": true})));
    let dir = temp_dir("daemon");
    let port = free_port();
    let yaml = format!(
        "version: 1\nthreads: 1\npid_file: {d}/t.pid\nupgrade_sock: {d}/u.sock\nerror_log: {d}/error.log\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\ntollgate:\n  listen: \"127.0.0.1:{port}\"\n  access_log: {d}/access.log\n  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-d }}] }}\n",
        mock.url(),
        d = dir.display()
    );
    std::fs::write(dir.join("t.yaml"), yaml).unwrap();
    let st = std::process::Command::new(BIN).args(["-d", "-c"]).arg(dir.join("t.yaml")).status().unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Ok(p) = std::fs::read_to_string(dir.join("t.pid")) {
            if let Ok(p) = p.trim().parse::<u32>() {
                if raw_request(port, b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").is_ok_and(|r| r.status == 200) {
                    break p;
                }
            }
        }
        assert!(Instant::now() < deadline, "daemon did not come up");
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(get(port, "/openai_passthrough/v1/models", &[]).status, 200);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !std::fs::read_to_string(dir.join("access.log")).unwrap_or_default().contains("/openai_passthrough/v1/models") {
        assert!(Instant::now() < deadline, "the daemon wrote no record");
        thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
        thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(dir);
}
