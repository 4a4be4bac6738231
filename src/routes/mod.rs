//! Which route a request takes. The passthrough prefixes (SPEC 1) are
//! matched here; the other decisions are plain functions over the request,
//! each in its own file, that unit tests call without a server:
//!
//! * [`path`]: unsafe remainders refused before anything is sent;
//! * [`genai`]: Gemini or Vertex, by the four rules of SPEC 1.2;
//! * [`credentials`]: the credential and virtual key a client presented;
//! * [`plan`]: the upstream target (host, path, query) for a provider and key;
//! * [`headers`]: every header stripped or set, both directions.

pub mod credentials;
pub mod genai;
pub mod headers;
pub mod path;
pub mod openai;
pub mod plan;

/// The route prefixes: the passthroughs of SPEC 1 and `/openai`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteName {
    OpenAi,
    Anthropic,
    Azure,
    GenAi,
    /// `/openai` (SPEC 8): OpenAI's API over every provider.
    OpenAiCompat,
}

impl RouteName {
    pub fn prefix(self) -> &'static str {
        match self {
            RouteName::OpenAi => "/openai_passthrough",
            RouteName::Anthropic => "/anthropic_passthrough",
            RouteName::Azure => "/azure_passthrough",
            RouteName::GenAi => "/genai_passthrough",
            RouteName::OpenAiCompat => "/openai",
        }
    }
    const ALL: [RouteName; 5] = [
        RouteName::OpenAi,
        RouteName::Anthropic,
        RouteName::Azure,
        RouteName::GenAi,
        RouteName::OpenAiCompat,
    ];
}

/// Match a passthrough prefix on a segment boundary and return the remainder
/// (`/` when nothing follows the prefix). `path` excludes the query.
pub fn match_route(path: &str) -> Option<(RouteName, &str)> {
    for r in RouteName::ALL {
        if let Some(rest) = path.strip_prefix(r.prefix()) {
            if rest.is_empty() {
                return Some((r, "/"));
            }
            if rest.starts_with('/') {
                return Some((r, rest));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_on_segment_boundary() {
        assert_eq!(match_route("/openai_passthrough/v1/chat/completions"), Some((RouteName::OpenAi, "/v1/chat/completions")));
        assert_eq!(match_route("/openai_passthrough"), Some((RouteName::OpenAi, "/")));
        assert_eq!(match_route("/openai_passthrough/"), Some((RouteName::OpenAi, "/")));
        assert_eq!(match_route("/openai_passthroughX"), None);
        assert_eq!(match_route("/openai_passthroughX/v1"), None);
        assert_eq!(match_route("/genai_passthrough/v1beta/models"), Some((RouteName::GenAi, "/v1beta/models")));
        assert_eq!(match_route("/azure_passthrough/openai/v1/responses"), Some((RouteName::Azure, "/openai/v1/responses")));
        assert_eq!(match_route("/anthropic_passthrough/v1/messages"), Some((RouteName::Anthropic, "/v1/messages")));
        assert_eq!(match_route("/"), None);
        assert_eq!(match_route("/v1/chat/completions"), None);
        assert_eq!(match_route("/x/openai_passthrough/v1"), None);
        assert_eq!(match_route("/openai/v1/chat/completions"), Some((RouteName::OpenAiCompat, "/v1/chat/completions")));
        assert_eq!(match_route("/openai"), Some((RouteName::OpenAiCompat, "/")));
        assert_eq!(match_route("/openaiX/v1"), None);
    }

}
