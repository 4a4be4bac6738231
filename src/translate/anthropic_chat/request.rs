//! Request translation: OpenAI chat parameters → Anthropic Messages parameters.

use super::messages::{translate_messages, Breakpoints, Turn};
use super::{adaptive_effort, adaptive_thinking, get, invalid, thinking_budget, unsupported, AnthropicChat, JSON_TOOL_NAME};
use crate::translate::common::obj;
use crate::translate::{Options, TranslateError};
use serde_json::{json, Map, Value};

/// The Messages API version Claude on Vertex takes in the body.
pub(super) const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Top-level OpenAI parameters this translator knows (handled, dropped or refused).
const KNOWN_PARAMS: &[&str] = &[
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n",
    "stream", "stream_options", "user", "safety_identifier", "reasoning_effort", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "metadata", "store", "service_tier", "seed", "logprobs",
    "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "audio", "modalities",
    "prediction", "web_search_options", "functions", "function_call", "prompt_cache_key", "verbosity",
];

impl AnthropicChat {
    pub(super) fn translate_request(&mut self, obj: Map<String, Value>, opts: &Options) -> Result<Value, TranslateError> {
        for k in obj.keys() {
            if !KNOWN_PARAMS.contains(&k.as_str()) {
                return Err(unsupported(k.as_str(), format!("Unsupported parameter: '{k}' is not supported with this model.")));
            }
        }
        let mut out = Map::new();

        let model = get(&obj, "model").and_then(Value::as_str).ok_or_else(|| invalid("model", "'model' must be a string."))?;
        self.req_model = model.to_string();
        out.insert("model".into(), json!(model));

        // Parameters refused unless neutral.
        refuse_unless(&obj, "logprobs", |v| v == &json!(false))?;
        refuse_unless(&obj, "top_logprobs", |v| v.as_u64() == Some(0))?;
        refuse_unless(&obj, "logit_bias", |v| v.as_object().is_some_and(|m| m.is_empty()))?;
        refuse_unless(&obj, "presence_penalty", |v| v.as_f64() == Some(0.0))?;
        refuse_unless(&obj, "frequency_penalty", |v| v.as_f64() == Some(0.0))?;
        refuse_unless(&obj, "audio", |_| false)?;
        refuse_unless(&obj, "modalities", |v| v == &json!(["text"]))?;
        refuse_unless(&obj, "prediction", |_| false)?;
        refuse_unless(&obj, "web_search_options", |_| false)?;
        refuse_unless(&obj, "functions", |_| false)?;
        refuse_unless(&obj, "function_call", |_| false)?;
        refuse_unless(&obj, "verbosity", |_| false)?;
        refuse_unless(&obj, "service_tier", |v| matches!(v.as_str(), Some("auto") | Some("default")))?;
        // Dropped: metadata, store (stored completions), seed (best effort in OpenAI, no
        // Anthropic equivalent), prompt_cache_key (cache routing hint only).

        if let Some(n) = get(&obj, "n") {
            match n.as_u64() {
                Some(1) => {}
                Some(x) if x > 1 => return Err(unsupported("n", "Only n=1 is supported with this model.")),
                _ => return Err(invalid("n", "'n' must be a positive integer.")),
            }
        }

        // stream
        if let Some(s) = get(&obj, "stream") {
            self.stream = s.as_bool().ok_or_else(|| invalid("stream", "'stream' must be a boolean."))?;
        }
        if self.stream {
            out.insert("stream".into(), json!(true));
            if let Some(so) = get(&obj, "stream_options") {
                let so = so.as_object().ok_or_else(|| invalid("stream_options", "'stream_options' must be an object."))?;
                if let Some(iu) = get(so, "include_usage") {
                    self.include_usage = iu
                        .as_bool()
                        .ok_or_else(|| invalid("stream_options.include_usage", "'include_usage' must be a boolean."))?;
                }
            }
        }

        // max tokens
        let mut explicit_max: Option<(&'static str, u64)> = None;
        for p in ["max_completion_tokens", "max_tokens"] {
            if let Some(v) = get(&obj, p) {
                let n = v.as_u64().filter(|n| *n >= 1).ok_or_else(|| invalid(p, format!("'{p}' must be a positive integer.")))?;
                if explicit_max.is_none() {
                    explicit_max = Some((p, n));
                }
            }
        }

        // thinking
        let mut budget = None;
        if let Some(e) = get(&obj, "reasoning_effort") {
            let s = e.as_str().unwrap_or("");
            budget = thinking_budget(s).ok_or_else(|| {
                invalid("reasoning_effort", "'reasoning_effort' must be one of none, minimal, low, medium, high, xhigh.")
            })?;
        }
        // Claude 4.6 and later think adaptively (4.7 and later only so):
        // the effort is named, the budget is the model's; a small maximum
        // is then not refused (the model thinks less).
        let adaptive = budget.is_some() && adaptive_thinking(&self.req_model);
        let max_tokens = match (explicit_max, budget) {
            (Some((p, n)), Some(b)) if n <= b && !adaptive => {
                return Err(invalid(
                    p,
                    format!("'{p}' ({n}) must be greater than the thinking budget ({b} tokens) used for this reasoning_effort."),
                ))
            }
            (Some((_, n)), _) => n,
            (None, Some(b)) => opts.default_max_tokens.max(1).saturating_add(b),
            (None, None) => opts.default_max_tokens.max(1),
        };
        out.insert("max_tokens".into(), json!(max_tokens));
        match budget {
            Some(_) if adaptive => {
                let effort = obj.get("reasoning_effort").and_then(Value::as_str).and_then(adaptive_effort).unwrap_or("high");
                out.insert("thinking".into(), json!({"type": "adaptive"}));
                out.insert("output_config".into(), json!({"effort": effort}));
            }
            Some(b) => {
                out.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": b}));
            }
            None => {}
        }

        // sampling
        if let Some(t) = get(&obj, "temperature") {
            let t = t.as_f64().ok_or_else(|| invalid("temperature", "'temperature' must be a number."))?;
            if !(0.0..=2.0).contains(&t) {
                return Err(invalid("temperature", "'temperature' must be between 0 and 2."));
            }
            if t > 1.0 {
                return Err(unsupported("temperature", "This model supports 'temperature' between 0 and 1 only."));
            }
            if budget.is_some() {
                if t != 1.0 {
                    return Err(unsupported("temperature", "'temperature' cannot be changed together with 'reasoning_effort'."));
                }
            } else {
                out.insert("temperature".into(), json!(t));
            }
        }
        if let Some(p) = get(&obj, "top_p") {
            let p = p.as_f64().filter(|p| (0.0..=1.0).contains(p)).ok_or_else(|| invalid("top_p", "'top_p' must be a number between 0 and 1."))?;
            if budget.is_some() && p < 0.95 {
                return Err(unsupported("top_p", "With 'reasoning_effort', 'top_p' must be between 0.95 and 1."));
            }
            out.insert("top_p".into(), json!(p));
        }
        if let Some(s) = get(&obj, "stop") {
            let seqs: Vec<Value> = match s {
                Value::String(x) => vec![json!(x)],
                Value::Array(a) if a.iter().all(Value::is_string) => a.clone(),
                _ => return Err(invalid("stop", "'stop' must be a string or an array of strings.")),
            };
            if !seqs.is_empty() {
                out.insert("stop_sequences".into(), Value::Array(seqs));
            }
        }
        for p in ["safety_identifier", "user"] {
            if let Some(u) = get(&obj, p) {
                let u = u.as_str().ok_or_else(|| invalid(p, format!("'{p}' must be a string.")))?;
                if !out.contains_key("metadata") {
                    out.insert("metadata".into(), json!({"user_id": u}));
                }
            }
        }

        // tools (their prompt-cache breakpoints come first, as Anthropic
        // reads the prompt: tools, system, messages)
        let mut marks = Breakpoints::default();
        let mut tools = Vec::new();
        if let Some(ts) = get(&obj, "tools") {
            let ts = ts.as_array().ok_or_else(|| invalid("tools", "'tools' must be an array."))?;
            for (i, t) in ts.iter().enumerate() {
                let mut tool = translate_tool(t, i)?;
                marks.carry(t, &mut tool, &format!("tools[{i}]"))?;
                tools.push(tool);
            }
        }
        let mut tool_choice: Option<Value> = None;
        if let Some(tc) = get(&obj, "tool_choice") {
            let c = match tc {
                Value::String(s) => match s.as_str() {
                    "auto" => json!({"type": "auto"}),
                    "none" => json!({"type": "none"}),
                    "required" => json!({"type": "any"}),
                    _ => return Err(invalid("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or a function.")),
                },
                Value::Object(m) if m.get("type").and_then(Value::as_str) == Some("function") => {
                    let name = m
                        .get("function")
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid("tool_choice.function.name", "'tool_choice.function.name' must be a string."))?;
                    json!({"type": "tool", "name": name})
                }
                Value::Object(_) => return Err(unsupported("tool_choice", "Only 'function' tool choices are supported with this model.")),
                _ => return Err(invalid("tool_choice", "'tool_choice' must be a string or an object.")),
            };
            if tools.is_empty() {
                if matches!(c["type"].as_str(), Some("any") | Some("tool")) {
                    return Err(invalid("tool_choice", "'tool_choice' requires 'tools'."));
                }
            } else {
                if budget.is_some() && matches!(c["type"].as_str(), Some("any") | Some("tool")) {
                    return Err(unsupported("tool_choice", "Forcing tool use is not supported together with 'reasoning_effort'."));
                }
                tool_choice = Some(c);
            }
        }
        if let Some(ptc) = get(&obj, "parallel_tool_calls") {
            let ptc = ptc.as_bool().ok_or_else(|| invalid("parallel_tool_calls", "'parallel_tool_calls' must be a boolean."))?;
            if !ptc && !tools.is_empty() {
                let c = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
                if c["type"] != "none" {
                    c["disable_parallel_tool_use"] = json!(true);
                }
            }
        }

        // response_format
        if let Some(rf) = get(&obj, "response_format") {
            let kind = rf.get("type").and_then(Value::as_str);
            let schema_tool = match kind {
                Some("text") => None,
                Some("json_object") => Some(json!({
                    "name": JSON_TOOL_NAME,
                    "description": "Respond with a JSON object.",
                    "input_schema": {"type": "object"},
                })),
                Some("json_schema") => {
                    let js = rf.get("json_schema").and_then(Value::as_object);
                    let schema = js.and_then(|m| get(m, "schema")).cloned().unwrap_or_else(|| json!({"type": "object"}));
                    if schema.get("type").and_then(Value::as_str) != Some("object") {
                        return Err(unsupported(
                            "response_format.json_schema.schema",
                            "Only JSON schemas whose top-level type is 'object' are supported with this model.",
                        ));
                    }
                    let desc = js
                        .and_then(|m| get(m, "description"))
                        .and_then(Value::as_str)
                        .unwrap_or("Respond with a JSON object matching the schema.");
                    Some(json!({"name": JSON_TOOL_NAME, "description": desc, "input_schema": schema}))
                }
                _ => return Err(invalid("response_format", "'response_format.type' must be 'text', 'json_object' or 'json_schema'.")),
            };
            if let Some(t) = schema_tool {
                if !tools.is_empty() {
                    return Err(unsupported("response_format", "'response_format' JSON modes cannot be combined with 'tools' for this model."));
                }
                if budget.is_some() {
                    return Err(unsupported("response_format", "'response_format' JSON modes cannot be combined with 'reasoning_effort' for this model."));
                }
                self.json_mode = true;
                tools.push(t);
                tool_choice = Some(json!({"type": "tool", "name": JSON_TOOL_NAME, "disable_parallel_tool_use": true}));
            }
        }
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
        if let Some(c) = tool_choice {
            out.insert("tool_choice".into(), c);
        }

        // messages
        let msgs = get(&obj, "messages").and_then(Value::as_array).ok_or_else(|| invalid("messages", "'messages' must be a non-empty array."))?;
        if msgs.is_empty() {
            return Err(invalid("messages", "'messages' must be a non-empty array."));
        }
        let (mut system, turns) = translate_messages(msgs, &mut marks)?;
        marks.check()?;
        if !system.is_empty() {
            // One plain text is sent as a string; several, or any carrying
            // a cache_control, as a block array.
            let plain = system.len() == 1 && system[0].as_object().is_some_and(|o| o.len() == 2);
            let sys = if plain { system[0]["text"].take() } else { Value::Array(system) };
            out.insert("system".into(), sys);
        }
        if turns.is_empty() {
            return Err(invalid("messages", "'messages' must contain at least one non-system message with content."));
        }
        out.insert("messages".into(), Value::Array(turns.into_iter().map(Turn::into_value).collect()));
        if self.vertex {
            out.remove("model");
            out.insert("anthropic_version".into(), json!(VERTEX_ANTHROPIC_VERSION));
        }
        Ok(Value::Object(out))
    }
}

/// 400 `unsupported_parameter` for `key` unless absent, null or `neutral`.
fn refuse_unless(obj: &Map<String, Value>, key: &str, neutral: impl Fn(&Value) -> bool) -> Result<(), TranslateError> {
    match get(obj, key) {
        Some(v) if !neutral(v) => Err(unsupported(key, format!("Unsupported parameter: '{key}' is not supported with this model."))),
        _ => Ok(()),
    }
}

fn translate_tool(t: &Value, i: usize) -> Result<Value, TranslateError> {
    let kind = t.get("type").and_then(Value::as_str);
    if kind != Some("function") {
        return Err(unsupported(format!("tools[{i}].type"), "Only 'function' tools are supported with this model."));
    }
    let f = t.get("function").and_then(Value::as_object).ok_or_else(|| invalid(format!("tools[{i}].function"), "'function' must be an object."))?;
    let name = get(f, "name").and_then(Value::as_str).ok_or_else(|| invalid(format!("tools[{i}].function.name"), "'name' must be a string."))?;
    let schema = match get(f, "parameters") {
        None => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(invalid(format!("tools[{i}].function.parameters"), "'parameters' must be an object.")),
    };
    let mut tool = obj!("name" => name, "input_schema" => schema);
    if let Some(d) = get(f, "description").and_then(Value::as_str) {
        tool["description"] = json!(d);
    }
    Ok(tool)
}
