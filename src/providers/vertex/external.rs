//! Workload identity federation: Google `external_account` credential files
//! (AIP-4117), as `gcloud iam workload-identity-pools create-cred-config`
//! writes them. A subject token from another identity provider, read from a
//! file (`credential_source.file`, e.g. a Kubernetes projected token) or
//! fetched from a URL (`credential_source.url` with its `headers`), as text
//! or as one field of a JSON answer (`format`), is exchanged at Google's
//! security token service (`token_url`, RFC 8693 token exchange) for a
//! federated access token; with `service_account_impersonation_url` that
//! token then buys a service account's access token (IAM
//! `generateAccessToken`). AWS (`environment_id`) and executable-sourced
//! credentials are refused at load, naming the file.

use super::oauth::SCOPE;
use crate::net::BaseUrl;
use crate::providers::identity::{form, TokenRequest};
use std::fmt;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// What a subject token or a token file may weigh.
const MAX_SUBJECT: u64 = 64 * 1024;

/// Where the subject token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SubjectSource {
    File(String),
    /// A GET to this URL (with its query) and headers (values may be secret:
    /// never shown). Header names are leaked once per load (a few bytes):
    /// token requests take `&'static str` names.
    Url { url: BaseUrl, query: String, headers: Vec<(&'static str, String)> },
}

/// An `external_account` credentials file, checked at load.
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalAccount {
    pub audience: String,
    pub subject_token_type: String,
    pub token_url: BaseUrl,
    pub source: SubjectSource,
    /// `format.subject_token_field_name` when the subject token is JSON.
    pub json_field: Option<String>,
    pub impersonation_url: Option<BaseUrl>,
    pub quota_project_id: Option<String>,
    /// `workforce_pool_user_project`: sent as the STS `options.userProject`.
    pub user_project: Option<String>,
    /// `client_id` / `client_secret`: HTTP basic authentication at the STS.
    pub client: Option<(String, String)>,
}

impl fmt::Debug for ExternalAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalAccount").field("audience", &self.audience).field("token_url", &self.token_url.authority()).finish_non_exhaustive()
    }
}

/// A URL with an optional query: the base and `?query` (or "").
fn url_with_query(s: &str) -> Result<(BaseUrl, String), String> {
    let (base, query) = match s.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (s, String::new()),
    };
    Ok((BaseUrl::parse(base)?, query))
}

impl ExternalAccount {
    /// Read from the parsed JSON of `path`; errors name the file and field.
    pub fn from_json(path: &str, v: &serde_json::Value) -> Result<ExternalAccount, String> {
        let s = |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let need = |k: &str| s(k).ok_or_else(|| format!("{path}: `{k}` is missing"));
        let url = |k: &str| -> Result<Option<BaseUrl>, String> { s(k).map(|u| BaseUrl::parse(&u).map_err(|e| format!("{path}: `{k}`: {e}"))).transpose() };
        let src = &v["credential_source"];
        if !src.is_object() {
            return Err(format!("{path}: `credential_source` is missing"));
        }
        if src.get("environment_id").is_some() {
            return Err(format!("{path}: AWS-sourced external_account credentials (`credential_source.environment_id`) are not supported; use a file- or URL-sourced subject token, or a service account"));
        }
        if src.get("executable").is_some() {
            return Err(format!("{path}: executable-sourced external_account credentials are not supported; use a file- or URL-sourced subject token"));
        }
        let source = match (src["file"].as_str(), src["url"].as_str()) {
            (Some(f), None) => {
                std::fs::metadata(f).map_err(|e| format!("{path}: `credential_source.file` {f}: {e}"))?;
                SubjectSource::File(f.to_string())
            }
            (None, Some(u)) => {
                let (url, query) = url_with_query(u).map_err(|e| format!("{path}: `credential_source.url`: {e}"))?;
                let mut headers = Vec::new();
                if let Some(h) = src["headers"].as_object() {
                    for (k, val) in h {
                        let val = val.as_str().filter(|v| !v.bytes().any(|b| b < 0x20 || b == 0x7f)).ok_or_else(|| format!("{path}: `credential_source.headers.{k}` is not a string without control characters"))?;
                        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
                            return Err(format!("{path}: `credential_source.headers`: `{k}` is not a header name"));
                        }
                        let name: &'static str = Box::leak(k.to_ascii_lowercase().into_boxed_str());
                        headers.push((name, val.to_string()));
                    }
                }
                SubjectSource::Url { url, query, headers }
            }
            _ => return Err(format!("{path}: `credential_source` needs one of `file` or `url`")),
        };
        let json_field = match src["format"]["type"].as_str() {
            None | Some("text") => None,
            Some("json") => Some(
                src["format"]["subject_token_field_name"]
                    .as_str()
                    .filter(|f| !f.is_empty())
                    .ok_or_else(|| format!("{path}: `credential_source.format.subject_token_field_name` is required with type json"))?
                    .to_string(),
            ),
            Some(t) => return Err(format!("{path}: `credential_source.format.type` `{t}` is not text or json")),
        };
        let client = match (s("client_id"), s("client_secret")) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (None, None) => None,
            _ => return Err(format!("{path}: `client_id` and `client_secret` go together")),
        };
        Ok(ExternalAccount {
            audience: need("audience")?,
            subject_token_type: need("subject_token_type")?,
            token_url: url("token_url")?.ok_or_else(|| format!("{path}: `token_url` is missing"))?,
            source,
            json_field,
            impersonation_url: url("service_account_impersonation_url")?,
            quota_project_id: s("quota_project_id"),
            user_project: s("workforce_pool_user_project"),
            client,
        })
    }

    /// For logs and `tollgate check`: no secret.
    pub fn describe(&self) -> String {
        let from = match &self.source {
            SubjectSource::File(f) => format!("subject token file {f}"),
            SubjectSource::Url { url, .. } => format!("subject token from {}", url.authority()),
        };
        let via = self.impersonation_url.as_ref().map(|u| format!(", impersonating via {}", u.authority())).unwrap_or_default();
        format!("workload identity federation, {from}, token exchange at {}{via}", self.token_url.authority())
    }

    /// The request for the subject token, when it comes from a URL.
    pub fn subject_request(&self) -> Option<TokenRequest> {
        match &self.source {
            SubjectSource::File(_) => None,
            SubjectSource::Url { url, query, headers } => Some(TokenRequest {
                method: "GET",
                url: url.clone(),
                path_and_query: query.clone(),
                headers: headers.clone(),
                form: None,
            }),
        }
    }

    /// Read the subject token file (read at each exchange: it rotates).
    pub fn read_subject_file(&self) -> Result<Option<Vec<u8>>, String> {
        use std::io::Read;
        let SubjectSource::File(f) = &self.source else { return Ok(None) };
        let mut buf = Vec::new();
        std::fs::File::open(f).and_then(|h| h.take(MAX_SUBJECT).read_to_end(&mut buf)).map_err(|e| format!("subject token file {f}: {e}"))?;
        Ok(Some(buf))
    }

    /// The subject token in what the file or URL gave.
    pub fn subject_token(&self, raw: &[u8]) -> Result<String, String> {
        let tok = match &self.json_field {
            None => String::from_utf8_lossy(raw).trim().to_string(),
            Some(field) => {
                let v: serde_json::Value = serde_json::from_slice(raw).map_err(|_| "the subject token source is not JSON".to_string())?;
                v[field.as_str()].as_str().map(str::to_string).ok_or_else(|| format!("the subject token source has no string field `{field}`"))?
            }
        };
        if tok.is_empty() || tok.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err("the subject token is empty or not printable".into());
        }
        Ok(tok)
    }

    /// The token exchange at the STS.
    pub fn sts_request(&self, subject_token: &str) -> TokenRequest {
        let options = self.user_project.as_ref().filter(|_| self.impersonation_url.is_none()).map(|p| serde_json::json!({ "userProject": p }).to_string());
        let mut pairs = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("audience", self.audience.as_str()),
            ("scope", SCOPE),
            ("requested_token_type", ACCESS_TOKEN),
            ("subject_token", subject_token),
            ("subject_token_type", self.subject_token_type.as_str()),
        ];
        if let Some(o) = &options {
            pairs.push(("options", o.as_str()));
        }
        let mut headers = Vec::new();
        if let Some((id, secret)) = &self.client {
            headers.push(("authorization", format!("Basic {}", openssl::base64::encode_block(format!("{id}:{secret}").as_bytes()))));
        }
        TokenRequest { method: "POST", url: self.token_url.clone(), path_and_query: String::new(), headers, form: Some(form(&pairs)) }
    }

    /// The service account's token, bought with the federated one.
    pub fn impersonation_request(&self, federated: &str) -> Option<TokenRequest> {
        let url = self.impersonation_url.as_ref()?;
        Some(TokenRequest {
            method: "POST",
            url: url.clone(),
            path_and_query: String::new(),
            headers: vec![("content-type", "application/json".to_string()), ("authorization", format!("Bearer {federated}"))],
            form: Some(serde_json::json!({ "scope": [SCOPE] }).to_string()),
        })
    }
}

/// IAM's `generateAccessToken` answer: the token and its lifetime.
pub fn parse_impersonation(body: &[u8], now_unix: u64) -> Result<(String, std::time::Duration), String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
    let tok = v["accessToken"].as_str().filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic())).ok_or("unusable accessToken")?;
    let expires = v["expireTime"].as_str().and_then(rfc3339_unix).ok_or("no usable expireTime")?;
    Ok((tok.to_string(), std::time::Duration::from_secs(expires.saturating_sub(now_unix))))
}

/// Unix seconds of an RFC 3339 UTC time as IAM writes it
/// (`2014-10-02T15:01:23Z`, fractions allowed).
fn rfc3339_unix(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, m, d, hh, mm, ss) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("tollgate-ext-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn file_and_url_sourced_credentials_and_their_requests() {
        let d = dir();
        let tok = d.join("token");
        std::fs::write(&tok, "  eyJhbGciOi.subject.jwt\n").unwrap();
        let v = serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/p/providers/k8s",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": { "file": tok.to_str().unwrap() },
        });
        let ea = ExternalAccount::from_json("wif.json", &v).unwrap();
        assert!(ea.subject_request().is_none());
        let subject = ea.subject_token(&ea.read_subject_file().unwrap().unwrap()).unwrap();
        assert_eq!(subject, "eyJhbGciOi.subject.jwt");
        let sts = ea.sts_request(&subject);
        assert_eq!((sts.method, sts.url.authority().as_str(), sts.url.path.as_str()), ("POST", "sts.googleapis.com", "/v1/token"));
        assert_eq!(
            sts.form.as_deref(),
            Some("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&audience=%2F%2Fiam.googleapis.com%2Fprojects%2F123%2Flocations%2Fglobal%2FworkloadIdentityPools%2Fp%2Fproviders%2Fk8s&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&subject_token=eyJhbGciOi.subject.jwt&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt")
        );
        assert!(ea.impersonation_request("fed").is_none());
        assert!(!format!("{ea:?}").contains("subject.jwt"));

        let v = serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/locations/global/workforcePools/wf/providers/oidc",
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "token_url": "http://127.0.0.1:9/v1/token",
            "service_account_impersonation_url": "http://127.0.0.1:9/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken",
            "credential_source": { "url": "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://x", "headers": { "Metadata": "True" }, "format": { "type": "json", "subject_token_field_name": "access_token" } },
            "client_id": "cid", "client_secret": "csecret",
        });
        let ea = ExternalAccount::from_json("wif.json", &v).unwrap();
        let r = ea.subject_request().unwrap();
        assert_eq!((r.method, r.url.authority().as_str(), r.url.path.as_str(), r.path_and_query.as_str()), ("GET", "169.254.169.254", "/metadata/identity/oauth2/token", "?api-version=2018-02-01&resource=api://x"));
        assert_eq!(r.headers, vec![("metadata", "True".to_string())]);
        assert_eq!(ea.subject_token(br#"{"access_token":"from-url","expires_in":"3599"}"#).unwrap(), "from-url");
        assert!(ea.subject_token(br#"{"token":"x"}"#).unwrap_err().contains("access_token"));
        let sts = ea.sts_request("from-url");
        assert_eq!(sts.headers, vec![("authorization", "Basic Y2lkOmNzZWNyZXQ=".to_string())]);
        let imp = ea.impersonation_request("fed-token").unwrap();
        assert!(imp.url.path.ends_with(":generateAccessToken"));
        assert!(imp.headers.contains(&("authorization", "Bearer fed-token".to_string())) && imp.headers.contains(&("content-type", "application/json".to_string())));
        assert_eq!(imp.form.as_deref(), Some(r#"{"scope":["https://www.googleapis.com/auth/cloud-platform"]}"#));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn unsupported_or_incomplete_files_are_refused_naming_the_field() {
        let base = serde_json::json!({"type": "external_account", "audience": "a", "subject_token_type": "t", "token_url": "https://sts.googleapis.com/v1/token", "credential_source": {"url": "http://127.0.0.1:1/t"}});
        let with = |k: &str, v: serde_json::Value| {
            let mut x = base.clone();
            x[k] = v;
            ExternalAccount::from_json("f.json", &x).unwrap_err()
        };
        assert!(with("credential_source", serde_json::json!({"environment_id": "aws1", "region_url": "http://x"})).contains("AWS"));
        assert!(with("credential_source", serde_json::json!({"executable": {"command": "x"}})).contains("executable"));
        assert!(with("credential_source", serde_json::json!({})).contains("`file` or `url`"));
        assert!(with("credential_source", serde_json::json!({"file": "/nonexistent/tollgate-token"})).contains("/nonexistent/tollgate-token"));
        assert!(with("credential_source", serde_json::json!({"url": "http://x/t", "format": {"type": "json"}})).contains("subject_token_field_name"));
        assert!(with("audience", serde_json::Value::Null).contains("`audience`"));
        assert!(with("token_url", serde_json::json!("ftp://x")).contains("`token_url`"));
        assert!(with("client_id", serde_json::json!("only-id")).contains("client_secret"));
    }

    #[test]
    fn impersonated_tokens_expire_when_iam_says() {
        assert_eq!(rfc3339_unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_unix("2014-10-02T15:01:23Z"), Some(1_412_262_083));
        assert_eq!(rfc3339_unix("2024-02-29T23:59:59.123456Z"), Some(1_709_251_199));
        assert_eq!(rfc3339_unix("2024-02-29 23:59:59Z"), None);
        let (t, ttl) = parse_impersonation(br#"{"accessToken":"ya29.imp","expireTime":"2014-10-02T16:01:23Z"}"#, 1_412_262_083).unwrap();
        assert_eq!((t.as_str(), ttl.as_secs()), ("ya29.imp", 3600));
        assert!(parse_impersonation(br#"{"accessToken":"ya29.imp"}"#, 0).is_err());
    }
}
