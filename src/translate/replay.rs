//! What a reasoning model needs to see again with a tool-using turn (SPEC 8,
//! "Reasoning models"), in the OpenAI shape clients send back:
//!
//! * Anthropic: the turn's `thinking` / `redacted_thinking` blocks, whole
//!   and unmodified (their signatures cover the text), as `thinking_blocks`
//!   on the assistant message;
//! * Gemini: each function call's thought signature, as
//!   `extra_content.google.thought_signature` on the tool call.
//!
//! A client that sends back the SDK's message object carries them itself. A
//! client that rebuilds the message from ids, names and arguments drops
//! them; the gateway then restores them from its own memory, keyed by
//! tool-call id. This module is the pure part: the memos a translated answer
//! leaves ([`Memo`]), which ids a request lacks ([`wanted`]), and putting
//! the memos back ([`restore`]). Nothing else of the conversation is kept.
//!
//! The Responses API has no field for either: thinking blocks ride in a
//! `reasoning` item's `encrypted_content` ([`encode_blocks`], opaque to the
//! client), and a thought signature on the `function_call` item as
//! `extra_content`, as on a chat tool call.

use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The prefix of a `reasoning` item's `encrypted_content` made here.
const BLOCKS_PREFIX: &str = "tollgate.thinking.v1:";

/// Thinking blocks as a Responses `reasoning` item's `encrypted_content`.
pub fn encode_blocks(blocks: &[Value]) -> String {
    format!("{BLOCKS_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(Value::Array(blocks.to_vec()).to_string()))
}

/// The thinking blocks of an `encrypted_content` made by [`encode_blocks`];
/// `None` for anything else (another provider's reasoning state).
pub fn decode_blocks(s: &str) -> Option<Vec<Value>> {
    let raw = base64::engine::general_purpose::STANDARD.decode(s.strip_prefix(BLOCKS_PREFIX)?).ok()?;
    match serde_json::from_slice(&raw).ok()? {
        Value::Array(b) => Some(b),
        _ => None,
    }
}

/// A Responses request's `function_call` items.
fn input_calls(req: &Value) -> impl Iterator<Item = &Value> {
    req.get("input").and_then(Value::as_array).into_iter().flatten().filter(|i| i.get("type").and_then(Value::as_str) == Some("function_call"))
}

/// At most this many tool-call ids are looked up for one request.
pub const MAX_IDS: usize = 256;
/// A memo over this many bytes is not kept (a turn's thinking is rarely
/// more than some tens of KiB).
pub const MAX_MEMO_BYTES: usize = 1 << 20;

/// What one tool call of an answer needs on the next turn: the turn's
/// thinking blocks (Anthropic; the same for every call of the turn) or the
/// call's thought signature (Gemini).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Memo {
    ThinkingBlocks(Vec<Value>),
    ThoughtSignature(String),
}

impl Memo {
    pub fn to_value(&self) -> Value {
        match self {
            Memo::ThinkingBlocks(b) => json!({ "thinking_blocks": b }),
            Memo::ThoughtSignature(s) => json!({ "thought_signature": s }),
        }
    }

    pub fn from_value(v: &Value) -> Option<Memo> {
        if let Some(b) = v.get("thinking_blocks").and_then(Value::as_array) {
            return Some(Memo::ThinkingBlocks(b.clone()));
        }
        v.get("thought_signature").and_then(Value::as_str).map(|s| Memo::ThoughtSignature(s.to_string()))
    }
}

fn assistant_turns(req: &Value) -> impl Iterator<Item = &Value> {
    req.get("messages").and_then(Value::as_array).into_iter().flatten().filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
}

fn call_ids(m: &Value) -> impl Iterator<Item = &str> {
    m.get("tool_calls").and_then(Value::as_array).into_iter().flatten().filter_map(|tc| tc.get("id").and_then(Value::as_str))
}

fn has_blocks(m: &Value) -> bool {
    m.get("thinking_blocks").and_then(Value::as_array).is_some_and(|b| !b.is_empty())
}

fn signature_of(tc: &Value) -> Option<&str> {
    tc.pointer("/extra_content/google/thought_signature").and_then(Value::as_str)
}

/// The tool-call ids of a chat request whose assistant turns lack what a
/// reasoning provider may need: a turn without `thinking_blocks`, or a call
/// without a thought signature. In order, without duplicates, at most
/// [`MAX_IDS`].
pub fn wanted(req: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // Responses: every call without its own extra content (whether a
    // reasoning item precedes it is settled in `restore`).
    for it in input_calls(req) {
        if let Some(id) = it.get("call_id").and_then(Value::as_str).filter(|id| !id.is_empty()) {
            if signature_of(it).is_none() && !out.iter().any(|o| o == id) && out.len() < MAX_IDS {
                out.push(id.to_string());
            }
        }
    }
    for m in assistant_turns(req) {
        let turn_lacks = !has_blocks(m);
        for tc in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let Some(id) = tc.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) else { continue };
            if (turn_lacks || signature_of(tc).is_none()) && !out.iter().any(|o| o == id) && out.len() < MAX_IDS {
                out.push(id.to_string());
            }
        }
    }
    out
}

/// Put remembered memos back on the assistant turns that lack them: a turn
/// without `thinking_blocks` gets those of the first of its calls that has
/// some; a call without a signature gets its own. What the client sent is
/// never replaced. How many turns and calls were completed.
pub fn restore(req: &mut Value, memos: &HashMap<String, Memo>) -> usize {
    if memos.is_empty() {
        return 0;
    }
    let mut restored = 0;
    if let Some(items) = req.get_mut("input").and_then(Value::as_array_mut) {
        return restore_input(items, memos);
    }
    let Some(msgs) = req.get_mut("messages").and_then(Value::as_array_mut) else { return 0 };
    for m in msgs.iter_mut().filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant")) {
        if !has_blocks(m) {
            let blocks = call_ids(m).find_map(|id| match memos.get(id) {
                Some(Memo::ThinkingBlocks(b)) if !b.is_empty() => Some(b.clone()),
                _ => None,
            });
            if let (Some(b), Some(o)) = (blocks, m.as_object_mut()) {
                o.insert("thinking_blocks".into(), Value::Array(b));
                restored += 1;
            }
        }
        for tc in m.get_mut("tool_calls").and_then(Value::as_array_mut).into_iter().flatten() {
            restored += usize::from(sign(tc, "id", memos));
        }
    }
    restored
}

/// Give a call (chat tool call or Responses `function_call` item) its
/// remembered signature, unless it has one.
fn sign(call: &mut Value, id_field: &str, memos: &HashMap<String, Memo>) -> bool {
    if signature_of(call).is_some() {
        return false;
    }
    let sig = match call.get(id_field).and_then(Value::as_str).and_then(|id| memos.get(id)) {
        Some(Memo::ThoughtSignature(s)) => s.clone(),
        _ => return false,
    };
    let Some(o) = call.as_object_mut() else { return false };
    let extra = o.entry("extra_content").or_insert_with(|| json!({}));
    if !extra.is_object() {
        *extra = json!({});
    }
    let google = extra.as_object_mut().map(|e| e.entry("google").or_insert_with(|| json!({})));
    match google.and_then(Value::as_object_mut) {
        Some(g) => {
            g.insert("thought_signature".into(), Value::String(sig));
            true
        }
        None => false,
    }
}

/// Responses input: signatures on the `function_call` items, and a
/// `reasoning` item with the remembered blocks before a run of calls (and
/// the assistant message they join) that has none.
fn restore_input(items: &mut Vec<Value>, memos: &HashMap<String, Memo>) -> usize {
    let kind = |v: &Value| v.get("type").and_then(Value::as_str).map(str::to_owned);
    let is_assistant_msg = |v: &Value| matches!(kind(v).as_deref(), None | Some("message")) && v.get("role").and_then(Value::as_str) == Some("assistant");
    let mut restored = 0;
    let mut i = 0;
    while i < items.len() {
        if kind(&items[i]).as_deref() != Some("function_call") {
            i += 1;
            continue;
        }
        // The run: the assistant message right before (if any) and the calls.
        let start = if i > 0 && is_assistant_msg(&items[i - 1]) { i - 1 } else { i };
        let mut end = i;
        while end < items.len() && kind(&items[end]).as_deref() == Some("function_call") {
            end += 1;
        }
        for it in &mut items[i..end] {
            restored += usize::from(sign(it, "call_id", memos));
        }
        let has_reasoning = start > 0 && kind(&items[start - 1]).as_deref() == Some("reasoning");
        if !has_reasoning {
            let blocks = items[i..end].iter().find_map(|it| match it.get("call_id").and_then(Value::as_str).and_then(|id| memos.get(id)) {
                Some(Memo::ThinkingBlocks(b)) if !b.is_empty() => Some(b.clone()),
                _ => None,
            });
            if let Some(b) = blocks {
                items.insert(start, json!({"type": "reasoning", "summary": [], "encrypted_content": encode_blocks(&b)}));
                restored += 1;
                end += 1;
            }
        }
        i = end;
    }
    restored
}

/// The memos of an answer: the turn's thinking blocks for each of its tool
/// calls (Anthropic), or each call's own signature (Gemini). Empty when the
/// answer has no tool call or nothing to replay, or when the blocks are
/// over [`MAX_MEMO_BYTES`].
pub fn memos_of(call_ids: &[String], blocks: &[Value], signatures: &[(String, String)]) -> Vec<(String, Memo)> {
    let mut out = Vec::new();
    if !blocks.is_empty() && blocks.iter().map(|b| b.to_string().len()).sum::<usize>() <= MAX_MEMO_BYTES {
        out.extend(call_ids.iter().map(|id| (id.clone(), Memo::ThinkingBlocks(blocks.to_vec()))));
    }
    out.extend(signatures.iter().filter(|(id, _)| call_ids.contains(id)).map(|(id, s)| (id.clone(), Memo::ThoughtSignature(s.clone()))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rebuilt() -> Value {
        json!({"messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                {"id": "call_b", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "rain"}]})
    }

    #[test]
    fn a_rebuilt_turn_wants_its_ids_and_gets_its_memos_back() {
        let mut req = rebuilt();
        assert_eq!(wanted(&req), vec!["call_a", "call_b"]);
        let blocks = vec![json!({"type": "thinking", "thinking": "hmm", "signature": "sig1"}), json!({"type": "redacted_thinking", "data": "xyz"})];
        let made = memos_of(&["call_a".into(), "call_b".into()], &blocks, &[("call_a".into(), "ts1".into())]);
        assert_eq!(made.len(), 3, "the blocks for each call, and call_a's signature");
        // One memo per id in the memory: here a Gemini signature for call_a
        // and Anthropic blocks for call_b.
        let memos: HashMap<String, Memo> = [("call_a".to_string(), made[2].1.clone()), ("call_b".to_string(), made[1].1.clone())].into();
        assert_eq!(restore(&mut req, &memos), 2);
        let m = &req["messages"][1];
        assert_eq!(m["thinking_blocks"], Value::Array(blocks));
        assert_eq!(m["tool_calls"][0]["extra_content"]["google"]["thought_signature"], "ts1");
        assert!(m["tool_calls"][1].get("extra_content").is_none());
        assert_eq!(wanted(&req), vec!["call_b"], "call_b still has no signature");
    }

    #[test]
    fn what_the_client_sent_is_never_replaced() {
        let mut req = rebuilt();
        req["messages"][1]["thinking_blocks"] = json!([{"type": "thinking", "thinking": "mine", "signature": "s"}]);
        req["messages"][1]["tool_calls"][0]["extra_content"] = json!({"google": {"thought_signature": "client"}});
        let memos: HashMap<String, Memo> = [("call_a".to_string(), Memo::ThoughtSignature("other".into())), ("call_b".to_string(), Memo::ThinkingBlocks(vec![json!({"type": "thinking"})]))].into();
        restore(&mut req, &memos);
        assert_eq!(req["messages"][1]["thinking_blocks"][0]["thinking"], "mine");
        assert_eq!(req["messages"][1]["tool_calls"][0]["extra_content"]["google"]["thought_signature"], "client");
    }

    #[test]
    fn an_unknown_turn_is_sent_as_written() {
        let mut req = rebuilt();
        let before = req.clone();
        assert_eq!(restore(&mut req, &HashMap::new()), 0);
        let memos: HashMap<String, Memo> = [("call_z".to_string(), Memo::ThoughtSignature("x".into()))].into();
        assert_eq!(restore(&mut req, &memos), 0);
        assert_eq!(req, before);
        assert!(wanted(&json!({"messages": [{"role": "user", "content": "hi"}]})).is_empty());
        assert!(wanted(&json!({"input": "hi"})).is_empty());
    }

    #[test]
    fn responses_input_gets_a_reasoning_item_and_signatures() {
        let blocks = vec![json!({"type": "thinking", "thinking": "t", "signature": "s"})];
        let mut req = json!({"input": [
            {"role": "user", "content": "weather?"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"}]});
        assert_eq!(wanted(&req), vec!["c1", "c2"]);
        let memos: HashMap<String, Memo> = [("c1".to_string(), Memo::ThinkingBlocks(blocks.clone())), ("c2".to_string(), Memo::ThoughtSignature("g".into()))].into();
        assert_eq!(restore(&mut req, &memos), 2);
        let items = req["input"].as_array().unwrap();
        assert_eq!(items[1]["type"], "reasoning", "before the assistant message the calls join");
        assert_eq!(decode_blocks(items[1]["encrypted_content"].as_str().unwrap()), Some(blocks));
        assert_eq!(items[4]["extra_content"]["google"]["thought_signature"], "g");
        assert_eq!(restore(&mut req, &memos), 0, "a run with a reasoning item is left alone");
        assert_eq!(decode_blocks("gAAAAB-openai-encrypted"), None);
    }

    #[test]
    fn memos_round_trip_and_huge_blocks_are_not_kept() {
        for m in [Memo::ThinkingBlocks(vec![json!({"type": "thinking", "thinking": "t", "signature": "s"})]), Memo::ThoughtSignature("abc".into())] {
            assert_eq!(Memo::from_value(&m.to_value()), Some(m));
        }
        let huge = vec![json!({"type": "thinking", "thinking": "x".repeat(MAX_MEMO_BYTES), "signature": "s"})];
        assert!(memos_of(&["c".into()], &huge, &[]).is_empty());
        assert!(memos_of(&[], &[json!({"type": "thinking"})], &[]).is_empty(), "no tool call: nothing to remember");
    }
}
