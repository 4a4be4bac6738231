//! Azure Entra ID access tokens for Azure OpenAI / AI Foundry, scope
//! `https://cognitiveservices.azure.com/.default`:
//! * client credentials: `POST {authority}/{tenant}/oauth2/v2.0/token`
//!   (authority `https://login.microsoftonline.com`, or `AZURE_AUTHORITY_HOST`,
//!   or the key's `authority` for sovereign clouds);
//! * managed identity: App Service / Container Apps' identity endpoint when
//!   `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set, else the instance
//!   metadata service (IMDS, `http://169.254.169.254`, or
//!   `AZURE_POD_IDENTITY_AUTHORITY_HOST` as in Azure's SDKs).

use crate::net::BaseUrl;
use crate::providers::identity::{form, form_encode, TokenRequest};
use std::fmt;

pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";
pub const RESOURCE: &str = "https://cognitiveservices.azure.com";
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
pub const IMDS: &str = "http://169.254.169.254";

/// A client credentials grant: an app registration and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct EntraClient {
    pub authority: BaseUrl,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
}

impl fmt::Debug for EntraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraClient")
            .field("authority", &self.authority.authority())
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

impl EntraClient {
    pub fn token_request(&self) -> Result<TokenRequest, String> {
        Ok(TokenRequest {
            method: "POST",
            url: self.authority.clone(),
            path_and_query: format!("/{}/oauth2/v2.0/token", self.tenant_id),
            headers: vec![],
            form: Some(form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &self.client_id),
                ("client_secret", &self.client_secret),
                ("scope", SCOPE),
            ])),
        })
    }
}

/// Where a managed identity's tokens come from.
#[derive(Clone, PartialEq, Eq)]
pub enum MiEndpoint {
    /// The instance metadata service at this base.
    Imds(BaseUrl),
    /// App Service / Container Apps: `IDENTITY_ENDPOINT`, with
    /// `IDENTITY_HEADER` (a secret) sent as `X-IDENTITY-HEADER`.
    AppService { endpoint: BaseUrl, header: String },
}

/// A system-assigned (or, with `client_id`, user-assigned) managed identity.
#[derive(Clone, PartialEq, Eq)]
pub struct ManagedIdentity {
    pub client_id: Option<String>,
    pub endpoint: MiEndpoint,
}

impl fmt::Debug for ManagedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl ManagedIdentity {
    /// From the environment, as Azure's SDKs decide.
    pub fn from_env(client_id: Option<String>, env: &dyn Fn(&str) -> Option<String>) -> Result<ManagedIdentity, String> {
        let set = |v: &str| env(v).filter(|s| !s.is_empty());
        let endpoint = match (set("IDENTITY_ENDPOINT"), set("IDENTITY_HEADER")) {
            (Some(e), Some(header)) => MiEndpoint::AppService {
                endpoint: BaseUrl::parse(&e).map_err(|m| format!("IDENTITY_ENDPOINT: {m}"))?,
                header,
            },
            _ => {
                let (var, base) = match set("AZURE_POD_IDENTITY_AUTHORITY_HOST") {
                    Some(b) => ("AZURE_POD_IDENTITY_AUTHORITY_HOST", b),
                    None => ("", IMDS.to_string()),
                };
                MiEndpoint::Imds(BaseUrl::parse(&base).map_err(|m| format!("{var}: {m}"))?)
            }
        };
        Ok(ManagedIdentity { client_id, endpoint })
    }

    pub fn describe(&self) -> String {
        let who = match &self.client_id {
            Some(c) => format!("managed identity (client {c})"),
            None => "managed identity".to_string(),
        };
        match &self.endpoint {
            MiEndpoint::Imds(b) => format!("{who} via IMDS {}", b.authority()),
            MiEndpoint::AppService { endpoint, .. } => format!("{who} via IDENTITY_ENDPOINT {}", endpoint.authority()),
        }
    }

    pub fn token_request(&self) -> Result<TokenRequest, String> {
        let client = self.client_id.as_ref().map(|c| format!("&client_id={}", form_encode(c))).unwrap_or_default();
        Ok(match &self.endpoint {
            MiEndpoint::Imds(base) => TokenRequest {
                method: "GET",
                url: base.clone(),
                path_and_query: format!("/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}{client}", form_encode(RESOURCE)),
                headers: vec![("metadata", "true".to_string())],
                form: None,
            },
            MiEndpoint::AppService { endpoint, header } => TokenRequest {
                method: "GET",
                url: endpoint.clone(),
                path_and_query: format!("?api-version=2019-08-01&resource={}{client}", form_encode(RESOURCE)),
                headers: vec![("x-identity-header", header.clone())],
                form: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_request() {
        let c = EntraClient {
            authority: BaseUrl::parse(DEFAULT_AUTHORITY).unwrap(),
            tenant_id: "t-1".into(),
            client_id: "c-1".into(),
            client_secret: "s3cr&t".into(),
        };
        let r = c.token_request().unwrap();
        assert_eq!((r.method, r.path_and_query.as_str()), ("POST", "/t-1/oauth2/v2.0/token"));
        assert_eq!(
            r.form.as_deref(),
            Some("grant_type=client_credentials&client_id=c-1&client_secret=s3cr%26t&scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default")
        );
        assert!(!format!("{c:?}").contains("s3cr"));
    }

    #[test]
    fn managed_identity_endpoints_from_env() {
        let none = |_: &str| None;
        let m = ManagedIdentity::from_env(None, &none).unwrap();
        let r = m.token_request().unwrap();
        assert_eq!(r.url.authority(), "169.254.169.254");
        assert_eq!(r.path_and_query, "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fcognitiveservices.azure.com");
        assert_eq!(r.headers, vec![("metadata", "true".to_string())]);

        let pod = |k: &str| (k == "AZURE_POD_IDENTITY_AUTHORITY_HOST").then(|| "http://127.0.0.1:9".to_string());
        let m = ManagedIdentity::from_env(Some("uai".into()), &pod).unwrap();
        let r = m.token_request().unwrap();
        assert_eq!(r.url.authority(), "127.0.0.1:9");
        assert!(r.path_and_query.ends_with("&client_id=uai"));

        let app = |k: &str| match k {
            "IDENTITY_ENDPOINT" => Some("http://127.0.0.1:8081/msi/token".to_string()),
            "IDENTITY_HEADER" => Some("hdr-secret".to_string()),
            _ => None,
        };
        let m = ManagedIdentity::from_env(None, &app).unwrap();
        let r = m.token_request().unwrap();
        let up = crate::net::Upstream::at(&r.url, &r.path_and_query);
        assert_eq!(up.path_and_query, "/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fcognitiveservices.azure.com");
        assert_eq!(r.headers, vec![("x-identity-header", "hdr-secret".to_string())]);
        assert!(!format!("{m:?}").contains("hdr-secret"));
    }
}
