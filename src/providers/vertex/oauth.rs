//! Google OAuth credentials from JSON files: a service account (the gateway
//! signs a JWT, RS256, and exchanges it at the account's `token_uri`) or a
//! gcloud `authorized_user` (a refresh token exchanged at its `token_uri`).
//! Caching and refresh are [`crate::providers::identity::TokenSource`]'s.

use crate::net::BaseUrl;
use crate::providers::identity::{form, TokenRequest};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde::Deserialize;
use std::fmt;

pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

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

impl ServiceAccount {
    /// The JWT-bearer exchange at the account's `token_uri`.
    pub fn token_request(&self, now: u64) -> Result<TokenRequest, String> {
        let assertion = self.assertion(now)?;
        let url = BaseUrl::parse(&self.token_uri)?;
        Ok(TokenRequest {
            method: "POST",
            url,
            path_and_query: String::new(),
            headers: vec![],
            form: Some(form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)])),
        })
    }
}

/// `gcloud auth application-default login` credentials (`"type":
/// "authorized_user"`): a refresh token exchanged for access tokens.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct AuthorizedUser {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
    #[serde(default)]
    pub quota_project_id: Option<String>,
}

impl fmt::Debug for AuthorizedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizedUser")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl AuthorizedUser {
    /// The `refresh_token` grant at `token_uri`.
    pub fn token_request(&self) -> Result<TokenRequest, String> {
        Ok(TokenRequest {
            method: "POST",
            url: BaseUrl::parse(&self.token_uri)?,
            path_and_query: String::new(),
            headers: vec![],
            form: Some(form(&[
                ("grant_type", "refresh_token"),
                ("client_id", &self.client_id),
                ("client_secret", &self.client_secret),
                ("refresh_token", &self.refresh_token),
            ])),
        })
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
