//! Gemini API: `https://generativelanguage.googleapis.com`,
//! `x-goog-api-key`, usage in `usageMetadata`. The version segment is kept
//! as the client sent it.

use super::{ApiFamily, AuthForm, Spec};

pub const SPEC: Spec = Spec {
    name: "gemini",
    default_host: Some("generativelanguage.googleapis.com"),
    auth: AuthForm::Header("x-goog-api-key"),
    usage_family: google_family,
    price_fallback: &[],
};

/// Usage family of a Gemini or Vertex path: Google's methods, or Anthropic's
/// shape for Anthropic models on Vertex (`rawPredict`).
pub(crate) fn google_family(path: &str) -> Option<ApiFamily> {
    if path.contains(":rawPredict") || path.contains(":streamRawPredict") {
        Some(ApiFamily::Anthropic)
    } else if [":generateContent", ":streamGenerateContent", ":embedContent", ":batchEmbedContents", ":predict"]
        .iter()
        .any(|m| path.contains(m))
    {
        Some(ApiFamily::Gemini)
    } else {
        None
    }
}

/// The model named in a Gemini/Vertex path: `.../models/{m}:method`.
pub fn path_model(path: &str) -> Option<&str> {
    let i = path.find("/models/")?;
    let rest = &path[i + "/models/".len()..];
    let end = rest.find([':', '/']).unwrap_or(rest.len());
    let m = &rest[..end];
    (!m.is_empty()).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_from_paths() {
        assert_eq!(path_model("/v1beta/models/gemini-2.0-flash:generateContent"), Some("gemini-2.0-flash"));
        assert_eq!(path_model("/v1/projects/p/locations/l/publishers/google/models/gemini-2.5-pro:streamGenerateContent"), Some("gemini-2.5-pro"));
        assert_eq!(path_model("/v1/models"), None);
    }
}
