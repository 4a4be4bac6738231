//! Query strings and percent-decoding, byte for byte: pairs are removed or
//! read without re-encoding the rest.

/// Percent-decode (bytes). Invalid escapes are kept literally.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = (b[i + 1] as char).to_digit(16);
            let l = (b[i + 2] as char).to_digit(16);
            if let (Some(h), Some(l)) = (h, l) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}


/// Remove every `name=value` pair whose (decoded) name is in `names`; other
/// pairs are kept byte for byte. Returns the new query (`None` when empty).
pub fn query_without(query: Option<&str>, names: &[&str]) -> Option<String> {
    let q = query?;
    let kept: Vec<&str> = q
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            let decoded = percent_decode(&name.replace('+', " "));
            !names.iter().any(|n| n.as_bytes() == decoded.as_slice())
        })
        .collect();
    let out = kept.join("&");
    (!out.is_empty()).then_some(out)
}

/// The value of query parameter `name` (raw, not decoded).
pub fn query_get<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_helpers() {
        assert_eq!(query_without(Some("key=abc&alt=sse"), &["key"]).as_deref(), Some("alt=sse"));
        assert_eq!(query_without(Some("alt=sse&%6Bey=abc"), &["key"]).as_deref(), Some("alt=sse"));
        assert_eq!(query_without(Some("key=abc"), &["key"]), None);
        assert_eq!(query_without(Some("a=1&&b=%20x&keyx=1"), &["key"]).as_deref(), Some("a=1&&b=%20x&keyx=1"));
        assert_eq!(query_get(Some("a=1&api-version=2024"), "api-version"), Some("2024"));
        assert_eq!(percent_decode("a%2Fb%zz"), b"a/b%zz".to_vec());
    }
}
