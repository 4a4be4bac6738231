//! The upstream target of a request: the provider's base (configured, the
//! key's Azure endpoint, or Vertex's location host) with the remainder and
//! the query as the provider's rules want them.

use crate::config::{KeyConf, ProviderConf};
use crate::net::{BaseUrl, Upstream};
use crate::providers::{azure, vertex, Provider};

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
            query = azure::query(&path, inp.query, inp.key.and_then(|k| k.api_version.as_deref()));
            inp.key
                .and_then(|k| k.endpoint.clone())
                .or_else(|| inp.conf.and_then(|c| c.base_url.clone()))
                .ok_or("azure has no endpoint configured")?
        }
        Provider::Vertex => {
            let project = inp.conf.and_then(|c| c.project.as_deref());
            let location = inp.conf.and_then(|c| c.location.as_deref());
            path = vertex::rewrite_path(&path, project, location, inp.vertex_oauth);
            let loc = location.or_else(|| vertex::path_project_location(&path).map(|(_, l)| l));
            match inp.conf.and_then(|c| c.base_url.clone()) {
                Some(b) => b,
                None => BaseUrl {
                    tls: true,
                    host: vertex::host(loc),
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

        let key = KeyConf { name: "k".into(), value: "v".into(), weight: 1, models: None, endpoint: Some(BaseUrl::parse("https://res.openai.azure.com").unwrap()), api_version: Some("2024-10-21".into()), identity: None };
        let u = plan_upstream(&PlanInput { provider: Provider::Azure, remainder: "/openai/deployments/d/chat/completions", query: Some("api-version=2024-02-01"), conf: None, key: Some(&key), vertex_oauth: false }).unwrap();
        assert_eq!(u.authority, "res.openai.azure.com");
        assert_eq!(u.path_and_query, "/openai/deployments/d/chat/completions?api-version=2024-10-21");
        assert!(plan_upstream(&PlanInput { provider: Provider::Azure, remainder: "/x", query: None, conf: None, key: None, vertex_oauth: false }).is_err());
    }
}
