//! The request of the common shape ([`ChatRequest`]: text messages and the
//! usual scalars) written straight to the Messages API body, borrowing the
//! client's strings: no `Value` tree either side. Anything `request` would
//! refuse is declined here, so that `request` answers it with its error.
//! The bytes are those `request` gives, serialised (the fields below are in
//! the order a `Value` object writes its keys); the property test in
//! `tests.rs` runs both on the same requests.

use super::request::VERTEX_ANTHROPIC_VERSION;
use super::AnthropicChat;
use crate::translate::chat_request::ChatRequest;
use crate::translate::Options;
use serde::Serialize;
use serde_json::Number;

#[derive(Serialize)]
struct Body<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    anthropic_version: Option<&'static str>,
    max_tokens: u64,
    messages: Vec<Turn<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'r str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<Content<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
}

#[derive(Serialize)]
struct Metadata<'r> {
    user_id: &'r str,
}

#[derive(Serialize)]
struct Turn<'r> {
    content: Content<'r>,
    role: &'static str,
}

/// One text is sent as a string; several as text blocks.
#[derive(Serialize)]
#[serde(untagged)]
enum Content<'r> {
    One(&'r str),
    Blocks(Vec<TextBlock<'r>>),
}

#[derive(Serialize)]
struct TextBlock<'r> {
    text: &'r str,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'r> Content<'r> {
    fn of(texts: Vec<&'r str>) -> Content<'r> {
        match texts[..] {
            [one] => Content::One(one),
            _ => Content::Blocks(texts.into_iter().map(|text| TextBlock { text, kind: "text" }).collect()),
        }
    }
}

impl AnthropicChat {
    pub(super) fn translate_typed_request(&mut self, req: &ChatRequest<'_>, opts: &Options) -> Option<Vec<u8>> {
        let stream = req.stream.unwrap_or(false);
        // `stream_options` is read only for a stream, as `request` does.
        let include_usage = stream && req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
        // A maximum of 0 is refused (by `request`).
        if req.max_completion_tokens == Some(0) || req.max_tokens == Some(0) {
            return None;
        }
        let max_tokens = req.max_completion_tokens.or(req.max_tokens).unwrap_or(opts.default_max_tokens.max(1));
        // Claude takes a temperature and a top_p from 0 to 1 (anything
        // else is refused by `request`): absent, or that, or declined.
        let unit = |n: &Option<Number>| match n {
            None => Some(None),
            Some(n) => n.as_f64().filter(|x| (0.0..=1.0).contains(x)).map(Some),
        };
        let (temperature, top_p) = (unit(&req.temperature)?, unit(&req.top_p)?);
        // `system`/`developer` texts to the top-level system; turns of one
        // role merged; an empty text is no block.
        let mut system = Vec::new();
        let mut turns: Vec<(&'static str, Vec<&str>)> = Vec::new();
        for m in &req.messages {
            let text = m.content.as_str();
            let role = match m.role.as_str() {
                "system" | "developer" => {
                    if !text.is_empty() {
                        system.push(text);
                    }
                    continue;
                }
                "user" => "user",
                "assistant" => "assistant",
                // `tool` needs a tool_call_id; any other role is refused.
                _ => return None,
            };
            if text.is_empty() {
                continue;
            }
            match turns.last_mut() {
                Some((r, texts)) if *r == role => texts.push(text),
                _ => turns.push((role, vec![text])),
            }
        }
        // No turn (or no message) is refused.
        if turns.is_empty() {
            return None;
        }
        let body = Body {
            anthropic_version: self.vertex.then_some(VERTEX_ANTHROPIC_VERSION),
            max_tokens,
            messages: turns.into_iter().map(|(role, texts)| Turn { content: Content::of(texts), role }).collect(),
            metadata: req.user.as_ref().map(|u| Metadata { user_id: u.as_str() }),
            model: (!self.vertex).then_some(req.model.as_str()),
            stream,
            system: (!system.is_empty()).then(|| Content::of(system)),
            temperature,
            top_p,
        };
        let bytes = serde_json::to_vec(&body).ok()?;
        self.req_model = req.model.as_str().to_string();
        self.stream = stream;
        self.include_usage = include_usage;
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::chat_request::arb;
    use crate::translate::Translator;
    use proptest::prelude::*;

    /// [`arb::typed_agrees`] for Claude, direct or on Vertex.
    fn agree(body: &str, vertex: bool) -> Result<bool, TestCaseError> {
        let fresh = || if vertex { AnthropicChat::on_vertex() } else { AnthropicChat::new() };
        arb::typed_agrees(body, fresh, &Options { default_max_tokens: 777 })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn typed_and_value_requests_agree(body in arb::shaped(), vertex in any::<bool>()) {
            agree(&body, vertex)?;
        }

        #[test]
        fn typed_and_value_requests_agree_on_any_body((body, _) in arb::body(), vertex in any::<bool>()) {
            agree(&body, vertex)?;
        }
    }

    #[test]
    fn the_common_request_takes_the_typed_path() {
        let body = r#"{"model":"claude-x","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hi"},{"role":"user","content":"now"}],"max_tokens":50,"temperature":0.5,"stream":true,"stream_options":{"include_usage":true},"user":"u1"}"#;
        assert!(agree(body, false).unwrap());
        let mut t = AnthropicChat::new();
        let bytes = t.typed_request(&ChatRequest::read(body.as_bytes()).unwrap(), &Options::default()).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"max_tokens":50,"messages":[{"content":[{"text":"Say hi","type":"text"},{"text":"now","type":"text"}],"role":"user"}],"metadata":{"user_id":"u1"},"model":"claude-x","stream":true,"system":"Be brief.","temperature":0.5}"#
        );
        assert!(t.streaming());
        // Refused by `request`: declined here, nothing changed.
        for bad in [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1.5}"#,
            r#"{"model":"m","messages":[{"role":"tool","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"only"}]}"#,
            r#"{"model":"m","messages":[],"stream":true}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":0}"#,
        ] {
            assert!(!agree(bad, false).unwrap(), "{bad}");
        }
    }
}
