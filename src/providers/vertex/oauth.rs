//! Vertex AI OAuth credentials from a service-account JSON file: the gateway
//! signs a JWT (RS256) and exchanges it at the account's `token_uri` for an
//! access token, caches it, refreshes it before expiry and after a 401.

use crate::net::{build_peer, BaseUrl, Resolver, Timeouts, Upstream};
use bytes::Bytes;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use serde::Deserialize;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// A cached token is replaced this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Token responses are small; anything bigger is refused.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// The fields of a service-account key file the gateway uses.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: String,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
    #[serde(default)]
    pub project_id: Option<String>,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_string()
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccount {
    /// Read and check a key file: JSON shape, private key, token URI.
    pub fn load(path: &str) -> Result<ServiceAccount, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let sa: ServiceAccount =
            serde_json::from_str(&text).map_err(|e| format!("{path} is not a service-account key file: {e}"))?;
        sa.key().map_err(|e| format!("{path}: private_key: {e}"))?;
        BaseUrl::parse(&sa.token_uri).map_err(|e| format!("{path}: token_uri: {e}"))?;
        Ok(sa)
    }

    fn key(&self) -> Result<PKey<Private>, String> {
        PKey::private_key_from_pem(self.private_key.as_bytes()).map_err(|_| "not a PEM private key".to_string())
    }

    /// The signed JWT assertion for the token exchange, valid one hour from `now`.
    pub fn assertion(&self, now: u64) -> Result<String, String> {
        let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
        if !self.private_key_id.is_empty() {
            header["kid"] = self.private_key_id.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let key = self.key()?;
        let mut signer = Signer::new(MessageDigest::sha256(), &key).map_err(|e| e.to_string())?;
        signer.update(signing_input.as_bytes()).map_err(|e| e.to_string())?;
        let sig = signer.sign_to_vec().map_err(|e| e.to_string())?;
        Ok(format!("{signing_input}.{}", b64url(&sig)))
    }
}

/// Base64url without padding (RFC 7515).
pub fn b64url(data: &[u8]) -> String {
    openssl::base64::encode_block(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Mints and caches access tokens for one service account.
pub struct TokenSource {
    sa: ServiceAccount,
    cached: Mutex<Option<(String, Instant)>>,
}

impl TokenSource {
    pub fn new(sa: ServiceAccount) -> Self {
        TokenSource { sa, cached: Mutex::new(None) }
    }

    /// The service account tokens are minted for.
    pub fn account(&self) -> &ServiceAccount {
        &self.sa
    }

    /// A valid access token, minting one when none is cached or it is
    /// about to expire. Concurrent callers wait for one exchange.
    pub async fn token(&self, connector: &Connector, resolver: &Resolver, timeouts: &Timeouts) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some((tok, exp)) = cached.as_ref() {
            if Instant::now() + REFRESH_MARGIN < *exp {
                return Ok(tok.clone());
            }
        }
        let (tok, ttl) = self.exchange(connector, resolver, timeouts).await?;
        *cached = Some((tok.clone(), Instant::now() + ttl));
        Ok(tok)
    }

    /// Drop the cached token (the provider answered 401).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn exchange(&self, connector: &Connector, resolver: &Resolver, timeouts: &Timeouts) -> Result<(String, Duration), String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let assertion = self.sa.assertion(now)?;
        let body = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
        let base = BaseUrl::parse(&self.sa.token_uri)?;
        let up = Upstream::at(&base, if base.path.is_empty() { "/" } else { "" });
        let addr = resolver.resolve(&up.host, up.port, 0).await.map_err(|e| e.0)?;
        let peer = build_peer(&up, addr, timeouts);
        let (mut http, _reused) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("token endpoint {}: {e}", up.authority))?;
        http.set_read_timeout(Some(Duration::from_secs(30)));
        let mut req = RequestHeader::build("POST", up.path_and_query.as_bytes(), None).map_err(|e| e.to_string())?;
        for (k, v) in [
            ("host", up.authority.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", &body.len().to_string()),
            ("accept", "application/json"),
        ] {
            req.insert_header(k.to_string(), v).map_err(|e| e.to_string())?;
        }
        let fail = |e: pingora::BError| format!("token endpoint {}: {e}", up.authority);
        http.write_request_header(Box::new(req)).await.map_err(fail)?;
        http.write_request_body(Bytes::from(body), true).await.map_err(fail)?;
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
            // The body is Google's error JSON; it holds no secret of ours.
            let snippet: String = String::from_utf8_lossy(&resp).chars().take(200).collect();
            return Err(format!("token endpoint {} answered {status}: {snippet}", up.authority));
        }
        let t: TokenResponse = serde_json::from_slice(&resp).map_err(|e| format!("token endpoint {}: bad JSON: {e}", up.authority))?;
        if t.access_token.is_empty() || t.access_token.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(format!("token endpoint {}: unusable access_token", up.authority));
        }
        Ok((t.access_token, Duration::from_secs(t.expires_in.unwrap_or(3600).clamp(60, 86_400))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;
    use openssl::sign::Verifier;

    fn sa() -> (ServiceAccount, PKey<Private>) {
        let rsa = Rsa::generate(2048).unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        let pem = String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (
            ServiceAccount {
                client_email: "gw@p.iam.gserviceaccount.com".into(),
                private_key: pem,
                private_key_id: "kid1".into(),
                token_uri: "https://oauth2.googleapis.com/token".into(),
                project_id: Some("p".into()),
            },
            key,
        )
    }

    fn b64url_decode(s: &str) -> Vec<u8> {
        let mut t = s.replace('-', "+").replace('_', "/");
        while t.len() % 4 != 0 {
            t.push('=');
        }
        openssl::base64::decode_block(&t).unwrap()
    }

    #[test]
    fn assertion_is_a_verifiable_rs256_jwt() {
        let (sa, key) = sa();
        let jwt = sa.assertion(1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "kid1");
        let claims: serde_json::Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
        assert_eq!(claims["iss"], "gw@p.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 3600);
        let mut v = Verifier::new(MessageDigest::sha256(), &key).unwrap();
        v.update(format!("{}.{}", parts[0], parts[1]).as_bytes()).unwrap();
        assert!(v.verify(&b64url_decode(parts[2])).unwrap());
        assert!(!format!("{sa:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn load_checks_the_file() {
        let (sa, _) = sa();
        let dir = std::env::temp_dir().join(format!("tollgate-sa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("sa.json");
        std::fs::write(&good, serde_json::json!({"type":"service_account","client_email":sa.client_email,"private_key":sa.private_key,"token_uri":"http://127.0.0.1:1/token"}).to_string()).unwrap();
        assert_eq!(ServiceAccount::load(good.to_str().unwrap()).unwrap().client_email, sa.client_email);
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"client_email":"x","private_key":"nope"}"#).unwrap();
        assert!(ServiceAccount::load(bad.to_str().unwrap()).unwrap_err().contains("private_key"));
        assert!(ServiceAccount::load(dir.join("missing.json").to_str().unwrap()).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn b64url_has_no_padding_or_unsafe_chars() {
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url(b"a"), "YQ");
    }
}
