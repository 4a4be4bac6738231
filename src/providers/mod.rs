//! What tollgate knows about each provider, one file per provider: its
//! public base URL, path rules, the credential header it wants, the API
//! family its usage is reported in, and how its prices fall back.
//!
//! [`Provider::spec`] is the table of what differs; a provider file holds
//! its [`Spec`] and the rules only it has (Azure's `api-version`, Vertex's
//! hosts, paths and OAuth). [`identity`] fetches and caches OAuth tokens
//! for keys that are cloud identities (Google service accounts and ADC,
//! Azure Entra ID). Adding a provider is one file, one variant and one
//! table entry.

use crate::net::BaseUrl;

pub mod anthropic;
pub mod azure;
pub mod gemini;
pub mod identity;
pub mod ollama;
pub mod openai;
pub mod openai_compatible;
pub mod vertex;

/// The upstream providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Azure,
    Gemini,
    Vertex,
    /// A local Ollama through its OpenAI-compatible API.
    Ollama,
    /// A `kind: openai_compatible` provider from config, by its name.
    Compatible(&'static str),
}

/// The API families whose usage the scanner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFamily {
    OpenAi,
    Anthropic,
    Gemini,
}

/// How a provider expects its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthForm {
    /// `Authorization: Bearer K`.
    Bearer,
    /// The key as the whole value of this header.
    Header(&'static str),
}

/// What differs per provider.
pub struct Spec {
    pub name: &'static str,
    /// Host of the public API (HTTPS, port 443); `None` when the base comes
    /// from the key (Azure) or the request (Vertex).
    pub default_host: Option<&'static str>,
    pub auth: AuthForm,
    /// The usage family of a response on this (provider-native) path,
    /// `None` for paths that report no usage (model lists, files, counts).
    pub usage_family: fn(&str) -> Option<ApiFamily>,
    /// Price tables consulted after the provider's own for its models.
    pub price_fallback: &'static [Provider],
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::Azure,
        Provider::Gemini,
        Provider::Vertex,
    ];

    /// The table.
    pub fn spec(self) -> &'static Spec {
        match self {
            Provider::OpenAi => &openai::SPEC,
            Provider::Anthropic => &anthropic::SPEC,
            Provider::Azure => &azure::SPEC,
            Provider::Gemini => &gemini::SPEC,
            Provider::Vertex => &vertex::SPEC,
            Provider::Ollama => &ollama::SPEC,
            Provider::Compatible(_) => &openai_compatible::SPEC,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::Compatible(name) => name,
            p => p.spec().name,
        }
    }

    /// A built-in provider, or a `kind: openai_compatible` one the config
    /// registered.
    pub fn from_name(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().chain([Provider::Ollama]).find(|p| p.name() == s).or_else(|| openai_compatible::find(s))
    }

    /// Does this provider speak OpenAI's API (chat completions, responses,
    /// embeddings) natively?
    pub fn openai_shaped(self) -> bool {
        matches!(self, Provider::OpenAi | Provider::Azure | Provider::Ollama | Provider::Compatible(_))
    }

    /// The provider's public base URL, used when the config sets none.
    /// Vertex has no fixed base: see [`vertex::host`].
    pub fn default_base(self) -> Option<BaseUrl> {
        if self == Provider::Ollama {
            return Some(ollama::default_base());
        }
        let host = self.spec().default_host?;
        Some(BaseUrl { tls: true, host: host.to_string(), port: 443, path: String::new() })
    }

    /// The provider's key in its own form: (header name, header value).
    pub fn auth_header(self, key: &str) -> (&'static str, String) {
        match self.spec().auth {
            AuthForm::Bearer => ("authorization", format!("Bearer {key}")),
            AuthForm::Header(h) => (h, key.to_string()),
        }
    }

    /// The usage family of a response on `path` (query ignored).
    pub fn usage_family(self, path: &str) -> Option<ApiFamily> {
        (self.spec().usage_family)(path.split('?').next().unwrap_or(path))
    }
}

/// OpenAI's API shapes: chat completions, completions, responses, embeddings.
pub(crate) fn openai_like_path(path: &str) -> bool {
    path.contains("/chat/completions") || path.ends_with("/completions") || path.contains("/responses") || path.contains("/embeddings")
}

/// Anthropic's Messages API.
pub(crate) fn anthropic_messages_path(path: &str) -> bool {
    path.ends_with("/v1/messages")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_forms() {
        assert_eq!(Provider::OpenAi.auth_header("K"), ("authorization", "Bearer K".into()));
        assert_eq!(Provider::Anthropic.auth_header("K"), ("x-api-key", "K".into()));
        assert_eq!(Provider::Azure.auth_header("K"), ("api-key", "K".into()));
        assert_eq!(Provider::Gemini.auth_header("K"), ("x-goog-api-key", "K".into()));
        assert_eq!(Provider::Vertex.auth_header("K"), ("x-goog-api-key", "K".into()));
    }

    #[test]
    fn names_round_trip_and_bases() {
        for p in Provider::ALL {
            assert_eq!(Provider::from_name(p.name()), Some(p));
        }
        assert_eq!(Provider::from_name("nope"), None);
        assert_eq!(Provider::OpenAi.default_base().unwrap().authority(), "api.openai.com");
        assert_eq!(Provider::Gemini.default_base().unwrap().host, "generativelanguage.googleapis.com");
        assert!(Provider::Azure.default_base().is_none() && Provider::Vertex.default_base().is_none());
    }

    #[test]
    fn families_by_path() {
        assert_eq!(Provider::OpenAi.usage_family("/v1/chat/completions"), Some(ApiFamily::OpenAi));
        assert_eq!(Provider::OpenAi.usage_family("/v1/completions"), Some(ApiFamily::OpenAi));
        assert_eq!(Provider::OpenAi.usage_family("/v1/responses"), Some(ApiFamily::OpenAi));
        assert_eq!(Provider::OpenAi.usage_family("/v1/embeddings"), Some(ApiFamily::OpenAi));
        assert_eq!(Provider::OpenAi.usage_family("/v1/models"), None);
        assert_eq!(Provider::OpenAi.usage_family("/v1/files"), None);
        assert_eq!(Provider::Anthropic.usage_family("/v1/messages"), Some(ApiFamily::Anthropic));
        assert_eq!(Provider::Anthropic.usage_family("/v1/messages/count_tokens"), None);
        assert_eq!(Provider::Azure.usage_family("/openai/deployments/d/chat/completions"), Some(ApiFamily::OpenAi));
        assert_eq!(Provider::Azure.usage_family("/openai/v1/responses"), Some(ApiFamily::OpenAi));
        assert_eq!(Provider::Azure.usage_family("/anthropic/v1/messages"), Some(ApiFamily::Anthropic));
        assert_eq!(Provider::Azure.usage_family("/v1/messages"), Some(ApiFamily::Anthropic));
        assert_eq!(Provider::Gemini.usage_family("/v1beta/models/g:generateContent"), Some(ApiFamily::Gemini));
        assert_eq!(Provider::Gemini.usage_family("/v1beta/models/g:streamGenerateContent"), Some(ApiFamily::Gemini));
        assert_eq!(Provider::Gemini.usage_family("/v1beta/models/g:countTokens"), None);
        assert_eq!(Provider::Vertex.usage_family("/v1/projects/p/locations/l/publishers/google/models/e:predict"), Some(ApiFamily::Gemini));
        assert_eq!(Provider::Vertex.usage_family("/v1/projects/p/locations/l/publishers/anthropic/models/c:streamRawPredict"), Some(ApiFamily::Anthropic));
    }
}
