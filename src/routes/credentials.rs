//! Client credentials in (SPEC 2): the credential headers and `key` query
//! parameter a client may present (for virtual keys, direct keys and Vertex
//! detection), the virtual-key control headers, and the query redaction of
//! records. The provider's own form of a key is `providers`'.

use crate::net::query::{percent_decode, query_get};
use http::HeaderMap;

/// Request headers that carry a client credential. All are removed before
/// forwarding (see `headers::to_provider`).
pub const CLIENT_CREDENTIAL_HEADERS: [&str; 4] =
    ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// Query parameters that carry a credential.
pub const SECRET_QUERY_PARAMS: [&str; 1] = ["key"];

/// Headers in which a client presents a virtual key explicitly.
pub const VIRTUAL_KEY_HEADERS: [&str; 2] = ["x-tollgate-vk", "x-bf-vk"];

/// A credential the client presented, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredential {
    /// Where it was: a header name, or `query:key`.
    pub source: &'static str,
    /// The bare secret (a `Bearer ` prefix removed).
    pub secret: String,
}

/// The first client credential found, in header order then the `key` query
/// parameter.
pub fn client_credential(headers: &HeaderMap, query: Option<&str>) -> Option<ClientCredential> {
    for h in CLIENT_CREDENTIAL_HEADERS {
        if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()) {
            let v = v.trim();
            let secret = if h == "authorization" {
                match v.split_once(' ') {
                    Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                    _ => v,
                }
            } else {
                v
            };
            if !secret.is_empty() {
                return Some(ClientCredential { source: h, secret: secret.to_string() });
            }
        }
    }
    let v = query_get(query, "key")?;
    let v = String::from_utf8_lossy(&percent_decode(v)).into_owned();
    (!v.is_empty()).then_some(ClientCredential { source: "query:key", secret: v })
}


/// For records: `key=` (and other secret-bearing) query values replaced.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            let decoded = percent_decode(name);
            if SECRET_QUERY_PARAMS
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

/// The first virtual key the client presented in a control header.
pub fn virtual_key_header(headers: &HeaderMap) -> Option<String> {
    VIRTUAL_KEY_HEADERS
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_client_credentials() {
        let mut h = HeaderMap::new();
        assert_eq!(client_credential(&h, None), None);
        h.insert("authorization", "Bearer dummy-key".parse().unwrap());
        assert_eq!(client_credential(&h, None).unwrap(), ClientCredential { source: "authorization", secret: "dummy-key".into() });
        let mut h = HeaderMap::new();
        h.insert("x-goog-api-key", "g".parse().unwrap());
        assert_eq!(client_credential(&h, None).unwrap().source, "x-goog-api-key");
        let h = HeaderMap::new();
        assert_eq!(client_credential(&h, Some("alt=sse&key=abc%2Bd")).unwrap(), ClientCredential { source: "query:key", secret: "abc+d".into() });
    }

    #[test]
    fn records_redact_query_secrets() {
        assert_eq!(redact_query("alt=sse&key=secret"), "alt=sse&key=REDACTED");
        assert_eq!(redact_query("%6Bey=secret&a=1"), "%6Bey=REDACTED&a=1");
    }
}
