//! Message translation: OpenAI `messages` → Anthropic `system` + alternating turns.

use super::{get, invalid, unsupported};
use crate::translate::common::obj;
use crate::translate::TranslateError;
use base64::Engine;
use serde_json::{json, Map, Value};

pub(super) fn text_block(s: &str) -> Value {
    json!({"type": "text", "text": s})
}

/// Anthropic allows this many prompt-cache breakpoints in one request.
pub(super) const MAX_CACHE_BREAKPOINTS: usize = 4;

/// The request's prompt-cache breakpoints (`cache_control` markers), by the
/// OpenAI parameter that carried each, in request order.
#[derive(Default)]
pub(super) struct Breakpoints(pub Vec<String>);

impl Breakpoints {
    /// `from["cache_control"]`, checked, onto the Anthropic `block` (an
    /// object); `param` names where it was. `{"type": "ephemeral"}` with an
    /// optional `ttl` of `5m` or `1h`, as Anthropic takes it.
    pub(super) fn carry(&mut self, from: &Value, block: &mut Value, param: &str) -> Result<(), TranslateError> {
        self.carry_marker(from.get("cache_control"), block, param)
    }

    /// A `cache_control` value (maybe absent) onto `block`.
    fn carry_marker(&mut self, cc: Option<&Value>, block: &mut Value, param: &str) -> Result<(), TranslateError> {
        let Some(cc) = cc.filter(|v| !v.is_null()) else { return Ok(()) };
        let p = format!("{param}.cache_control");
        let o = cc.as_object().ok_or_else(|| invalid(p.clone(), "'cache_control' must be an object."))?;
        if o.get("type").and_then(Value::as_str) != Some("ephemeral") {
            return Err(invalid(format!("{p}.type"), "'cache_control.type' must be 'ephemeral'."));
        }
        match o.get("ttl") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "5m" || t == "1h" => {}
            Some(_) => return Err(invalid(format!("{p}.ttl"), "'cache_control.ttl' must be '5m' or '1h'.")),
        }
        if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "type" | "ttl")) {
            return Err(invalid(format!("{p}.{k}"), format!("Unknown field '{k}' in 'cache_control'.")));
        }
        if let Some(b) = block.as_object_mut() {
            b.insert("cache_control".into(), cc.clone());
        }
        self.0.push(p);
        Ok(())
    }

    /// More than Anthropic allows is a 400 naming the first one too many.
    pub(super) fn check(&self) -> Result<(), TranslateError> {
        match self.0.get(MAX_CACHE_BREAKPOINTS) {
            Some(p) => Err(invalid(
                p.clone(),
                format!("A request may carry at most {MAX_CACHE_BREAKPOINTS} cache_control breakpoints (this one has {}).", self.0.len()),
            )),
            None => Ok(()),
        }
    }
}

/// `data:<mime>[;params];base64,<data>` → (lower-case mime, data).
fn parse_data_url(url: &str) -> Option<(String, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mut parts = meta.split(';');
    let mime = parts.next()?.trim().to_ascii_lowercase();
    if mime.is_empty() || !parts.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return None;
    }
    Some((mime, data))
}

/// Standard alphabet, canonical padding, lenient about non-zero trailing bits.
const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

fn valid_base64(data: &str) -> bool {
    !data.is_empty() && B64.decode(data).is_ok()
}

pub(super) struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

impl Turn {
    /// A turn that is a single plain text block is sent as a string.
    pub(super) fn into_value(mut self) -> Value {
        if self.blocks.len() == 1 && self.blocks[0].get("type").and_then(Value::as_str) == Some("text") && self.blocks[0].as_object().is_some_and(|o| o.len() == 2) {
            let text = self.blocks[0]["text"].take();
            return obj!("role" => self.role, "content" => text);
        }
        obj!("role" => self.role, "content" => self.blocks)
    }
}

fn is_tool_result(b: &Value) -> bool {
    b.get("type").and_then(Value::as_str) == Some("tool_result")
}

/// Appends to the last turn when it has the same role (Anthropic needs alternation).
/// Anthropic wants a user turn's `tool_result` blocks before any other block, so a tool
/// result merged into a user turn goes after the turn's leading tool results.
fn push_turn(turns: &mut Vec<Turn>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(t) if t.role == role => {
            for b in blocks {
                if is_tool_result(&b) {
                    let at = t.blocks.iter().position(|x| !is_tool_result(x)).unwrap_or(t.blocks.len());
                    t.blocks.insert(at, b);
                } else {
                    t.blocks.push(b);
                }
            }
        }
        _ => turns.push(Turn { role, blocks }),
    }
}

/// Text-only content (system, developer, tool): string or array of `text`
/// parts → text blocks, each part's `cache_control` kept.
fn text_parts(content: Option<&Value>, p: &str, marks: &mut Breakpoints) -> Result<Vec<Value>, TranslateError> {
    match content {
        None => Ok(vec![]),
        Some(Value::String(s)) => Ok(if s.is_empty() { vec![] } else { vec![text_block(s)] }),
        Some(Value::Array(parts)) => {
            let mut v = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = part.get("text").and_then(Value::as_str).ok_or_else(|| invalid(format!("{p}[{j}].text"), "'text' must be a string."))?;
                        if !t.is_empty() {
                            let mut b = text_block(t);
                            marks.carry(part, &mut b, &format!("{p}[{j}]"))?;
                            v.push(b);
                        }
                    }
                    _ => return Err(unsupported(format!("{p}[{j}]"), "Only text content parts are supported for this message role.")),
                }
            }
            Ok(v)
        }
        Some(_) => Err(invalid(p, "'content' must be a string or an array of content parts.")),
    }
}

fn image_block(part: &Value, p: &str) -> Result<Value, TranslateError> {
    let param = format!("{p}.image_url");
    let url = match part.get("image_url") {
        Some(Value::String(u)) => u.as_str(),
        Some(o) => o.get("url").and_then(Value::as_str).ok_or_else(|| invalid(param.clone(), "'image_url.url' must be a string."))?,
        None => return Err(invalid(param, "'image_url' is required.")),
    };
    if url.starts_with("data:") {
        let (mut mime, data) = parse_data_url(url).ok_or_else(|| invalid(param.clone(), "Invalid data URL: expected data:<media type>;base64,<data>."))?;
        if mime == "image/jpg" {
            mime = "image/jpeg".into();
        }
        if !matches!(mime.as_str(), "image/jpeg" | "image/png" | "image/gif" | "image/webp") {
            return Err(unsupported(param, format!("Unsupported image media type '{mime}' (jpeg, png, gif, webp only).")));
        }
        if !valid_base64(data) {
            return Err(invalid(param, "Invalid base64 image data."));
        }
        Ok(json!({"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}))
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
    } else {
        Err(invalid(param, "Image URLs must be http(s) or base64 data URLs."))
    }
}

fn file_block(part: &Value, p: &str) -> Result<Value, TranslateError> {
    let param = format!("{p}.file");
    let f = part.get("file").and_then(Value::as_object).ok_or_else(|| invalid(param.clone(), "'file' must be an object."))?;
    let Some(data_url) = get(f, "file_data").and_then(Value::as_str) else {
        return Err(unsupported(param, "Only 'file_data' (a base64 data URL) is supported; 'file_id' is not."));
    };
    let param = format!("{p}.file.file_data");
    let (mime, data) = parse_data_url(data_url).ok_or_else(|| invalid(param.clone(), "Expected a data URL: data:<media type>;base64,<data>."))?;
    if !valid_base64(data) {
        return Err(invalid(param, "Invalid base64 file data."));
    }
    match mime.as_str() {
        "application/pdf" => Ok(json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}})),
        "text/plain" => {
            let bytes = B64.decode(data).unwrap_or_default();
            let text = String::from_utf8(bytes).map_err(|_| invalid(param.clone(), "text/plain file data must be UTF-8."))?;
            Ok(json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}))
        }
        _ => Err(unsupported(param, format!("Unsupported file media type '{mime}' (application/pdf, text/plain only)."))),
    }
}

fn user_blocks(content: Option<&Value>, p: &str, marks: &mut Breakpoints) -> Result<Vec<Value>, TranslateError> {
    match content {
        None => Err(invalid(p, "User messages must have 'content'.")),
        Some(Value::String(s)) => Ok(if s.is_empty() { vec![] } else { vec![text_block(s)] }),
        Some(Value::Array(parts)) => {
            let mut v = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let pj = format!("{p}[{j}]");
                let mut block = match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = part.get("text").and_then(Value::as_str).ok_or_else(|| invalid(format!("{pj}.text"), "'text' must be a string."))?;
                        if t.is_empty() {
                            continue;
                        }
                        text_block(t)
                    }
                    Some("image_url") => image_block(part, &pj)?,
                    Some("file") => file_block(part, &pj)?,
                    Some("input_audio") => return Err(unsupported(pj, "Audio input is not supported with this model.")),
                    _ => return Err(invalid(pj, "Unknown content part type.")),
                };
                marks.carry(part, &mut block, &pj)?;
                v.push(block);
            }
            Ok(v)
        }
        Some(_) => Err(invalid(p, "'content' must be a string or an array of content parts.")),
    }
}

fn assistant_blocks(m: &Map<String, Value>, p: &str, marks: &mut Breakpoints) -> Result<Vec<Value>, TranslateError> {
    let pc = format!("{p}.content");
    let mut v = Vec::new();
    // The turn's thinking, first and unmodified (SPEC 8: Anthropic requires
    // it before the tool_use blocks of a turn when thinking is on).
    if let Some(tb) = get(m, "thinking_blocks") {
        let pt = format!("{p}.thinking_blocks");
        let tb = tb.as_array().ok_or_else(|| invalid(pt.clone(), "'thinking_blocks' must be an array."))?;
        for (j, b) in tb.iter().enumerate() {
            let ok = match b.get("type").and_then(Value::as_str) {
                Some("thinking") => b.get("thinking").is_some_and(Value::is_string) && b.get("signature").is_some_and(Value::is_string),
                Some("redacted_thinking") => b.get("data").is_some_and(Value::is_string),
                _ => false,
            };
            if !ok {
                return Err(invalid(format!("{pt}[{j}]"), "A thinking block is {type: thinking, thinking, signature} or {type: redacted_thinking, data}, as the answer gave it."));
            }
            v.push(b.clone());
        }
    }
    match get(m, "content") {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => v.push(text_block(s)),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let key = match part.get("type").and_then(Value::as_str) {
                    Some("text") => "text",
                    Some("refusal") => "refusal",
                    _ => return Err(unsupported(format!("{pc}[{j}]"), "Assistant content parts must be 'text' or 'refusal'.")),
                };
                let t = part.get(key).and_then(Value::as_str).ok_or_else(|| invalid(format!("{pc}[{j}].{key}"), format!("'{key}' must be a string.")))?;
                if !t.is_empty() {
                    let mut b = text_block(t);
                    marks.carry(part, &mut b, &format!("{pc}[{j}]"))?;
                    v.push(b);
                }
            }
        }
        Some(_) => return Err(invalid(pc, "'content' must be a string, an array of parts or null.")),
    }
    if get(m, "function_call").is_some() {
        return Err(unsupported(format!("{p}.function_call"), "'function_call' is deprecated and not supported; use 'tool_calls'."));
    }
    if get(m, "audio").is_some() {
        return Err(unsupported(format!("{p}.audio"), "Assistant audio is not supported with this model."));
    }
    if let Some(tcs) = get(m, "tool_calls") {
        let tcs = tcs.as_array().ok_or_else(|| invalid(format!("{p}.tool_calls"), "'tool_calls' must be an array."))?;
        for (j, tc) in tcs.iter().enumerate() {
            let pj = format!("{p}.tool_calls[{j}]");
            if tc.get("type").and_then(Value::as_str).unwrap_or("function") != "function" {
                return Err(unsupported(format!("{pj}.type"), "Only 'function' tool calls are supported."));
            }
            let id = tc.get("id").and_then(Value::as_str).ok_or_else(|| invalid(format!("{pj}.id"), "'id' must be a string."))?;
            let f = tc.get("function").ok_or_else(|| invalid(format!("{pj}.function"), "'function' is required."))?;
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| invalid(format!("{pj}.function.name"), "'name' must be a string."))?;
            let pa = format!("{pj}.function.arguments");
            let args = f.get("arguments").and_then(Value::as_str).ok_or_else(|| invalid(pa.clone(), "'arguments' must be a JSON string."))?;
            let input: Value = if args.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(args).map_err(|e| invalid(pa.clone(), format!("'arguments' is not valid JSON: {e}")))?
            };
            if !input.is_object() {
                return Err(invalid(pa, "'arguments' must encode a JSON object."));
            }
            v.push(obj!("type" => "tool_use", "id" => id, "name" => name, "input" => input));
        }
    }
    Ok(v)
}

/// OpenAI messages → (system blocks, alternating Anthropic turns). A
/// `cache_control` on a content part stays on its block; one on the message
/// itself goes on the message's last block (LiteLLM's form).
pub(super) fn translate_messages(msgs: &[Value], marks: &mut Breakpoints) -> Result<(Vec<Value>, Vec<Turn>), TranslateError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let p = format!("messages[{i}]");
        let m = m.as_object().ok_or_else(|| invalid(p.clone(), "Each message must be an object."))?;
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let pc = format!("{p}.content");
        let message_mark = |mut blocks: Vec<Value>, marks: &mut Breakpoints| -> Result<Vec<Value>, TranslateError> {
            if let Some(cc) = get(m, "cache_control") {
                match blocks.last_mut() {
                    Some(last) => marks.carry_marker(Some(cc), last, &p)?,
                    None => return Err(invalid(format!("{p}.cache_control"), "'cache_control' needs content to mark.")),
                }
            }
            Ok(blocks)
        };
        match role {
            "system" | "developer" => system.extend(message_mark(text_parts(get(m, "content"), &pc, marks)?, marks)?),
            "user" => push_turn(&mut turns, "user", message_mark(user_blocks(get(m, "content"), &pc, marks)?, marks)?),
            "assistant" => push_turn(&mut turns, "assistant", message_mark(assistant_blocks(m, &p, marks)?, marks)?),
            "tool" => {
                let id = get(m, "tool_call_id").and_then(Value::as_str).ok_or_else(|| invalid(format!("{p}.tool_call_id"), "'tool_call_id' must be a string."))?;
                let mut block = json!({"type": "tool_result", "tool_use_id": id});
                match get(m, "content") {
                    Some(Value::String(s)) => {
                        if !s.is_empty() {
                            block["content"] = json!(s);
                        }
                    }
                    c => {
                        let blocks = text_parts(c, &pc, marks)?;
                        if !blocks.is_empty() {
                            block["content"] = Value::Array(blocks);
                        }
                    }
                }
                push_turn(&mut turns, "user", message_mark(vec![block], marks)?);
            }
            "function" => return Err(unsupported(format!("{p}.role"), "The deprecated 'function' role is not supported; use 'tool' messages.")),
            _ => return Err(invalid(format!("{p}.role"), "'role' must be one of system, developer, user, assistant, tool.")),
        }
    }
    Ok((system, turns))
}
