//! Cloud identities and the command line through the real binary (issue 16
//! parts 2-4): Azure Entra ID (client credentials, managed identity) and
//! Vertex Application Default Credentials (gcloud authorized_user file,
//! metadata server) against mock token endpoints on 127.0.0.1 that check
//! what the real ones check; tokens cached, refreshed after expiry and after
//! a 401, a failing token endpoint answered as 503; no secret or token in
//! responses, records, logs or metrics. Then `--help`, `--version`, `check`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The form fields of a request body, decoded.
fn form(body: &[u8]) -> Vec<(String, String)> {
    let dec = |s: &str| {
        let s = s.replace('+', " ");
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

fn field<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
    f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn oauth_error(status: u16, what: &str) -> Reply {
    json(status, json!({"error": "invalid_request", "error_description": what}))
}

fn chat_completion() -> Value {
    json!({"id":"c","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}})
}

/// An Azure OpenAI mock: 401 for a token in `reject`, else a completion.
fn azure_mock(reject: Arc<std::sync::Mutex<Option<String>>>) -> Mock {
    Mock::start(move |req| {
        let auth = req.header("authorization").unwrap_or("");
        if reject.lock().unwrap().as_deref().is_some_and(|t| auth == format!("Bearer {t}")) {
            return json(401, json!({"error": {"code": "401", "message": "Access denied due to invalid token"}}));
        }
        json(200, chat_completion())
    })
}

const AZ_PATH: &str = "/azure_passthrough/openai/deployments/dep/chat/completions?api-version=2024-10-21";

fn az_call(port: u16) -> Response {
    // The client's own credentials are never forwarded to Azure.
    post_json(port, AZ_PATH, &[("api-key", "client-placeholder-key"), ("authorization", "Bearer client-bearer")], &json!({"messages": [{"role": "user", "content": "hi"}]}))
}

#[test]
fn azure_entra_client_credentials_cached_refreshed_after_401_and_never_leaked() {
    let exchanges = Arc::new(AtomicUsize::new(0));
    let ex = exchanges.clone();
    let entra = Mock::start(move |req| {
        // What Entra's v2.0 token endpoint checks.
        if req.method != "POST" || req.path() != "/tenant-1/oauth2/v2.0/token" {
            return oauth_error(404, "no such endpoint");
        }
        if !req.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
            return oauth_error(400, "AADSTS900144: body must be form-encoded");
        }
        let f = form(&req.body);
        let ok = field(&f, "grant_type") == Some("client_credentials")
            && field(&f, "client_id") == Some("app-1")
            && field(&f, "client_secret") == Some("entra-secret-0123456789")
            && field(&f, "scope") == Some("https://cognitiveservices.azure.com/.default");
        if !ok {
            return oauth_error(400, "AADSTS7000215: invalid client or scope");
        }
        let n = ex.fetch_add(1, Ordering::SeqCst) + 1;
        json(200, json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": format!("entra-access-token-{n}")}))
    });
    let reject = Arc::new(std::sync::Mutex::new(None));
    let azure = azure_mock(reject.clone());
    let section = format!(
        "  providers:\n    azure: {{ keys: [{{ name: entra-sp, endpoint: \"{}\", entra: {{ tenant_id: tenant-1, client_id: app-1, client_secret: env.AZ_CLIENT_SECRET, authority: \"{}\" }} }}] }}\n",
        azure.url(),
        entra.url()
    );
    let mut gw = Gateway::start(&section, "", &[("AZ_CLIENT_SECRET", "entra-secret-0123456789")]);
    gw.add_secret("entra-access-token-1");
    gw.add_secret("entra-access-token-2");

    for _ in 0..3 {
        let r = az_call(gw.port);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(exchanges.load(Ordering::SeqCst), 1, "the token is cached across requests");
    for r in azure.take() {
        assert_eq!(r.header("authorization"), Some("Bearer entra-access-token-1"));
        assert_eq!(r.header("api-key"), None, "no api-key with an Entra identity");
    }

    // Azure refuses the token once: that answer passes, the token is dropped,
    // the next request gets a new one.
    *reject.lock().unwrap() = Some("entra-access-token-1".into());
    assert_eq!(az_call(gw.port).status, 401);
    assert_eq!(az_call(gw.port).status, 200);
    assert_eq!(exchanges.load(Ordering::SeqCst), 2);
    assert_eq!(azure.take().last().unwrap().header("authorization"), Some("Bearer entra-access-token-2"));

    // `/openai` with an azure/ model: the same identity, the cached token.
    let r = post_json(gw.port, "/openai/v1/chat/completions", &[("authorization", "Bearer sk-placeholder")], &json!({"model": "azure/dep", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = azure.take();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].path().starts_with("/openai/deployments/dep/chat/completions"), "{}", sent[0].target);
    assert_eq!(sent[0].header("authorization"), Some("Bearer entra-access-token-2"));
    assert_eq!(sent[0].header("api-key"), None);
    assert_eq!(exchanges.load(Ordering::SeqCst), 2);
    let rec = gw.record(r.header("x-tollgate-request-id").unwrap());
    assert_eq!((rec["provider"].as_str(), rec["provider_key"].as_str()), (Some("azure"), Some("entra-sp")));
    // Records, logs and metrics are scanned for the secret and both tokens
    // when `gw` is dropped.
}

#[test]
fn azure_managed_identity_from_imds_is_refreshed_when_it_expires() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let imds = Mock::start(move |req| {
        // What IMDS checks: GET, the Metadata header, api-version and resource.
        if req.method != "GET" || req.path() != "/metadata/identity/oauth2/token" {
            return oauth_error(404, "no such endpoint");
        }
        if req.header("metadata") != Some("true") {
            return oauth_error(400, "Required metadata header not specified");
        }
        let q = form(req.query().unwrap_or("").as_bytes());
        if field(&q, "api-version") != Some("2018-02-01") || field(&q, "resource") != Some("https://cognitiveservices.azure.com") {
            return oauth_error(400, "bad api-version or resource");
        }
        let n = h.fetch_add(1, Ordering::SeqCst) + 1;
        // The first token is already expired (IMDS sends numbers as strings).
        let expires_in = if n == 1 { "0" } else { "86399" };
        json(200, json!({"access_token": format!("imds-access-token-{n}"), "expires_in": expires_in, "expires_on": "1900000000", "resource": "https://cognitiveservices.azure.com", "token_type": "Bearer"}))
    });
    let azure = azure_mock(Arc::new(std::sync::Mutex::new(None)));
    let section = format!("  providers:\n    azure: {{ keys: [{{ name: mi, endpoint: \"{}\", entra: managed_identity }}] }}\n", azure.url());
    let mut gw = Gateway::start(&section, "", &[("AZURE_POD_IDENTITY_AUTHORITY_HOST", &imds.url()), ("IDENTITY_ENDPOINT", ""), ("IDENTITY_HEADER", "")]);
    gw.add_secret("imds-access-token-1");
    gw.add_secret("imds-access-token-2");
    for _ in 0..3 {
        assert_eq!(az_call(gw.port).status, 200);
    }
    let auth: Vec<String> = azure.take().iter().map(|r| r.header("authorization").unwrap_or("").to_string()).collect();
    assert_eq!(auth, ["Bearer imds-access-token-1", "Bearer imds-access-token-2", "Bearer imds-access-token-2"]);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "an expired token is replaced, a valid one reused");
}

#[test]
fn azure_managed_identity_on_app_service_uses_identity_endpoint_and_header() {
    let app = Mock::start(|req| {
        // App Service / Container Apps: the secret header, api-version 2019-08-01.
        if req.header("x-identity-header") != Some("app-service-identity-header-secret") {
            return oauth_error(401, "missing or wrong X-IDENTITY-HEADER");
        }
        let q = form(req.query().unwrap_or("").as_bytes());
        if req.method != "GET" || req.path() != "/msi/token" || field(&q, "api-version") != Some("2019-08-01") || field(&q, "resource") != Some("https://cognitiveservices.azure.com") || field(&q, "client_id") != Some("user-assigned-1") {
            return oauth_error(400, "bad request");
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        json(200, json!({"access_token": "app-service-access-token", "expires_on": (now + 3600).to_string(), "resource": "https://cognitiveservices.azure.com", "token_type": "Bearer", "client_id": "user-assigned-1"}))
    });
    let azure = azure_mock(Arc::new(std::sync::Mutex::new(None)));
    let section = format!("  providers:\n    azure: {{ keys: [{{ name: uai, endpoint: \"{}\", entra: {{ managed_identity: true, client_id: user-assigned-1 }} }}] }}\n", azure.url());
    let endpoint = format!("{}/msi/token", app.url());
    let mut gw = Gateway::start(&section, "", &[("IDENTITY_ENDPOINT", &endpoint), ("IDENTITY_HEADER", "app-service-identity-header-secret")]);
    gw.add_secret("app-service-identity-header-secret");
    gw.add_secret("app-service-access-token");
    for _ in 0..2 {
        assert_eq!(az_call(gw.port).status, 200);
    }
    assert_eq!(app.count(), 1, "cached");
    assert!(azure.take().iter().all(|r| r.header("authorization") == Some("Bearer app-service-access-token") && r.header("api-key").is_none()));
}

#[test]
fn a_token_endpoint_that_is_down_is_a_503_on_both_routes() {
    let azure = azure_mock(Arc::new(std::sync::Mutex::new(None)));
    let closed = free_port();
    let section = format!(
        "  providers:\n    azure: {{ keys: [{{ name: sp, endpoint: \"{}\", entra: {{ tenant_id: t, client_id: c, client_secret: env.AZ_CLIENT_SECRET, authority: \"http://127.0.0.1:{closed}\" }} }}] }}\n",
        azure.url()
    );
    let gw = Gateway::start(&section, "", &[("AZ_CLIENT_SECRET", "down-secret-0123456789")]);
    let r = az_call(gw.port);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "credential_unavailable");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("access token"), "{}", r.text());
    let r = post_json(gw.port, "/openai/v1/chat/completions", &[], &json!({"model": "azure/dep", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "credential_unavailable");
    assert_eq!(azure.count(), 0, "nothing reaches Azure without a token");
    assert!(gw.stderr().contains("cannot obtain an access token for key sp"), "{}", gw.stderr());
    assert_eq!(gw.metric("tollgate_upstream_errors_total", &[("provider", "azure"), ("kind", "credential_unavailable")]), 2.0);
}

/// The most fetches a token source that backs off 1, 2, 4 ... 30 s after
/// each failure can make in `elapsed`.
fn most_fetches_in(elapsed: std::time::Duration) -> usize {
    let (mut at, mut wait, mut n) = (0.0, 1.0, 0);
    while at <= elapsed.as_secs_f64() {
        n += 1;
        at += wait;
        wait = f64::min(wait * 2.0, 30.0);
    }
    n
}

#[test]
fn a_failing_token_endpoint_is_backed_off_and_a_valid_token_outlives_a_failed_refresh() {
    use std::time::{Duration, Instant};
    // 0: answer tokens valid for 12 s (refreshed after 6 s); 1: answer 500.
    let failing = Arc::new(AtomicUsize::new(0));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (fl, fe) = (failing.clone(), fetches.clone());
    let entra = Mock::start(move |_| {
        let n = fe.fetch_add(1, Ordering::SeqCst) + 1;
        if fl.load(Ordering::SeqCst) == 1 {
            return oauth_error(500, "AADSTS50000: service unavailable");
        }
        json(200, json!({"token_type": "Bearer", "expires_in": 12, "access_token": format!("backoff-token-{n}")}))
    });
    let azure = azure_mock(Arc::new(std::sync::Mutex::new(None)));
    let section = format!(
        "  providers:\n    azure: {{ keys: [{{ name: sp, endpoint: \"{}\", entra: {{ tenant_id: t, client_id: c, client_secret: env.AZ_CLIENT_SECRET, authority: \"{}\" }} }}] }}\n",
        azure.url(),
        entra.url()
    );
    let mut gw = Gateway::start(&section, "", &[("AZ_CLIENT_SECRET", "backoff-secret-0123456789")]);
    gw.add_secret("backoff-token-1");

    let granted = Instant::now(); // the token was granted after this: it expires after granted + 12 s
    assert_eq!(az_call(gw.port).status, 200);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    failing.store(1, Ordering::SeqCst);

    // Past the refresh point (6 s) and before expiry (12 s): each refresh
    // fails, the cached token is still used, and refreshes are backed off.
    std::thread::sleep(Duration::from_millis(6300).saturating_sub(granted.elapsed()));
    let start = Instant::now();
    let mut served = 0;
    while start.elapsed() < Duration::from_millis(3500) {
        let r = az_call(gw.port);
        assert_eq!(r.status, 200, "the cached token is valid until it expires: {}", r.text());
        served += 1;
    }
    assert!(granted.elapsed() < Duration::from_secs(12), "the loop ran past the token's expiry; the machine is too slow for this test");
    let refreshes = fetches.load(Ordering::SeqCst) - 1;
    assert!((2..=most_fetches_in(start.elapsed())).contains(&refreshes), "{refreshes} refreshes in {:?} ({served} requests)", start.elapsed());
    assert!(served > refreshes, "{served} requests, {refreshes} refreshes");
    assert!(azure.take().iter().all(|r| r.header("authorization") == Some("Bearer backoff-token-1")));
    assert!(gw.stderr().contains("the cached access token is used until it expires"), "{}", gw.stderr());

    // Once expired: 503 credential_unavailable, answered at once while
    // backing off, not one fetch per request.
    std::thread::sleep(Duration::from_millis(12300).saturating_sub(granted.elapsed()));
    let before = fetches.load(Ordering::SeqCst);
    let start = Instant::now();
    let mut refused = 0;
    while start.elapsed() < Duration::from_millis(2000) {
        let r = az_call(gw.port);
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "credential_unavailable");
        refused += 1;
    }
    let tried = fetches.load(Ordering::SeqCst) - before;
    // The backoff already reached 4 s or more: at most 1 fetch in 2 s
    // (2 when it had just ended as the loop began).
    assert!(tried <= 2 && refused > tried, "{tried} fetches for {refused} requests in {:?}", start.elapsed());
    assert_eq!(azure.count(), 0, "nothing reaches Azure without a token");
    assert!(gw.stderr().contains("next attempt in"), "{}", gw.stderr());

    // The endpoint recovers: a request after the backoff gets a new token.
    failing.store(0, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(40);
    let r = loop {
        let r = az_call(gw.port);
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(r.status, 200, "{}", r.text());
    let n = fetches.load(Ordering::SeqCst);
    gw.add_secret(&format!("backoff-token-{n}"));
    assert_eq!(azure.take()[0].header("authorization"), Some(format!("Bearer backoff-token-{n}").as_str()));
}

fn gemini_answer() -> Reply {
    json(200, json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 1}, "modelVersion": "gemini-2.5-flash"}))
}

#[test]
fn vertex_adc_authorized_user_file_refresh_token_exchange() {
    let exchanges = Arc::new(AtomicUsize::new(0));
    let ex = exchanges.clone();
    let google = Mock::start(move |req| {
        let f = form(&req.body);
        let ok = req.method == "POST"
            && req.path() == "/token"
            && field(&f, "grant_type") == Some("refresh_token")
            && field(&f, "refresh_token") == Some("1//adc-refresh-token-secret")
            && field(&f, "client_id") == Some("764086051850.apps.googleusercontent.com")
            && field(&f, "client_secret") == Some("adc-client-secret-d-FL95Q");
        if !ok {
            return oauth_error(400, "invalid_grant");
        }
        let n = ex.fetch_add(1, Ordering::SeqCst) + 1;
        json(200, json!({"access_token": format!("ya29.adc-user-token-{n}"), "expires_in": 3599, "scope": "https://www.googleapis.com/auth/cloud-platform", "token_type": "Bearer"}))
    });
    let vertex = Mock::start(|_| gemini_answer());
    let dir = temp_dir("adc-user");
    let creds = dir.join("adc.json");
    std::fs::write(
        &creds,
        json!({"type": "authorized_user", "client_id": "764086051850.apps.googleusercontent.com", "client_secret": "adc-client-secret-d-FL95Q", "refresh_token": "1//adc-refresh-token-secret", "token_uri": format!("{}/token", google.url()), "quota_project_id": "qp"}).to_string(),
    )
    .unwrap();
    let section = format!("  providers:\n    vertex: {{ base_url: \"{}\", project: adc-project, location: us-central1, keys: [{{ name: gcloud, adc: true }}] }}\n", vertex.url());
    let mut gw = Gateway::start(&section, "", &[("GOOGLE_APPLICATION_CREDENTIALS", creds.to_str().unwrap())]);
    for s in ["1//adc-refresh-token-secret", "adc-client-secret-d-FL95Q", "ya29.adc-user-token-1"] {
        gw.add_secret(s);
    }
    let express = "/genai_passthrough/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent";
    for _ in 0..2 {
        let r = post_json(gw.port, express, &[("x-goog-api-key", "placeholder")], &json!({"contents": []}));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(exchanges.load(Ordering::SeqCst), 1);
    for r in vertex.take() {
        assert_eq!(r.header("authorization"), Some("Bearer ya29.adc-user-token-1"));
        assert_eq!(r.header("x-goog-api-key"), None);
        // The file's quota project, as Google's libraries send it.
        assert_eq!(r.header("x-goog-user-project"), Some("qp"));
        assert_eq!(r.path(), "/v1beta1/projects/adc-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent");
    }
    assert!(gw.stderr().contains("application default credentials from GOOGLE_APPLICATION_CREDENTIALS"), "{}", gw.stderr());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn vertex_adc_metadata_server_on_passthrough_and_openai_routes() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let metadata = Mock::start(move |req| {
        // The metadata server refuses requests without this header.
        if req.header("metadata-flavor") != Some("Google") {
            return json(403, json!({"error": "Missing Metadata-Flavor:Google header"}));
        }
        if req.method != "GET" || req.path() != "/computeMetadata/v1/instance/service-accounts/default/token" {
            return json(404, json!({"error": "not found"}));
        }
        let n = h.fetch_add(1, Ordering::SeqCst) + 1;
        json(200, json!({"access_token": format!("ya29.metadata-token-{n}"), "expires_in": 3599, "token_type": "Bearer"}))
    });
    let vertex = Mock::start(|_| gemini_answer());
    let home = temp_dir("adc-home");
    let section = format!("  providers:\n    vertex: {{ base_url: \"{}\", project: meta-project, location: europe-west4, adc: true }}\n", vertex.url());
    let host = metadata.url().trim_start_matches("http://").to_string();
    let mut gw = Gateway::start(
        &section,
        "",
        &[("GCE_METADATA_HOST", &host), ("GOOGLE_APPLICATION_CREDENTIALS", ""), ("CLOUDSDK_CONFIG", ""), ("HOME", home.to_str().unwrap())],
    );
    gw.add_secret("ya29.metadata-token-1");
    let r = post_json(gw.port, "/genai_passthrough/v1/projects/client-p/locations/us-east1/publishers/google/models/gemini-2.5-flash:generateContent", &[], &json!({"contents": []}));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(gw.port, "/openai/v1/chat/completions", &[], &json!({"model": "vertex/gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "hi");
    let sent = vertex.take();
    assert_eq!(sent.len(), 2);
    for s in &sent {
        assert_eq!(s.header("authorization"), Some("Bearer ya29.metadata-token-1"), "{}", s.target);
        assert!(s.path().starts_with("/v1/projects/meta-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash:"), "{}", s.target);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(home);
}

#[test]
fn vertex_adc_metadata_server_names_the_project_when_the_config_does_not() {
    let metadata = Mock::start(|req| {
        if req.header("metadata-flavor") != Some("Google") {
            return json(403, json!({"error": "Missing Metadata-Flavor:Google header"}));
        }
        let flavor = ("metadata-flavor".to_string(), "Google".to_string());
        match req.path() {
            "/computeMetadata/v1/project/project-id" => Reply::Json(200, vec![flavor, ("content-type".into(), "application/text".into())], "meta-project-7".into()),
            "/computeMetadata/v1/instance/service-accounts/default/token" => json(200, json!({"access_token": "ya29.metadata-project-token", "expires_in": 3599, "token_type": "Bearer"})),
            _ => json(404, json!({"error": "not found"})),
        }
    });
    let vertex = Mock::start(|_| gemini_answer());
    let home = temp_dir("adc-project-home");
    let section = format!("  providers:\n    vertex: {{ base_url: \"{}\", location: europe-west4, adc: true }}\n", vertex.url());
    let host = metadata.url().trim_start_matches("http://").to_string();
    let env = [("GCE_METADATA_HOST", host.as_str()), ("GOOGLE_APPLICATION_CREDENTIALS", ""), ("CLOUDSDK_CONFIG", ""), ("GOOGLE_CLOUD_PROJECT", ""), ("GCLOUD_PROJECT", ""), ("HOME", home.to_str().unwrap())];
    let mut gw = Gateway::start(&section, "", &env);
    gw.add_secret("ya29.metadata-project-token");
    let r = post_json(gw.port, "/genai_passthrough/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent", &[("x-goog-api-key", "placeholder")], &json!({"contents": []}));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(gw.port, "/openai/v1/chat/completions", &[], &json!({"model": "vertex/gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(r.status, 200, "{}", r.text());
    for s in vertex.take() {
        assert!(s.path().starts_with("/v1beta1/projects/meta-project-7/locations/europe-west4/") || s.path().starts_with("/v1/projects/meta-project-7/locations/europe-west4/"), "{}", s.target);
        assert_eq!(s.header("authorization"), Some("Bearer ya29.metadata-project-token"));
    }
    assert!(gw.stderr().contains("project meta-project-7 from the metadata server"), "{}", gw.stderr());
    drop(gw);

    // No metadata server: the gateway starts, says so, and refuses the
    // requests that need a project.
    let closed = format!("127.0.0.1:{}", free_port());
    let env = [("GCE_METADATA_HOST", closed.as_str()), ("GOOGLE_APPLICATION_CREDENTIALS", ""), ("CLOUDSDK_CONFIG", ""), ("GOOGLE_CLOUD_PROJECT", ""), ("GCLOUD_PROJECT", ""), ("HOME", home.to_str().unwrap())];
    let gw = Gateway::start(&section, "", &env);
    assert!(gw.stderr().contains("names no project and none was found"), "{}", gw.stderr());
    let r = post_json(gw.port, "/openai/v1/chat/completions", &[], &json!({"model": "vertex/gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}));
    assert!(r.text().contains("project"), "{} {}", r.status, r.text());
    let _ = std::fs::remove_dir_all(home);
}

/// Workload identity federation (`external_account`): a file-sourced
/// subject token exchanged at a mock STS; then a URL-sourced one (JSON
/// field, the Azure IMDS pattern) exchanged and traded for a service
/// account's token at a mock IAM `generateAccessToken`.
#[test]
fn vertex_adc_external_account_token_exchange_and_impersonation() {
    const AUDIENCE: &str = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov";
    let exchanges = Arc::new(AtomicUsize::new(0));
    let ex = exchanges.clone();
    let sts = Mock::start(move |req| {
        // What Google's STS checks for an RFC 8693 token exchange.
        if req.method != "POST" || req.path() != "/v1/token" || !req.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
            return oauth_error(400, "bad request");
        }
        let f = form(&req.body);
        let subject = field(&f, "subject_token").unwrap_or("");
        let ok = field(&f, "grant_type") == Some("urn:ietf:params:oauth:grant-type:token-exchange")
            && field(&f, "audience") == Some(AUDIENCE)
            && field(&f, "requested_token_type") == Some("urn:ietf:params:oauth:token-type:access_token")
            && field(&f, "scope") == Some("https://www.googleapis.com/auth/cloud-platform")
            && field(&f, "subject_token_type") == Some("urn:ietf:params:oauth:token-type:jwt")
            && ["file-subject-jwt-secret", "url-subject-jwt-secret"].contains(&subject);
        if !ok {
            return oauth_error(400, "invalid_grant");
        }
        let n = ex.fetch_add(1, Ordering::SeqCst) + 1;
        json(200, json!({"access_token": format!("sts-federated-token-{n}"), "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 3600}))
    });
    let iam = Mock::start(|req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        if req.method != "POST" || req.path() != "/v1/projects/-/serviceAccounts/gw@p.iam.gserviceaccount.com:generateAccessToken" || req.header("content-type") != Some("application/json") {
            return json(404, json!({"error": {"code": 404, "message": "not found"}}));
        }
        if !req.header("authorization").is_some_and(|a| a.starts_with("Bearer sts-federated-token-")) || body["scope"][0] != "https://www.googleapis.com/auth/cloud-platform" {
            return json(401, json!({"error": {"code": 401, "message": "unauthenticated"}}));
        }
        json(200, json!({"accessToken": "ya29.impersonated-token", "expireTime": "2099-01-01T00:00:00Z"}))
    });
    let idp = Mock::start(|req| {
        if req.header("metadata") != Some("True") {
            return json(400, json!({"error": "missing Metadata header"}));
        }
        json(200, json!({"access_token": "url-subject-jwt-secret", "expires_in": "3599"}))
    });
    let vertex = Mock::start(|_| gemini_answer());
    let dir = temp_dir("wif");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "file-subject-jwt-secret\n").unwrap();
    let section = format!("  providers:\n    vertex: {{ base_url: \"{}\", project: wif-project, location: us-central1, adc: true }}\n", vertex.url());
    let express = "/genai_passthrough/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent";
    let cases = [
        (json!({"file": token_file.to_str().unwrap()}), None, "sts-federated-token-1"),
        (
            json!({"url": format!("{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://wif", idp.url()), "headers": {"Metadata": "True"}, "format": {"type": "json", "subject_token_field_name": "access_token"}}),
            Some(format!("{}/v1/projects/-/serviceAccounts/gw@p.iam.gserviceaccount.com:generateAccessToken", iam.url())),
            "ya29.impersonated-token",
        ),
    ];
    for (i, (source, impersonation, want)) in cases.into_iter().enumerate() {
        let mut creds = json!({"type": "external_account", "audience": AUDIENCE, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": format!("{}/v1/token", sts.url()), "credential_source": source});
        if let Some(u) = impersonation {
            creds["service_account_impersonation_url"] = json!(u);
        }
        let path = dir.join(format!("wif-{i}.json"));
        std::fs::write(&path, creds.to_string()).unwrap();
        let mut gw = Gateway::start(&section, "", &[("GOOGLE_APPLICATION_CREDENTIALS", path.to_str().unwrap())]);
        for s in ["file-subject-jwt-secret", "url-subject-jwt-secret", "sts-federated-token-1", "sts-federated-token-2", "ya29.impersonated-token"] {
            gw.add_secret(s);
        }
        for _ in 0..2 {
            let r = post_json(gw.port, express, &[("x-goog-api-key", "placeholder")], &json!({"contents": []}));
            assert_eq!(r.status, 200, "case {i}: {}", r.text());
        }
        for s in vertex.take() {
            assert_eq!(s.header("authorization"), Some(format!("Bearer {want}").as_str()), "case {i}");
            assert_eq!(s.path(), "/v1beta1/projects/wif-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent");
        }
        assert_eq!(exchanges.load(Ordering::SeqCst), i + 1, "case {i}: one exchange, then the cached token");
        assert!(gw.stderr().contains("workload identity federation"), "{}", gw.stderr());
    }
    assert_eq!(iam.count(), 1);
    assert_eq!(idp.count(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------

fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN).args(args).env_remove("TOLLGATE_TEST_UNSET_VAR").env("TOLLGATE_CHECK_VK", "vk-check-secret-123").output().unwrap()
}

#[test]
fn help_and_version_describe_tollgate() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in ["LLM provider", "check", "-c, --conf", "-d, --daemon", "-u, --upgrade", "-t, --test", "SIGHUP", "--version"] {
        assert!(help.contains(want), "{want:?} missing from --help:\n{help}");
    }
    assert!(!help.contains("pingora-based service"), "Pingora's generic text is gone:\n{help}");
    let out = run(&["--version"]);
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with(&format!("tollgate {} (git ", env!("CARGO_PKG_VERSION"))), "{v}");
    let rev = v.trim().trim_end_matches(')').rsplit(' ').next().unwrap().to_string();
    assert!(rev == "unknown" || (rev.len() >= 7 && rev.bytes().all(|b| b.is_ascii_hexdigit())), "{v}");
}

#[test]
fn check_prints_what_would_be_served_without_secrets() {
    let dir = temp_dir("check");
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        format!(
            "version: 1\nthreads: 3\npid_file: {d}/t.pid\ntollgate:\n  listen: \"127.0.0.1:18080\"\n  metrics_listen: \"127.0.0.1:19091\"\n  store: {{ path: {d}/t.db }}\n  virtual_keys:\n    - {{ name: team-a, secret: env.TOLLGATE_CHECK_VK }}\n  providers:\n    openai: {{ keys: [{{ name: main, value: sk-check-secret-456 }}, {{ name: backup, value: sk-check-secret-789, models: [\"gpt-4o*\"] }}] }}\n    azure: {{ keys: [{{ name: entra-sp, endpoint: \"https://res.openai.azure.com\", entra: {{ tenant_id: t1, client_id: c1, client_secret: az-check-secret-000 }} }}] }}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let out = run(&["check", "-c", good.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for want in ["127.0.0.1:18080", "127.0.0.1:19091/metrics", "t.db", "team-a", "key main", "key backup", "models gpt-4o*", "key entra-sp: Entra ID token", "tenant t1", "/azure_passthrough", "/genai_passthrough", "anthropic (no key: 503)", "3 threads", "configuration OK"] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    for secret in ["vk-check-secret-123", "sk-check-secret-456", "sk-check-secret-789", "az-check-secret-000"] {
        assert!(!text.contains(secret) && !String::from_utf8_lossy(&out.stderr).contains(secret), "{secret} shown:\n{text}");
    }
    // `-c` before the subcommand works too.
    assert!(run(&["-c", good.to_str().unwrap(), "check"]).status.success());

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "version: 1\ntollgate:\n  providers:\n    azure: { keys: [{ name: x, endpoint: \"https://r\", entra: { tenant_id: t, client_id: c, client_secret: env.TOLLGATE_TEST_UNSET_VAR } }] }\n").unwrap();
    let out = run(&["check", "-c", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tollgate.providers.azure.keys[0].entra.client_secret") && err.contains(bad.to_str().unwrap()), "{err}");
    assert!(out.stdout.is_empty());
    // `-t` keeps its meaning: the exit status only.
    assert!(run(&["-t", "-c", good.to_str().unwrap()]).status.success());
    assert_eq!(run(&["-t", "-c", bad.to_str().unwrap()]).status.code(), Some(1));
    assert_eq!(run(&["check"]).status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}
