//! Google Application Default Credentials, found the way Google's libraries
//! find them: the file named by `GOOGLE_APPLICATION_CREDENTIALS` (a service
//! account or gcloud `authorized_user`), then gcloud's well-known file
//! (`$CLOUDSDK_CONFIG` or `~/.config/gcloud`, `application_default_credentials.json`),
//! then the metadata server of GCE, GKE and Cloud Run (`GCE_METADATA_HOST`
//! overrides `metadata.google.internal`, as in Google's libraries).

use super::oauth::{AuthorizedUser, ServiceAccount, SCOPE};
use crate::net::BaseUrl;
use crate::providers::identity::{form_encode, Identity, TokenRequest};

pub const METADATA_HOST: &str = "metadata.google.internal";
const WELL_KNOWN: &str = "application_default_credentials.json";

/// The credentials ADC finds with this environment, and where they came
/// from (for `tollgate check` and the start log). Errors name the file.
pub fn find(env: &dyn Fn(&str) -> Option<String>) -> Result<(Identity, String), String> {
    let set = |v: &str| env(v).filter(|s| !s.is_empty());
    if let Some(path) = set("GOOGLE_APPLICATION_CREDENTIALS") {
        let id = load_file(&path).map_err(|e| format!("GOOGLE_APPLICATION_CREDENTIALS: {e}"))?;
        return Ok((id, format!("GOOGLE_APPLICATION_CREDENTIALS={path}")));
    }
    let dir = set("CLOUDSDK_CONFIG").or_else(|| set("HOME").map(|h| format!("{h}/.config/gcloud")));
    if let Some(dir) = dir {
        let path = format!("{dir}/{WELL_KNOWN}");
        if std::path::Path::new(&path).exists() {
            return Ok((load_file(&path)?, path));
        }
    }
    let host = set("GCE_METADATA_HOST").unwrap_or_else(|| METADATA_HOST.to_string());
    let base = BaseUrl::parse(&format!("http://{host}")).map_err(|e| format!("GCE_METADATA_HOST: {e}"))?;
    Ok((Identity::GoogleMetadata(base), "metadata server".into()))
}

/// A credentials JSON file: `service_account` or `authorized_user`.
pub fn load_file(path: &str) -> Result<Identity, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{path} is not JSON: {e}"))?;
    match v["type"].as_str() {
        Some("service_account") => Ok(Identity::GoogleServiceAccount(ServiceAccount::load(path)?)),
        Some("authorized_user") => {
            let u: AuthorizedUser = serde_json::from_value(v).map_err(|e| format!("{path}: not an authorized_user file: {e}"))?;
            BaseUrl::parse(&u.token_uri).map_err(|e| format!("{path}: token_uri: {e}"))?;
            Ok(Identity::GoogleAuthorizedUser(u))
        }
        Some(other) => Err(format!("{path}: credentials of type `{other}` are not supported (service_account or authorized_user)")),
        None => Err(format!("{path}: no `type` (expected service_account or authorized_user)")),
    }
}

/// The metadata server's token request for the default service account.
pub fn metadata_request(base: &BaseUrl) -> TokenRequest {
    TokenRequest {
        method: "GET",
        url: base.clone(),
        path_and_query: format!("/computeMetadata/v1/instance/service-accounts/default/token?scopes={}", form_encode(SCOPE)),
        headers: vec![("metadata-flavor", "Google".to_string())],
        form: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn order_env_file_then_gcloud_file_then_metadata() {
        let dir = std::env::temp_dir().join(format!("tollgate-adc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("gcloud")).unwrap();
        let user = serde_json::json!({"type":"authorized_user","client_id":"cid","client_secret":"cs","refresh_token":"rt-secret","token_uri":"http://127.0.0.1:1/token"});
        std::fs::write(dir.join("gcloud").join(WELL_KNOWN), user.to_string()).unwrap();
        std::fs::write(dir.join("ext.json"), r#"{"type":"external_account"}"#).unwrap();
        let gcloud = dir.join("gcloud").display().to_string();
        let ext = dir.join("ext.json").display().to_string();

        let e = move |k: &str| match k {
            "CLOUDSDK_CONFIG" => Some(gcloud.clone()),
            _ => None,
        };
        let (id, from) = find(&e).unwrap();
        assert!(matches!(&id, Identity::GoogleAuthorizedUser(u) if u.refresh_token == "rt-secret" && u.token_uri == "http://127.0.0.1:1/token"));
        assert!(from.ends_with(WELL_KNOWN));
        assert!(!format!("{id:?}").contains("rt-secret") && !format!("{id:?}").contains("\"cs\""));
        let req = id.request().unwrap();
        assert_eq!(req.form.as_deref(), Some("grant_type=refresh_token&client_id=cid&client_secret=cs&refresh_token=rt-secret"));

        let e = move |k: &str| (k == "GOOGLE_APPLICATION_CREDENTIALS").then(|| ext.clone());
        assert!(find(&e).unwrap_err().contains("external_account"));

        let (id, _) = find(&env_of(&[("HOME", "/nonexistent-home"), ("GCE_METADATA_HOST", "127.0.0.1:8999")])).unwrap();
        assert_eq!(id, Identity::GoogleMetadata(BaseUrl::parse("http://127.0.0.1:8999").unwrap()));
        let req = id.request().unwrap();
        assert_eq!(req.method, "GET");
        assert!(req.path_and_query.starts_with("/computeMetadata/v1/instance/service-accounts/default/token"));
        assert_eq!(req.headers, vec![("metadata-flavor", "Google".to_string())]);
        let (id, _) = find(&env_of(&[])).unwrap();
        assert_eq!(id, Identity::GoogleMetadata(BaseUrl::parse("http://metadata.google.internal").unwrap()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
