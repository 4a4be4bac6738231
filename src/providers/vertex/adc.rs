//! Google Application Default Credentials, found the way Google's libraries
//! find them: the file named by `GOOGLE_APPLICATION_CREDENTIALS` (a service
//! account or gcloud `authorized_user`), then gcloud's well-known file
//! (`$CLOUDSDK_CONFIG` or `~/.config/gcloud`, `application_default_credentials.json`),
//! then the metadata server of GCE, GKE and Cloud Run (`GCE_METADATA_HOST`
//! overrides `metadata.google.internal`, as in Google's libraries).

use super::oauth::{AuthorizedUser, ServiceAccount, SCOPE};
use crate::net::BaseUrl;
use crate::providers::identity::{form_encode, Identity, TokenRequest};
use std::time::Duration;

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
        Some("external_account") => Ok(Identity::GoogleExternal(super::external::ExternalAccount::from_json(path, &v)?)),
        Some(other) => Err(format!("{path}: credentials of type `{other}` are not supported (service_account, authorized_user or external_account)")),
        None => Err(format!("{path}: no `type` (expected service_account, authorized_user or external_account)")),
    }
}

/// How long asking the metadata server for the project may take.
pub const METADATA_PROJECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The project the instance runs in, asked from the metadata server
/// (`/computeMetadata/v1/project/project-id`) as Google's libraries do when
/// nothing names one. Blocking (it runs while the configuration loads, at
/// start and on reload), bounded by `timeout` per step. One plain HTTP GET
/// with `Connection: close`; the head is parsed by `httparse`.
pub fn metadata_project(base: &BaseUrl, timeout: Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    let where_ = format!("metadata server {}", base.authority());
    let addr = (base.host.as_str(), base.port)
        .to_socket_addrs()
        .map_err(|e| format!("{where_}: {e}"))?
        .next()
        .ok_or_else(|| format!("{where_}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{where_}: {e}"))?;
    s.set_read_timeout(Some(timeout)).and_then(|_| s.set_write_timeout(Some(timeout))).map_err(|e| format!("{where_}: {e}"))?;
    let req = format!("GET {}/computeMetadata/v1/project/project-id HTTP/1.1\r\nhost: {}\r\nmetadata-flavor: Google\r\nconnection: close\r\n\r\n", base.path, base.authority());
    s.write_all(req.as_bytes()).map_err(|e| format!("{where_}: {e}"))?;
    // Read until the head and its `content-length` body are in (a server
    // may keep the connection open despite `connection: close`), or EOF.
    let mut resp = Vec::new();
    let mut chunk = [0u8; 4096];
    let body = loop {
        let n = s.read(&mut chunk).map_err(|e| format!("{where_}: {e}"))?;
        resp.extend_from_slice(&chunk[..n]);
        if resp.len() > 16 * 1024 {
            return Err(format!("{where_}: answer too large"));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut head = httparse::Response::new(&mut headers);
        let len = match head.parse(&resp) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if n > 0 => continue,
            _ => return Err(format!("{where_}: not an HTTP answer")),
        };
        let header = |name: &str| head.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase());
        if head.code != Some(200) {
            return Err(format!("{where_} answered {} to the project-id query", head.code.unwrap_or(0)));
        }
        if header("metadata-flavor").as_deref() != Some("google") {
            return Err(format!("{where_}: the answer lacks `Metadata-Flavor: Google` (not a metadata server)"));
        }
        if header("transfer-encoding").is_some() {
            return Err(format!("{where_}: unexpected transfer encoding"));
        }
        match header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            Some(cl) if resp.len() - len >= cl => break resp[len..len + cl].to_vec(),
            Some(_) if n > 0 => continue,
            None if n > 0 => continue,
            _ => break resp[len..].to_vec(),
        }
    };
    let project = String::from_utf8_lossy(&body).trim().to_string();
    if !super::is_resource_segment(&project) {
        return Err(format!("{where_}: `{project}` is not a project id"));
    }
    Ok(project)
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
        std::fs::write(dir.join("ext.json"), r#"{"type":"external_account","audience":"a","subject_token_type":"t","token_url":"https://sts.googleapis.com/v1/token","credential_source":{"environment_id":"aws1"}}"#).unwrap();
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
        assert!(find(&e).unwrap_err().contains("AWS-sourced external_account credentials"));

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

    /// A one-shot server on 127.0.0.1 answering `answer`; the request it got.
    fn serve(answer: &'static str) -> (BaseUrl, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = BaseUrl::parse(&format!("http://{}", l.local_addr().unwrap())).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = vec![0u8; 4096];
            let n = s.read(&mut req).unwrap();
            s.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        (base, t)
    }

    #[test]
    fn project_from_the_metadata_server() {
        let (base, t) = serve("HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Type: application/text\r\nContent-Length: 14\r\n\r\nmeta-project-7");
        assert_eq!(metadata_project(&base, Duration::from_secs(5)).unwrap(), "meta-project-7");
        let req = t.join().unwrap().to_ascii_lowercase();
        assert!(req.starts_with("get /computemetadata/v1/project/project-id http/1.1\r\n") && req.contains("metadata-flavor: google\r\n"), "{req}");
        // Not a metadata server, an error, a bad id, nothing listening.
        let (base, _t) = serve("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nproject-x");
        assert!(metadata_project(&base, Duration::from_secs(5)).unwrap_err().contains("Metadata-Flavor"));
        let (base, _t) = serve("HTTP/1.1 404 Not Found\r\nMetadata-Flavor: Google\r\nContent-Length: 0\r\n\r\n");
        assert!(metadata_project(&base, Duration::from_secs(5)).unwrap_err().contains("404"));
        let (base, _t) = serve("HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\n\r\nnot/a project");
        assert!(metadata_project(&base, Duration::from_secs(5)).unwrap_err().contains("not a project id"));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(metadata_project(&BaseUrl::parse(&format!("http://{closed}")).unwrap(), Duration::from_secs(5)).is_err());
    }
}
