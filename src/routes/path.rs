//! Path safety (SPEC 1): remainders that could steer a request somewhere
//! else upstream are refused with 400 before anything is sent.

use crate::net::query::percent_decode;

/// Why a path is no route (404) or is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotFound,
    Invalid(&'static str),
}

/// Refuse remainders that could steer the request somewhere else upstream
/// (SPEC 1): checked on the raw and on the percent-decoded form (decoded
/// twice, so `%252e%252e` is caught too).
pub fn validate_remainder(rem: &str) -> Result<(), PathError> {
    if !rem.starts_with('/') {
        return Err(PathError::Invalid("path must start with /"));
    }
    if !rem.contains('%') {
        // Nothing to decode: the decoded forms are the path itself.
        return check_form(rem.as_bytes());
    }
    let once = percent_decode(rem);
    let twice = percent_decode(&String::from_utf8_lossy(&once));
    for form in [rem.as_bytes(), &once[..], &twice[..]] {
        check_form(form)?;
    }
    Ok(())
}

fn check_form(p: &[u8]) -> Result<(), PathError> {
    if p.starts_with(b"//") {
        return Err(PathError::Invalid("path must not start with //"));
    }
    if p.contains(&b'\\') {
        return Err(PathError::Invalid("path must not contain a backslash"));
    }
    if p.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(PathError::Invalid("path must not contain control bytes"));
    }
    if p.windows(3).any(|w| w == b"://") {
        return Err(PathError::Invalid("path must not contain ://"));
    }
    if p.split(|&b| b == b'/').any(|seg| seg == b"..") {
        return Err(PathError::Invalid("path must not contain a .. segment"));
    }
    let first = p[1..].split(|&b| b == b'/').next().unwrap_or_default();
    if first.contains(&b'@') {
        return Err(PathError::Invalid("path must not contain @ in its first segment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_remainders_refused() {
        for bad in [
            "//evil.com/x",
            "/%2fevil.com",
            "/v1/..",
            "/v1/../admin",
            "/v1/%2e%2e/admin",
            "/v1/.%2E/admin",
            "/v1/%252e%252e/admin",
            "/a\\b",
            "/a%5cb",
            "/http://evil.com/",
            "/x/https%3a%2f%2fevil",
            "/a\u{1}b",
            "/a%0d%0aHost:%20evil",
            "/a%00",
            "/user@evil.com/v1",
            "/user%40evil.com/v1",
            "v1/models",
        ] {
            assert!(validate_remainder(bad).is_err(), "{bad} should be refused");
        }
        for ok in [
            "/",
            "/v1/chat/completions",
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            "/v1/files/file-abc",
            "/v1/models/a@b", // @ outside the first segment
            "/v1/.well/x",
            "/v1/a..b",
            "/openai/deployments/gpt-4o/chat/completions",
        ] {
            assert_eq!(validate_remainder(ok), Ok(()), "{ok} should pass");
        }
    }

}
