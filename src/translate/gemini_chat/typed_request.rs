//! The request of the common shape ([`ChatRequest`]: text messages and the
//! usual scalars) written straight to the `generateContent` body, borrowing
//! the client's strings: no `Value` tree either side. Anything `request`
//! would refuse is declined here, so that `request` answers it with its
//! error. The bytes are those `request` gives, serialised (the fields below
//! are in the order a `Value` object writes its keys); the property test
//! below runs both on the same requests.

use super::GeminiChat;
use crate::translate::chat_request::ChatRequest;
use serde::Serialize;

#[derive(Serialize)]
struct Body<'r> {
    contents: Vec<Content<'r>>,
    #[serde(rename = "generationConfig", skip_serializing_if = "Option::is_none")]
    generation_config: Option<GenerationConfig>,
    #[serde(rename = "systemInstruction", skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Parts<'r>>,
}

#[derive(Serialize)]
struct Content<'r> {
    parts: Vec<Part<'r>>,
    role: &'static str,
}

#[derive(Serialize)]
struct Parts<'r> {
    parts: Vec<Part<'r>>,
}

#[derive(Serialize)]
struct Part<'r> {
    text: &'r str,
}

#[derive(Serialize)]
struct GenerationConfig {
    #[serde(rename = "maxOutputTokens", skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(rename = "topP", skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
}

impl GeminiChat {
    pub(super) fn translate_typed_request(&mut self, req: &ChatRequest<'_>) -> Option<Vec<u8>> {
        let stream = req.stream.unwrap_or(false);
        let include_usage = stream && req.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true);
        // `max_completion_tokens` wins; a maximum of 0 is refused.
        let max_output_tokens = req.max_completion_tokens.or(req.max_tokens);
        if max_output_tokens == Some(0) {
            return None;
        }
        // Each text of a system or developer message (an empty one too)
        // is a part of the system instruction; each user message a user
        // turn; an assistant's non-empty text a model turn.
        let mut system = Vec::new();
        let mut contents = Vec::new();
        for m in &req.messages {
            let text = m.content.as_str();
            match m.role.as_str() {
                "system" | "developer" => system.push(Part { text }),
                "user" => contents.push(Content { parts: vec![Part { text }], role: "user" }),
                "assistant" if text.is_empty() => {}
                "assistant" => contents.push(Content { parts: vec![Part { text }], role: "model" }),
                // `tool` needs a tool_call_id; any other role is refused.
                _ => return None,
            }
        }
        if contents.is_empty() {
            return None;
        }
        let gc = GenerationConfig {
            max_output_tokens,
            temperature: req.temperature.as_ref().and_then(|t| t.as_f64()),
            top_p: req.top_p.as_ref().and_then(|p| p.as_f64()),
        };
        let any = gc.max_output_tokens.is_some() || gc.temperature.is_some() || gc.top_p.is_some();
        let body = Body {
            contents,
            generation_config: any.then_some(gc),
            system_instruction: (!system.is_empty()).then_some(Parts { parts: system }),
        };
        let bytes = serde_json::to_vec(&body).ok()?;
        self.model = req.model.as_str().to_string();
        self.stream = stream;
        self.include_usage = include_usage;
        self.single_tool_call = false;
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::chat_request::arb;
    use crate::translate::{Options, Translator};
    use proptest::prelude::*;

    fn agree(body: &str) -> Result<bool, TestCaseError> {
        arb::typed_agrees(body, GeminiChat::new, &Options::default())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn typed_and_value_requests_agree(body in arb::shaped()) {
            agree(&body)?;
        }

        #[test]
        fn typed_and_value_requests_agree_on_any_body((body, _) in arb::body()) {
            agree(&body)?;
        }
    }

    #[test]
    fn the_common_request_takes_the_typed_path() {
        let body = r#"{"model":"gemini-x","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hi"},{"role":"assistant","content":""},{"role":"user","content":"now"}],"max_tokens":50,"temperature":2,"stream":true,"stream_options":{"include_usage":true},"user":"u1"}"#;
        assert!(agree(body).unwrap());
        let mut t = GeminiChat::new();
        let bytes = t.typed_request(&ChatRequest::read(body.as_bytes()).unwrap(), &Options::default()).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"contents":[{"parts":[{"text":"Say hi"}],"role":"user"},{"parts":[{"text":"now"}],"role":"user"}],"generationConfig":{"maxOutputTokens":50,"temperature":2.0},"systemInstruction":{"parts":[{"text":"Be brief."}]}}"#
        );
        assert!(t.streaming());
        for bad in [
            r#"{"model":"m","messages":[{"role":"tool","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"only"}]}"#,
            r#"{"model":"m","messages":[]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":0}"#,
        ] {
            assert!(!agree(bad).unwrap(), "{bad}");
        }
    }
}
