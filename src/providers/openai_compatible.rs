//! Any provider with an OpenAI-compatible API (`kind: openai_compatible`
//! in config: Mistral, Groq, Together, vLLM...): its `base_url`, bearer keys,
//! OpenAI's paths under `/v1` and OpenAI's usage. The names are the config's;
//! each distinct name is interned once so a [`Provider`] stays `Copy`.

use super::{openai_like_path, ApiFamily, AuthForm, Provider, Spec};
use std::sync::Mutex;

pub const SPEC: Spec = Spec {
    name: "openai_compatible",
    default_host: None,
    auth: AuthForm::Bearer,
    usage_family: |path| openai_like_path(path).then_some(ApiFamily::OpenAi),
    price_fallback: &[Provider::OpenAi],
};

static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// The provider named `name` (registered when the config declares it).
pub fn register(name: &str) -> Provider {
    let mut names = NAMES.lock().expect("provider names lock");
    if let Some(n) = names.iter().find(|n| **n == name) {
        return Provider::Compatible(n);
    }
    let n: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(n);
    Provider::Compatible(n)
}

/// A registered provider by name.
pub fn find(name: &str) -> Option<Provider> {
    NAMES.lock().expect("provider names lock").iter().find(|n| **n == name).map(|n| Provider::Compatible(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_interned_once_and_found() {
        let a = register("mistral-test");
        let b = register("mistral-test");
        assert_eq!(a, b);
        assert_eq!(a.name(), "mistral-test");
        assert_eq!(Provider::from_name("mistral-test"), Some(a));
        assert_eq!(find("nope-test"), None);
        assert!(a.openai_shaped());
        assert_eq!(a.auth_header("K"), ("authorization", "Bearer K".into()));
    }
}
