//! GenAI: Gemini or Vertex (SPEC 1.2). Vertex is chosen by the path
//! (project/location, or express mode's `publishers/`), by a Google OAuth
//! token, or by a Vertex resource path as the body's `model`, read from the
//! first body chunk only.

use crate::providers::vertex::{is_express_path, path_project_location};

/// How a GenAI request was found to be Vertex (for the record and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VertexRule {
    ProjectPath,
    ExpressPath,
    OAuthToken,
    BodyModel,
}

/// Rule 3: `Authorization: Bearer ya29.…`.
pub fn is_google_oauth(authorization: Option<&[u8]>) -> bool {
    match authorization {
        Some(v) => {
            let v = trim_ascii(v);
            v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") && trim_ascii(&v[7..]).starts_with(b"ya29.")
        }
        None => false,
    }
}

fn trim_ascii(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &v[start..end]
}

/// Vertex by rules 1–3, which need no body. `None` means "look at the body".
pub fn genai_vertex_without_body(path: &str, authorization: Option<&[u8]>) -> Option<VertexRule> {
    if path_project_location(path).is_some() {
        Some(VertexRule::ProjectPath)
    } else if is_express_path(path) {
        Some(VertexRule::ExpressPath)
    } else if is_google_oauth(authorization) {
        Some(VertexRule::OAuthToken)
    } else {
        None
    }
}

/// Rule 4: the body's top-level `model` is a Vertex resource path.
pub fn body_model_is_vertex(model: &str) -> bool {
    model.starts_with("projects/") && model.contains("/locations/")
}

/// The top-level `"model"` string of a JSON object, from the first bytes of
/// a body only (which may be cut anywhere). Scans with a depth counter so a
/// nested `model` key (e.g. inside `messages`) is not taken.
pub fn peek_json_model(body: &[u8]) -> Option<String> {
    let mut depth = 0usize;
    let mut i = 0;
    let n = body.len();
    // Skip leading whitespace; only an object is interesting.
    while i < n && body[i].is_ascii_whitespace() {
        i += 1;
    }
    if i >= n || body[i] != b'{' {
        return None;
    }
    let mut expect_key = false;
    while i < n {
        match body[i] {
            b'{' => {
                depth += 1;
                expect_key = true;
                i += 1;
            }
            b'[' => {
                depth += 1;
                expect_key = false;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b',' => {
                // In an object the next string is a key; in an array it is
                // a value, but values at depth != 1 are ignored anyway.
                expect_key = true;
                i += 1;
            }
            b'"' => {
                let (s, end) = read_json_string(body, i)?;
                i = end;
                if depth == 1 && expect_key {
                    // skip whitespace and ':'
                    while i < n && body[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    if i < n && body[i] == b':' {
                        i += 1;
                        if s == "model" {
                            while i < n && body[i].is_ascii_whitespace() {
                                i += 1;
                            }
                            if i < n && body[i] == b'"' {
                                let (v, _) = read_json_string(body, i)?;
                                return Some(v);
                            }
                            return None;
                        }
                    }
                }
                expect_key = false;
            }
            _ => i += 1,
        }
    }
    None
}

/// Read a JSON string starting at the quote at `start`; returns the decoded
/// value (escapes other than `\"` and `\\` kept simple) and the index after it.
fn read_json_string(b: &[u8], start: usize) -> Option<(String, usize)> {
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), i + 1)),
            b'\\' => {
                let c = *b.get(i + 1)?;
                match c {
                    b'u' => {
                        let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
                        let cp = u32::from_str_radix(hex, 16).ok()?;
                        let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        i += 6;
                        continue;
                    }
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    other => out.push(other),
                }
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
        if out.len() > 4096 {
            // Not a model name; avoid copying big strings.
            return skip_json_string(b, i).map(|e| (String::new(), e));
        }
    }
    None
}

fn skip_json_string(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_rules_without_body() {
        assert_eq!(
            genai_vertex_without_body("/v1beta1/projects/p/locations/us-central1/publishers/google/models/g:generateContent", None),
            Some(VertexRule::ProjectPath)
        );
        assert_eq!(
            genai_vertex_without_body("/v1beta1/publishers/google/models/gemini-2.0-flash:generateContent", None),
            Some(VertexRule::ExpressPath)
        );
        assert_eq!(
            genai_vertex_without_body("/v1beta/models/gemini:generateContent", Some(b"Bearer ya29.abc")),
            Some(VertexRule::OAuthToken)
        );
        assert_eq!(genai_vertex_without_body("/v1beta/models/gemini:generateContent", Some(b"bearer  ya29.abc ")), Some(VertexRule::OAuthToken));
        assert_eq!(genai_vertex_without_body("/v1beta/models/gemini:generateContent", Some(b"Bearer sk-x")), None);
        assert_eq!(genai_vertex_without_body("/v1beta/models/gemini:generateContent", None), None);
        // publishers not right after the version segment is not rule 2
        assert_eq!(genai_vertex_without_body("/v1beta/models/publishers/x", None), None);
        // `/projects/P/locations/L` with nothing after it is not rule 1
        assert_eq!(genai_vertex_without_body("/v1/projects/p/locations/l", None), None);
    }

    #[test]
    fn body_model_peek() {
        let b = br#"{"contents":[{"role":"user","parts":[{"text":"hi \"model\": x"}]}],"model":"projects/p/locations/us-east1/publishers/google/models/gemini"}"#;
        let m = peek_json_model(b).unwrap();
        assert!(body_model_is_vertex(&m));
        assert_eq!(peek_json_model(br#"{"model": "gpt-4o", "messages": []}"#).as_deref(), Some("gpt-4o"));
        // nested model keys are not the top-level one
        assert_eq!(peek_json_model(br#"{"messages":[{"model":"inner"}],"model":"outer"}"#).as_deref(), Some("outer"));
        assert_eq!(peek_json_model(br#"{"a":{"model":"inner"}}"#), None);
        // cut before the model arrives
        assert_eq!(peek_json_model(br#"{"messages":[{"role":"user","content":"aaaa"#), None);
        assert_eq!(peek_json_model(br#"{"model":"gpt-4"#), None);
        assert_eq!(peek_json_model(b"not json"), None);
        assert_eq!(peek_json_model(br#"{"model":"gpt\u002d4o"}"#).as_deref(), Some("gpt-4o"));
        assert!(!body_model_is_vertex("gemini-2.0-flash"));
        assert!(!body_model_is_vertex("models/gemini-2.0-flash"));
    }

}
