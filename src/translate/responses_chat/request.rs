//! Request: Responses → Chat.

use serde_json::{json, Map, Value};

use super::{Echo, ResponsesOverChat};
use crate::translate::common::present;
use crate::translate::TranslateError;

const BUILTIN_TOOLS: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "web_search_2025_08_26",
    "file_search",
    "code_interpreter",
    "computer_use",
    "computer_use_preview",
    "mcp",
    "image_generation",
    "local_shell",
    "shell",
    "apply_patch",
    "custom",
];

/// A prompt-cache breakpoint (`cache_control`) on a Responses content part
/// or tool stays on the chat part or tool it becomes; the provider's
/// translator checks and places it (Anthropic: the matching block).
fn with_cache_control(from: &Value, mut to: Value) -> Value {
    if let (Some(cc), Some(o)) = (present(from.get("cache_control")), to.as_object_mut()) {
        o.insert("cache_control".into(), cc.clone());
    }
    to
}

fn content_part(part: &Value, param: &str, role: &str) -> Result<Value, TranslateError> {
    let ty = part.get("type").and_then(Value::as_str).unwrap_or("");
    let text_of = |p: &Value| -> Result<String, TranslateError> {
        p.get("text")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| TranslateError::invalid(format!("{param}.text"), "a text part needs a string `text`"))
    };
    match ty {
        "input_text" | "output_text" | "text" => Ok(json!({ "type": "text", "text": text_of(part)? })),
        "refusal" => {
            let r = part.get("refusal").and_then(Value::as_str).ok_or_else(|| {
                TranslateError::invalid(format!("{param}.refusal"), "a refusal part needs a string `refusal`")
            })?;
            if role != "assistant" {
                return Err(TranslateError::invalid(format!("{param}.type"), "refusal parts are only valid in assistant messages"));
            }
            Ok(json!({ "type": "refusal", "refusal": r }))
        }
        "input_image" => {
            if role != "user" {
                return Err(TranslateError::unsupported(format!("{param}.type"), format!("images are only supported in user messages, not `{role}`")));
            }
            if present(part.get("file_id")).is_some() {
                return Err(TranslateError::unsupported(
                    format!("{param}.file_id"),
                    "input_image.file_id is not supported on this gateway (no Files API); send image_url (https or data: URL)",
                ));
            }
            let url = part.get("image_url").and_then(Value::as_str).ok_or_else(|| {
                TranslateError::invalid(format!("{param}.image_url"), "input_image needs `image_url`")
            })?;
            let mut img = Map::new();
            img.insert("url".into(), json!(url));
            if let Some(d) = present(part.get("detail")) {
                img.insert("detail".into(), d.clone());
            }
            Ok(json!({ "type": "image_url", "image_url": img }))
        }
        "input_file" => {
            if role != "user" {
                return Err(TranslateError::unsupported(format!("{param}.type"), format!("files are only supported in user messages, not `{role}`")));
            }
            for k in ["file_id", "file_url"] {
                if present(part.get(k)).is_some() {
                    return Err(TranslateError::unsupported(format!("{param}.{k}"), format!("input_file.{k} is not supported on this gateway; send file_data")));
                }
            }
            let data = part.get("file_data").and_then(Value::as_str).ok_or_else(|| {
                TranslateError::invalid(format!("{param}.file_data"), "input_file needs `file_data`")
            })?;
            let mut f = Map::new();
            f.insert("file_data".into(), json!(data));
            if let Some(n) = present(part.get("filename")) {
                f.insert("filename".into(), n.clone());
            }
            Ok(json!({ "type": "file", "file": f }))
        }
        "" => Err(TranslateError::invalid(format!("{param}.type"), "content part needs a `type`")),
        other => Err(TranslateError::unsupported(format!("{param}.type"), format!("content part type `{other}` is not supported"))),
    }
}

fn message_item(item: &Value, param: &str) -> Result<Value, TranslateError> {
    let role = item.get("role").and_then(Value::as_str).unwrap_or("");
    let chat_role = match role {
        "user" | "assistant" | "system" => role,
        // Same meaning; "system" is what every chat translator understands.
        "developer" => "system",
        _ => return Err(TranslateError::invalid(format!("{param}.role"), "role must be user, assistant, system or developer")),
    };
    let content = match item.get("content") {
        Some(Value::String(s)) => json!(s),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                out.push(with_cache_control(p, content_part(p, &format!("{param}.content[{j}]"), role)?));
            }
            // One plain text part becomes a string, unless it carries a
            // cache breakpoint (a string cannot).
            if chat_role != "user" && out.len() == 1 && out[0]["type"] == "text" && out[0].get("cache_control").is_none() {
                out[0]["text"].clone()
            } else {
                Value::Array(out)
            }
        }
        _ => return Err(TranslateError::invalid(format!("{param}.content"), "content must be a string or an array of parts")),
    };
    // An assistant message made only of a refusal: chat's `refusal` field.
    if chat_role == "assistant" {
        if let Value::Array(parts) = &content {
            if !parts.is_empty() && parts.iter().all(|p| p["type"] == "refusal") {
                let r: String = parts.iter().filter_map(|p| p["refusal"].as_str()).collect();
                return Ok(json!({ "role": "assistant", "content": null, "refusal": r }));
            }
        }
    }
    Ok(json!({ "role": chat_role, "content": content }))
}

fn tool_output_content(out: &Value, param: &str) -> Result<Value, TranslateError> {
    match out {
        Value::String(s) => Ok(json!(s)),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let pp = format!("{param}[{j}]");
                match p.get("type").and_then(Value::as_str) {
                    Some("input_text") | Some("output_text") => match p.get("text").and_then(Value::as_str) {
                        Some(t) => texts.push(json!({ "type": "text", "text": t })),
                        None => return Err(TranslateError::invalid(format!("{pp}.text"), "a text part needs a string `text`")),
                    },
                    _ => return Err(TranslateError::unsupported(format!("{pp}.type"), "only text parts are supported in function_call_output.output")),
                }
            }
            Ok(Value::Array(texts))
        }
        _ => Err(TranslateError::invalid(param.to_string(), "output must be a string or an array of parts")),
    }
}

fn input_items(input: &Value, messages: &mut Vec<Value>) -> Result<(), TranslateError> {
    let items = match input {
        Value::String(s) => {
            messages.push(json!({ "role": "user", "content": s }));
            return Ok(());
        }
        Value::Array(a) => a,
        _ => return Err(TranslateError::invalid("input", "input must be a string or an array of items")),
    };
    // Whether the last chat message is an assistant message that function
    // calls may join.
    let mut assistant_open = false;
    // Thinking blocks of a `reasoning` item, for the assistant turn after it.
    let mut pending: Option<Vec<Value>> = None;
    let attach = |m: &mut Value, pending: &mut Option<Vec<Value>>| {
        if let (Some(b), Some(o)) = (pending.take(), m.as_object_mut()) {
            o.entry("thinking_blocks").or_insert(Value::Array(b));
        }
    };
    for (i, item) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        if !item.is_object() {
            return Err(TranslateError::invalid(param, "input items must be objects"));
        }
        let ty = item.get("type").and_then(Value::as_str);
        match ty {
            None | Some("message") => {
                let mut m = message_item(item, &param)?;
                assistant_open = m["role"] == "assistant";
                if assistant_open {
                    attach(&mut m, &mut pending);
                }
                messages.push(m);
            }
            Some("function_call") => {
                let call_id = item.get("call_id").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid(format!("{param}.call_id"), "function_call needs `call_id`"))?;
                let name = item.get("name").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid(format!("{param}.name"), "function_call needs `name`"))?;
                let args = match present(item.get("arguments")) {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => return Err(TranslateError::invalid(format!("{param}.arguments"), "arguments must be a string")),
                };
                let mut call = json!({ "id": call_id, "type": "function", "function": { "name": name, "arguments": args } });
                // A thought signature rides on the item as on a chat tool call.
                if let Some(x) = item.get("extra_content").filter(|x| x.is_object()) {
                    call["extra_content"] = x.clone();
                }
                let last = messages.last_mut().filter(|_| assistant_open);
                match last {
                    Some(m) => {
                        attach(m, &mut pending);
                        let obj = m.as_object_mut().expect("chat message is an object");
                        match obj.get_mut("tool_calls") {
                            Some(Value::Array(calls)) => calls.push(call),
                            _ => {
                                obj.insert("tool_calls".into(), json!([call]));
                            }
                        }
                    }
                    None => {
                        let mut m = json!({ "role": "assistant", "content": null, "tool_calls": [call] });
                        attach(&mut m, &mut pending);
                        messages.push(m);
                        assistant_open = true;
                    }
                }
            }
            Some("function_call_output") => {
                let call_id = item.get("call_id").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid(format!("{param}.call_id"), "function_call_output needs `call_id`"))?;
                let out = item.get("output").ok_or_else(|| TranslateError::invalid(format!("{param}.output"), "function_call_output needs `output`"))?;
                let content = tool_output_content(out, &format!("{param}.output"))?;
                messages.push(json!({ "role": "tool", "tool_call_id": call_id, "content": content }));
                assistant_open = false;
            }
            // A reasoning item this gateway made (Anthropic's thinking
            // blocks) goes back with the assistant turn after it; another's
            // (e.g. OpenAI's encrypted state) means nothing here: dropped.
            Some("reasoning") => {
                if let Some(b) = item.get("encrypted_content").and_then(Value::as_str).and_then(crate::translate::replay::decode_blocks) {
                    pending.get_or_insert_with(Vec::new).extend(b);
                }
            }
            Some(other) => {
                return Err(TranslateError::unsupported(format!("{param}.type"), format!("input item type `{other}` is not supported on this gateway")));
            }
        }
    }
    Ok(())
}

fn convert_tools(tools: &Value) -> Result<Vec<Value>, TranslateError> {
    let arr = tools.as_array().ok_or_else(|| TranslateError::invalid("tools", "tools must be an array"))?;
    let mut out = Vec::with_capacity(arr.len());
    for (i, t) in arr.iter().enumerate() {
        let ty = t.get("type").and_then(Value::as_str).unwrap_or("");
        match ty {
            "function" => {
                let name = t.get("name").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid(format!("tools[{i}].name"), "a function tool needs `name`"))?;
                let mut f = Map::new();
                f.insert("name".into(), json!(name));
                for k in ["description", "parameters", "strict"] {
                    if let Some(v) = present(t.get(k)) {
                        f.insert(k.into(), v.clone());
                    }
                }
                out.push(with_cache_control(t, json!({ "type": "function", "function": f })));
            }
            _ => {
                let what = if BUILTIN_TOOLS.contains(&ty) { "built-in tool" } else { "tool type" };
                return Err(TranslateError::unsupported(format!("tools[{i}].type"), format!("{what} `{ty}` is not supported on this gateway; only `function` tools are")));
            }
        }
    }
    Ok(out)
}

fn convert_tool_choice(tc: &Value) -> Result<Value, TranslateError> {
    match tc {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(tc.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid("tool_choice.name", "tool_choice of type function needs `name`"))?;
            Ok(json!({ "type": "function", "function": { "name": name } }))
        }
        Value::Object(o) => {
            let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
            Err(TranslateError::unsupported("tool_choice.type", format!("tool_choice of type `{ty}` is not supported")))
        }
        _ => Err(TranslateError::invalid("tool_choice", "tool_choice must be auto, none, required or {type: function, name}")),
    }
}

fn convert_text_format(text: &Value) -> Result<Option<Value>, TranslateError> {
    if !text.is_object() {
        return Err(TranslateError::invalid("text", "text must be an object"));
    }
    let Some(f) = present(text.get("format")) else { return Ok(None) };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Some(json!({ "type": "text" }))),
        Some("json_object") => Ok(Some(json!({ "type": "json_object" }))),
        Some("json_schema") => {
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid("text.format.name", "json_schema format needs `name`"))?;
            let schema = present(f.get("schema")).ok_or_else(|| TranslateError::invalid("text.format.schema", "json_schema format needs `schema`"))?;
            let mut js = Map::new();
            js.insert("name".into(), json!(name));
            js.insert("schema".into(), schema.clone());
            for k in ["strict", "description"] {
                if let Some(v) = present(f.get(k)) {
                    js.insert(k.into(), v.clone());
                }
            }
            Ok(Some(json!({ "type": "json_schema", "json_schema": js })))
        }
        _ => Err(TranslateError::invalid("text.format.type", "text.format.type must be text, json_object or json_schema")),
    }
}

impl ResponsesOverChat {
    pub(super) fn translate_request(&mut self, req: &Value) -> Result<Value, TranslateError> {
        let obj = req.as_object().ok_or_else(|| TranslateError::invalid("body", "the request body must be a JSON object"))?;
        let mut echo = Echo::default();
        let mut chat = Map::new();
        let mut messages = Vec::new();
        let mut input = None;
        for (k, v) in obj {
            if v.is_null() {
                continue;
            }
            match k.as_str() {
                "model" => {
                    if !v.is_string() {
                        return Err(TranslateError::invalid("model", "model must be a string"));
                    }
                    echo.model = v.clone();
                    chat.insert("model".into(), v.clone());
                }
                "input" => input = Some(v),
                "instructions" => {
                    if !v.is_string() {
                        return Err(TranslateError::unsupported("instructions", "instructions must be a string here"));
                    }
                    echo.instructions = v.clone();
                }
                "tools" => {
                    let tools = convert_tools(v)?;
                    echo.tools = v.clone();
                    if !tools.is_empty() {
                        chat.insert("tools".into(), Value::Array(tools));
                    }
                }
                "tool_choice" => {
                    chat.insert("tool_choice".into(), convert_tool_choice(v)?);
                    echo.tool_choice = v.clone();
                }
                "parallel_tool_calls" => {
                    let b = v.as_bool().ok_or_else(|| TranslateError::invalid("parallel_tool_calls", "must be a boolean"))?;
                    echo.parallel_tool_calls = b;
                    chat.insert("parallel_tool_calls".into(), json!(b));
                }
                "max_output_tokens" => {
                    if v.as_u64().is_none() {
                        return Err(TranslateError::invalid("max_output_tokens", "must be a positive integer"));
                    }
                    echo.max_output_tokens = v.clone();
                    chat.insert("max_completion_tokens".into(), v.clone());
                }
                "temperature" | "top_p" => {
                    if !v.is_number() {
                        return Err(TranslateError::invalid(k.clone(), "must be a number"));
                    }
                    if k == "temperature" { echo.temperature = v.clone() } else { echo.top_p = v.clone() }
                    chat.insert(k.clone(), v.clone());
                }
                "text" => {
                    if let Some(rf) = convert_text_format(v)? {
                        chat.insert("response_format".into(), rf);
                    }
                    echo.text = v.clone();
                    if present(echo.text.get("format")).is_none() {
                        echo.text["format"] = json!({ "type": "text" });
                    }
                }
                "reasoning" => {
                    if !v.is_object() {
                        return Err(TranslateError::invalid("reasoning", "reasoning must be an object"));
                    }
                    if let Some(e) = present(v.get("effort")) {
                        chat.insert("reasoning_effort".into(), e.clone());
                    }
                    echo.reasoning = json!({ "effort": v.get("effort").cloned().unwrap_or(Value::Null), "summary": Value::Null });
                }
                "stream" => {
                    let b = v.as_bool().ok_or_else(|| TranslateError::invalid("stream", "must be a boolean"))?;
                    if b {
                        chat.insert("stream".into(), json!(true));
                        chat.insert("stream_options".into(), json!({ "include_usage": true }));
                    }
                }
                // Responses' stream_options (include_obfuscation) mean nothing here.
                "stream_options" => {}
                "user" => {
                    echo.user = v.clone();
                    chat.insert("user".into(), v.clone());
                }
                // Accepted and echoed, never stored.
                "metadata" => echo.metadata = v.clone(),
                "store" => echo.store = v.clone(),
                // Extra output the gateway cannot produce: ignored.
                "include" => {}
                "truncation" => match v.as_str() {
                    Some("auto") | Some("disabled") => echo.truncation = v.clone(),
                    _ => return Err(TranslateError::invalid("truncation", "truncation must be auto or disabled")),
                },
                "previous_response_id" | "conversation" => {
                    return Err(TranslateError::unsupported(k.clone(), format!("`{k}` is not supported: the gateway keeps no conversation state; send the whole conversation in `input`")));
                }
                "background" => {
                    if v.as_bool() != Some(false) {
                        return Err(TranslateError::unsupported("background", "background responses are not supported on this gateway"));
                    }
                }
                other => {
                    return Err(TranslateError::unsupported(other.to_string(), format!("parameter `{other}` is not supported on this route")));
                }
            }
        }
        if let Some(Value::String(s)) = present(obj.get("instructions")) {
            messages.push(json!({ "role": "system", "content": s }));
        }
        match input {
            Some(i) => input_items(i, &mut messages)?,
            None => return Err(TranslateError::invalid("input", "`input` is required")),
        }
        if messages.is_empty() {
            return Err(TranslateError::invalid("input", "`input` holds no message"));
        }
        chat.insert("messages".into(), Value::Array(messages));
        self.echo = echo;
        Ok(Value::Object(chat))
    }
}
