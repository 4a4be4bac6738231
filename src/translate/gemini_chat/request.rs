//! Request translation: an OpenAI chat request → a Gemini `generateContent` body.

use super::GeminiChat;
use crate::translate::common::{obj, present};
use crate::translate::TranslateError;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Top-level request parameters this translator accepts (mapped or dropped).
const ACCEPTED: &[&str] = &[
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "stop", "n", "seed", "presence_penalty", "frequency_penalty", "reasoning_effort", "response_format", "tools",
    "tool_choice", "parallel_tool_calls", "logprobs", "top_logprobs",
    // explicit context caching: `cachedContent` (see `cached_content`)
    "cached_content", "extra_body",
    // dropped: they do not change the answer
    "user", "store", "metadata", "service_tier", "safety_identifier", "prompt_cache_key",
];

/// Parameters that change the answer and cannot be honoured unless null
/// (or, for some, an explicit no-op value).
const REFUSED: &[&str] = &[
    "logit_bias", "audio", "modalities", "prediction", "web_search_options", "functions", "function_call", "verbosity",
];
/// MIME type from a file name's or URL path's extension (query and fragment
/// ignored, case-insensitive); `None` when unknown.
pub fn mime_from_ext(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let last = path.rsplit('/').next().unwrap_or("");
    let ext = last.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "aac" => "audio/aac",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "webm" => "video/webm",
        _ => return None,
    })
}

/// `data:<mime>;base64,<data>` → inlineData.
fn data_url_part(url: &str, param: &str) -> Result<Value, TranslateError> {
    let rest = &url[5..];
    let (head, data) = rest.split_once(',').ok_or_else(|| TranslateError::invalid(param, "malformed data URL"))?;
    let mime = head.strip_suffix(";base64").ok_or_else(|| TranslateError::invalid(param, "data URL must be base64-encoded"))?;
    if mime.is_empty() || !mime.contains('/') {
        return Err(TranslateError::invalid(param, "data URL has no media type"));
    }
    Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }))
}

/// An image URL → inlineData (data URL) or fileData (http(s)/gs URL).
fn url_part(url: &str, param: &str, default_mime: &'static str) -> Result<Value, TranslateError> {
    if url.starts_with("data:") {
        return data_url_part(url, param);
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("gs://") {
        let mime = mime_from_ext(url).unwrap_or(default_mime);
        return Ok(json!({ "fileData": { "mimeType": mime, "fileUri": url } }));
    }
    Err(TranslateError::invalid(param, "expected a data: URL or an http(s):// or gs:// URL"))
}

fn text_of(v: &Value, param: &str) -> Result<String, TranslateError> {
    v.as_str().map(str::to_owned).ok_or_else(|| TranslateError::invalid(param, "expected a string"))
}

/// Text-only content (system, developer, tool, assistant): string or an array
/// of `text` (and, for assistant, `refusal`) parts → the texts.
fn texts(content: &Value, param: &str, allow_refusal: bool) -> Result<Vec<String>, TranslateError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let pp = format!("{param}[{j}]");
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => out.push(text_of(p.get("text").unwrap_or(&Value::Null), &format!("{pp}.text"))?),
                    Some("refusal") if allow_refusal => {
                        out.push(text_of(p.get("refusal").unwrap_or(&Value::Null), &format!("{pp}.refusal"))?)
                    }
                    _ => return Err(TranslateError::invalid(format!("{pp}.type"), "only text parts are allowed here")),
                }
            }
            Ok(out)
        }
        _ => Err(TranslateError::invalid(param, "content must be a string or an array of parts")),
    }
}

/// User content → Gemini parts.
fn user_parts(content: &Value, param: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Value::String(s) => Ok(vec![json!({ "text": s })]),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let pp = format!("{param}[{j}]");
                let part = match p.get("type").and_then(Value::as_str) {
                    Some("text") => json!({ "text": text_of(p.get("text").unwrap_or(&Value::Null), &format!("{pp}.text"))? }),
                    Some("image_url") => {
                        let iu = p.get("image_url").unwrap_or(&Value::Null);
                        let url = iu.get("url").or(Some(iu)).and_then(Value::as_str);
                        let param = format!("{pp}.image_url.url");
                        let url = url.ok_or_else(|| TranslateError::invalid(&param, "expected a URL string"))?;
                        url_part(url, &param, "image/jpeg")?
                    }
                    Some("input_audio") => {
                        let a = p.get("input_audio").unwrap_or(&Value::Null);
                        let data = text_of(a.get("data").unwrap_or(&Value::Null), &format!("{pp}.input_audio.data"))?;
                        let mime = match a.get("format").and_then(Value::as_str) {
                            Some("wav") => "audio/wav",
                            Some("mp3") => "audio/mp3",
                            _ => return Err(TranslateError::invalid(format!("{pp}.input_audio.format"), "format must be wav or mp3")),
                        };
                        json!({ "inlineData": { "mimeType": mime, "data": data } })
                    }
                    Some("file") => {
                        let f = p.get("file").unwrap_or(&Value::Null);
                        if f.get("file_id").is_some_and(|v| !v.is_null()) {
                            return Err(TranslateError::unsupported(format!("{pp}.file.file_id"), "uploaded file ids are not supported by this provider; send file_data"));
                        }
                        let param = format!("{pp}.file.file_data");
                        let data = f.get("file_data").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid(&param, "expected file_data"))?;
                        if data.starts_with("data:") {
                            data_url_part(data, &param)?
                        } else {
                            let name = f.get("filename").and_then(Value::as_str).unwrap_or("");
                            let mime = mime_from_ext(name).ok_or_else(|| {
                                TranslateError::invalid(&param, "file_data must be a data: URL (or a filename with a known extension)")
                            })?;
                            json!({ "inlineData": { "mimeType": mime, "data": data } })
                        }
                    }
                    _ => return Err(TranslateError::invalid(format!("{pp}.type"), "unsupported content part type")),
                };
                out.push(part);
            }
            Ok(out)
        }
        _ => Err(TranslateError::invalid(param, "content must be a string or an array of parts")),
    }
}

fn num(v: &Value, param: &str) -> Result<f64, TranslateError> {
    v.as_f64().ok_or_else(|| TranslateError::invalid(param, "expected a number"))
}

fn uint(v: &Value, param: &str, min: u64) -> Result<u64, TranslateError> {
    v.as_u64().filter(|n| *n >= min).ok_or_else(|| TranslateError::invalid(param, format!("expected an integer ≥ {min}")))
}

/// Messages → (contents, systemInstruction parts).
fn convert_messages(messages: &[Value]) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let mut contents: Vec<Value> = Vec::new();
    let mut system: Vec<Value> = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut last_was_tool = false;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        let cparam = format!("messages[{i}].content");
        let is_tool = role == "tool";
        match role {
            "system" | "developer" => {
                for t in texts(content, &cparam, false)? {
                    system.push(obj!("text" => t));
                }
            }
            "user" => {
                if content.is_null() {
                    return Err(TranslateError::invalid(cparam, "user content is required"));
                }
                contents.push(obj!("role" => "user", "parts" => user_parts(content, &cparam)?));
            }
            "assistant" => {
                let mut parts: Vec<Value> = texts(content, &cparam, true)?.into_iter().filter(|t| !t.is_empty()).map(|t| obj!("text" => t)).collect();
                let calls = m.get("tool_calls").unwrap_or(&Value::Null);
                let calls = match calls {
                    Value::Null => &[][..],
                    Value::Array(a) => a.as_slice(),
                    _ => return Err(TranslateError::invalid(format!("messages[{i}].tool_calls"), "expected an array")),
                };
                for (j, tc) in calls.iter().enumerate() {
                    let tp = format!("messages[{i}].tool_calls[{j}]");
                    if let Some(t) = tc.get("type").and_then(Value::as_str) {
                        if t != "function" {
                            return Err(TranslateError::unsupported(format!("{tp}.type"), "only function tool calls are supported"));
                        }
                    }
                    let id = tc.get("id").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid(format!("{tp}.id"), "expected a string"))?;
                    let name = tc.pointer("/function/name").and_then(Value::as_str).filter(|n| !n.is_empty());
                    let name = name.ok_or_else(|| TranslateError::invalid(format!("{tp}.function.name"), "expected a function name"))?;
                    let aparam = format!("{tp}.function.arguments");
                    let args = match tc.pointer("/function/arguments").unwrap_or(&Value::Null) {
                        Value::String(s) if s.trim().is_empty() => json!({}),
                        Value::String(s) => match serde_json::from_str::<Value>(s) {
                            Ok(v @ Value::Object(_)) => v,
                            Ok(_) => return Err(TranslateError::invalid(aparam, "arguments must be a JSON object")),
                            Err(e) => return Err(TranslateError::invalid(aparam, format!("arguments are not valid JSON: {e}"))),
                        },
                        Value::Null => json!({}),
                        v @ Value::Object(_) => v.clone(),
                        _ => return Err(TranslateError::invalid(aparam, "arguments must be a JSON string")),
                    };
                    names.insert(id.to_owned(), name.to_owned());
                    let mut part = obj!("functionCall" => obj!("name" => name, "args" => args));
                    if let Some(sig) = tc.pointer("/extra_content/google/thought_signature").and_then(Value::as_str) {
                        part["thoughtSignature"] = json!(sig);
                    }
                    parts.push(part);
                }
                if !parts.is_empty() {
                    contents.push(obj!("role" => "model", "parts" => parts));
                }
            }
            "tool" => {
                let idp = format!("messages[{i}].tool_call_id");
                let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid(&idp, "expected a string"))?;
                let name = names.get(id).ok_or_else(|| TranslateError::invalid(&idp, format!("no earlier assistant tool call has id {id:?}")))?;
                let text = texts(content, &cparam, false)?.concat();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => obj!("content" => text),
                };
                let part = obj!("functionResponse" => obj!("name" => name.as_str(), "response" => response));
                match contents.last_mut() {
                    Some(last) if last_was_tool => last["parts"].as_array_mut().expect("parts").push(part),
                    _ => contents.push(obj!("role" => "user", "parts" => vec![part])),
                }
            }
            "function" => return Err(TranslateError::unsupported(format!("messages[{i}].role"), "the deprecated function role is not supported; use tool")),
            _ => return Err(TranslateError::invalid(format!("messages[{i}].role"), "unknown role")),
        }
        last_was_tool = is_tool;
    }
    Ok((contents, system))
}

/// `tools` → functionDeclarations (by name, in order).
fn convert_tools(tools: &Value) -> Result<Vec<Value>, TranslateError> {
    let arr = tools.as_array().ok_or_else(|| TranslateError::invalid("tools", "expected an array"))?;
    let mut decls = Vec::new();
    for (i, t) in arr.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(TranslateError::unsupported(format!("tools[{i}].type"), "only function tools are supported"));
        }
        let f = t.get("function").unwrap_or(&Value::Null);
        let name = f.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
        let name = name.ok_or_else(|| TranslateError::invalid(format!("tools[{i}].function.name"), "expected a function name"))?;
        let mut d = json!({ "name": name });
        if let Some(desc) = f.get("description").and_then(Value::as_str) {
            d["description"] = json!(desc);
        }
        match f.get("parameters") {
            None | Some(Value::Null) => {}
            Some(p @ Value::Object(_)) => d["parametersJsonSchema"] = p.clone(),
            Some(_) => return Err(TranslateError::invalid(format!("tools[{i}].function.parameters"), "expected a JSON Schema object")),
        }
        decls.push(d);
    }
    Ok(decls)
}

fn decl_name(d: &Value) -> &str {
    d["name"].as_str().unwrap_or("")
}

/// `tool_choice` → (functionCallingConfig, declarations kept).
fn convert_tool_choice(tc: &Value, decls: Vec<Value>) -> Result<(Option<Value>, Vec<Value>), TranslateError> {
    let check = |name: &str, param: &str| -> Result<(), TranslateError> {
        if decls.iter().any(|d| decl_name(d) == name) {
            Ok(())
        } else {
            Err(TranslateError::invalid(param, format!("no tool named {name:?} in tools")))
        }
    };
    let mode = |m: &str| json!({ "mode": m });
    match tc {
        Value::Null => Ok((None, decls)),
        Value::String(s) => match s.as_str() {
            "auto" => Ok((Some(mode("AUTO")), decls)),
            "none" => Ok((Some(mode("NONE")), decls)),
            "required" => Ok((Some(mode("ANY")), decls)),
            _ => Err(TranslateError::invalid("tool_choice", "expected auto, none, required or a named function")),
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = tc.pointer("/function/name").and_then(Value::as_str).unwrap_or("");
                check(name, "tool_choice.function.name")?;
                Ok((Some(json!({ "mode": "ANY", "allowedFunctionNames": [name] })), decls))
            }
            Some("allowed_tools") => {
                let at = tc.get("allowed_tools").unwrap_or(&Value::Null);
                let list = at.get("tools").and_then(Value::as_array).ok_or_else(|| TranslateError::invalid("tool_choice.allowed_tools.tools", "expected an array"))?;
                let mut names = Vec::new();
                for (k, t) in list.iter().enumerate() {
                    let p = format!("tool_choice.allowed_tools.tools[{k}]");
                    let name = t.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid(&p, "expected a function tool"))?;
                    check(name, &p)?;
                    names.push(name.to_owned());
                }
                match at.get("mode").and_then(Value::as_str) {
                    Some("required") => Ok((Some(json!({ "mode": "ANY", "allowedFunctionNames": names })), decls)),
                    Some("auto") => {
                        let kept = decls.into_iter().filter(|d| names.iter().any(|n| n == decl_name(d))).collect();
                        Ok((Some(mode("AUTO")), kept))
                    }
                    _ => Err(TranslateError::invalid("tool_choice.allowed_tools.mode", "expected auto or required")),
                }
            }
            _ => Err(TranslateError::unsupported("tool_choice.type", "only function tool choices are supported")),
        },
        _ => Err(TranslateError::invalid("tool_choice", "expected a string or an object")),
    }
}

impl GeminiChat {
    pub(super) fn translate_request(&mut self, req: Value) -> Result<Value, TranslateError> {
        let obj = req.as_object().ok_or_else(|| TranslateError::invalid("body", "the request body must be a JSON object"))?;
        for (k, v) in obj {
            if ACCEPTED.contains(&k.as_str()) {
                continue;
            }
            if REFUSED.contains(&k.as_str()) {
                let noop = match (k.as_str(), v) {
                    (_, Value::Null) => true,
                    ("logit_bias", Value::Object(m)) => m.is_empty(),
                    ("modalities", Value::Array(a)) => a.iter().all(|m| m == "text"),
                    _ => false,
                };
                if noop {
                    continue;
                }
                return Err(TranslateError::unsupported(k.as_str(), format!("{k} is not supported by this provider")));
            }
            return Err(TranslateError::unsupported(k.as_str(), format!("unknown parameter {k}")));
        }
        let get = |k: &str| present(obj.get(k));

        self.model = obj.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
        self.stream = match get("stream") {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| TranslateError::invalid("stream", "expected a boolean"))?,
        };
        self.include_usage = self.stream && get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true);
        self.single_tool_call = match get("parallel_tool_calls") {
            None => false,
            Some(v) => !v.as_bool().ok_or_else(|| TranslateError::invalid("parallel_tool_calls", "expected a boolean"))?,
        };

        let messages = get("messages").and_then(Value::as_array).filter(|a| !a.is_empty());
        let messages = messages.ok_or_else(|| TranslateError::invalid("messages", "messages must be a non-empty array"))?;
        let (contents, system) = convert_messages(messages)?;
        if contents.is_empty() {
            return Err(TranslateError::invalid("messages", "messages must contain at least one user or assistant message"));
        }

        let mut gc = Map::new();
        if let Some(v) = get("max_completion_tokens").or_else(|| get("max_tokens")) {
            let p = if get("max_completion_tokens").is_some() { "max_completion_tokens" } else { "max_tokens" };
            gc.insert("maxOutputTokens".into(), json!(uint(v, p, 1)?));
        }
        if let Some(v) = get("temperature") {
            gc.insert("temperature".into(), json!(num(v, "temperature")?));
        }
        if let Some(v) = get("top_p") {
            gc.insert("topP".into(), json!(num(v, "top_p")?));
        }
        if let Some(v) = get("stop") {
            let stops: Vec<String> = match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().map(|s| s.as_str().map(str::to_owned)).collect::<Option<_>>().ok_or_else(|| TranslateError::invalid("stop", "expected strings"))?,
                _ => return Err(TranslateError::invalid("stop", "expected a string or an array of strings")),
            };
            if !stops.is_empty() {
                gc.insert("stopSequences".into(), json!(stops));
            }
        }
        if let Some(v) = get("n") {
            gc.insert("candidateCount".into(), json!(uint(v, "n", 1)?));
        }
        if let Some(v) = get("seed") {
            let s = v.as_i64().ok_or_else(|| TranslateError::invalid("seed", "expected an integer"))?;
            gc.insert("seed".into(), json!(s));
        }
        if let Some(v) = get("presence_penalty") {
            gc.insert("presencePenalty".into(), json!(num(v, "presence_penalty")?));
        }
        if let Some(v) = get("frequency_penalty") {
            gc.insert("frequencyPenalty".into(), json!(num(v, "frequency_penalty")?));
        }
        if let Some(v) = get("logprobs") {
            match v.as_bool() {
                Some(false) => {}
                Some(true) => return Err(TranslateError::unsupported("logprobs", "logprobs are not supported by this provider")),
                None => return Err(TranslateError::invalid("logprobs", "expected a boolean")),
            }
        }
        if let Some(v) = get("top_logprobs") {
            if v.as_u64() != Some(0) {
                return Err(TranslateError::unsupported("top_logprobs", "logprobs are not supported by this provider"));
            }
        }
        if let Some(v) = get("reasoning_effort") {
            let budget = match v.as_str() {
                Some("none") | Some("minimal") => 0,
                Some("low") => 1024,
                Some("medium") => 8192,
                Some("high") => 24576,
                _ => return Err(TranslateError::invalid("reasoning_effort", "expected none, minimal, low, medium or high")),
            };
            // The thoughts come back as `reasoning_content` when there are any.
            gc.insert("thinkingConfig".into(), json!({ "thinkingBudget": budget, "includeThoughts": budget > 0 }));
        }
        if let Some(rf) = get("response_format") {
            match rf.get("type").and_then(Value::as_str) {
                Some("text") => {}
                Some("json_object") => {
                    gc.insert("responseMimeType".into(), json!("application/json"));
                }
                Some("json_schema") => {
                    let schema = rf.pointer("/json_schema/schema").filter(|s| s.is_object());
                    let schema = schema.ok_or_else(|| TranslateError::invalid("response_format.json_schema.schema", "expected a JSON Schema object"))?;
                    gc.insert("responseMimeType".into(), json!("application/json"));
                    gc.insert("responseJsonSchema".into(), schema.clone());
                }
                _ => return Err(TranslateError::invalid("response_format.type", "expected text, json_object or json_schema")),
            }
        }

        let mut body = obj!("contents" => contents);
        if let Some(name) = cached_content(obj)? {
            body["cachedContent"] = Value::String(name);
        }
        if !system.is_empty() {
            body["systemInstruction"] = obj!("parts" => system);
        }
        if !gc.is_empty() {
            body["generationConfig"] = Value::Object(gc);
        }
        let decls = match get("tools") {
            Some(t) => convert_tools(t)?,
            None => Vec::new(),
        };
        let tc = get("tool_choice").cloned().unwrap_or(Value::Null);
        if decls.is_empty() && !(tc.is_null() || tc == "none" || tc == "auto") {
            return Err(TranslateError::invalid("tool_choice", "tool_choice needs tools"));
        }
        if !decls.is_empty() {
            let (fcc, decls) = convert_tool_choice(&tc, decls)?;
            body["tools"] = Value::Array(vec![obj!("functionDeclarations" => decls)]);
            if let Some(fcc) = fcc {
                body["toolConfig"] = obj!("functionCallingConfig" => fcc);
            }
        }
        Ok(body)
    }
}

/// Gemini's explicit context caching: the cache to answer from, named as
/// the OpenAI SDK sends it through `extra_body` — `cached_content` at the
/// top level, or Google's OpenAI-compatibility form
/// `extra_body: {google: {cached_content}}` — sent as `cachedContent`.
/// Its tokens come back as `cachedContentTokenCount`, priced as cached input.
fn cached_content(obj: &serde_json::Map<String, Value>) -> Result<Option<String>, TranslateError> {
    let name_of = |v: &Value, param: &str| match v {
        Value::Null => Ok(None),
        Value::String(s) if !s.trim().is_empty() && !s.contains(['?', '#']) => Ok(Some(s.clone())),
        _ => Err(TranslateError::invalid(param, "must name a cached content (cachedContents/<id>)")),
    };
    let mut name = match obj.get("cached_content") {
        Some(v) => name_of(v, "cached_content")?,
        None => None,
    };
    match obj.get("extra_body") {
        None | Some(Value::Null) => {}
        Some(Value::Object(eb)) => {
            for (k, v) in eb {
                let Some(google) = v.as_object().filter(|_| k == "google") else {
                    return Err(TranslateError::unsupported(format!("extra_body.{k}"), format!("extra_body.{k} is not supported with this model")));
                };
                for (gk, gv) in google {
                    if gk != "cached_content" {
                        return Err(TranslateError::unsupported(format!("extra_body.google.{gk}"), format!("extra_body.google.{gk} is not supported")));
                    }
                    if let Some(n) = name_of(gv, "extra_body.google.cached_content")? {
                        name = Some(n);
                    }
                }
            }
        }
        Some(_) => return Err(TranslateError::invalid("extra_body", "must be an object")),
    }
    Ok(name)
}
