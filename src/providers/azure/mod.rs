//! Azure OpenAI and Azure AI Foundry: the base is the key's `endpoint`,
//! the key goes in `api-key`, and `api-version` follows SPEC 1.1. Foundry's
//! Anthropic models answer in Anthropic's shape. Keys may be Entra ID
//! identities instead ([`entra`]): `Authorization: Bearer` replaces `api-key`.

use super::{anthropic_messages_path, openai_like_path, ApiFamily, AuthForm, Provider, Spec};
use crate::net::query::query_without;

pub mod entra;

pub const SPEC: Spec = Spec {
    name: "azure",
    default_host: None,
    auth: AuthForm::Header("api-key"),
    usage_family: |path| {
        if anthropic_messages_path(path) {
            Some(ApiFamily::Anthropic)
        } else {
            openai_like_path(path).then_some(ApiFamily::OpenAi)
        }
    },
    price_fallback: &[Provider::OpenAi, Provider::Anthropic],
};

/// Azure deployment name: `/openai/deployments/{d}/...`.
pub fn deployment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/openai/deployments/")?;
    let d = rest.split('/').next()?;
    (!d.is_empty()).then_some(d)
}


/// Azure `api-version` (SPEC 1.1): the key's replaces the client's; without
/// one the client's is kept, except on `/openai/v1/...` paths, which get none
/// unless the key sets one.
pub fn query(path: &str, query: Option<&str>, key_api_version: Option<&str>) -> Option<String> {
    let v1 = path.starts_with("/openai/v1/") || path == "/openai/v1";
    match key_api_version {
        Some(v) => {
            let rest = query_without(query, &["api-version"]);
            Some(match rest {
                Some(r) => format!("{r}&api-version={v}"),
                None => format!("api-version={v}"),
            })
        }
        None if v1 => query_without(query, &["api-version"]),
        None => query.map(str::to_string).filter(|q| !q.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments() {
        assert_eq!(deployment("/openai/deployments/gpt4o-prod/chat/completions"), Some("gpt4o-prod"));
        assert_eq!(deployment("/openai/responses"), None);
    }

    #[test]
    fn azure_api_version_rule() {
        let dep = "/openai/deployments/d/chat/completions";
        assert_eq!(query(dep, Some("api-version=2024-02-01"), Some("2024-10-21")).as_deref(), Some("api-version=2024-10-21"));
        assert_eq!(query(dep, Some("api-version=2024-02-01"), None).as_deref(), Some("api-version=2024-02-01"));
        assert_eq!(query(dep, Some("x=1&api-version=a"), Some("b")).as_deref(), Some("x=1&api-version=b"));
        assert_eq!(query(dep, None, Some("b")).as_deref(), Some("api-version=b"));
        assert_eq!(query("/openai/v1/responses", None, None), None);
        assert_eq!(query("/openai/v1/responses", Some("api-version=preview"), None), None);
        assert_eq!(query("/openai/v1/responses", None, Some("preview")).as_deref(), Some("api-version=preview"));
        assert_eq!(query("/openai/responses", Some("api-version=2025-03-01-preview"), None).as_deref(), Some("api-version=2025-03-01-preview"));
    }
}
