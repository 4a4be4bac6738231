//! The client's `/openai` request as the gateway holds it before
//! translation: read typed, borrowing the client's bytes, when it has the
//! common shape ([`ChatRequest`]), else parsed into a `serde_json::Value`
//! ([`OpenAiRequest`]).
//!
//! Reading typed is lossless: a [`ChatRequest`] serialises to the very
//! bytes its `Value` would (property test below), so whatever wants the
//! request as a `Value` (the cache key, a trace, the log's copy, an
//! OpenAI-shaped provider) gets it unchanged, and a translator that reads
//! the typed shape ([`crate::translate::Translator::typed_request`]) writes
//! the provider's body without building either tree.

use memchr::memmem::Finder;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

/// A Chat Completions request of the common shape: text messages and the
/// usual scalars, nothing else. A body with anything more (another
/// parameter, content parts, tool calls, an explicit `null`, a repeated
/// key, a wrong type) is not this shape and is parsed as a `Value`, whose
/// translation gives every error and every rarer parameter its answer.
///
/// The fields are declared in the order a `Value` object (sorted keys)
/// writes them, which is what keeps the serialised bytes the same. Read by
/// [`OpenAiRequest::read`] (a member's value is of its type, never
/// `null`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    pub messages: Vec<ChatMessage<'a>>,
    pub model: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Text<'a>>,
}

/// One message: a role and its text, maybe the participant's name (which
/// no translated provider takes).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage<'a> {
    #[serde(borrow)]
    pub content: Text<'a>,
    #[serde(borrow, default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub name: Option<Text<'a>>,
    #[serde(borrow)]
    pub role: Text<'a>,
}

/// `stream_options`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// A JSON string, borrowed from the body unless it had escapes. Never
/// `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An optional member that, when present, is a value of its type: an
/// explicit `null` is not the common shape (the `Value` keeps it, and the
/// bytes would differ).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
impl<'a> ChatRequest<'a> {
    /// The body read typed, or `None` when it is not of this shape (the
    /// gateway reads with [`OpenAiRequest::read`]).
    pub fn read(body: &'a [u8]) -> Option<Self> {
        match OpenAiRequest::read(body, true)? {
            OpenAiRequest::Typed(r) => Some(r),
            OpenAiRequest::Parsed(_) => None,
        }
    }
}

/// The client's request before translation.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenAiRequest<'a> {
    /// The common shape, borrowing the body.
    Typed(ChatRequest<'a>),
    /// Anything else: a JSON object.
    Parsed(Value),
}

/// Tools, tool calls, content parts and response formats all name a
/// `"type"`: a body with one is not the common shape, and is parsed as a
/// `Value` at once rather than after its messages were read typed. (A
/// shortcut only: a body this misses is told apart as it is read.)
static TYPE_MEMBER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\""));

impl<'a> OpenAiRequest<'a> {
    /// The body as a request: typed when `typed` is asked and the body has
    /// that shape, else parsed; `None` when it is not a JSON object. Read
    /// once either way: at a member outside the shape (or one given twice)
    /// what was read typed becomes a `Value` and the rest is parsed into
    /// it. Only a member of the shape whose value has another type (a
    /// `null`, a message's content parts) has the body parsed again.
    pub fn read(body: &'a [u8], typed: bool) -> Option<Self> {
        if typed && TYPE_MEMBER.find(body).is_none() {
            let mut de = serde_json::Deserializer::from_slice(body);
            if let Ok(r) = de.deserialize_map(ReadVisitor).and_then(|r| de.end().map(|()| r)) {
                return Some(r);
            }
        }
        match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => Some(OpenAiRequest::Parsed(v)),
            _ => None,
        }
    }

    /// `model`, when it is a string.
    pub fn model(&self) -> Option<&str> {
        match self {
            OpenAiRequest::Typed(r) => Some(r.model.as_str()),
            OpenAiRequest::Parsed(v) => v.get("model").and_then(Value::as_str),
        }
    }

    /// Rename the model (the provider's own name for it).
    pub fn set_model(&mut self, model: &str) {
        match self {
            OpenAiRequest::Typed(r) => r.model = Text(Cow::Owned(model.to_string())),
            OpenAiRequest::Parsed(v) => v["model"] = Value::String(model.to_string()),
        }
    }

    /// `stream`, and `stream_options.include_usage`: false unless `true`.
    pub fn stream_flags(&self) -> (bool, bool) {
        match self {
            OpenAiRequest::Typed(r) => (r.stream == Some(true), r.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true)),
            OpenAiRequest::Parsed(v) => (
                v.get("stream").and_then(Value::as_bool).unwrap_or(false),
                v.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false),
            ),
        }
    }

    /// The parsed request; `None` for a typed one.
    pub fn parsed(&self) -> Option<&Value> {
        match self {
            OpenAiRequest::Typed(_) => None,
            OpenAiRequest::Parsed(v) => Some(v),
        }
    }

    /// The parsed request to change; `None` for a typed one.
    pub fn parsed_mut(&mut self) -> Option<&mut Value> {
        match self {
            OpenAiRequest::Typed(_) => None,
            OpenAiRequest::Parsed(v) => Some(v),
        }
    }

    /// The request as a `Value`, the same either way (a typed one is
    /// written out: for the cache key, a trace, the log's copy).
    pub fn to_value(&self) -> Cow<'_, Value> {
        match self {
            OpenAiRequest::Typed(r) => Cow::Owned(serde_json::to_value(r).unwrap_or(Value::Null)),
            OpenAiRequest::Parsed(v) => Cow::Borrowed(v),
        }
    }

    /// The request as a `Value`, owned.
    pub fn into_value(self) -> Value {
        match self {
            OpenAiRequest::Parsed(v) => v,
            typed => typed.to_value().into_owned(),
        }
    }
}

/// Reads a request object member by member: typed while each member is
/// one of the shape's, seen once; else a `Value`.
struct ReadVisitor;

impl<'de> Visitor<'de> for ReadVisitor {
    type Value = OpenAiRequest<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OpenAiRequest<'de>, A::Error> {
        let mut r = ChatRequest::default();
        let (mut model, mut messages) = (false, false);
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.as_str() {
                "model" if !model => (r.model, model) = (map.next_value()?, true),
                "messages" if !messages => (r.messages, messages) = (map.next_value()?, true),
                "max_completion_tokens" if r.max_completion_tokens.is_none() => r.max_completion_tokens = Some(map.next_value()?),
                "max_tokens" if r.max_tokens.is_none() => r.max_tokens = Some(map.next_value()?),
                "stream" if r.stream.is_none() => r.stream = Some(map.next_value()?),
                "stream_options" if r.stream_options.is_none() => r.stream_options = Some(map.next_value()?),
                "temperature" if r.temperature.is_none() => r.temperature = Some(map.next_value()?),
                "top_p" if r.top_p.is_none() => r.top_p = Some(map.next_value()?),
                "user" if r.user.is_none() => r.user = Some(map.next_value()?),
                _ => {
                    // Not the shape: what was read, then the rest, as a
                    // `Value` (a member given twice: the last one, as
                    // serde_json keeps it).
                    let mut o = partial(&r, model, messages);
                    o.insert(key.0.into_owned(), map.next_value()?);
                    while let Some((k, v)) = map.next_entry::<String, Value>()? {
                        o.insert(k, v);
                    }
                    return Ok(OpenAiRequest::Parsed(Value::Object(o)));
                }
            }
        }
        if model && messages {
            Ok(OpenAiRequest::Typed(r))
        } else {
            Ok(OpenAiRequest::Parsed(Value::Object(partial(&r, model, messages))))
        }
    }
}

/// The members read so far as a JSON object (`model` and `messages` only
/// when they were there).
fn partial(r: &ChatRequest<'_>, model: bool, messages: bool) -> Map<String, Value> {
    let Ok(Value::Object(mut o)) = serde_json::to_value(r) else { return Map::new() };
    if !model {
        o.remove("model");
    }
    if !messages {
        o.remove("messages");
    }
    o
}

/// Chat request bodies for property tests, here and in the pairs that
/// read the typed shape.
#[cfg(test)]
pub(crate) mod arb {
    use super::ChatRequest;
    use crate::translate::{Options, Translator};
    use proptest::prelude::*;
    use serde_json::Value;

    /// A pair's typed path and its `request` on the same body: the typed
    /// path declines exactly what `request` refuses, and otherwise writes
    /// the bytes `request`'s answer serialises to, leaving the translator
    /// in the same state; a declined request leaves it untouched. True
    /// when the typed path took the body.
    pub fn typed_agrees<T: Translator + std::fmt::Debug>(body: &str, fresh: impl Fn() -> T, opts: &Options) -> Result<bool, TestCaseError> {
        let Some(typed) = ChatRequest::read(body.as_bytes()) else { return Ok(false) };
        let (mut fast, mut slow) = (fresh(), fresh());
        let bytes = fast.typed_request(&typed, opts);
        let value: Value = serde_json::from_slice(body.as_bytes()).unwrap();
        let answer = slow.request(value, opts);
        prop_assert_eq!(bytes.is_some(), answer.is_ok(), "{} → {:?}", body, answer);
        match (bytes, answer) {
            (Some(b), Ok(v)) => {
                prop_assert_eq!(String::from_utf8(b).unwrap(), serde_json::to_string(&v).unwrap());
                prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
                Ok(true)
            }
            _ => {
                prop_assert_eq!(format!("{fast:?}"), format!("{:?}", fresh()));
                Ok(false)
            }
        }
    }

    /// A JSON string literal of `s`, escaped one of several ways.
    pub fn literal(s: &str, style: u8) -> String {
        match style % 3 {
            0 => serde_json::to_string(s).unwrap(),
            // Every character escaped as \uXXXX (pairs for the astral ones).
            1 => {
                let mut out = String::from("\"");
                for u in s.encode_utf16() {
                    out.push_str(&format!("\\u{u:04x}"));
                }
                out.push('"');
                out
            }
            // Slashes escaped, which JSON allows and no writer needs.
            _ => serde_json::to_string(s).unwrap().replace('/', "\\/"),
        }
    }

    /// A message of `role` with the text `content` (escaped as `style`
    /// says), named when `style` is odd.
    fn message(role: &str, content: &str, style: u8) -> String {
        let name = if style % 2 == 1 { format!(",\"name\":{}", literal("bot/é", style / 2)) } else { String::new() };
        format!("{{\"role\":\"{role}\",\"content\":{}{name}}}", literal(content, style))
    }

    pub fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u64..5).prop_map(|n| n.to_string()),
            (0u32..=2000).prop_map(|n| format!("{}", n as f64 / 1000.0)),
            Just("1.0".to_string()),
            Just("1e0".to_string()),
            Just("-0.5".to_string()),
            Just("0.70000000000000001".to_string()),
        ]
    }

    /// A member of a chat request: the common shape's, or (when `odd`) one
    /// that takes the request out of it.
    pub fn member() -> impl Strategy<Value = (String, String)> {
        let text = "[a-z/ \n\"é😀]{0,12}";
        prop_oneof![
            (text, any::<u8>()).prop_map(|(s, st)| ("model".to_string(), literal(&s, st))),
            (0u64..3).prop_map(|n| ("max_tokens".to_string(), n.to_string())),
            (0u64..3).prop_map(|n| ("max_completion_tokens".to_string(), n.to_string())),
            number().prop_map(|n| ("temperature".to_string(), n)),
            number().prop_map(|n| ("top_p".to_string(), n)),
            any::<bool>().prop_map(|b| ("stream".to_string(), b.to_string())),
            prop_oneof![Just("{}"), Just("{\"include_usage\":true}"), Just("{\"include_usage\":false}")]
                .prop_map(|s| ("stream_options".to_string(), s.to_string())),
            (text, any::<u8>()).prop_map(|(s, st)| ("user".to_string(), literal(&s, st))),
            prop::collection::vec(
                (prop_oneof![Just("system"), Just("user"), Just("assistant"), Just("developer"), Just("tool")], text, any::<u8>())
                    .prop_map(|(r, c, st)| message(r, &c, st)),
                0..4
            )
            .prop_map(|m| ("messages".to_string(), format!("[{}]", m.join(",")))),
        ]
    }

    /// What takes a request out of the common shape.
    pub fn odd_member() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            Just(("temperature".to_string(), "null".to_string())),
            Just(("tools".to_string(), "[]".to_string())),
            Just(("stop".to_string(), "\"x\"".to_string())),
            Just(("max_tokens".to_string(), "1.5".to_string())),
            Just(("max_tokens".to_string(), "-1".to_string())),
            Just(("stream".to_string(), "\"yes\"".to_string())),
            Just(("messages".to_string(), "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]".to_string())),
            Just(("messages".to_string(), "[{\"role\":\"user\",\"content\":null}]".to_string())),
            Just(("messages".to_string(), "[{\"role\":\"user\",\"content\":\"a\",\"name\":null}]".to_string())),
            Just(("messages".to_string(), "[{\"role\":\"user\",\"content\":\"a\",\"tool_call_id\":\"c\"}]".to_string())),
            Just(("stream_options".to_string(), "{\"include_usage\":null}".to_string())),
            Just(("model".to_string(), "7".to_string())),
            Just(("seed".to_string(), "1".to_string())),
            Just(("response_format".to_string(), "{\"type\":\"json_object\"}".to_string())),
        ]
    }

    /// A body of the common shape: `model`, `messages` (of one to four
    /// messages), and some of the other members, each once.
    pub fn shaped() -> impl Strategy<Value = String> {
        let text = "[a-z/ \n\"é😀]{0,12}";
        let message = (prop_oneof![Just("system"), Just("user"), Just("assistant"), Just("developer"), Just("tool")], text, any::<u8>())
            .prop_map(|(r, c, st)| message(r, &c, st));
        ("[a-z0-9.-]{1,12}", prop::collection::vec(message, 1..5), prop::collection::vec(member(), 0..6)).prop_map(|(model, msgs, more)| {
            let mut members = std::collections::BTreeMap::new();
            for (k, v) in more {
                members.insert(k, v);
            }
            members.insert("model".to_string(), literal(&model, 0));
            members.insert("messages".to_string(), format!("[{}]", msgs.join(",")));
            let members: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", members.join(","))
        })
    }

    /// A body, and whether it is of the common shape: `model` and
    /// `messages` present, no key twice, nothing odd.
    pub fn body() -> impl Strategy<Value = (String, bool)> {
        (prop::collection::vec(member(), 0..8), prop::option::of(odd_member()), any::<bool>()).prop_map(|(mut ms, odd, escape_key)| {
            let has_odd = odd.is_some();
            ms.extend(odd);
            let keys: std::collections::HashSet<&str> = ms.iter().map(|(k, _)| k.as_str()).collect();
            let shape = !has_odd && keys.len() == ms.len() && keys.contains("model") && keys.contains("messages");
            let members: Vec<String> = ms
                .iter()
                .map(|(k, v)| {
                    let key = if escape_key { literal(k, 1) } else { format!("\"{k}\"") };
                    format!("{key} : {v}")
                })
                .collect();
            (format!("{{ {} }}", members.join(",\n")), shape)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::arb::body;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Reading typed is lossless: whatever is read typed writes the
        /// bytes (and is the `Value`) its parse gives. And exactly the
        /// bodies of the shape are read typed.
        #[test]
        fn a_typed_reading_is_the_parsed_value((body, shape) in body()) {
            // Read once, typed or not, the request is the parsed object.
            let read = OpenAiRequest::read(body.as_bytes(), true);
            let parsed = serde_json::from_slice::<Value>(body.as_bytes()).ok().filter(Value::is_object);
            prop_assert_eq!(read.as_ref().map(|r| r.to_value().into_owned()), parsed);
            let typed = ChatRequest::read(body.as_bytes());
            prop_assert_eq!(typed.is_some(), shape, "{}", body);
            if let Some(t) = &typed {
                let v: Value = serde_json::from_slice(body.as_bytes()).expect("a typed body parses");
                prop_assert_eq!(serde_json::to_vec(t).unwrap(), serde_json::to_vec(&v).unwrap());
                prop_assert_eq!(&serde_json::to_value(t).unwrap(), &v);
                prop_assert_eq!(OpenAiRequest::Typed(t.clone()).stream_flags(), OpenAiRequest::Parsed(v.clone()).stream_flags());
                prop_assert_eq!(OpenAiRequest::Typed(t.clone()).to_value().into_owned(), v);
            }
        }
    }

    #[test]
    fn strings_borrow_the_body_unless_escaped() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"a\nb"},{"role":"assistant","content":"plain"}]}"#;
        let r = ChatRequest::read(body).unwrap();
        assert!(matches!(r.model.0, Cow::Borrowed(_)));
        assert!(matches!(r.messages[0].content.0, Cow::Owned(_)));
        assert_eq!(r.messages[0].content.as_str(), "a\nb");
        assert!(matches!(r.messages[1].content.0, Cow::Borrowed(_)));
    }

    #[test]
    fn the_request_reads_typed_only_when_asked_and_of_the_shape() {
        let plain = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        assert!(matches!(OpenAiRequest::read(plain, true), Some(OpenAiRequest::Typed(_))));
        assert!(matches!(OpenAiRequest::read(plain, false), Some(OpenAiRequest::Parsed(_))));
        let tools = br#"{"model":"m","messages":[],"tools":[]}"#;
        assert!(matches!(OpenAiRequest::read(tools, true), Some(OpenAiRequest::Parsed(_))));
        assert_eq!(OpenAiRequest::read(b"[1]", true), None);
        assert_eq!(OpenAiRequest::read(b"{", true), None);
        let mut r = OpenAiRequest::read(plain, true).unwrap();
        r.set_model("claude-x");
        assert_eq!(r.model(), Some("claude-x"));
        assert_eq!(r.into_value()["model"], "claude-x");
        let mut p = OpenAiRequest::read(tools, true).unwrap();
        p.set_model("claude-x");
        assert_eq!(p.model(), Some("claude-x"));
        assert!(p.parsed().is_some());
    }
}
