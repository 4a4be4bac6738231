//! Cloud identities instead of static keys: an [`Identity`] says where the
//! gateway gets OAuth access tokens for a provider key (a Google service
//! account, Application Default Credentials, Azure Entra ID), and a
//! [`TokenSource`] fetches them over the gateway's own HTTP connector, caches
//! them, refreshes them before they expire and after the provider answered
//! 401. Tokens, refresh tokens and client secrets never reach a log line or
//! an error message: errors name the endpoint and the status only.
//!
//! Written here rather than taken from `gcp_auth`/`azure_identity`: those
//! bring their own HTTP stacks (hyper/reqwest with rustls), hard-code the
//! metadata and token endpoints (`gcp_auth` ignores `GCE_METADATA_HOST` and the
//! `token_uri` of an `authorized_user` file), so tests could not point them
//! at mocks; each grant here is one small form POST or GET.

use super::azure::entra::{EntraClient, ManagedIdentity};
use super::vertex::external::{self, ExternalAccount};
use super::vertex::oauth::{AuthorizedUser, ServiceAccount};
use crate::net::{build_peer, BaseUrl, Resolver, Timeouts, Upstream};
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use serde::Deserialize;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// A cached token is replaced this long before it expires (or at half its
/// lifetime when that is shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Token responses are small; anything bigger is refused.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// Lifetime assumed when the endpoint names none; the longest accepted.
const DEFAULT_TTL: u64 = 3600;
const MAX_TTL: u64 = 86_400;

/// Where a key's access tokens come from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Identity {
    /// A Google service-account key file (`service_account_file`, or found
    /// by Application Default Credentials): a signed JWT exchanged at its
    /// `token_uri`.
    GoogleServiceAccount(ServiceAccount),
    /// `gcloud auth application-default login` credentials: a refresh token
    /// exchanged at the file's `token_uri`.
    GoogleAuthorizedUser(AuthorizedUser),
    /// The GCE/GKE/Cloud Run metadata server at this base.
    GoogleMetadata(BaseUrl),
    /// Workload identity federation (`external_account` file): a subject
    /// token exchanged at Google's STS, then maybe for a service account's.
    GoogleExternal(ExternalAccount),
    /// Azure Entra ID, client credentials grant.
    EntraClient(EntraClient),
    /// Azure managed identity (IMDS, or App Service's identity endpoint).
    EntraManagedIdentity(ManagedIdentity),
}

/// One HTTP request to a token endpoint.
pub struct TokenRequest {
    pub method: &'static str,
    pub url: BaseUrl,
    /// Path and query, appended to `url`'s path.
    pub path_and_query: String,
    /// Extra headers (`Metadata-Flavor`, `Metadata`, ...). Values may be
    /// secret (App Service's identity header): never logged.
    pub headers: Vec<(&'static str, String)>,
    /// A body for POST: form-encoded unless `headers` name another
    /// `content-type`.
    pub form: Option<String>,
}

impl Identity {
    /// The request that obtains a new token.
    pub fn request(&self) -> Result<TokenRequest, String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        match self {
            Identity::GoogleServiceAccount(sa) => sa.token_request(now),
            Identity::GoogleAuthorizedUser(u) => u.token_request(),
            Identity::GoogleMetadata(base) => Ok(super::vertex::adc::metadata_request(base)),
            // Two or three requests: [`TokenSource`] runs them.
            Identity::GoogleExternal(ea) => Err(format!("token exchange at {} takes several steps", ea.token_url.authority())),
            Identity::EntraClient(c) => c.token_request(),
            Identity::EntraManagedIdentity(m) => m.token_request(),
        }
    }

    /// What it is, for logs and `tollgate check`: no secret.
    pub fn describe(&self) -> String {
        match self {
            Identity::GoogleServiceAccount(sa) => format!("service account {} (token endpoint {})", sa.client_email, authority_of(&sa.token_uri)),
            Identity::GoogleAuthorizedUser(u) => format!("gcloud user credentials, client {} (token endpoint {})", u.client_id, authority_of(&u.token_uri)),
            Identity::GoogleMetadata(b) => format!("metadata server {}", b.authority()),
            Identity::GoogleExternal(ea) => ea.describe(),
            Identity::EntraClient(c) => format!("Entra ID client credentials, tenant {}, client {} (authority {})", c.tenant_id, c.client_id, c.authority.authority()),
            Identity::EntraManagedIdentity(m) => m.describe(),
        }
    }

    /// The quota (billing) project of Google user credentials, sent as
    /// `x-goog-user-project` with each request.
    pub fn quota_project(&self) -> Option<&str> {
        match self {
            Identity::GoogleAuthorizedUser(u) => u.quota_project_id.as_deref().filter(|q| crate::providers::vertex::is_resource_segment(q)),
            Identity::GoogleExternal(ea) => ea.quota_project_id.as_deref().filter(|q| crate::providers::vertex::is_resource_segment(q)),
            _ => None,
        }
    }

    /// The project a Google identity belongs to, when it says.
    pub fn project_id(&self) -> Option<&str> {
        match self {
            Identity::GoogleServiceAccount(sa) => sa.project_id.as_deref(),
            _ => None,
        }
    }
}

fn authority_of(url: &str) -> String {
    BaseUrl::parse(url).map(|b| b.authority()).unwrap_or_else(|_| "?".into())
}

/// Form encoding (`application/x-www-form-urlencoded`) of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A form body from name/value pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect::<Vec<_>>().join("&")
}

/// A number or a string holding one (Azure's IMDS answers `"3599"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    N(u64),
    S(String),
}

impl Num {
    fn get(&self) -> Option<u64> {
        match self {
            Num::N(n) => Some(*n),
            Num::S(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Num>,
    /// Unix seconds (Azure managed identity).
    #[serde(default)]
    expires_on: Option<Num>,
}

/// The access token and its lifetime from a token endpoint's JSON answer.
pub fn parse_token_response(body: &[u8], now_unix: u64) -> Result<(String, Duration), String> {
    let t: TokenResponse = serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
    if t.access_token.is_empty() || t.access_token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err("unusable access_token".into());
    }
    let ttl = match (t.expires_in.as_ref().and_then(Num::get), t.expires_on.as_ref().and_then(Num::get)) {
        (Some(n), _) => n,
        (None, Some(on)) => on.saturating_sub(now_unix),
        (None, None) => DEFAULT_TTL,
    };
    Ok((t.access_token, Duration::from_secs(ttl.min(MAX_TTL))))
}

/// When a token obtained now with lifetime `ttl` should be replaced.
fn refresh_at(now: Instant, ttl: Duration) -> Instant {
    now + ttl - REFRESH_MARGIN.min(ttl / 2)
}

/// After a failed fetch no new one is tried for this long, doubled after
/// each further failure up to [`BACKOFF_MAX`]; a success resets it.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How long to wait after the `failures`-th failure in a row (1, 2, 4 ... 30 s).
fn backoff(failures: u32) -> Duration {
    BACKOFF_FIRST.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(BACKOFF_MAX)
}

/// A token held by a [`TokenSource`].
struct Cached {
    token: String,
    /// When a new one is fetched.
    refresh_at: Instant,
    /// When it stops being valid: until then it is used even when the
    /// refresh fails.
    expires_at: Instant,
}

/// What a [`TokenSource`] holds between calls.
#[derive(Default)]
struct State {
    cached: Option<Cached>,
    /// Failed fetches in a row.
    failures: u32,
    /// No fetch before this (backing off after a failure).
    retry_at: Option<Instant>,
    /// The last fetch's error (endpoint and status, never a secret).
    last_error: String,
}

/// What [`State::plan`] says to do at some instant.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Use this token.
    Use(String),
    /// Fetch a new one.
    Fetch,
    /// Backing off and nothing valid cached: answer this error at once.
    Fail(String),
}

impl State {
    fn plan(&self, now: Instant) -> Plan {
        let valid = self.cached.as_ref().filter(|c| now < c.expires_at);
        if let Some(c) = self.cached.as_ref().filter(|c| now < c.refresh_at) {
            return Plan::Use(c.token.clone());
        }
        match self.retry_at {
            Some(at) if now < at => match valid {
                Some(c) => Plan::Use(c.token.clone()),
                None => Plan::Fail(format!("{} (next attempt in {}s)", self.last_error, (at - now).as_secs_f64().ceil() as u64)),
            },
            _ => Plan::Fetch,
        }
    }

    /// Record a fetch's outcome at `now`; the token to use, if any.
    fn settle(&mut self, now: Instant, outcome: Result<(String, Duration), String>) -> Result<String, String> {
        match outcome {
            Ok((token, ttl)) => {
                self.cached = Some(Cached { token: token.clone(), refresh_at: refresh_at(now, ttl), expires_at: now + ttl });
                self.failures = 0;
                self.retry_at = None;
                Ok(token)
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.retry_at = Some(now + backoff(self.failures));
                self.last_error = e.clone();
                match self.cached.as_ref().filter(|c| now < c.expires_at) {
                    Some(c) => {
                        log::warn!("{e}; the cached access token is used until it expires (in {}s)", (c.expires_at - now).as_secs());
                        Ok(c.token.clone())
                    }
                    None => Err(e),
                }
            }
        }
    }
}

/// Fetches, caches and refreshes access tokens for one identity. A failed
/// fetch is not repeated at once: for [`backoff`] after it, callers get the
/// cached token while it is still valid, else the error at once.
pub struct TokenSource {
    identity: Identity,
    state: Mutex<State>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource").field("identity", &self.identity.describe()).finish()
    }
}

impl TokenSource {
    pub fn new(identity: Identity) -> Self {
        TokenSource { identity, state: Mutex::new(State::default()) }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A valid access token, fetching one when none is cached or it is
    /// about to expire. Concurrent callers wait for one exchange.
    pub async fn token(&self, connector: &Connector, resolver: &Resolver, timeouts: &Timeouts) -> Result<String, String> {
        let mut state = self.state.lock().await;
        match state.plan(Instant::now()) {
            Plan::Use(t) => return Ok(t),
            Plan::Fail(e) => return Err(e),
            Plan::Fetch => {}
        }
        let outcome = self.fetch_token(connector, resolver, timeouts).await;
        state.settle(Instant::now(), outcome)
    }

    async fn fetch_token(&self, connector: &Connector, resolver: &Resolver, timeouts: &Timeouts) -> Result<(String, Duration), String> {
        if let Identity::GoogleExternal(ea) = &self.identity {
            return external_token(ea, connector, resolver, timeouts).await;
        }
        let req = self.identity.request()?;
        let body = fetch(connector, resolver, timeouts, &req).await?;
        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        parse_token_response(&body, now_unix).map_err(|e| format!("token endpoint {}: {e}", req.url.authority()))
    }

    /// Drop the cached token (the provider answered 401).
    pub async fn invalidate(&self) {
        self.state.lock().await.cached = None;
    }
}

/// Workload identity federation: the subject token (file or URL), the STS
/// exchange, and the service account's token when impersonating.
async fn external_token(ea: &ExternalAccount, connector: &Connector, resolver: &Resolver, timeouts: &Timeouts) -> Result<(String, Duration), String> {
    let raw = match ea.subject_request() {
        Some(req) => fetch(connector, resolver, timeouts, &req).await.map_err(|e| format!("subject token: {e}"))?,
        None => ea.read_subject_file()?.unwrap_or_default(),
    };
    let subject = ea.subject_token(&raw)?;
    let sts = ea.sts_request(&subject);
    let body = fetch(connector, resolver, timeouts, &sts).await?;
    let now_unix = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (federated, ttl) = parse_token_response(&body, now_unix()).map_err(|e| format!("token endpoint {}: {e}", sts.url.authority()))?;
    let Some(imp) = ea.impersonation_request(&federated) else { return Ok((federated, ttl)) };
    let body = fetch(connector, resolver, timeouts, &imp).await?;
    let (token, ttl) = external::parse_impersonation(&body, now_unix()).map_err(|e| format!("impersonation endpoint {}: {e}", imp.url.authority()))?;
    Ok((token, ttl.min(Duration::from_secs(MAX_TTL))))
}

/// Send `req` and return the body of a 200 answer. Errors name the endpoint
/// and status (and a short snippet of the endpoint's error JSON, which holds
/// no secret of ours), never a header value or the form.
pub async fn fetch(connector: &Connector, resolver: &Resolver, timeouts: &Timeouts, req: &TokenRequest) -> Result<Vec<u8>, String> {
    let up = Upstream::at(&req.url, &req.path_and_query);
    let addr = resolver.resolve(&up.host, up.port, 0).await.map_err(|e| format!("token endpoint {}: {}", up.authority, e.0))?;
    let peer = build_peer(&up, addr, timeouts);
    let (mut http, _reused) = connector
        .get_http_session(&peer)
        .await
        .map_err(|e| format!("token endpoint {}: {}", up.authority, e.etype().as_str()))?;
    http.set_read_timeout(Some(Duration::from_secs(30)));
    http.set_write_timeout(Some(Duration::from_secs(30)));
    let path = if up.path_and_query.is_empty() { "/" } else { up.path_and_query.as_str() };
    let fail_build = |_| format!("token endpoint {}: cannot build the request", up.authority);
    let mut head = RequestHeader::build(req.method, path.as_bytes(), None).map_err(fail_build)?;
    head.insert_header("host", up.authority.as_str()).map_err(fail_build)?;
    head.insert_header("accept", "application/json").map_err(fail_build)?;
    for (k, v) in &req.headers {
        head.insert_header(*k, v.as_str()).map_err(fail_build)?;
    }
    if let Some(f) = &req.form {
        if !req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            head.insert_header("content-type", "application/x-www-form-urlencoded").map_err(fail_build)?;
        }
        head.insert_header("content-length", f.len().to_string()).map_err(fail_build)?;
    }
    let fail = |e: pingora::BError| format!("token endpoint {}: {}", up.authority, e.etype().as_str());
    http.write_request_header(Box::new(head)).await.map_err(fail)?;
    if let Some(f) = &req.form {
        http.write_request_body(Bytes::from(f.clone()), true).await.map_err(fail)?;
    }
    http.finish_request_body().await.map_err(fail)?;
    http.read_response_header().await.map_err(fail)?;
    let status = http.response_header().map_or(0, |r| r.status.as_u16());
    let mut resp = Vec::new();
    while let Some(chunk) = http.read_response_body().await.map_err(fail)? {
        resp.extend_from_slice(&chunk);
        if resp.len() > MAX_TOKEN_RESPONSE {
            return Err(format!("token endpoint {}: response too large", up.authority));
        }
    }
    if status != 200 {
        // The body is the endpoint's error JSON (`error`, `error_description`):
        // only those two fields are kept, cut short.
        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_default();
        let what: String = [&v["error"], &v["error_description"]]
            .iter()
            .filter_map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(": ")
            .chars()
            .take(160)
            .collect();
        return Err(format!("token endpoint {} answered {status} {what}", up.authority).trim_end().to_string());
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses_of_google_and_azure() {
        let (t, ttl) = parse_token_response(br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#, 0).unwrap();
        assert_eq!((t.as_str(), ttl), ("ya29.x", Duration::from_secs(3599)));
        // IMDS: numbers as strings.
        let (_, ttl) = parse_token_response(br#"{"access_token":"eyJ0","expires_in":"86399","expires_on":"1700086399"}"#, 1_700_000_000).unwrap();
        assert_eq!(ttl, Duration::from_secs(86_399));
        // App Service: only expires_on.
        let (_, ttl) = parse_token_response(br#"{"access_token":"eyJ0","expires_on":"1700000600"}"#, 1_700_000_000).unwrap();
        assert_eq!(ttl, Duration::from_secs(600));
        let (_, ttl) = parse_token_response(br#"{"access_token":"t"}"#, 0).unwrap();
        assert_eq!(ttl, Duration::from_secs(3600));
        assert!(parse_token_response(br#"{"access_token":"a b"}"#, 0).is_err());
        assert!(parse_token_response(br#"{"error":"x"}"#, 0).is_err());
    }

    #[test]
    fn refreshed_before_expiry() {
        let now = Instant::now();
        assert_eq!(refresh_at(now, Duration::from_secs(3600)), now + Duration::from_secs(3300));
        assert_eq!(refresh_at(now, Duration::from_secs(100)), now + Duration::from_secs(50));
        // An already expired token is used once, never cached.
        assert_eq!(refresh_at(now, Duration::ZERO), now);
    }

    #[test]
    fn failed_fetches_back_off_and_a_valid_token_outlives_a_failed_refresh() {
        assert_eq!([1, 2, 3, 4, 5, 6, 7, 40].map(|n| backoff(n).as_secs()), [1, 2, 4, 8, 16, 30, 30, 30]);
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut st = State::default();
        assert_eq!(st.plan(t0), Plan::Fetch);
        // Nothing cached, the endpoint fails: the error now, and for 1 s.
        assert_eq!(st.settle(t0, Err("token endpoint e answered 500".into())), Err("token endpoint e answered 500".into()));
        assert!(matches!(st.plan(t0 + Duration::from_millis(999)), Plan::Fail(e) if e.starts_with("token endpoint e answered 500")));
        assert_eq!(st.plan(s(1)), Plan::Fetch);
        // Second failure: 2 s; third: 4 s.
        assert!(st.settle(s(1), Err("down".into())).is_err());
        assert!(matches!(st.plan(s(2)), Plan::Fail(_)));
        assert_eq!(st.plan(s(3)), Plan::Fetch);
        assert!(st.settle(s(3), Err("down".into())).is_err());
        assert!(matches!(st.plan(s(6)), Plan::Fail(_)));
        assert_eq!(st.plan(s(7)), Plan::Fetch);
        // A success resets the backoff; its token (100 s) is refreshed at 50 s.
        assert_eq!(st.settle(s(7), Ok(("tok-1".into(), Duration::from_secs(100)))), Ok("tok-1".into()));
        assert_eq!(st.plan(s(56)), Plan::Use("tok-1".into()));
        assert_eq!(st.plan(s(57)), Plan::Fetch);
        // The refresh fails: the token is still valid until 107 s, so it is
        // used, and no fetch is tried during the backoff.
        assert_eq!(st.settle(s(57), Err("down".into())), Ok("tok-1".into()));
        assert_eq!(st.plan(s(57)), Plan::Use("tok-1".into()));
        assert_eq!(st.plan(s(58)), Plan::Fetch);
        assert_eq!(st.settle(s(58), Err("down".into())), Ok("tok-1".into()));
        assert_eq!(st.plan(s(59)), Plan::Use("tok-1".into()));
        // Expired during a backoff: the error, not the stale token.
        st.retry_at = Some(s(200));
        assert!(matches!(st.plan(s(107)), Plan::Fail(_)));
        assert!(st.settle(s(108), Err("down".into())).is_err());
    }

    #[test]
    fn forms_are_encoded() {
        assert_eq!(form(&[("scope", "https://cognitiveservices.azure.com/.default"), ("a b", "x&y=z")]), "scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default&a%20b=x%26y%3Dz");
    }
}
