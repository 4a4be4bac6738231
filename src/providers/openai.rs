//! OpenAI: `https://api.openai.com`, `Authorization: Bearer`, OpenAI usage
//! on chat completions, completions, responses and embeddings.

use super::{openai_like_path, ApiFamily, AuthForm, Spec};

pub const SPEC: Spec = Spec {
    name: "openai",
    default_host: Some("api.openai.com"),
    auth: AuthForm::Bearer,
    usage_family: |path| openai_like_path(path).then_some(ApiFamily::OpenAi),
    price_fallback: &[],
};
