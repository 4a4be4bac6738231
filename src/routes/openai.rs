//! The OpenAI-compatible route `/openai` (SPEC 8): which endpoint a path
//! names, which provider a `provider/model` name targets, the provider's
//! path for it, and the `x-bf-azure-endpoint` allowlist. Plain functions;
//! the exchange itself is `gateway::openai`'s.

use crate::config::glob::glob_match;
use crate::net::BaseUrl;
use crate::providers::Provider;

pub const PREFIX: &str = "/openai";

/// What the client calls on `/openai`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Endpoint {
    ChatCompletions,
    Responses,
    Embeddings,
    /// `GET /models`: answered by the gateway.
    Models,
}

impl Endpoint {
    /// The OpenAI path under `/v1`.
    pub fn openai_path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Responses => "/responses",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Models => "/models",
        }
    }
}

/// A request on `/openai`, from its remainder (the path after `/openai`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenAiRoute {
    /// A translated endpoint; `azure_deployment` when the path was the
    /// AzureOpenAI client's `/openai/deployments/{d}/...`.
    Endpoint { endpoint: Endpoint, azure_deployment: Option<String> },
    /// Anything else: forwarded to OpenAI as on `/openai_passthrough`, with
    /// this upstream path.
    Forward(String),
}

/// Classify the remainder after `/openai` for `method`.
pub fn classify(method: &str, remainder: &str) -> OpenAiRoute {
    // AzureOpenAI with azure_endpoint=".../openai" sends /openai/openai/...
    if let Some(rest) = remainder.strip_prefix("/openai/deployments/") {
        if let Some((d, op)) = rest.split_once('/') {
            let endpoint = match op {
                "chat/completions" => Some(Endpoint::ChatCompletions),
                "embeddings" => Some(Endpoint::Embeddings),
                _ => None,
            };
            if let (Some(endpoint), true, true) = (endpoint, !d.is_empty(), method == "POST") {
                return OpenAiRoute::Endpoint { endpoint, azure_deployment: Some(d.to_string()) };
            }
        }
    }
    let bare = remainder.strip_prefix("/v1").filter(|r| r.is_empty() || r.starts_with('/')).unwrap_or(remainder);
    let endpoint = match (method, bare) {
        ("POST", "/chat/completions") => Some(Endpoint::ChatCompletions),
        ("POST", "/responses") => Some(Endpoint::Responses),
        ("POST", "/embeddings") => Some(Endpoint::Embeddings),
        ("GET", "/models") => Some(Endpoint::Models),
        _ => None,
    };
    match endpoint {
        Some(endpoint) => OpenAiRoute::Endpoint { endpoint, azure_deployment: None },
        None => {
            let path = if remainder.starts_with("/v1/") || remainder == "/v1" { remainder.to_string() } else { format!("/v1{remainder}") };
            OpenAiRoute::Forward(path)
        }
    }
}

/// `x-bf-async: true`: submit as an async job (SPEC 9).
pub fn async_requested(headers: &http::HeaderMap) -> bool {
    headers.get("x-bf-async").and_then(|v| v.to_str().ok()).is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// `x-bf-async-id: <id>`: poll an async job.
pub fn async_poll_id(headers: &http::HeaderMap) -> Option<String> {
    headers.get("x-bf-async-id").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// `provider/model` → the provider and its own model name. No prefix, or a
/// first segment that names no configured provider, is OpenAI with the
/// model as written. `configured` says whether a provider is in config.
pub fn split_model<'a>(model: &'a str, configured: &dyn Fn(Provider) -> bool) -> (Provider, &'a str) {
    if let Some((prefix, rest)) = model.split_once('/') {
        if let Some(p) = Provider::from_name(prefix).filter(|p| configured(*p) || matches!(p, Provider::OpenAi | Provider::Anthropic | Provider::Gemini | Provider::Vertex | Provider::Azure)) {
            if !rest.is_empty() {
                return (p, rest);
            }
        }
    }
    (Provider::OpenAi, model)
}

/// The provider's path (and query) for `endpoint`, appended to its base.
pub struct PathInput<'a> {
    pub provider: Provider,
    pub endpoint: Endpoint,
    pub model: &'a str,
    pub stream: bool,
    /// Azure: the api-version to send.
    pub api_version: &'a str,
    /// Vertex with OAuth credentials: the project and location.
    pub vertex_project: Option<(&'a str, &'a str)>,
    /// The base URL's own path (openai_compatible bases may end in `/v1`).
    pub base_path: &'a str,
}

/// Characters a model name may carry into a path segment.
pub fn valid_model_segment(m: &str) -> bool {
    !m.is_empty() && m.len() <= 256 && m.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
}

/// Is `model` a Claude model hosted by `provider` (Vertex, or Azure AI
/// Foundry), which speaks Anthropic's Messages API there?
pub fn claude_model(provider: Provider, model: &str) -> bool {
    matches!(provider, Provider::Vertex | Provider::Azure) && model.starts_with("claude")
}

/// Does the provider request at `path` go to Claude's Messages API on
/// Vertex or Azure (it then needs Anthropic's version header on Azure)?
pub fn claude_on(provider: Provider, path: &str) -> bool {
    match provider {
        Provider::Azure => path.split('?').next().is_some_and(|p| p.ends_with("/anthropic/v1/messages")),
        _ => false,
    }
}

pub fn provider_path(i: &PathInput<'_>) -> String {
    let op = i.endpoint.openai_path();
    if claude_model(i.provider, i.model) {
        return match i.provider {
            // Vertex: rawPredict on the anthropic publisher (the version
            // rides in the body); Azure AI Foundry: the Messages path.
            Provider::Vertex => {
                let method = if i.stream { "streamRawPredict" } else { "rawPredict" };
                match i.vertex_project {
                    Some((p, l)) => format!("/v1/projects/{p}/locations/{l}/publishers/anthropic/models/{}:{method}", i.model),
                    None => format!("/v1/publishers/anthropic/models/{}:{method}", i.model),
                }
            }
            _ => "/anthropic/v1/messages".to_string(),
        };
    }
    match i.provider {
        Provider::Anthropic => "/v1/messages".to_string(),
        Provider::Gemini => {
            let method = match (i.endpoint, i.stream) {
                (Endpoint::Embeddings, _) => "batchEmbedContents",
                (_, true) => "streamGenerateContent?alt=sse",
                _ => "generateContent",
            };
            format!("/v1beta/models/{}:{method}", i.model)
        }
        Provider::Vertex => {
            let method = match (i.endpoint, i.stream) {
                (Endpoint::Embeddings, _) => "predict",
                (_, true) => "streamGenerateContent?alt=sse",
                _ => "generateContent",
            };
            match i.vertex_project {
                Some((p, l)) => format!("/v1/projects/{p}/locations/{l}/publishers/google/models/{}:{method}", i.model),
                None => format!("/v1/publishers/google/models/{}:{method}", i.model),
            }
        }
        Provider::Azure => match i.endpoint {
            Endpoint::Responses => format!("/openai/responses?api-version={}", i.api_version),
            _ => format!("/openai/deployments/{}{op}?api-version={}", i.model, i.api_version),
        },
        Provider::OpenAi | Provider::Ollama | Provider::Compatible(_) => {
            if i.base_path.ends_with("/v1") {
                op.to_string()
            } else {
                format!("/v1{op}")
            }
        }
    }
}

/// Is `endpoint` (a client-named Azure endpoint) allowed by `allowlist`?
/// Globs match `scheme://host:port` (the port always written out), so
/// `https://*.openai.azure.com` matches `https://res.openai.azure.com`
/// (port 443) but no other scheme, port or path.
pub fn azure_endpoint_allowed(endpoint: &BaseUrl, allowlist: &[String]) -> bool {
    if !endpoint.path.is_empty() {
        return false;
    }
    let scheme = if endpoint.tls { "https" } else { "http" };
    let host = if endpoint.host.contains(':') { format!("[{}]", endpoint.host) } else { endpoint.host.to_ascii_lowercase() };
    let full = format!("{scheme}://{host}:{}", endpoint.port);
    allowlist.iter().any(|pat| {
        let pat = pat.trim_end_matches('/').to_ascii_lowercase();
        let default_port = if pat.starts_with("https://") { ":443" } else { ":80" };
        // A pattern without a port means the scheme's default port.
        let after_scheme = pat.split_once("://").map_or("", |(_, r)| r);
        let has_port = after_scheme.rsplit_once(':').is_some_and(|(_, p)| !p.is_empty() && (p == "*" || p.bytes().all(|b| b.is_ascii_digit())));
        let pat = if has_port { pat.clone() } else { format!("{pat}{default_port}") };
        glob_match(&pat, &full)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(e: Endpoint) -> OpenAiRoute {
        OpenAiRoute::Endpoint { endpoint: e, azure_deployment: None }
    }

    #[test]
    fn endpoints_with_and_without_v1() {
        assert_eq!(classify("POST", "/chat/completions"), ep(Endpoint::ChatCompletions));
        assert_eq!(classify("POST", "/v1/chat/completions"), ep(Endpoint::ChatCompletions));
        assert_eq!(classify("POST", "/v1/responses"), ep(Endpoint::Responses));
        assert_eq!(classify("POST", "/embeddings"), ep(Endpoint::Embeddings));
        assert_eq!(classify("GET", "/v1/models"), ep(Endpoint::Models));
        assert_eq!(classify("GET", "/models/gpt-4o"), OpenAiRoute::Forward("/v1/models/gpt-4o".into()));
        assert_eq!(classify("POST", "/v1/files"), OpenAiRoute::Forward("/v1/files".into()));
        assert_eq!(classify("DELETE", "/files/f1"), OpenAiRoute::Forward("/v1/files/f1".into()));
        assert_eq!(classify("GET", "/chat/completions"), OpenAiRoute::Forward("/v1/chat/completions".into()));
        assert_eq!(
            classify("POST", "/openai/deployments/gpt-4o/chat/completions"),
            OpenAiRoute::Endpoint { endpoint: Endpoint::ChatCompletions, azure_deployment: Some("gpt-4o".into()) }
        );
        assert_eq!(
            classify("POST", "/openai/deployments/emb/embeddings"),
            OpenAiRoute::Endpoint { endpoint: Endpoint::Embeddings, azure_deployment: Some("emb".into()) }
        );
    }

    #[test]
    fn model_prefixes() {
        let none = |_p: Provider| false;
        assert_eq!(split_model("gpt-4o-mini", &none), (Provider::OpenAi, "gpt-4o-mini"));
        assert_eq!(split_model("openai/gpt-4o-mini", &none), (Provider::OpenAi, "gpt-4o-mini"));
        assert_eq!(split_model("anthropic/claude-3-sonnet-20240229", &none), (Provider::Anthropic, "claude-3-sonnet-20240229"));
        assert_eq!(split_model("vertex/gemini-pro", &none), (Provider::Vertex, "gemini-pro"));
        assert_eq!(split_model("azure/gpt-4o", &none), (Provider::Azure, "gpt-4o"));
        // Ollama only when configured; its model names carry colons.
        assert_eq!(split_model("ollama/llama3.1:8b", &none), (Provider::OpenAi, "ollama/llama3.1:8b"));
        assert_eq!(split_model("ollama/llama3.1:8b", &|p| p == Provider::Ollama), (Provider::Ollama, "llama3.1:8b"));
        // An unknown first segment is part of an OpenAI model name.
        assert_eq!(split_model("ft:gpt-4o:org/x", &none), (Provider::OpenAi, "ft:gpt-4o:org/x"));
        assert_eq!(split_model("anthropic/", &none), (Provider::OpenAi, "anthropic/"));
    }

    #[test]
    fn provider_paths() {
        let p = |provider, endpoint, model, stream| {
            provider_path(&PathInput { provider, endpoint, model, stream, api_version: "2024-10-21", vertex_project: None, base_path: "" })
        };
        assert_eq!(p(Provider::Anthropic, Endpoint::ChatCompletions, "claude", true), "/v1/messages");
        assert_eq!(p(Provider::Gemini, Endpoint::ChatCompletions, "gemini-2.5-flash", false), "/v1beta/models/gemini-2.5-flash:generateContent");
        assert_eq!(p(Provider::Gemini, Endpoint::ChatCompletions, "g", true), "/v1beta/models/g:streamGenerateContent?alt=sse");
        assert_eq!(p(Provider::Gemini, Endpoint::Embeddings, "text-embedding-004", false), "/v1beta/models/text-embedding-004:batchEmbedContents");
        assert_eq!(p(Provider::Vertex, Endpoint::ChatCompletions, "gemini-pro", false), "/v1/publishers/google/models/gemini-pro:generateContent");
        assert_eq!(p(Provider::Vertex, Endpoint::Embeddings, "text-embedding-004", false), "/v1/publishers/google/models/text-embedding-004:predict");
        assert_eq!(
            provider_path(&PathInput { provider: Provider::Vertex, endpoint: Endpoint::ChatCompletions, model: "g", stream: true, api_version: "", vertex_project: Some(("p", "us-central1")), base_path: "" }),
            "/v1/projects/p/locations/us-central1/publishers/google/models/g:streamGenerateContent?alt=sse"
        );
        assert_eq!(p(Provider::Azure, Endpoint::ChatCompletions, "gpt-4o", false), "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21");
        assert_eq!(p(Provider::Azure, Endpoint::Embeddings, "emb", false), "/openai/deployments/emb/embeddings?api-version=2024-10-21");
        assert_eq!(p(Provider::Azure, Endpoint::Responses, "gpt-4o", false), "/openai/responses?api-version=2024-10-21");
        assert_eq!(p(Provider::OpenAi, Endpoint::Responses, "gpt-4o", false), "/v1/responses");
        assert_eq!(p(Provider::Ollama, Endpoint::ChatCompletions, "llama3.1:8b", false), "/v1/chat/completions");
        assert_eq!(
            provider_path(&PathInput { provider: Provider::OpenAi, endpoint: Endpoint::Embeddings, model: "m", stream: false, api_version: "", vertex_project: None, base_path: "/openai/v1" }),
            "/embeddings"
        );
        assert!(valid_model_segment("llama3.1:8b") && valid_model_segment("gemini-2.5-flash"));
        assert!(!valid_model_segment("../x") && !valid_model_segment("a/b") && !valid_model_segment("a?b") && !valid_model_segment(""));
    }

    #[test]
    fn azure_allowlist_matches_scheme_host_and_port() {
        let list: Vec<String> = crate::config::DEFAULT_AZURE_ALLOWLIST.map(str::to_string).to_vec();
        let ok = |u: &str, l: &[String]| azure_endpoint_allowed(&BaseUrl::parse(u).unwrap(), l);
        assert!(ok("https://res.openai.azure.com", &list));
        assert!(ok("https://RES.openai.azure.com/", &list));
        assert!(ok("https://x.services.ai.azure.com", &list));
        assert!(!ok("http://res.openai.azure.com", &list), "scheme");
        assert!(!ok("https://res.openai.azure.com:8443", &list), "port");
        assert!(!ok("https://evil.com", &list));
        assert!(!ok("https://openai.azure.com.evil.com", &list));
        assert!(!ok("https://res.openai.azure.com/other", &list), "path");
        let local = vec!["http://127.0.0.1:*".to_string()];
        assert!(ok("http://127.0.0.1:9000", &local));
        assert!(!ok("http://10.0.0.1:1", &local));
        assert!(!ok("https://127.0.0.1:9000", &local));
    }

    #[test]
    fn claude_on_vertex_and_azure_uses_the_messages_api_there() {
        let path = |provider, model, stream, vp| provider_path(&PathInput { provider, endpoint: Endpoint::ChatCompletions, model, stream, api_version: "2024-10-21", vertex_project: vp, base_path: "" });
        assert_eq!(path(Provider::Vertex, "claude-sonnet-4-5", false, Some(("p", "us-east5"))), "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5:rawPredict");
        assert_eq!(path(Provider::Vertex, "claude-sonnet-4-5", true, Some(("p", "us-east5"))), "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5:streamRawPredict");
        assert_eq!(path(Provider::Vertex, "claude-haiku-4-5", true, None), "/v1/publishers/anthropic/models/claude-haiku-4-5:streamRawPredict");
        assert_eq!(path(Provider::Azure, "claude-sonnet-4-5", true, None), "/anthropic/v1/messages");
        // Gemini on Vertex and GPT on Azure as before.
        assert!(path(Provider::Vertex, "gemini-2.5-flash", false, None).ends_with("/publishers/google/models/gemini-2.5-flash:generateContent"));
        assert!(path(Provider::Azure, "gpt-4o", false, None).starts_with("/openai/deployments/gpt-4o/chat/completions"));
        assert!(!claude_model(Provider::Anthropic, "claude-sonnet-4-5") && !claude_model(Provider::OpenAi, "claude-x"));
        assert!(claude_on(Provider::Azure, "/anthropic/v1/messages") && !claude_on(Provider::Azure, "/openai/deployments/x/chat/completions"));
    }
}
