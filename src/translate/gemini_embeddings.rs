//! OpenAI Embeddings ↔ Gemini API `batchEmbedContents` ([`GeminiEmbeddings`])
//! and ↔ Vertex AI `predict` ([`VertexEmbeddings`]).
//!
//! * `input`: a string or an array of strings (each non-empty); token arrays
//!   are refused (400 `input`): Google models take text only.
//! * `dimensions` → `outputDimensionality`; `user` dropped;
//!   `encoding_format` `float` (default) or `base64`: the base64 of the
//!   little-endian `f32` bytes of the vector, which is what the openai SDKs
//!   decode (`np.frombuffer(base64.b64decode(s), dtype="float32")`); the
//!   Python SDK asks for base64 when the caller names no format.
//! * Usage: Vertex reports `statistics.token_count` per input (summed);
//!   `batchEmbedContents` reports none (usage 0, `seen` false).
//! * Errors: [`google_error`], as for chat.

use super::gemini_chat::google_error;
use super::{ClientEvent, Options, StreamEnd, TokenUsage, TranslateError, Translator};
use base64::Engine as _;
use serde_json::{json, Value};

/// What the request phase keeps for the answer.
#[derive(Debug, Default)]
struct EmbedReq {
    model: String,
    base64: bool,
    count: usize,
}

/// Validates an OpenAI embeddings request → (texts, dimensions).
fn parse_request(req: &Value, state: &mut EmbedReq) -> Result<(Vec<String>, Option<u64>), TranslateError> {
    let obj = req.as_object().ok_or_else(|| TranslateError::invalid("body", "the request body must be a JSON object"))?;
    for k in obj.keys() {
        if !["model", "input", "encoding_format", "dimensions", "user"].contains(&k.as_str()) {
            return Err(TranslateError::unsupported(k.as_str(), format!("unknown parameter {k}")));
        }
    }
    state.model = obj.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
    let token_err = || TranslateError::unsupported("input", "token arrays are not supported by this provider; send text");
    let texts: Vec<String> = match obj.get("input").unwrap_or(&Value::Null) {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if a.is_empty() => return Err(TranslateError::invalid("input", "input must not be empty")),
        Value::Array(a) => {
            if a.iter().any(|x| x.is_number() || x.is_array()) {
                return Err(token_err());
            }
            a.iter().map(|x| x.as_str().map(str::to_owned)).collect::<Option<_>>().ok_or_else(|| TranslateError::invalid("input", "expected strings"))?
        }
        Value::Null => return Err(TranslateError::invalid("input", "input is required")),
        _ => return Err(TranslateError::invalid("input", "expected a string or an array of strings")),
    };
    if let Some(i) = texts.iter().position(|t| t.is_empty()) {
        let p = if matches!(obj.get("input"), Some(Value::Array(_))) { format!("input[{i}]") } else { "input".to_owned() };
        return Err(TranslateError::invalid(p, "input must not be an empty string"));
    }
    state.base64 = match obj.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(v) if v == "float" => false,
        Some(v) if v == "base64" => true,
        _ => return Err(TranslateError::invalid("encoding_format", "expected float or base64")),
    };
    let dims = match obj.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|d| *d >= 1).ok_or_else(|| TranslateError::invalid("dimensions", "expected a positive integer"))?),
    };
    state.count = texts.len();
    Ok((texts, dims))
}

/// A vector as OpenAI sends it: floats, or base64 of little-endian f32.
fn encode(values: &[Value], base64: bool) -> Result<Value, TranslateError> {
    let floats: Vec<f64> = values.iter().map(Value::as_f64).collect::<Option<_>>().ok_or_else(|| TranslateError::bad_upstream("an embedding value is not a number"))?;
    if !base64 {
        return Ok(json!(floats));
    }
    let mut bytes = Vec::with_capacity(floats.len() * 4);
    for f in floats {
        bytes.extend_from_slice(&(f as f32).to_le_bytes());
    }
    Ok(json!(base64::engine::general_purpose::STANDARD.encode(bytes)))
}

/// The OpenAI list from the vectors.
fn openai_list(state: &EmbedReq, vectors: Vec<&[Value]>, usage: &TokenUsage) -> Result<Value, TranslateError> {
    if vectors.len() != state.count {
        return Err(TranslateError::bad_upstream(format!("the provider returned {} embeddings for {} inputs", vectors.len(), state.count)));
    }
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| Ok(json!({ "object": "embedding", "index": i, "embedding": encode(v, state.base64)? })))
        .collect::<Result<Vec<_>, TranslateError>>()?;
    Ok(json!({
        "object": "list",
        "data": data,
        "model": state.model,
        "usage": { "prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens },
    }))
}

/// OpenAI Embeddings ↔ Gemini API `models/{model}:batchEmbedContents`.
#[derive(Debug, Default)]
pub struct GeminiEmbeddings {
    req: EmbedReq,
}

impl GeminiEmbeddings {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Translator for GeminiEmbeddings {
    fn request(&mut self, req: Value, _opts: &Options) -> Result<Value, TranslateError> {
        let (texts, dims) = parse_request(&req, &mut self.req)?;
        let name = if self.req.model.starts_with("models/") { self.req.model.clone() } else { format!("models/{}", self.req.model) };
        let requests: Vec<Value> = texts
            .into_iter()
            .map(|t| {
                let mut r = json!({ "model": name, "content": { "parts": [{ "text": t }] } });
                if let Some(d) = dims {
                    r["outputDimensionality"] = json!(d);
                }
                r
            })
            .collect();
        Ok(json!({ "requests": requests }))
    }

    fn streaming(&self) -> bool {
        false
    }

    fn response(&mut self, body: Value) -> Result<Value, TranslateError> {
        let embs = body.get("embeddings").and_then(Value::as_array).ok_or_else(|| TranslateError::bad_upstream("the provider's answer has no embeddings"))?;
        let vectors = embs
            .iter()
            .map(|e| e.get("values").and_then(Value::as_array).map(Vec::as_slice))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| TranslateError::bad_upstream("an embedding has no values"))?;
        openai_list(&self.req, vectors, &TokenUsage::default())
    }

    fn stream_event(&mut self, _event: Option<&str>, _data: &str, _out: &mut Vec<ClientEvent>) {}

    fn stream_end(&mut self, _end: StreamEnd, _out: &mut Vec<ClientEvent>) {}

    fn error(&self, status: u16, body: &[u8]) -> (u16, Value) {
        google_error(status, body)
    }

    fn usage(&self) -> TokenUsage {
        TokenUsage::default()
    }

    fn response_model(&self) -> Option<String> {
        None
    }
}

/// OpenAI Embeddings ↔ Vertex AI `publishers/google/models/{model}:predict`.
#[derive(Debug, Default)]
pub struct VertexEmbeddings {
    req: EmbedReq,
    usage: TokenUsage,
}

impl VertexEmbeddings {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Translator for VertexEmbeddings {
    fn request(&mut self, req: Value, _opts: &Options) -> Result<Value, TranslateError> {
        let (texts, dims) = parse_request(&req, &mut self.req)?;
        let instances: Vec<Value> = texts.into_iter().map(|t| json!({ "content": t })).collect();
        let mut body = json!({ "instances": instances });
        if let Some(d) = dims {
            body["parameters"] = json!({ "outputDimensionality": d });
        }
        Ok(body)
    }

    fn streaming(&self) -> bool {
        false
    }

    fn response(&mut self, body: Value) -> Result<Value, TranslateError> {
        let preds = body.get("predictions").and_then(Value::as_array).ok_or_else(|| TranslateError::bad_upstream("the provider's answer has no predictions"))?;
        let mut usage = TokenUsage::default();
        let mut vectors = Vec::with_capacity(preds.len());
        for p in preds {
            let e = p.get("embeddings").ok_or_else(|| TranslateError::bad_upstream("a prediction has no embeddings"))?;
            vectors.push(e.get("values").and_then(Value::as_array).map(Vec::as_slice).ok_or_else(|| TranslateError::bad_upstream("an embedding has no values"))?);
            if let Some(n) = e.pointer("/statistics/token_count").and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f as u64))) {
                usage.input_tokens += n;
                usage.seen = true;
            }
        }
        self.usage = usage;
        openai_list(&self.req, vectors, &self.usage)
    }

    fn stream_event(&mut self, _event: Option<&str>, _data: &str, _out: &mut Vec<ClientEvent>) {}

    fn stream_end(&mut self, _end: StreamEnd, _out: &mut Vec<ClientEvent>) {}

    fn error(&self, status: u16, body: &[u8]) -> (u16, Value) {
        google_error(status, body)
    }

    fn usage(&self) -> TokenUsage {
        self.usage.clone()
    }

    fn response_model(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options::default()
    }

    fn decode_b64(s: &str) -> Vec<f32> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        bytes.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    #[test]
    fn gemini_request_single_and_batch() {
        let mut t = GeminiEmbeddings::new();
        let body = t.request(json!({"model": "gemini-embedding-001", "input": "hello", "dimensions": 768, "user": "u1"}), &opts()).unwrap();
        assert_eq!(
            body,
            json!({"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 768}]})
        );
        assert!(!t.streaming());
        let mut t = GeminiEmbeddings::new();
        let body = t.request(json!({"model": "text-embedding-004", "input": ["a", "b"]}), &opts()).unwrap();
        assert_eq!(
            body,
            json!({"requests": [
                {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
                {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}}
            ]})
        );
    }

    #[test]
    fn gemini_response_float() {
        let mut t = GeminiEmbeddings::new();
        t.request(json!({"model": "gemini-embedding-001", "input": ["a", "b"], "encoding_format": "float"}), &opts()).unwrap();
        let out = t.response(json!({"embeddings": [{"values": [0.5, -0.25]}, {"values": [1.0, 2.0]}]})).unwrap();
        assert_eq!(
            out,
            json!({
                "object": "list",
                "data": [
                    {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                    {"object": "embedding", "index": 1, "embedding": [1.0, 2.0]}
                ],
                "model": "gemini-embedding-001",
                "usage": {"prompt_tokens": 0, "total_tokens": 0}
            })
        );
        assert_eq!(t.usage(), TokenUsage::default());
        assert!(!t.usage().seen);
    }

    #[test]
    fn gemini_response_base64_decodes_to_le_f32() {
        let mut t = GeminiEmbeddings::new();
        t.request(json!({"model": "m", "input": "x", "encoding_format": "base64"}), &opts()).unwrap();
        let vals = [0.013_f64, -0.5, 3.25, 1e-7];
        let out = t.response(json!({"embeddings": [{"values": vals}]})).unwrap();
        let s = out["data"][0]["embedding"].as_str().expect("base64 string");
        let back = decode_b64(s);
        assert_eq!(back, vals.iter().map(|v| *v as f32).collect::<Vec<_>>());
        // 0.5f32 little-endian is 00 00 00 3f
        let mut t = GeminiEmbeddings::new();
        t.request(json!({"model": "m", "input": "x", "encoding_format": "base64"}), &opts()).unwrap();
        let out = t.response(json!({"embeddings": [{"values": [0.5]}]})).unwrap();
        assert_eq!(out["data"][0]["embedding"], json!("AAAAPw=="));
    }

    #[test]
    fn vertex_request_and_usage_sum() {
        let mut t = VertexEmbeddings::new();
        let body = t.request(json!({"model": "text-embedding-005", "input": ["a", "bb"], "dimensions": 256}), &opts()).unwrap();
        assert_eq!(body, json!({"instances": [{"content": "a"}, {"content": "bb"}], "parameters": {"outputDimensionality": 256}}));
        let out = t
            .response(json!({"predictions": [
                {"embeddings": {"values": [0.1, 0.2], "statistics": {"token_count": 3, "truncated": false}}},
                {"embeddings": {"values": [0.3, 0.4], "statistics": {"token_count": 5.0, "truncated": false}}}
            ]}))
            .unwrap();
        assert_eq!(out["usage"], json!({"prompt_tokens": 8, "total_tokens": 8}));
        assert_eq!(out["data"][1], json!({"object": "embedding", "index": 1, "embedding": [0.3, 0.4]}));
        assert_eq!(t.usage(), TokenUsage { input_tokens: 8, seen: true, ..Default::default() });
        let mut t = VertexEmbeddings::new();
        let body = t.request(json!({"model": "text-embedding-005", "input": "a"}), &opts()).unwrap();
        assert_eq!(body, json!({"instances": [{"content": "a"}]}));
    }

    #[test]
    fn vertex_base64() {
        let mut t = VertexEmbeddings::new();
        t.request(json!({"model": "m", "input": ["q"], "encoding_format": "base64"}), &opts()).unwrap();
        let out = t.response(json!({"predictions": [{"embeddings": {"values": [-1.5, 2.0], "statistics": {"token_count": 1, "truncated": false}}}]})).unwrap();
        assert_eq!(decode_b64(out["data"][0]["embedding"].as_str().unwrap()), vec![-1.5f32, 2.0]);
    }

    #[test]
    fn refusals() {
        let cases = [
            (json!({"model": "m", "input": [1, 2, 3]}), "input", "unsupported_parameter"),
            (json!({"model": "m", "input": [[1, 2], [3]]}), "input", "unsupported_parameter"),
            (json!({"model": "m", "input": []}), "input", "invalid_value"),
            (json!({"model": "m", "input": ""}), "input", "invalid_value"),
            (json!({"model": "m", "input": ["a", ""]}), "input[1]", "invalid_value"),
            (json!({"model": "m"}), "input", "invalid_value"),
            (json!({"model": "m", "input": "a", "encoding_format": "int8"}), "encoding_format", "invalid_value"),
            (json!({"model": "m", "input": "a", "dimensions": 0}), "dimensions", "invalid_value"),
            (json!({"model": "m", "input": "a", "task_type": "x"}), "task_type", "unsupported_parameter"),
        ];
        for (req, param, code) in cases {
            for e in [GeminiEmbeddings::new().request(req.clone(), &opts()), VertexEmbeddings::new().request(req.clone(), &opts())] {
                let e = e.expect_err(&req.to_string());
                assert_eq!((e.status, e.param.as_deref(), e.code), (400, Some(param), Some(code)), "{req}");
            }
        }
    }

    #[test]
    fn count_mismatch_is_bad_upstream() {
        let mut t = GeminiEmbeddings::new();
        t.request(json!({"model": "m", "input": ["a", "b"]}), &opts()).unwrap();
        let e = t.response(json!({"embeddings": [{"values": [1.0]}]})).unwrap_err();
        assert_eq!(e.status, 502);
        let e = t.response(json!({"nothing": 1})).unwrap_err();
        assert_eq!(e.status, 502);
    }

    #[test]
    fn errors_share_google_mapping() {
        let body = br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#;
        let (s, v) = GeminiEmbeddings::new().error(429, body);
        assert_eq!(s, 429);
        assert_eq!(v["error"]["type"], "rate_limit_error");
        let (s, v) = VertexEmbeddings::new().error(403, br#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#);
        assert_eq!((s, v["error"]["type"].as_str()), (403, Some("permission_error")));
    }

    #[test]
    fn stream_methods_are_noops() {
        let mut t = GeminiEmbeddings::new();
        let mut out = Vec::new();
        t.stream_event(None, "{}", &mut out);
        t.stream_end(StreamEnd::Complete, &mut out);
        assert!(out.is_empty());
    }
}
