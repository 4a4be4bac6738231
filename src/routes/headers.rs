//! Header hygiene, both directions (SPEC 3). Every header the gateway strips
//! or sets is decided here.

use super::credentials::CLIENT_CREDENTIAL_HEADERS;
use pingora::http::{RequestHeader, ResponseHeader};

/// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded. `transfer-encoding`
/// and `content-length` framing is left to Pingora, which re-frames bodies.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
];

/// Response headers that can carry a credential; never sent to the client.
const RESPONSE_CREDENTIAL_HEADERS: [&str; 5] =
    ["x-goog-api-key", "api-key", "x-api-key", "authorization", "set-cookie"];

/// Prefixes of gateway control headers, never forwarded to a provider.
const CONTROL_PREFIXES: [&str; 2] = ["x-tollgate-", "x-bf-"];

pub const REQUEST_ID_HEADER: &str = "x-tollgate-request-id";

/// Headers named in a `Connection` header are hop-by-hop too. Empty (and
/// no allocation) when there is no `Connection` header or it names only
/// the usual tokens.
fn connection_nominated(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case("upgrade")
                && !t.eq_ignore_ascii_case("close")
                && !t.eq_ignore_ascii_case("keep-alive")
        })
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The names among `headers` that `strip` picks, collected in one pass over
/// the headers present (a request carries a handful), so only headers that
/// are there get removed: no lookup per name we might strip.
fn picked(headers: &http::HeaderMap, strip: impl Fn(&str) -> bool) -> Vec<http::HeaderName> {
    headers.keys().filter(|k| strip(k.as_str())).cloned().collect()
}

/// What the upstream request needs besides the client's headers.
pub struct UpstreamAuth<'a> {
    /// The configured credential to set, `(name, value)`; `None` when the
    /// client's own credential is forwarded (direct keys).
    pub inject: Option<(&'static str, &'a str)>,
    /// Keep the client's credential headers (direct keys).
    pub keep_client_credentials: bool,
}

/// Make the client's request header fit to send to the provider: hop-by-hop
/// (except a WebSocket upgrade's `Connection`/`Upgrade`), credentials, control
/// headers and `host` removed; `host` and the credential set.
pub fn to_provider(req: &mut RequestHeader, authority: &str, auth: &UpstreamAuth<'_>, is_upgrade: bool) {
    let nominated = connection_nominated(&req.headers);
    let strip = |name: &str| {
        if name == "connection" {
            return !is_upgrade;
        }
        if name == "upgrade" {
            return !is_upgrade;
        }
        HOP_BY_HOP.contains(&name)
            || (!auth.keep_client_credentials && CLIENT_CREDENTIAL_HEADERS.contains(&name))
            || CONTROL_PREFIXES.iter().any(|p| name.starts_with(p))
            || nominated.iter().any(|n| n == name)
    };
    for name in picked(&req.headers, strip) {
        req.remove_header(&name);
    }
    if is_upgrade {
        // Only the upgrade token survives in Connection.
        let _ = req.insert_header(http::header::CONNECTION, "upgrade");
    }
    // Values are validated ASCII (config check), so these inserts succeed.
    let _ = req.insert_header(http::header::HOST, authority);
    if let Some((name, value)) = auth.inject {
        let _ = req.insert_header(name, value);
    }
}

/// Make the provider's response header fit for the client: hop-by-hop and
/// credential-bearing headers removed, the request id added.
pub fn to_client(resp: &mut ResponseHeader, request_id: &str) {
    let switching = resp.status.as_u16() == 101;
    let nominated = connection_nominated(&resp.headers);
    let strip = |name: &str| {
        if name == "connection" || name == "upgrade" {
            return !switching;
        }
        HOP_BY_HOP.contains(&name) || RESPONSE_CREDENTIAL_HEADERS.contains(&name) || nominated.iter().any(|n| n == name)
    };
    for name in picked(&resp.headers, strip) {
        resp.remove_header(&name);
    }
    let _ = resp.insert_header(REQUEST_ID_HEADER, request_id);
}

/// Size of a request head as sent: request line and header lines with
/// their CRLFs (compared with `limits.max_header_bytes`).
pub fn head_size(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len() + 1 + req.raw_path().len() + 1 + 8 + 2;
    let fields: usize = req.headers.iter().map(|(n, v)| n.as_str().len() + 2 + v.len() + 2).sum();
    line + fields + 2
}

/// Is `v` usable as a request id taken from the client (`x-request-id`)?
pub fn valid_request_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn head_size_counts_the_request_line_and_every_header_line() {
        // "POST /v1/chat/completions HTTP/1.1\r\n" + "a: bc\r\n" + "\r\n"
        assert_eq!(head_size(&req(&[("a", "bc")])), 36 + 7 + 2);
        let big = "x".repeat(1000);
        assert_eq!(head_size(&req(&[("a", &big), ("a", &big)])) - head_size(&req(&[])), 2 * (1 + 2 + 1000 + 2));
    }

    #[test]
    fn request_strips_credentials_control_and_hop_by_hop() {
        let mut r = req(&[
            ("host", "gateway.local"),
            ("authorization", "Bearer dummy-key"),
            ("x-api-key", "a"),
            ("api-key", "b"),
            ("x-goog-api-key", "c"),
            ("x-tollgate-vk", "vk"),
            ("x-bf-vk", "vk2"),
            ("x-tollgate-anything", "1"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic x"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "tools-2024"),
            ("openai-beta", "assistants=v2"),
            ("x-stainless-lang", "python"),
            ("x-goog-api-client", "genai-py"),
            ("content-type", "application/json"),
            ("upgrade", "h2c"),
        ]);
        to_provider(&mut r, "api.openai.com", &UpstreamAuth { inject: Some(("authorization", "Bearer sk-real")), keep_client_credentials: false }, false);
        let h = &r.headers;
        assert_eq!(h.get("host").unwrap(), "api.openai.com");
        assert_eq!(h.get_all("authorization").iter().collect::<Vec<_>>(), vec!["Bearer sk-real"]);
        for gone in ["x-api-key", "api-key", "x-goog-api-key", "x-tollgate-vk", "x-bf-vk", "x-tollgate-anything", "connection", "x-drop-me", "keep-alive", "te", "proxy-authorization", "upgrade"] {
            assert!(h.get(gone).is_none(), "{gone} should be stripped");
        }
        for kept in ["anthropic-version", "anthropic-beta", "openai-beta", "x-stainless-lang", "x-goog-api-client", "content-type"] {
            assert!(h.get(kept).is_some(), "{kept} should pass");
        }
    }

    #[test]
    fn direct_keys_keep_client_credential() {
        let mut r = req(&[("authorization", "Bearer sk-client"), ("x-tollgate-vk", "vk")]);
        to_provider(&mut r, "h", &UpstreamAuth { inject: None, keep_client_credentials: true }, false);
        assert_eq!(r.headers.get("authorization").unwrap(), "Bearer sk-client");
        assert!(r.headers.get("x-tollgate-vk").is_none());
    }

    #[test]
    fn websocket_upgrade_keeps_upgrade_headers() {
        let mut r = req(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-key", "k")]);
        to_provider(&mut r, "h", &UpstreamAuth { inject: None, keep_client_credentials: false }, true);
        assert_eq!(r.headers.get("connection").unwrap(), "upgrade");
        assert_eq!(r.headers.get("upgrade").unwrap(), "websocket");
        assert!(r.headers.get("sec-websocket-key").is_some());
    }

    #[test]
    fn response_hygiene() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for (k, v) in [
            ("content-type", "text/event-stream"),
            ("set-cookie", "a=b"),
            ("x-goog-api-key", "leak"),
            ("api-key", "leak"),
            ("x-api-key", "leak"),
            ("authorization", "leak"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("x-ratelimit-remaining-requests", "99"),
            ("anthropic-ratelimit-tokens-remaining", "5"),
            ("x-request-id", "req_123"),
            ("request-id", "req_456"),
            ("content-encoding", "gzip"),
            ("content-length", "10"),
        ] {
            resp.append_header(k, v).unwrap();
        }
        to_client(&mut resp, "rid");
        let h = &resp.headers;
        for gone in ["set-cookie", "x-goog-api-key", "api-key", "x-api-key", "authorization", "connection", "keep-alive"] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
        for kept in ["x-ratelimit-remaining-requests", "anthropic-ratelimit-tokens-remaining", "x-request-id", "request-id", "content-encoding", "content-length", "content-type"] {
            assert!(h.get(kept).is_some(), "{kept}");
        }
        assert_eq!(h.get(REQUEST_ID_HEADER).unwrap(), "rid");
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id("abc-123_XYZ"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"x".repeat(129)));
    }
}
