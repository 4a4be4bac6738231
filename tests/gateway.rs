//! End-to-end: the real binary against mock providers on 127.0.0.1.
//! Covers SPEC 1–5 and 7 (issue 2): routes, Gemini/Vertex choice, Azure,
//! credentials, header hygiene, streaming both ways, errors, TLS, config.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const OPENAI_KEY: &str = "sk-gateway-openai-0001";
const ANTHROPIC_KEY: &str = "sk-ant-gateway-0002";
const AZURE_KEY: &str = "azure-gateway-0003";
const GEMINI_KEY: &str = "gemini-gateway-0004";
const VERTEX_KEY: &str = "vertex-gateway-0005";

fn ok_json() -> Reply {
    json(200, json!({"ok": true}))
}

/// One mock per provider so a test can tell where a request went.
struct Mocks {
    openai: Mock,
    anthropic: Mock,
    azure: Mock,
    gemini: Mock,
    vertex: Mock,
}

impl Mocks {
    fn new() -> Mocks {
        Mocks {
            openai: Mock::start(|_| ok_json()),
            anthropic: Mock::start(|_| ok_json()),
            azure: Mock::start(|_| ok_json()),
            gemini: Mock::start(|_| ok_json()),
            vertex: Mock::start(|_| ok_json()),
        }
    }

    fn providers(&self, azure_extra: &str, vertex_extra: &str) -> String {
        format!(
            "  providers:\n    openai: {{ base_url: \"{o}/mock/openai\", keys: [{{ name: main, value: env.T_OPENAI }}] }}\n    anthropic: {{ base_url: \"{a}\", keys: [{{ name: main, value: env.T_ANTHROPIC }}] }}\n    azure: {{ keys: [{{ name: eastus, value: env.T_AZURE, endpoint: \"{z}\"{azure_extra} }}] }}\n    gemini: {{ base_url: \"{g}\", keys: [{{ name: main, value: env.T_GEMINI }}] }}\n    vertex: {{ base_url: \"{v}\"{vertex_extra}, keys: [{{ name: express, value: env.T_VERTEX }}] }}\n",
            o = self.openai.url(),
            a = self.anthropic.url(),
            z = self.azure.url(),
            g = self.gemini.url(),
            v = self.vertex.url(),
        )
    }
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("T_OPENAI", OPENAI_KEY), ("T_ANTHROPIC", ANTHROPIC_KEY), ("T_AZURE", AZURE_KEY), ("T_GEMINI", GEMINI_KEY), ("T_VERTEX", VERTEX_KEY)]
}

fn start(m: &Mocks, extra: &str) -> Gateway {
    Gateway::start(&format!("  timeouts: {{ connect_ms: 1000, read_ms: 5000 }}\n{extra}{}", m.providers("", "")), "", &env())
}

fn one(m: &Mock) -> Recorded {
    let mut r = m.take();
    assert_eq!(r.len(), 1, "expected exactly one upstream request, got {r:?}");
    r.remove(0)
}

const CLIENT_CREDS: [(&str, &str); 4] = [
    ("authorization", "Bearer dummy-key"),
    ("x-api-key", "dummy-key"),
    ("api-key", "dummy-key"),
    ("x-goog-api-key", "dummy-key"),
];

fn assert_only_credential(r: &Recorded, name: &str, value: &str) {
    assert_eq!(r.head.all(name), vec![value], "{name} on {}", r.target);
    for (h, _) in CLIENT_CREDS {
        if h != name {
            assert!(r.header(h).is_none(), "{h} leaked to the provider on {}", r.target);
        }
    }
    for (_, v) in &r.head.headers {
        assert!(!v.contains("dummy-key"), "client credential reached the provider: {:?}", r.head.headers);
    }
}

#[test]
fn each_route_swaps_credentials_and_keeps_path_and_query() {
    let m = Mocks::new();
    let gw = start(&m, "");

    // OpenAI, base URL with a path prefix; every client credential and the
    // `key` query parameter are dropped, the rest of the query kept as sent.
    let r = request(gw.port, "GET", "/openai_passthrough/v1/models?key=dummy-key&limit=2&after=a%20b", &CLIENT_CREDS, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let up = one(&m.openai);
    assert_eq!(up.target, "/mock/openai/v1/models?limit=2&after=a%20b");
    assert_eq!(up.header("host").unwrap(), format!("127.0.0.1:{}", m.openai.port));
    assert_only_credential(&up, "authorization", &format!("Bearer {OPENAI_KEY}"));
    let rec = gw.record(r.header("x-tollgate-request-id").unwrap());
    assert_eq!(rec["provider"], "openai");
    assert_eq!(rec["route"], "/openai_passthrough");
    assert_eq!(rec["provider_key"], "main");
    assert_eq!(rec["upstream_host"], format!("127.0.0.1:{}", m.openai.port));
    assert_eq!(rec["path"], "/openai_passthrough/v1/models?key=REDACTED&limit=2&after=a%20b");

    let r = post_json(gw.port, "/anthropic_passthrough/v1/messages", &[("x-api-key", "dummy-key"), ("anthropic-version", "2023-06-01"), ("anthropic-beta", "prompt-caching-2024-07-31")], &json!({"model":"claude-sonnet-4-5","max_tokens":5,"messages":[]}));
    assert_eq!(r.status, 200);
    let up = one(&m.anthropic);
    assert_eq!(up.target, "/v1/messages");
    assert_only_credential(&up, "x-api-key", ANTHROPIC_KEY);
    assert_eq!(up.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(up.header("anthropic-beta"), Some("prompt-caching-2024-07-31"));

    let r = post_json(gw.port, "/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent?key=dummy-key", &[("x-goog-api-client", "google-genai-sdk/1.0")], &json!({"contents":[]}));
    assert_eq!(r.status, 200);
    let up = one(&m.gemini);
    assert_eq!(up.target, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_only_credential(&up, "x-goog-api-key", GEMINI_KEY);
    assert_eq!(up.header("x-goog-api-client"), Some("google-genai-sdk/1.0"));
    assert!(m.vertex.take().is_empty());

    // The prefix alone forwards `/`.
    let r = get(gw.port, "/openai_passthrough", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(one(&m.openai).target, "/mock/openai/");
}

#[test]
fn every_method_and_bodies_byte_for_byte() {
    let m = Mocks::new();
    let gw = start(&m, "");
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"] {
        let body: &[u8] = if matches!(method, "POST" | "PUT" | "PATCH") { b"{\"x\":1}" } else { b"" };
        let r = request(gw.port, method, "/openai_passthrough/v1/files/file-abc", &[], body);
        assert_eq!(r.status, 200, "{method}: {}", r.text());
        let up = one(&m.openai);
        assert_eq!(up.method, method);
        assert_eq!(up.path(), "/mock/openai/v1/files/file-abc");
        assert_eq!(up.body, body);
    }
    // A multipart upload arrives exactly as sent.
    let boundary = "----tollgate-test";
    let mut body = format!("--{boundary}\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"d.jsonl\"\r\ncontent-type: application/octet-stream\r\n\r\n").into_bytes();
    body.extend((0..100_000u32).map(|i| (i % 251) as u8));
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let r = request(gw.port, "POST", "/openai_passthrough/v1/files", &[("content-type", &ctype), ("authorization", "Bearer dummy-key")], &body);
    assert_eq!(r.status, 200);
    let up = one(&m.openai);
    assert_eq!(up.body, body);
    assert_eq!(up.header("content-type"), Some(ctype.as_str()));
}

#[test]
fn unknown_and_unsafe_paths_never_reach_a_provider() {
    let m = Mocks::new();
    let gw = start(&m, "");
    for path in ["/", "/v1/chat/completions", "/openai_passthroughX/v1/models", "/openai_passthroughX", "/x/openai_passthrough/v1"] {
        let r = get(gw.port, path, &[]);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let j = r.json();
        assert_eq!(j["error"]["type"], "route_not_found");
        assert_eq!(j["error"]["request_id"], r.header("x-tollgate-request-id").unwrap());
    }
    for path in [
        "/openai_passthrough//evil.com/v1",
        "/openai_passthrough/v1/../../admin",
        "/openai_passthrough/v1/%2e%2e/admin",
        "/openai_passthrough/v1/%2E%2e/admin",
        "/openai_passthrough/a%5cb",
        "/openai_passthrough/http://evil.com/x",
        "/openai_passthrough/v1%0d%0ahost:evil",
        "/openai_passthrough/user@evil.com/v1",
        "/genai_passthrough/%2F%2Fevil.com",
    ] {
        let r = get(gw.port, path, &[]);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["type"], "invalid_path", "{path}");
    }
    for mock in [&m.openai, &m.gemini, &m.vertex] {
        assert_eq!(mock.count(), 0, "an unsafe path reached a provider");
    }
    let recs = gw.records(14);
    assert!(recs.iter().any(|r| r["error"] == "invalid_path" && r["status"] == 400));
}

#[test]
fn genai_picks_vertex_by_each_rule_else_gemini() {
    let m = Mocks::new();
    let gw = start(&m, "");
    let body = json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}]});

    // Rule 1: project/location path.
    let p = "/genai_passthrough/v1beta1/projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent";
    assert_eq!(post_json(gw.port, p, &[("x-goog-api-key", "dummy-key")], &body).status, 200);
    let up = one(&m.vertex);
    assert_eq!(up.path(), "/v1beta1/projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent");
    assert_only_credential(&up, "x-goog-api-key", VERTEX_KEY);

    // Rule 2: express mode.
    let p = "/genai_passthrough/v1beta1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    assert_eq!(post_json(gw.port, p, &[("x-goog-api-key", "dummy-key")], &body).status, 200);
    let up = one(&m.vertex);
    assert_eq!(up.target, "/v1beta1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse");

    // Rule 3: a Google OAuth token; it is never forwarded.
    let p = "/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent";
    assert_eq!(post_json(gw.port, p, &[("authorization", "Bearer ya29.client-token")], &body).status, 200);
    let up = one(&m.vertex);
    assert_only_credential(&up, "x-goog-api-key", VERTEX_KEY);
    assert!(!format!("{:?}", up.head).contains("ya29"));

    // Rule 4: the body's model is a Vertex resource path.
    let vb = json!({"model":"projects/p/locations/europe-west4/publishers/google/models/gemini-2.5-pro","contents":[]});
    assert_eq!(post_json(gw.port, "/genai_passthrough/v1/chat/completions", &[], &vb).status, 200);
    assert_eq!(one(&m.vertex).body, vb.to_string().into_bytes());

    // None of them: Gemini, version segment as sent.
    for v in ["v1", "v1beta"] {
        let p = format!("/genai_passthrough/{v}/models/gemini-2.5-flash:generateContent");
        assert_eq!(post_json(gw.port, &p, &[("x-goog-api-key", "dummy-key")], &body).status, 200);
        assert_eq!(one(&m.gemini).path(), &p["/genai_passthrough".len()..]);
    }
    assert_eq!(m.vertex.count(), 0);

    let recs = gw.records(6);
    assert_eq!(recs.iter().filter(|r| r["provider"] == "vertex").count(), 4);
    assert_eq!(recs.iter().filter(|r| r["provider"] == "gemini").count(), 2);
}

#[test]
fn body_peek_is_bounded_and_large_bodies_stream_through() {
    let m = Mocks::new();
    let gw = start(&m, "");
    // 5 MB body whose `model` (a Vertex path) sits at its end: only the
    // first chunk is looked at, so this is Gemini, and the body arrives whole.
    let filler = "a".repeat(5 * 1024 * 1024);
    let body = format!("{{\"contents\":[{{\"parts\":[{{\"text\":\"{filler}\"}}]}}],\"model\":\"projects/p/locations/l/publishers/google/models/g\"}}");
    let r = request(gw.port, "POST", "/genai_passthrough/v1beta/models/g:generateContent", &[("content-type", "application/json")], body.as_bytes());
    assert_eq!(r.status, 200);
    let up = one(&m.gemini);
    assert_eq!(up.body.len(), body.len());
    assert!(up.body == body.as_bytes());
    assert_eq!(m.vertex.count(), 0);
    let rec = gw.record(r.header("x-tollgate-request-id").unwrap());
    assert_eq!(rec["request_bytes"], body.len());
}

#[test]
fn vertex_project_and_location_from_config_replace_the_paths() {
    let m = Mocks::new();
    let gw = Gateway::start(&m.providers("", ", project: gw-project, location: europe-west4"), "", &env());
    let p = "/genai_passthrough/v1beta1/projects/client-p/locations/us-central1/publishers/google/models/g:generateContent";
    assert_eq!(post_json(gw.port, p, &[], &json!({})).status, 200);
    assert_eq!(one(&m.vertex).path(), "/v1beta1/projects/gw-project/locations/europe-west4/publishers/google/models/g:generateContent");
}

#[test]
fn azure_paths_key_and_api_version() {
    let m = Mocks::new();
    // Key without api_version: the client's is kept, /openai/v1 gets none.
    let gw = Gateway::start(&m.providers("", ""), "", &env());
    let cases = [
        ("/openai/deployments/gpt4o/chat/completions?api-version=2024-02-01", "/openai/deployments/gpt4o/chat/completions?api-version=2024-02-01"),
        ("/openai/responses?api-version=2025-03-01-preview", "/openai/responses?api-version=2025-03-01-preview"),
        ("/openai/v1/responses", "/openai/v1/responses"),
        ("/v1/messages", "/v1/messages"),
        ("/anthropic/v1/messages", "/anthropic/v1/messages"),
    ];
    for (client, upstream) in cases {
        let r = post_json(gw.port, &format!("/azure_passthrough{client}"), &[("api-key", "dummy-key"), ("authorization", "Bearer dummy-key")], &json!({"input":"x"}));
        assert_eq!(r.status, 200, "{client}");
        let up = one(&m.azure);
        assert_eq!(up.target, upstream);
        assert_only_credential(&up, "api-key", AZURE_KEY);
    }
    drop(gw);
    // Key with api_version: it replaces the client's and is added where missing.
    let gw = Gateway::start(&m.providers(", api_version: \"2024-10-21\"", ""), "", &env());
    for (client, upstream) in [
        ("/openai/deployments/d/chat/completions?api-version=2024-02-01", "/openai/deployments/d/chat/completions?api-version=2024-10-21"),
        ("/openai/deployments/d/embeddings", "/openai/deployments/d/embeddings?api-version=2024-10-21"),
    ] {
        assert_eq!(post_json(gw.port, &format!("/azure_passthrough{client}"), &[], &json!({})).status, 200);
        assert_eq!(one(&m.azure).target, upstream);
    }
    drop(gw);
    // Direct keys never apply to Azure.
    let gw = Gateway::start(&format!("  allow_direct_keys: true\n{}", m.providers("", "")), "", &env());
    assert_eq!(post_json(gw.port, "/azure_passthrough/openai/v1/responses", &[("api-key", "client-own-key")], &json!({})).status, 200);
    assert_only_credential(&one(&m.azure), "api-key", AZURE_KEY);
}

#[test]
fn direct_keys_and_unconfigured_providers() {
    let mock = Mock::start(|_| ok_json());
    // No key for openai, direct keys off: 503 before any upstream contact.
    let gw = Gateway::start(&format!("  providers:\n    openai: {{ base_url: \"{}\" }}\n", mock.url()), "", &[]);
    let r = get(gw.port, "/openai_passthrough/v1/models", &[("authorization", "Bearer sk-client")]);
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["type"], "provider_not_configured");
    let r = get(gw.port, "/anthropic_passthrough/v1/models", &[]);
    assert_eq!(r.status, 503, "a provider absent from the config is not configured either");
    assert_eq!(mock.count(), 0);
    drop(gw);
    // Direct keys on: the client's own credential goes through as sent;
    // control headers never do.
    let gw = Gateway::start(&format!("  allow_direct_keys: true\n  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-configured }}] }}\n", mock.url()), "", &[]);
    assert_eq!(get(gw.port, "/openai_passthrough/v1/models", &[("authorization", "Bearer sk-client"), ("x-tollgate-trace", "1"), ("x-bf-vk", "x")]).status, 200);
    let up = one(&mock);
    assert_eq!(up.header("authorization"), Some("Bearer sk-client"));
    assert!(up.header("x-tollgate-trace").is_none() && up.header("x-bf-vk").is_none());
    // Without a client credential the configured key is used.
    assert_eq!(get(gw.port, "/openai_passthrough/v1/models", &[]).status, 200);
    assert_eq!(one(&mock).header("authorization"), Some("Bearer sk-configured"));
}

#[test]
fn weighted_keys_model_allow_lists_and_env_values() {
    let mock = Mock::start(|_| ok_json());
    let section = format!(
        "  providers:\n    openai:\n      base_url: \"{}\"\n      keys:\n        - {{ name: heavy, value: env.K_HEAVY, weight: 3 }}\n        - {{ name: light, value: env.K_LIGHT, weight: 1 }}\n        - {{ name: minis, value: literal-mini-key, weight: 100, models: [\"gpt-4o-mini*\"] }}\n",
        mock.url()
    );
    let gw = Gateway::start(&section, "", &[("K_HEAVY", "sk-heavy"), ("K_LIGHT", "sk-light")]);
    let n = 400;
    for _ in 0..n {
        assert_eq!(post_json(gw.port, "/openai_passthrough/v1/chat/completions", &[], &json!({"model":"gpt-4o","messages":[]})).status, 200);
    }
    let reqs = mock.take();
    let heavy = reqs.iter().filter(|r| r.header("authorization") == Some("Bearer sk-heavy")).count();
    let light = reqs.iter().filter(|r| r.header("authorization") == Some("Bearer sk-light")).count();
    assert_eq!(heavy + light, n, "the model-restricted key never serves gpt-4o");
    let share = heavy as f64 / n as f64;
    assert!((0.65..=0.85).contains(&share), "heavy share {share}");
    // The restricted key serves its models (weight 100 of 104).
    for _ in 0..20 {
        post_json(gw.port, "/openai_passthrough/v1/chat/completions", &[], &json!({"model":"gpt-4o-mini-2024-07-18","messages":[]}));
    }
    let minis = mock.take().iter().filter(|r| r.header("authorization") == Some("Bearer literal-mini-key")).count();
    assert!(minis >= 15, "{minis}");
    let recs = gw.records(n + 20);
    assert!(recs.iter().any(|r| r["provider_key"] == "minis"));
    assert!(!std::fs::read_to_string(&gw.log_path).unwrap().contains("sk-heavy"));
}

#[test]
fn header_hygiene_both_ways_and_request_ids() {
    let mock = Mock::start(|_| {
        Reply::Json(
            200,
            vec![
                ("set-cookie".into(), "session=1".into()),
                ("x-goog-api-key".into(), "leak".into()),
                ("api-key".into(), "leak".into()),
                ("x-api-key".into(), "leak".into()),
                ("authorization".into(), "leak".into()),
                ("x-ratelimit-remaining-requests".into(), "99".into()),
                ("anthropic-ratelimit-tokens-remaining".into(), "1000".into()),
                ("x-request-id".into(), "req_upstream".into()),
                ("keep-alive".into(), "timeout=5".into()),
            ],
            "{}".into(),
        )
    });
    let gw = Gateway::start(&format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-real }}] }}\n", mock.url()), "", &[]);
    let r = get(
        gw.port,
        "/openai_passthrough/v1/models",
        &[("x-request-id", "client-rid-42"), ("openai-beta", "assistants=v2"), ("x-stainless-os", "Linux"), ("x-tollgate-vk", "vk"), ("keep-alive", "300"), ("te", "trailers")],
    );
    assert_eq!(r.status, 200);
    for h in ["set-cookie", "x-goog-api-key", "api-key", "x-api-key", "authorization", "keep-alive"] {
        assert!(r.header(h).is_none(), "{h} reached the client");
    }
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("99"));
    assert_eq!(r.header("anthropic-ratelimit-tokens-remaining"), Some("1000"));
    assert_eq!(r.header("x-request-id"), Some("req_upstream"));
    assert_eq!(r.header("x-tollgate-request-id"), Some("client-rid-42"));
    let up = one(&mock);
    assert_eq!(up.header("openai-beta"), Some("assistants=v2"));
    assert_eq!(up.header("x-stainless-os"), Some("Linux"));
    for h in ["x-tollgate-vk", "keep-alive", "te"] {
        assert!(up.header(h).is_none(), "{h} reached the provider");
    }
    // Without a client id, a fresh one per request.
    let a = get(gw.port, "/openai_passthrough/v1/models", &[]);
    let b = get(gw.port, "/openai_passthrough/v1/models", &[]);
    let (a, b) = (a.header("x-tollgate-request-id").unwrap().to_string(), b.header("x-tollgate-request-id").unwrap().to_string());
    assert!(a.len() >= 16 && a != b);
    assert_eq!(gw.record(&a)["status"], 200);
}

#[test]
fn sse_reaches_the_client_event_by_event() {
    let events: Vec<String> = (0..6).map(|i| json!({"i": i}).to_string()).collect();
    let ev = events.clone();
    let mock = Mock::start(move |_| Reply::Sse { events: ev.clone(), delay: Duration::from_millis(200) });
    let gw = Gateway::start(&format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-real }}] }}\n", mock.url()), "", &[]);
    let r = post_json(gw.port, "/openai_passthrough/v1/chat/completions", &[], &json!({"model":"gpt-4o","stream":true,"messages":[]}));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(r.header("content-encoding").is_none());
    assert_eq!(sse_data(&r.body), events);
    let sent = mock.sent_events.lock().unwrap().clone();
    assert_eq!(sent.len(), events.len());
    // Each event reaches the client before the provider sends the next one,
    // and promptly after it was sent.
    let mut arrivals = Vec::new();
    let mut seen = 0;
    for (t, bytes) in &r.chunks {
        for _ in 0..sse_data(bytes).len() {
            arrivals.push(*t);
            seen += 1;
        }
    }
    assert_eq!(seen, events.len(), "one chunk per event or fewer, never merged across the 200 ms gaps");
    for i in 0..events.len() {
        let lag = arrivals[i].saturating_duration_since(sent[i]);
        assert!(lag < Duration::from_millis(100), "event {i} arrived {lag:?} after it was sent");
        if i + 1 < events.len() {
            assert!(arrivals[i] < sent[i + 1], "event {i} was held until event {} was sent", i + 1);
        }
    }
    let rec = gw.record(r.header("x-tollgate-request-id").unwrap());
    assert_eq!(rec["stream"], true);
    assert!(rec["duration_ms"].as_f64().unwrap() >= 1000.0);
    assert!(rec["ttfb_ms"].as_f64().unwrap() < 500.0);
}

#[test]
fn chunked_uploads_stream_upstream() {
    let mock = Mock::start(|_| ok_json());
    let gw = Gateway::start(&format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-real }}] }}\n", mock.url()), "", &[]);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.write_all(b"POST /openai_passthrough/v1/uploads/u1/parts HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\ncontent-type: application/octet-stream\r\n\r\n").unwrap();
    let pieces: Vec<Vec<u8>> = (0..4u8).map(|i| vec![b'a' + i; 1000]).collect();
    let mut last_sent = Instant::now();
    for p in &pieces {
        s.write_all(format!("{:x}\r\n", p.len()).as_bytes()).unwrap();
        s.write_all(p).unwrap();
        s.write_all(b"\r\n").unwrap();
        s.flush().unwrap();
        last_sent = Instant::now();
        thread::sleep(Duration::from_millis(300));
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(s)).unwrap();
    assert_eq!(r.status, 200);
    let up = one(&mock);
    assert_eq!(up.body, pieces.concat());
    assert!(up.chunk_times.len() >= 4, "upload arrived in {} pieces", up.chunk_times.len());
    assert!(up.chunk_times[0] + Duration::from_millis(600) < last_sent, "the first piece reached the provider only at the end");
}

#[test]
fn client_disconnect_ends_the_upstream_request_and_is_recorded() {
    let events: Vec<String> = (0..50).map(|i| format!("{{\"i\":{i}}}")).collect();
    let mock = Mock::start(move |_| Reply::Sse { events: events.clone(), delay: Duration::from_millis(100) });
    let gw = Gateway::start(&format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-real }}] }}\n", mock.url()), "", &[]);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.write_all(b"GET /openai_passthrough/v1/stream HTTP/1.1\r\nhost: x\r\nx-request-id: hangup-1\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("\"i\":2") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let hung_up = Instant::now();
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(3);
    while mock.stream_closed.lock().unwrap().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let closed = *mock.stream_closed.lock().unwrap().first().expect("upstream stream was not ended");
    assert!(closed.duration_since(hung_up) < Duration::from_millis(1000), "upstream ended {:?} after the client left", closed.duration_since(hung_up));
    assert!(mock.sent_events.lock().unwrap().len() < 20);
    let rec = gw.record("hangup-1");
    assert_eq!(rec["error"], "client_disconnected");
    assert_eq!(rec["stream"], true);
}

#[test]
fn upstream_down_is_502_and_silent_upstream_is_504() {
    let dead_port = free_port();
    let silent = Mock::start(|_| Reply::Silent);
    let section = format!(
        "  timeouts: {{ connect_ms: 500, read_ms: 700 }}\n  providers:\n    openai: {{ base_url: \"http://127.0.0.1:{dead_port}\", keys: [{{ name: k, value: sk-real }}] }}\n    anthropic: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-real }}] }}\n",
        silent.url()
    );
    let gw = Gateway::start(&section, "", &[]);
    let r = post_json(gw.port, "/openai_passthrough/v1/chat/completions", &[], &json!({"model":"gpt-4o"}));
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "upstream_unreachable");
    assert!(!r.text().contains("sk-real"));
    let t = Instant::now();
    let r = post_json(gw.port, "/anthropic_passthrough/v1/messages", &[], &json!({"model":"claude"}));
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "upstream_timeout");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(650) && took < Duration::from_secs(3), "{took:?}");
    assert_eq!(silent.count(), 1, "a sent request is never replayed");
    assert!(gw.metric("tollgate_upstream_errors_total", &[("provider", "openai"), ("kind", "upstream_unreachable")]) >= 1.0);
    assert!(gw.metric("tollgate_upstream_errors_total", &[("provider", "anthropic"), ("kind", "upstream_timeout")]) >= 1.0);
}

#[test]
fn upstream_connections_are_pooled() {
    let mock = Mock::start(|_| ok_json());
    let gw = Gateway::start(&format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-real }}] }}\n", mock.url()), "upstream_keepalive_pool_size: 16", &[]);
    for _ in 0..10 {
        assert_eq!(get(gw.port, "/openai_passthrough/v1/models", &[]).status, 200);
        // The upstream connection goes back to the pool just after the
        // client has its response; a request sent at once may find it busy.
        std::thread::sleep(Duration::from_millis(20));
    }
    let ports: std::collections::HashSet<u16> = mock.take().iter().map(|r| r.conn_port).collect();
    assert_eq!(ports.len(), 1, "ten sequential requests used {} upstream connections", ports.len());
}

#[test]
fn websocket_upgrade_is_passed_through() {
    let mock = Mock::start(|req| {
        assert_eq!(req.header("upgrade"), Some("websocket"));
        websocket_echo()
    });
    let gw = Gateway::start(&format!("  providers:\n    openai: {{ base_url: \"{}\", keys: [{{ name: k, value: sk-real }}] }}\n", mock.url()), "", &[]);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    websocket_round_trip(&mut s, "x");
    let up = one(&mock);
    assert_eq!(up.target, "/v1/realtime?model=gpt-4o-realtime");
    assert_eq!(up.header("authorization"), Some("Bearer sk-real"));
}

#[test]
fn health_and_readiness() {
    let gw = Gateway::start("", "", &[]);
    let r = get(gw.port, "/healthz", &[]);
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));
    assert_eq!(get(gw.port, "/readyz", &[]).status, 200);
    assert_eq!(get(gw.metrics_port, "/metrics", &[]).status, 200);
}

#[test]
fn bad_config_fails_at_start_naming_file_and_key() {
    let dir = temp_dir("badconf");
    let cases = [
        ("tollgate:\n  providers:\n    openai: { keys: [{ name: k, value: env.TOLLGATE_TEST_UNSET_VAR }] }\n", "tollgate.providers.openai.keys[0].value"),
        ("tollgate:\n  listen: not-an-address\n", "tollgate.listen"),
        ("tollgate:\n  providers:\n    openai: { base_url: \"ftp://x\" }\n", "tollgate.providers.openai.base_url"),
        ("tollgate:\n  lisen: \"127.0.0.1:1\"\n", "lisen"),
        ("tollgate:\n  virtual_keys: [{ name: a, secret: env.TOLLGATE_TEST_UNSET_VAR }]\n", "tollgate.virtual_keys[0].secret"),
        ("tollgate:\n  providers:\n    vertex: { keys: [{ name: sa, service_account_file: /nonexistent/sa.json }] }\n", "tollgate.providers.vertex.keys[0].service_account_file"),
        ("tollgate:\n  providers:\n    azure: { keys: [{ name: a, value: k, endpoint: env.TOLLGATE_TEST_UNSET_VAR }] }\n", "tollgate.providers.azure.keys[0].endpoint"),
    ];
    for (i, (yaml, key)) in cases.iter().enumerate() {
        let f = dir.join(format!("bad{i}.yaml"));
        std::fs::write(&f, format!("version: 1\n{yaml}")).unwrap();
        for check_only in [false, true] {
            let mut cmd = std::process::Command::new(BIN);
            if check_only {
                cmd.arg("-t");
            }
            let out = cmd.arg("-c").arg(&f).env_remove("TOLLGATE_TEST_UNSET_VAR").output().unwrap();
            assert!(!out.status.success(), "{yaml} was accepted");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(key) && err.contains(f.to_str().unwrap()), "{err}");
        }
    }
    let good = dir.join("good.yaml");
    std::fs::write(&good, "version: 1\ntollgate:\n  listen: \"127.0.0.1:1\"\n").unwrap();
    let out = std::process::Command::new(BIN).args(["-t", "-c"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(dir);
}
