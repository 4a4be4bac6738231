//! The exact key and the semantic partition of an `/openai` request
//! (SPEC 11), pure.
//!
//! The canonical form of a request is its JSON with object keys sorted, no
//! whitespace, and integer-valued numbers written as integers (`1` and
//! `1.0` are the same temperature), less what only shapes delivery
//! (`stream`, `stream_options`) or routing (`fallbacks`). Every other field
//! is in: model as requested, messages or input, tools, and every parameter
//! that can change the answer. The exact key is the SHA-256 of the endpoint
//! and that form, so the same request always gives the same key, in any
//! process.

use crate::translate::chat_request::ChatRequest;
use serde_json::{Number, Value};
use std::fmt::Write as _;
use std::io::Write as _;

/// Fields that never change the answer's content.
const DELIVERY_ONLY: [&str; 3] = ["stream", "stream_options", "fallbacks"];

/// Write `v` in canonical form.
pub fn canonical(v: &Value, out: &mut String) {
    let mut buf = std::mem::take(out).into_bytes();
    write_canonical(v, &[], &mut buf);
    // Only whole JSON texts (of valid strings) were written.
    *out = String::from_utf8(buf).expect("canonical JSON is UTF-8");
}

/// The canonical form of `v`, less the top-level members named in `skip`.
fn write_canonical(v: &Value, skip: &[&str], out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => match integral(n) {
            Some(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
            None => {
                let _ = write!(out, "{n}");
            }
        },
        Value::String(s) => json_string(s, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, &[], out);
            }
            out.push(b']');
        }
        Value::Object(o) => {
            // Sorted by key as bytes (whatever order the map keeps).
            let mut keys: Vec<&String> = o.keys().filter(|k| !skip.contains(&k.as_str())).collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_string(k, out);
                out.push(b':');
                write_canonical(&o[k], &[], out);
            }
            out.push(b'}');
        }
    }
}

/// An integer-valued float as the integer the canonical form writes
/// (`1.0` is `1`); `None` for any other number.
fn integral(n: &Number) -> Option<i64> {
    n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15).map(|f| f as i64)
}

/// `s` as a JSON string, escaped as serde_json escapes it.
fn json_string(s: &str, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn hex(d: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(d.len() * 2);
    for b in d {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// SHA-256 of `parts`, each length-prefixed (no two lists of parts hash
/// alike by moving a boundary), in hex.
pub fn digest(parts: &[&str]) -> String {
    let mut h = openssl::sha::Sha256::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex(&h.finish())
}


/// The exact key of a request to `endpoint` (`/chat/completions`, ...).
pub fn exact_key(endpoint: &str, body: &Value) -> String {
    // The body less its delivery-only fields, written without copying it.
    canonical_digest(endpoint, body, &DELIVERY_ONLY)
}

/// [`exact_key`] of a request read typed, without a `Value`: its written
/// form is the canonical one (a [`ChatRequest`] writes its members in
/// sorted order, its strings as serde_json does) once the delivery-only
/// fields are out and an integer-valued float is written as an integer.
/// The property test below holds it to `exact_key` of the same body.
pub fn exact_key_typed(endpoint: &str, req: &ChatRequest<'_>) -> String {
    let whole = |n: &Number| integral(n).map_or_else(|| n.clone(), Number::from);
    let answer_fields = ChatRequest {
        stream: None,
        stream_options: None,
        temperature: req.temperature.as_ref().map(whole),
        top_p: req.top_p.as_ref().map(whole),
        ..req.clone()
    };
    let c = serde_json::to_vec(&answer_fields).unwrap_or_default();
    digest(&[endpoint, std::str::from_utf8(&c).expect("JSON is UTF-8")])
}

/// The digest of `endpoint` and the canonical form of `body` less the
/// top-level members named in `skip`.
fn canonical_digest(endpoint: &str, body: &Value, skip: &[&str]) -> String {
    let mut c = Vec::new();
    write_canonical(body, skip, &mut c);
    digest(&[endpoint, std::str::from_utf8(&c).expect("canonical JSON is UTF-8")])
}

/// What the semantic layer needs: the hash of everything but the
/// conversation's text (the partition: same model, same other parameters),
/// and that text. `None` when the request is for the exact layer only: it
/// has tools, more than `max_messages` messages, or parts that are not text.
pub fn semantic_parts(endpoint: &str, body: &Value, max_messages: usize) -> Option<(String, String)> {
    let o = body.as_object()?;
    if o.get("tools").is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty())) || o.contains_key("functions") {
        return None;
    }
    let (field, text) = if let Some(m) = o.get("messages") {
        let msgs = m.as_array()?;
        if msgs.is_empty() || msgs.len() > max_messages {
            return None;
        }
        let mut text = String::new();
        for msg in msgs {
            let role = msg.get("role")?.as_str()?;
            if !matches!(role, "system" | "developer" | "user" | "assistant") || msg.get("tool_calls").is_some() {
                return None;
            }
            let _ = write!(text, "{role}: {}\n", content_text(msg.get("content")?)?);
        }
        ("messages", text)
    } else if let Some(input) = o.get("input") {
        let text = match input {
            Value::String(s) => format!("user: {s}\n"),
            Value::Array(items) => {
                if items.is_empty() || items.len() > max_messages {
                    return None;
                }
                let mut text = String::new();
                for it in items {
                    let role = it.get("role")?.as_str()?;
                    let _ = write!(text, "{role}: {}\n", content_text(it.get("content")?)?);
                }
                text
            }
            _ => return None,
        };
        ("input", text)
    } else {
        return None;
    };
    // Everything but the delivery-only fields and the text, written
    // without copying the request.
    let skip = [DELIVERY_ONLY[0], DELIVERY_ONLY[1], DELIVERY_ONLY[2], field];
    Some((canonical_digest(endpoint, body, &skip), text))
}

/// A message's text: a string, or text parts only.
fn content_text(c: &Value) -> Option<String> {
    match c {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text" | "input_text" | "output_text") => out.push_str(p.get("text")?.as_str()?),
                    _ => return None,
                }
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The request less its delivery-only fields, as a copy: the plain
    /// construction the keys are checked against.
    fn answer_fields(body: &Value) -> Value {
        match body {
            Value::Object(o) => Value::Object(o.iter().filter(|(k, _)| !DELIVERY_ONLY.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()),
            v => v.clone(),
        }
    }

    fn awkward_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6..1e6f64).prop_map(|f| json!(f)),
            (-1000..1000i64).prop_map(|n| json!(n as f64)),
            "[a-z\"\\\n\u{1}é😀 ]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(prop_oneof![Just("stream".to_string()), Just("fallbacks".to_string()), "[a-z\"]{0,5}"], inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// A request read typed has the key its `Value` has.
        #[test]
        fn a_typed_request_has_its_values_key(body in prop_oneof![crate::translate::chat_request::arb::shaped(), crate::translate::chat_request::arb::body().prop_map(|(b, _)| b)]) {
            if let Some(typed) = ChatRequest::read(body.as_bytes()) {
                let v: Value = serde_json::from_str(&body).unwrap();
                prop_assert_eq!(exact_key_typed("/chat/completions", &typed), exact_key("/chat/completions", &v), "{}", body);
            }
        }
    }

    proptest! {
        /// The key is the digest of the endpoint and the canonical form of
        /// the body less its delivery-only fields: the same keys as before
        /// the writer stopped copying the body (entries stored by an older
        /// process are still found).
        #[test]
        fn exact_key_is_the_digest_of_the_canonical_answer_fields(body in awkward_value()) {
            let mut c = String::new();
            canonical(&answer_fields(&body), &mut c);
            prop_assert_eq!(exact_key("chat", &body), digest(&["chat", &c]));
            // And the canonical form is JSON that reads back as the value
            // (integer-valued floats aside).
            let back: Value = serde_json::from_str(&c).unwrap();
            prop_assert_eq!(back.is_object(), answer_fields(&body).is_object());
        }
    }

    proptest! {
        /// The same for the semantic partition: the digest of the request
        /// less its delivery-only fields and its conversation.
        #[test]
        fn the_partition_is_the_digest_of_the_rest(extra in awkward_value(), via_input in any::<bool>()) {
            let mut body = match extra {
                Value::Object(o) => Value::Object(o),
                _ => json!({}),
            };
            body.as_object_mut().unwrap().remove("input");
            let field = if via_input { "input" } else { "messages" };
            body.as_object_mut().unwrap().remove("messages");
            body.as_object_mut().unwrap().remove("tools");
            body.as_object_mut().unwrap().remove("functions");
            body[field] = json!([{"role": "user", "content": "hi"}]);
            let mut rest = answer_fields(&body);
            rest.as_object_mut().unwrap().remove(field);
            let mut c = String::new();
            canonical(&rest, &mut c);
            prop_assert_eq!(semantic_parts("chat", &body, 3).unwrap().0, digest(&["chat", &c]));
        }
    }

    #[test]
    fn canonical_form_and_digest_are_pinned() {
        let v = json!({"b": [1.0, 2.5, "q\"\n"], "a": {"z": null, "y": true}, "stream": true});
        let mut c = String::new();
        canonical(&v, &mut c);
        assert_eq!(c, r#"{"a":{"y":true,"z":null},"b":[1,2.5,"q\"\n"],"stream":true}"#);
        // SHA-256 over the length-prefixed parts, in lowercase hex.
        let mut h = openssl::sha::Sha256::new();
        h.update(&1u64.to_le_bytes());
        h.update(b"x");
        let want: String = h.finish().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest(&["x"]), want);
    }

    #[test]
    fn whitespace_key_order_and_delivery_fields_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1}"#).unwrap();
        let b: Value = serde_json::from_str("{ \"temperature\" : 1.0,\n \"messages\": [ {\"content\":\"hi\", \"role\":\"user\"} ],\"model\":\"m\", \"stream\": true, \"stream_options\": {\"include_usage\": true} }").unwrap();
        assert_eq!(exact_key("/chat/completions", &a), exact_key("/chat/completions", &b));
        assert_ne!(exact_key("/chat/completions", &a), exact_key("/responses", &a), "the endpoint is part of the key");
    }

    #[test]
    fn semantic_parts_split_the_text_from_the_rest() {
        let a = json!({"model": "m", "temperature": 0.2, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi there"}]}]});
        let (pa, ta) = semantic_parts("/chat/completions", &a, 3).unwrap();
        assert_eq!(ta, "system: be brief\nuser: hi there\n");
        let mut b = a.clone();
        b["messages"][1]["content"] = json!("something else");
        assert_eq!(semantic_parts("/chat/completions", &b, 3).unwrap().0, pa, "the same partition");
        b["temperature"] = json!(0.3);
        assert_ne!(semantic_parts("/chat/completions", &b, 3).unwrap().0, pa, "another parameter, another partition");
        assert!(semantic_parts("/chat/completions", &a, 1).is_none(), "longer than max_messages");
        let mut t = a.clone();
        t["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
        assert!(semantic_parts("/chat/completions", &t, 3).is_none(), "tools: exact only");
        assert_eq!(semantic_parts("/responses", &json!({"model": "m", "input": "hello"}), 3).unwrap().1, "user: hello\n");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-1000i64..1000).prop_map(|n| json!(n)),
            (-1000.0f64..1000.0).prop_map(|f| json!(f)),
            "[a-z ]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The JSON text of `v` with object keys in another order and spaces
    /// and newlines between tokens.
    fn scrambled(v: &Value, seed: u64, out: &mut String) {
        let sp = |out: &mut String, n: u64| out.push_str(["", " ", "\n  ", "\t"][(n % 4) as usize]);
        match v {
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    sp(out, seed + i as u64);
                    scrambled(x, seed.wrapping_mul(31).wrapping_add(i as u64), out);
                }
                out.push(']');
            }
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                if seed % 2 == 1 {
                    keys.reverse();
                }
                if keys.len() > 2 {
                    let n = keys.len();
                    keys.rotate_left((seed as usize) % n);
                }
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    sp(out, seed + i as u64);
                    out.push_str(&Value::String(k.clone()).to_string());
                    sp(out, seed + 1);
                    out.push(':');
                    scrambled(&o[k], seed.wrapping_mul(17).wrapping_add(i as u64), out);
                }
                out.push('}');
            }
            v => out.push_str(&v.to_string()),
        }
    }

    proptest! {
        /// Permuted, re-spaced JSON gives the same key; a changed value of
        /// any field gives another.
        #[test]
        fn the_key_is_canonical_and_every_parameter_counts(
            fields in prop::collection::btree_map("[a-z_]{1,10}", json_value(), 1..8),
            seed in any::<u64>(),
            pick in any::<prop::sample::Index>(),
            other in json_value(),
        ) {
            let mut body = serde_json::Map::new();
            body.insert("model".into(), json!("openai/gpt-4o"));
            body.insert("messages".into(), json!([{"role": "user", "content": "hi"}]));
            for (k, v) in fields {
                if !DELIVERY_ONLY.contains(&k.as_str()) {
                    body.insert(k, v);
                }
            }
            // As a gateway sees it: parsed from the client's text.
            let body: Value = serde_json::from_str(&Value::Object(body).to_string()).unwrap();
            let mut text = String::new();
            scrambled(&body, seed, &mut text);
            let reparsed: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(exact_key("/chat/completions", &body), exact_key("/chat/completions", &reparsed));
            let keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
            let k = &keys[pick.index(keys.len())];
            let mut changed = body.clone();
            let mut a = String::new();
            let mut b = String::new();
            canonical(&changed[k.as_str()], &mut a);
            canonical(&other, &mut b);
            prop_assume!(a != b);
            changed[k.as_str()] = other;
            prop_assert_ne!(exact_key("/chat/completions", &body), exact_key("/chat/completions", &changed));
        }
    }
}
