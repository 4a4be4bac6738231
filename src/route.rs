//! Route decisions: plain functions over (method, path, query, headers, first
//! body bytes). Nothing here touches a socket; unit tests call it directly.
//!
//! A route answers: which provider, which upstream (scheme, host, port), which
//! upstream path and query, and (for GenAI) whether it is Vertex or Gemini.

use crate::config::{BaseUrl, KeyConf, ProviderConf};

/// The five upstream providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Azure,
    Gemini,
    Vertex,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::Azure,
        Provider::Gemini,
        Provider::Vertex,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Azure => "azure",
            Provider::Gemini => "gemini",
            Provider::Vertex => "vertex",
        }
    }

    pub fn from_name(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The provider's public base URL, used when the config sets none.
    /// Vertex has no fixed base: see [`vertex_host`].
    pub fn default_base(self) -> Option<BaseUrl> {
        let host = match self {
            Provider::OpenAi => "api.openai.com",
            Provider::Anthropic => "api.anthropic.com",
            Provider::Gemini => "generativelanguage.googleapis.com",
            Provider::Azure | Provider::Vertex => return None,
        };
        Some(BaseUrl {
            tls: true,
            host: host.to_string(),
            port: 443,
            path: String::new(),
        })
    }
}

/// The passthrough prefixes of SPEC 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteName {
    OpenAi,
    Anthropic,
    Azure,
    GenAi,
}

impl RouteName {
    pub fn prefix(self) -> &'static str {
        match self {
            RouteName::OpenAi => "/openai_passthrough",
            RouteName::Anthropic => "/anthropic_passthrough",
            RouteName::Azure => "/azure_passthrough",
            RouteName::GenAi => "/genai_passthrough",
        }
    }
    const ALL: [RouteName; 4] = [
        RouteName::OpenAi,
        RouteName::Anthropic,
        RouteName::Azure,
        RouteName::GenAi,
    ];
}

/// Why a path is no route (404) or is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotFound,
    Invalid(&'static str),
}

/// Match a passthrough prefix on a segment boundary and return the remainder
/// (`/` when nothing follows the prefix). `path` excludes the query.
pub fn match_route(path: &str) -> Option<(RouteName, &str)> {
    for r in RouteName::ALL {
        if let Some(rest) = path.strip_prefix(r.prefix()) {
            if rest.is_empty() {
                return Some((r, "/"));
            }
            if rest.starts_with('/') {
                return Some((r, rest));
            }
        }
    }
    None
}

/// Percent-decode (bytes). Invalid escapes are kept literally.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = (b[i + 1] as char).to_digit(16);
            let l = (b[i + 2] as char).to_digit(16);
            if let (Some(h), Some(l)) = (h, l) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Refuse remainders that could steer the request somewhere else upstream
/// (SPEC 1): checked on the raw and on the percent-decoded form (decoded
/// twice, so `%252e%252e` is caught too).
pub fn validate_remainder(rem: &str) -> Result<(), PathError> {
    if !rem.starts_with('/') {
        return Err(PathError::Invalid("path must start with /"));
    }
    let once = percent_decode(rem);
    let twice = percent_decode(&String::from_utf8_lossy(&once));
    for form in [rem.as_bytes(), &once[..], &twice[..]] {
        check_form(form)?;
    }
    Ok(())
}

fn check_form(p: &[u8]) -> Result<(), PathError> {
    if p.starts_with(b"//") {
        return Err(PathError::Invalid("path must not start with //"));
    }
    if p.contains(&b'\\') {
        return Err(PathError::Invalid("path must not contain a backslash"));
    }
    if p.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(PathError::Invalid("path must not contain control bytes"));
    }
    if p.windows(3).any(|w| w == b"://") {
        return Err(PathError::Invalid("path must not contain ://"));
    }
    if p.split(|&b| b == b'/').any(|seg| seg == b"..") {
        return Err(PathError::Invalid("path must not contain a .. segment"));
    }
    let first = p[1..].split(|&b| b == b'/').next().unwrap_or_default();
    if first.contains(&b'@') {
        return Err(PathError::Invalid("path must not contain @ in its first segment"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// GenAI: Gemini or Vertex (SPEC 1.2)
// ---------------------------------------------------------------------------

/// How a GenAI request was found to be Vertex (for the record and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VertexRule {
    ProjectPath,
    ExpressPath,
    OAuthToken,
    BodyModel,
}

/// `/projects/{P}/locations/{L}/` in the path: returns (P, L).
pub fn path_project_location(path: &str) -> Option<(&str, &str)> {
    let segs: Vec<&str> = path.split('/').collect();
    for i in 0..segs.len().saturating_sub(4) {
        if segs[i] == "projects" && segs[i + 2] == "locations" {
            let (p, l) = (segs[i + 1], segs[i + 3]);
            // `{L}/` must be followed by more path (rule 1 says `/L/`).
            if !p.is_empty() && !l.is_empty() && i + 4 < segs.len() {
                return Some((p, l));
            }
        }
    }
    None
}

/// The first segment is an API version (`v1`, `v1beta`, `v1beta1`, ...).
fn is_version_segment(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'v' && b[1].is_ascii_digit()
}

/// Rule 2: `publishers/` right after the version segment.
pub fn is_express_path(path: &str) -> bool {
    let mut segs = path.trim_start_matches('/').split('/');
    matches!((segs.next(), segs.next()), (Some(v), Some("publishers")) if is_version_segment(v))
}

/// Rule 3: `Authorization: Bearer ya29.…`.
pub fn is_google_oauth(authorization: Option<&[u8]>) -> bool {
    match authorization {
        Some(v) => {
            let v = trim_ascii(v);
            v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") && trim_ascii(&v[7..]).starts_with(b"ya29.")
        }
        None => false,
    }
}

fn trim_ascii(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &v[start..end]
}

/// Vertex by rules 1–3, which need no body. `None` means "look at the body".
pub fn genai_vertex_without_body(path: &str, authorization: Option<&[u8]>) -> Option<VertexRule> {
    if path_project_location(path).is_some() {
        Some(VertexRule::ProjectPath)
    } else if is_express_path(path) {
        Some(VertexRule::ExpressPath)
    } else if is_google_oauth(authorization) {
        Some(VertexRule::OAuthToken)
    } else {
        None
    }
}

/// Rule 4: the body's top-level `model` is a Vertex resource path.
pub fn body_model_is_vertex(model: &str) -> bool {
    model.starts_with("projects/") && model.contains("/locations/")
}

/// The top-level `"model"` string of a JSON object, from the first bytes of
/// a body only (which may be cut anywhere). Scans with a depth counter so a
/// nested `model` key (e.g. inside `messages`) is not taken.
pub fn peek_json_model(body: &[u8]) -> Option<String> {
    let mut depth = 0usize;
    let mut i = 0;
    let n = body.len();
    // Skip leading whitespace; only an object is interesting.
    while i < n && body[i].is_ascii_whitespace() {
        i += 1;
    }
    if i >= n || body[i] != b'{' {
        return None;
    }
    let mut expect_key = false;
    while i < n {
        match body[i] {
            b'{' => {
                depth += 1;
                expect_key = true;
                i += 1;
            }
            b'[' => {
                depth += 1;
                expect_key = false;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b',' => {
                // In an object the next string is a key; in an array it is
                // a value, but values at depth != 1 are ignored anyway.
                expect_key = true;
                i += 1;
            }
            b'"' => {
                let (s, end) = read_json_string(body, i)?;
                i = end;
                if depth == 1 && expect_key {
                    // skip whitespace and ':'
                    while i < n && body[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    if i < n && body[i] == b':' {
                        i += 1;
                        if s == "model" {
                            while i < n && body[i].is_ascii_whitespace() {
                                i += 1;
                            }
                            if i < n && body[i] == b'"' {
                                let (v, _) = read_json_string(body, i)?;
                                return Some(v);
                            }
                            return None;
                        }
                    }
                }
                expect_key = false;
            }
            _ => i += 1,
        }
    }
    None
}

/// Read a JSON string starting at the quote at `start`; returns the decoded
/// value (escapes other than `\"` and `\\` kept simple) and the index after it.
fn read_json_string(b: &[u8], start: usize) -> Option<(String, usize)> {
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), i + 1)),
            b'\\' => {
                let c = *b.get(i + 1)?;
                match c {
                    b'u' => {
                        let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
                        let cp = u32::from_str_radix(hex, 16).ok()?;
                        let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        i += 6;
                        continue;
                    }
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    other => out.push(other),
                }
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
        if out.len() > 4096 {
            // Not a model name; avoid copying big strings.
            return skip_json_string(b, i).map(|e| (String::new(), e));
        }
    }
    None
}

fn skip_json_string(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// The model named in a Gemini/Vertex path: `.../models/{m}:method`.
pub fn path_model(path: &str) -> Option<&str> {
    let i = path.find("/models/")?;
    let rest = &path[i + "/models/".len()..];
    let end = rest.find([':', '/']).unwrap_or(rest.len());
    let m = &rest[..end];
    (!m.is_empty()).then_some(m)
}

/// Azure deployment name: `/openai/deployments/{d}/...`.
pub fn azure_deployment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/openai/deployments/")?;
    let d = rest.split('/').next()?;
    (!d.is_empty()).then_some(d)
}

/// Vertex upstream host: `{location}-aiplatform.googleapis.com`, or
/// `aiplatform.googleapis.com` for `global` or when no location is known.
pub fn vertex_host(location: Option<&str>) -> String {
    match location {
        Some(l) if l != "global" && crate::config::is_resource_segment(l) => {
            format!("{l}-aiplatform.googleapis.com")
        }
        _ => "aiplatform.googleapis.com".to_string(),
    }
}

/// Replace `/projects/{P}/locations/{L}/` in `path` with the configured
/// project/location (each when set). When the path has none and
/// `insert_for_express` is set (OAuth credentials need a project path),
/// `projects/P/locations/L/` is inserted after the version segment.
pub fn vertex_rewrite_path(
    path: &str,
    project: Option<&str>,
    location: Option<&str>,
    insert_for_express: bool,
) -> String {
    if let Some((p, l)) = path_project_location(path) {
        let needle = format!("/projects/{p}/locations/{l}/");
        if let Some(i) = path.find(&needle) {
            let new = format!(
                "/projects/{}/locations/{}/",
                project.unwrap_or(p),
                location.unwrap_or(l)
            );
            return format!("{}{}{}", &path[..i], new, &path[i + needle.len()..]);
        }
        return path.to_string();
    }
    if insert_for_express && is_express_path(path) {
        if let (Some(p), l) = (project, location.unwrap_or("global")) {
            let trimmed = path.trim_start_matches('/');
            let (ver, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
            return format!("/{ver}/projects/{p}/locations/{l}/{rest}");
        }
    }
    path.to_string()
}

// ---------------------------------------------------------------------------
// Query handling
// ---------------------------------------------------------------------------

/// Remove every `name=value` pair whose (decoded) name is in `names`; other
/// pairs are kept byte for byte. Returns the new query (`None` when empty).
pub fn query_without(query: Option<&str>, names: &[&str]) -> Option<String> {
    let q = query?;
    let kept: Vec<&str> = q
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            let decoded = percent_decode(&name.replace('+', " "));
            !names.iter().any(|n| n.as_bytes() == decoded.as_slice())
        })
        .collect();
    let out = kept.join("&");
    (!out.is_empty()).then_some(out)
}

/// The value of query parameter `name` (raw, not decoded).
pub fn query_get<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// For records: `key=` (and other secret-bearing) query values replaced.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            let decoded = percent_decode(name);
            if crate::credentials::SECRET_QUERY_PARAMS
                .iter()
                .any(|n| n.as_bytes() == decoded.as_slice())
            {
                format!("{name}=REDACTED")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Azure `api-version` (SPEC 1.1): the key's replaces the client's; without
/// one the client's is kept, except on `/openai/v1/...` paths, which get none
/// unless the key sets one.
pub fn azure_query(path: &str, query: Option<&str>, key_api_version: Option<&str>) -> Option<String> {
    let v1 = path.starts_with("/openai/v1/") || path == "/openai/v1";
    match key_api_version {
        Some(v) => {
            let rest = query_without(query, &["api-version"]);
            Some(match rest {
                Some(r) => format!("{r}&api-version={v}"),
                None => format!("api-version={v}"),
            })
        }
        None if v1 => query_without(query, &["api-version"]),
        None => query.map(str::to_string).filter(|q| !q.is_empty()),
    }
}

// ---------------------------------------------------------------------------
// The upstream target
// ---------------------------------------------------------------------------

/// Where a request goes: computed from the route, the provider's config and
/// the chosen key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Value of the `Host` header and the record's `upstream_host`.
    pub authority: String,
    /// Path and query as sent upstream.
    pub path_and_query: String,
}

/// Inputs for [`plan_upstream`].
pub struct PlanInput<'a> {
    pub provider: Provider,
    /// The remainder after the prefix (validated).
    pub remainder: &'a str,
    /// The client's query with credential parameters already removed.
    pub query: Option<&'a str>,
    pub conf: Option<&'a ProviderConf>,
    pub key: Option<&'a KeyConf>,
    /// Vertex: the request will carry OAuth credentials (needs a project path).
    pub vertex_oauth: bool,
}

/// Compute the upstream target. Errors only when no base can be determined
/// (Azure without an endpoint), which config validation normally prevents.
pub fn plan_upstream(inp: &PlanInput<'_>) -> Result<Upstream, &'static str> {
    let mut path = inp.remainder.to_string();
    let mut query = inp.query.map(str::to_string).filter(|q| !q.is_empty());
    let base: BaseUrl = match inp.provider {
        Provider::Azure => {
            query = azure_query(&path, inp.query, inp.key.and_then(|k| k.api_version.as_deref()));
            inp.key
                .and_then(|k| k.endpoint.clone())
                .or_else(|| inp.conf.and_then(|c| c.base_url.clone()))
                .ok_or("azure has no endpoint configured")?
        }
        Provider::Vertex => {
            let project = inp.conf.and_then(|c| c.project.as_deref());
            let location = inp.conf.and_then(|c| c.location.as_deref());
            path = vertex_rewrite_path(&path, project, location, inp.vertex_oauth);
            let loc = location.or_else(|| path_project_location(&path).map(|(_, l)| l));
            match inp.conf.and_then(|c| c.base_url.clone()) {
                Some(b) => b,
                None => BaseUrl {
                    tls: true,
                    host: vertex_host(loc),
                    port: 443,
                    path: String::new(),
                },
            }
        }
        p => inp
            .conf
            .and_then(|c| c.base_url.clone())
            .or_else(|| p.default_base())
            .ok_or("provider has no base URL")?,
    };
    let mut pq = format!("{}{}", base.path, path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(&q);
    }
    Ok(Upstream {
        tls: base.tls,
        authority: base.authority(),
        host: base.host,
        port: base.port,
        path_and_query: pq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_on_segment_boundary() {
        assert_eq!(match_route("/openai_passthrough/v1/chat/completions"), Some((RouteName::OpenAi, "/v1/chat/completions")));
        assert_eq!(match_route("/openai_passthrough"), Some((RouteName::OpenAi, "/")));
        assert_eq!(match_route("/openai_passthrough/"), Some((RouteName::OpenAi, "/")));
        assert_eq!(match_route("/openai_passthroughX"), None);
        assert_eq!(match_route("/openai_passthroughX/v1"), None);
        assert_eq!(match_route("/genai_passthrough/v1beta/models"), Some((RouteName::GenAi, "/v1beta/models")));
        assert_eq!(match_route("/azure_passthrough/openai/v1/responses"), Some((RouteName::Azure, "/openai/v1/responses")));
        assert_eq!(match_route("/anthropic_passthrough/v1/messages"), Some((RouteName::Anthropic, "/v1/messages")));
        assert_eq!(match_route("/"), None);
        assert_eq!(match_route("/v1/chat/completions"), None);
        assert_eq!(match_route("/x/openai_passthrough/v1"), None);
    }

    #[test]
    fn unsafe_remainders_refused() {
        for bad in [
            "//evil.com/x",
            "/%2fevil.com",
            "/v1/..",
            "/v1/../admin",
            "/v1/%2e%2e/admin",
            "/v1/.%2E/admin",
            "/v1/%252e%252e/admin",
            "/a\\b",
            "/a%5cb",
            "/http://evil.com/",
            "/x/https%3a%2f%2fevil",
            "/a\u{1}b",
            "/a%0d%0aHost:%20evil",
            "/a%00",
            "/user@evil.com/v1",
            "/user%40evil.com/v1",
            "v1/models",
        ] {
            assert!(validate_remainder(bad).is_err(), "{bad} should be refused");
        }
        for ok in [
            "/",
            "/v1/chat/completions",
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            "/v1/files/file-abc",
            "/v1/models/a@b", // @ outside the first segment
            "/v1/.well/x",
            "/v1/a..b",
            "/openai/deployments/gpt-4o/chat/completions",
        ] {
            assert_eq!(validate_remainder(ok), Ok(()), "{ok} should pass");
        }
    }

    #[test]
    fn vertex_rules_without_body() {
        assert_eq!(
            genai_vertex_without_body("/v1beta1/projects/p/locations/us-central1/publishers/google/models/g:generateContent", None),
            Some(VertexRule::ProjectPath)
        );
        assert_eq!(
            genai_vertex_without_body("/v1beta1/publishers/google/models/gemini-2.0-flash:generateContent", None),
            Some(VertexRule::ExpressPath)
        );
        assert_eq!(
            genai_vertex_without_body("/v1beta/models/gemini:generateContent", Some(b"Bearer ya29.abc")),
            Some(VertexRule::OAuthToken)
        );
        assert_eq!(genai_vertex_without_body("/v1beta/models/gemini:generateContent", Some(b"bearer  ya29.abc ")), Some(VertexRule::OAuthToken));
        assert_eq!(genai_vertex_without_body("/v1beta/models/gemini:generateContent", Some(b"Bearer sk-x")), None);
        assert_eq!(genai_vertex_without_body("/v1beta/models/gemini:generateContent", None), None);
        // publishers not right after the version segment is not rule 2
        assert_eq!(genai_vertex_without_body("/v1beta/models/publishers/x", None), None);
        // `/projects/P/locations/L` with nothing after it is not rule 1
        assert_eq!(genai_vertex_without_body("/v1/projects/p/locations/l", None), None);
    }

    #[test]
    fn body_model_peek() {
        let b = br#"{"contents":[{"role":"user","parts":[{"text":"hi \"model\": x"}]}],"model":"projects/p/locations/us-east1/publishers/google/models/gemini"}"#;
        let m = peek_json_model(b).unwrap();
        assert!(body_model_is_vertex(&m));
        assert_eq!(peek_json_model(br#"{"model": "gpt-4o", "messages": []}"#).as_deref(), Some("gpt-4o"));
        // nested model keys are not the top-level one
        assert_eq!(peek_json_model(br#"{"messages":[{"model":"inner"}],"model":"outer"}"#).as_deref(), Some("outer"));
        assert_eq!(peek_json_model(br#"{"a":{"model":"inner"}}"#), None);
        // cut before the model arrives
        assert_eq!(peek_json_model(br#"{"messages":[{"role":"user","content":"aaaa"#), None);
        assert_eq!(peek_json_model(br#"{"model":"gpt-4"#), None);
        assert_eq!(peek_json_model(b"not json"), None);
        assert_eq!(peek_json_model(br#"{"model":"gpt\u002d4o"}"#).as_deref(), Some("gpt-4o"));
        assert!(!body_model_is_vertex("gemini-2.0-flash"));
        assert!(!body_model_is_vertex("models/gemini-2.0-flash"));
    }

    #[test]
    fn vertex_paths_and_hosts() {
        assert_eq!(vertex_host(Some("us-central1")), "us-central1-aiplatform.googleapis.com");
        assert_eq!(vertex_host(Some("global")), "aiplatform.googleapis.com");
        assert_eq!(vertex_host(None), "aiplatform.googleapis.com");
        assert_eq!(vertex_host(Some("evil.com/x")), "aiplatform.googleapis.com");
        let p = "/v1beta1/projects/client-p/locations/europe-west4/publishers/google/models/g:generateContent";
        assert_eq!(
            vertex_rewrite_path(p, Some("gw"), Some("us-central1"), false),
            "/v1beta1/projects/gw/locations/us-central1/publishers/google/models/g:generateContent"
        );
        assert_eq!(vertex_rewrite_path(p, None, None, false), p);
        assert_eq!(
            vertex_rewrite_path(p, Some("gw"), None, false),
            "/v1beta1/projects/gw/locations/europe-west4/publishers/google/models/g:generateContent"
        );
        let e = "/v1beta1/publishers/google/models/g:generateContent";
        assert_eq!(vertex_rewrite_path(e, Some("gw"), Some("us-central1"), false), e);
        assert_eq!(
            vertex_rewrite_path(e, Some("gw"), Some("us-central1"), true),
            "/v1beta1/projects/gw/locations/us-central1/publishers/google/models/g:generateContent"
        );
        assert_eq!(
            vertex_rewrite_path(e, Some("gw"), None, true),
            "/v1beta1/projects/gw/locations/global/publishers/google/models/g:generateContent"
        );
        assert_eq!(vertex_rewrite_path(e, None, None, true), e);
    }

    #[test]
    fn models_from_paths() {
        assert_eq!(path_model("/v1beta/models/gemini-2.0-flash:generateContent"), Some("gemini-2.0-flash"));
        assert_eq!(path_model("/v1/projects/p/locations/l/publishers/google/models/gemini-2.5-pro:streamGenerateContent"), Some("gemini-2.5-pro"));
        assert_eq!(path_model("/v1/models"), None);
        assert_eq!(azure_deployment("/openai/deployments/gpt4o-prod/chat/completions"), Some("gpt4o-prod"));
        assert_eq!(azure_deployment("/openai/responses"), None);
    }

    #[test]
    fn query_helpers() {
        assert_eq!(query_without(Some("key=abc&alt=sse"), &["key"]).as_deref(), Some("alt=sse"));
        assert_eq!(query_without(Some("alt=sse&%6Bey=abc"), &["key"]).as_deref(), Some("alt=sse"));
        assert_eq!(query_without(Some("key=abc"), &["key"]), None);
        assert_eq!(query_without(Some("a=1&&b=%20x&keyx=1"), &["key"]).as_deref(), Some("a=1&&b=%20x&keyx=1"));
        assert_eq!(redact_query("alt=sse&key=secret"), "alt=sse&key=REDACTED");
        assert_eq!(query_get(Some("a=1&api-version=2024"), "api-version"), Some("2024"));
    }

    #[test]
    fn azure_api_version_rule() {
        let dep = "/openai/deployments/d/chat/completions";
        assert_eq!(azure_query(dep, Some("api-version=2024-02-01"), Some("2024-10-21")).as_deref(), Some("api-version=2024-10-21"));
        assert_eq!(azure_query(dep, Some("api-version=2024-02-01"), None).as_deref(), Some("api-version=2024-02-01"));
        assert_eq!(azure_query(dep, Some("x=1&api-version=a"), Some("b")).as_deref(), Some("x=1&api-version=b"));
        assert_eq!(azure_query(dep, None, Some("b")).as_deref(), Some("api-version=b"));
        assert_eq!(azure_query("/openai/v1/responses", None, None), None);
        assert_eq!(azure_query("/openai/v1/responses", Some("api-version=preview"), None), None);
        assert_eq!(azure_query("/openai/v1/responses", None, Some("preview")).as_deref(), Some("api-version=preview"));
        assert_eq!(azure_query("/openai/responses", Some("api-version=2025-03-01-preview"), None).as_deref(), Some("api-version=2025-03-01-preview"));
    }

    fn pconf(base: Option<&str>) -> ProviderConf {
        ProviderConf { base_url: base.map(|b| BaseUrl::parse(b).unwrap()), project: None, location: None, keys: vec![] }
    }

    #[test]
    fn plans() {
        let c = pconf(None);
        let u = plan_upstream(&PlanInput { provider: Provider::OpenAi, remainder: "/v1/chat/completions", query: Some("a=b"), conf: Some(&c), key: None, vertex_oauth: false }).unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port, u.authority.as_str(), u.path_and_query.as_str()), (true, "api.openai.com", 443, "api.openai.com", "/v1/chat/completions?a=b"));

        let c = pconf(Some("http://127.0.0.1:9000/mock/openai"));
        let u = plan_upstream(&PlanInput { provider: Provider::OpenAi, remainder: "/v1/models", query: None, conf: Some(&c), key: None, vertex_oauth: false }).unwrap();
        assert_eq!((u.tls, u.authority.as_str(), u.path_and_query.as_str()), (false, "127.0.0.1:9000", "/mock/openai/v1/models"));

        let u = plan_upstream(&PlanInput { provider: Provider::Gemini, remainder: "/v1beta/models/g:generateContent", query: Some("alt=sse"), conf: None, key: None, vertex_oauth: false }).unwrap();
        assert_eq!(u.authority, "generativelanguage.googleapis.com");

        let mut v = pconf(None);
        v.project = Some("gw".into());
        v.location = Some("europe-west4".into());
        let u = plan_upstream(&PlanInput { provider: Provider::Vertex, remainder: "/v1beta1/projects/x/locations/us-central1/publishers/google/models/g:generateContent", query: None, conf: Some(&v), key: None, vertex_oauth: false }).unwrap();
        assert_eq!(u.host, "europe-west4-aiplatform.googleapis.com");
        assert_eq!(u.path_and_query, "/v1beta1/projects/gw/locations/europe-west4/publishers/google/models/g:generateContent");
        let v2 = pconf(None);
        let u = plan_upstream(&PlanInput { provider: Provider::Vertex, remainder: "/v1/projects/x/locations/asia-east1/publishers/google/models/g:generateContent", query: None, conf: Some(&v2), key: None, vertex_oauth: false }).unwrap();
        assert_eq!(u.host, "asia-east1-aiplatform.googleapis.com");
        let u = plan_upstream(&PlanInput { provider: Provider::Vertex, remainder: "/v1beta1/publishers/google/models/g:generateContent", query: None, conf: Some(&v2), key: None, vertex_oauth: false }).unwrap();
        assert_eq!(u.host, "aiplatform.googleapis.com");

        let key = KeyConf { name: "k".into(), value: "v".into(), weight: 1, models: None, endpoint: Some(BaseUrl::parse("https://res.openai.azure.com").unwrap()), api_version: Some("2024-10-21".into()), service_account: None };
        let u = plan_upstream(&PlanInput { provider: Provider::Azure, remainder: "/openai/deployments/d/chat/completions", query: Some("api-version=2024-02-01"), conf: None, key: Some(&key), vertex_oauth: false }).unwrap();
        assert_eq!(u.authority, "res.openai.azure.com");
        assert_eq!(u.path_and_query, "/openai/deployments/d/chat/completions?api-version=2024-10-21");
        assert!(plan_upstream(&PlanInput { provider: Provider::Azure, remainder: "/x", query: None, conf: None, key: None, vertex_oauth: false }).is_err());
    }
}
