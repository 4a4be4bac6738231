//! Ollama through its OpenAI-compatible API (`/v1/chat/completions`,
//! `/v1/embeddings`, `/v1/responses`): local, no key needed (a configured key
//! is sent as a bearer token), `http://127.0.0.1:11434` unless configured.

use super::{openai_like_path, ApiFamily, AuthForm, Spec};
use crate::net::BaseUrl;

pub const SPEC: Spec = Spec {
    name: "ollama",
    default_host: None,
    auth: AuthForm::Bearer,
    usage_family: |path| openai_like_path(path).then_some(ApiFamily::OpenAi),
    price_fallback: &[],
};

/// Where Ollama listens by default.
pub fn default_base() -> BaseUrl {
    BaseUrl { tls: false, host: "127.0.0.1".into(), port: 11434, path: String::new() }
}
