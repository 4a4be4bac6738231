//! The object member names the field rules read, as one-byte codes: the
//! JSON scanner turns each key into a [`Key`] once, as it ends, so a path
//! is a slice of codes and a rule is a pattern over them (no key bytes
//! kept per nesting level, no string compares per scalar).

/// A member name a field rule looks for, [`Key::Item`] for an array
/// element, or [`Key::Other`] for any other name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Key {
    Other,
    /// An array element (`[]` in the rules' comments).
    Item,
    // Envelopes and containers.
    Response,
    Message,
    Choices,
    Delta,
    Candidates,
    Usage,
    UsageMetadata,
    PromptTokensDetails,
    InputTokensDetails,
    CompletionTokensDetails,
    OutputTokensDetails,
    CacheCreation,
    Predictions,
    Embeddings,
    Statistics,
    // Leaves.
    Model,
    ModelVersion,
    FinishReason,
    StopReason,
    FinishReasonGemini,
    PromptTokens,
    InputTokens,
    CompletionTokens,
    OutputTokens,
    CachedTokens,
    ReasoningTokens,
    CacheReadInputTokens,
    CacheCreationInputTokens,
    Ephemeral5mInputTokens,
    Ephemeral1hInputTokens,
    PromptTokenCount,
    CandidatesTokenCount,
    ThoughtsTokenCount,
    CachedContentTokenCount,
    TokenCount,
}

impl Key {
    pub(super) fn of(name: &[u8]) -> Key {
        match name {
            b"response" => Key::Response,
            b"message" => Key::Message,
            b"choices" => Key::Choices,
            b"delta" => Key::Delta,
            b"candidates" => Key::Candidates,
            b"usage" => Key::Usage,
            b"usageMetadata" => Key::UsageMetadata,
            b"prompt_tokens_details" => Key::PromptTokensDetails,
            b"input_tokens_details" => Key::InputTokensDetails,
            b"completion_tokens_details" => Key::CompletionTokensDetails,
            b"output_tokens_details" => Key::OutputTokensDetails,
            b"cache_creation" => Key::CacheCreation,
            b"predictions" => Key::Predictions,
            b"embeddings" => Key::Embeddings,
            b"statistics" => Key::Statistics,
            b"model" => Key::Model,
            b"modelVersion" => Key::ModelVersion,
            b"finish_reason" => Key::FinishReason,
            b"stop_reason" => Key::StopReason,
            b"finishReason" => Key::FinishReasonGemini,
            b"prompt_tokens" => Key::PromptTokens,
            b"input_tokens" => Key::InputTokens,
            b"completion_tokens" => Key::CompletionTokens,
            b"output_tokens" => Key::OutputTokens,
            b"cached_tokens" => Key::CachedTokens,
            b"reasoning_tokens" => Key::ReasoningTokens,
            b"cache_read_input_tokens" => Key::CacheReadInputTokens,
            b"cache_creation_input_tokens" => Key::CacheCreationInputTokens,
            b"ephemeral_5m_input_tokens" => Key::Ephemeral5mInputTokens,
            b"ephemeral_1h_input_tokens" => Key::Ephemeral1hInputTokens,
            b"promptTokenCount" => Key::PromptTokenCount,
            b"candidatesTokenCount" => Key::CandidatesTokenCount,
            b"thoughtsTokenCount" => Key::ThoughtsTokenCount,
            b"cachedContentTokenCount" => Key::CachedContentTokenCount,
            b"token_count" => Key::TokenCount,
            _ => Key::Other,
        }
    }

    /// Can a scalar under this name be one a field rule takes? A scalar
    /// under any other name is skipped before its text is copied (most of
    /// a body: ids, roles, content).
    pub(super) fn is_leaf(self) -> bool {
        self >= Key::Model
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_its_own_code_and_leaves_are_leaves() {
        let names: &[&[u8]] = &[
            b"response", b"message", b"choices", b"delta", b"candidates", b"usage", b"usageMetadata",
            b"prompt_tokens_details", b"input_tokens_details", b"completion_tokens_details", b"output_tokens_details",
            b"cache_creation", b"predictions", b"embeddings", b"statistics", b"model", b"modelVersion",
            b"finish_reason", b"stop_reason", b"finishReason", b"prompt_tokens", b"input_tokens",
            b"completion_tokens", b"output_tokens", b"cached_tokens", b"reasoning_tokens",
            b"cache_read_input_tokens", b"cache_creation_input_tokens", b"ephemeral_5m_input_tokens",
            b"ephemeral_1h_input_tokens", b"promptTokenCount", b"candidatesTokenCount", b"thoughtsTokenCount",
            b"cachedContentTokenCount", b"token_count",
        ];
        let codes: std::collections::HashSet<_> = names.iter().map(|n| Key::of(n)).collect();
        assert_eq!(codes.len(), names.len());
        assert!(!codes.contains(&Key::Other));
        assert_eq!(Key::of(b"id"), Key::Other);
        assert_eq!(Key::of(b"Usage"), Key::Other, "names are case-sensitive");
        assert_eq!(names.iter().filter(|n| Key::of(n).is_leaf()).count(), 20);
        assert!(!Key::Usage.is_leaf() && !Key::Item.is_leaf() && !Key::Other.is_leaf());
    }
}
