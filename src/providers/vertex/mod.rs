//! Vertex AI: the host follows the location (`{L}-aiplatform.googleapis.com`,
//! `aiplatform.googleapis.com` for `global`), the configured project and
//! location replace the client's, express mode takes an API key in
//! `x-goog-api-key`, and service accounts get OAuth tokens ([`oauth`]).
//! Usage as Gemini's, or Anthropic's for Anthropic models (`rawPredict`).

use super::{AuthForm, Provider, Spec};

pub mod adc;
pub mod external;
pub mod oauth;

pub const SPEC: Spec = Spec {
    name: "vertex",
    default_host: None,
    auth: AuthForm::Header("x-goog-api-key"),
    usage_family: super::gemini::google_family,
    price_fallback: &[Provider::Gemini, Provider::Anthropic],
};

/// `/projects/{P}/locations/{L}/` in the path: returns (P, L).
pub fn path_project_location(path: &str) -> Option<(&str, &str)> {
    let segs: Vec<&str> = path.split('/').collect();
    for i in 0..segs.len().saturating_sub(4) {
        if segs[i] == "projects" && segs[i + 2] == "locations" {
            let (p, l) = (segs[i + 1], segs[i + 3]);
            // `{L}/` must be followed by more path (rule 1 says `/L/`).
            if !p.is_empty() && !l.is_empty() && i + 4 < segs.len() {
                return Some((p, l));
            }
        }
    }
    None
}

/// The first segment is an API version (`v1`, `v1beta`, `v1beta1`, ...).
fn is_version_segment(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'v' && b[1].is_ascii_digit()
}

/// Rule 2: `publishers/` right after the version segment.
pub fn is_express_path(path: &str) -> bool {
    let mut segs = path.trim_start_matches('/').split('/');
    matches!((segs.next(), segs.next()), (Some(v), Some("publishers")) if is_version_segment(v))
}


/// Vertex upstream host: `{location}-aiplatform.googleapis.com`, or
/// `aiplatform.googleapis.com` for `global` or when no location is known.
pub fn host(location: Option<&str>) -> String {
    match location {
        Some(l) if l != "global" && is_resource_segment(l) => {
            format!("{l}-aiplatform.googleapis.com")
        }
        _ => "aiplatform.googleapis.com".to_string(),
    }
}

/// Replace `/projects/{P}/locations/{L}/` in `path` with the configured
/// project/location (each when set). When the path has none and
/// `insert_for_express` is set (OAuth credentials need a project path),
/// `projects/P/locations/L/` is inserted after the version segment.
pub fn rewrite_path(
    path: &str,
    project: Option<&str>,
    location: Option<&str>,
    insert_for_express: bool,
) -> String {
    if let Some((p, l)) = path_project_location(path) {
        let needle = format!("/projects/{p}/locations/{l}/");
        if let Some(i) = path.find(&needle) {
            let new = format!(
                "/projects/{}/locations/{}/",
                project.unwrap_or(p),
                location.unwrap_or(l)
            );
            return format!("{}{}{}", &path[..i], new, &path[i + needle.len()..]);
        }
        return path.to_string();
    }
    if insert_for_express && is_express_path(path) {
        if let (Some(p), l) = (project, location.unwrap_or("global")) {
            let trimmed = path.trim_start_matches('/');
            let (ver, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
            return format!("/{ver}/projects/{p}/locations/{l}/{rest}");
        }
    }
    path.to_string()
}

/// A GCP project id or location: letters, digits, `-`, `_`, `.`.
pub fn is_resource_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_paths_and_hosts() {
        assert_eq!(host(Some("us-central1")), "us-central1-aiplatform.googleapis.com");
        assert_eq!(host(Some("global")), "aiplatform.googleapis.com");
        assert_eq!(host(None), "aiplatform.googleapis.com");
        assert_eq!(host(Some("evil.com/x")), "aiplatform.googleapis.com");
        let p = "/v1beta1/projects/client-p/locations/europe-west4/publishers/google/models/g:generateContent";
        assert_eq!(
            rewrite_path(p, Some("gw"), Some("us-central1"), false),
            "/v1beta1/projects/gw/locations/us-central1/publishers/google/models/g:generateContent"
        );
        assert_eq!(rewrite_path(p, None, None, false), p);
        assert_eq!(
            rewrite_path(p, Some("gw"), None, false),
            "/v1beta1/projects/gw/locations/europe-west4/publishers/google/models/g:generateContent"
        );
        let e = "/v1beta1/publishers/google/models/g:generateContent";
        assert_eq!(rewrite_path(e, Some("gw"), Some("us-central1"), false), e);
        assert_eq!(
            rewrite_path(e, Some("gw"), Some("us-central1"), true),
            "/v1beta1/projects/gw/locations/us-central1/publishers/google/models/g:generateContent"
        );
        assert_eq!(
            rewrite_path(e, Some("gw"), None, true),
            "/v1beta1/projects/gw/locations/global/publishers/google/models/g:generateContent"
        );
        assert_eq!(rewrite_path(e, None, None, true), e);
    }
}
