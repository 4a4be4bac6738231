//! Anthropic: `https://api.anthropic.com`, `x-api-key`, usage on the
//! Messages API (`message_start` / `message_delta` when streaming).

use super::{anthropic_messages_path, ApiFamily, AuthForm, Spec};

pub const SPEC: Spec = Spec {
    name: "anthropic",
    default_host: Some("api.anthropic.com"),
    auth: AuthForm::Header("x-api-key"),
    usage_family: |path| anthropic_messages_path(path).then_some(ApiFamily::Anthropic),
    price_fallback: &[],
};
