//! The access record's JSON line, written by hand: the same bytes as
//! `serde_json::to_writer(&record)` (a property test holds them equal), at
//! about a third of the instructions. serde's derived `Serialize` escapes
//! every key as it writes it and goes through a map entry per field; here a
//! key and its punctuation are one constant copy, and a string value is
//! copied whole unless a byte in it needs escaping.

use super::access_log::{Attempt, Record};

/// Append `rec` as one JSON object (no newline).
pub fn write_record(out: &mut Vec<u8>, rec: &Record) {
    out.extend_from_slice(b"{\"ts\":");
    string(out, &rec.ts);
    out.extend_from_slice(b",\"request_id\":");
    string(out, &rec.request_id);
    out.extend_from_slice(b",\"client_ip\":");
    opt_string(out, rec.client_ip.as_deref());
    out.extend_from_slice(b",\"method\":");
    string(out, &rec.method);
    out.extend_from_slice(b",\"route\":");
    opt_string(out, rec.route);
    out.extend_from_slice(b",\"provider\":");
    opt_string(out, rec.provider);
    out.extend_from_slice(b",\"upstream_host\":");
    opt_string(out, rec.upstream_host.as_deref());
    out.extend_from_slice(b",\"path\":");
    string(out, &rec.path);
    out.extend_from_slice(b",\"status\":");
    int(out, rec.status);
    out.extend_from_slice(b",\"duration_ms\":");
    float(out, rec.duration_ms);
    out.extend_from_slice(b",\"ttfb_ms\":");
    opt_float(out, rec.ttfb_ms);
    out.extend_from_slice(b",\"request_bytes\":");
    int(out, rec.request_bytes);
    out.extend_from_slice(b",\"response_bytes\":");
    int(out, rec.response_bytes);
    out.extend_from_slice(if rec.stream { b",\"stream\":true" } else { b",\"stream\":false" });
    out.extend_from_slice(b",\"model\":");
    opt_string(out, rec.model.as_deref());
    out.extend_from_slice(b",\"input_tokens\":");
    opt_int(out, rec.input_tokens);
    out.extend_from_slice(b",\"output_tokens\":");
    opt_int(out, rec.output_tokens);
    out.extend_from_slice(b",\"cached_tokens\":");
    opt_int(out, rec.cached_tokens);
    out.extend_from_slice(b",\"cache_read_tokens\":");
    opt_int(out, rec.cache_read_tokens);
    out.extend_from_slice(b",\"cache_write_tokens\":");
    opt_int(out, rec.cache_write_tokens);
    out.extend_from_slice(b",\"reasoning_tokens\":");
    opt_int(out, rec.reasoning_tokens);
    out.extend_from_slice(b",\"cost_usd\":");
    opt_float(out, rec.cost_usd);
    out.extend_from_slice(b",\"virtual_key\":");
    opt_string(out, rec.virtual_key.as_deref());
    out.extend_from_slice(b",\"provider_key\":");
    opt_string(out, rec.provider_key.as_deref());
    out.extend_from_slice(b",\"error\":");
    opt_string(out, rec.error.as_deref());
    out.extend_from_slice(b",\"user_agent\":");
    opt_string(out, rec.user_agent.as_deref());
    // The fields below are left out when empty (skip_serializing_if).
    if let Some(id) = &rec.async_job_id {
        out.extend_from_slice(b",\"async_job_id\":");
        string(out, id);
    }
    if let Some(i) = rec.fallback_index {
        out.extend_from_slice(b",\"fallback_index\":");
        int(out, i);
    }
    if let Some(c) = rec.cache {
        out.extend_from_slice(b",\"cache\":");
        string(out, c);
    }
    if let Some(n) = rec.cache_saved_tokens {
        out.extend_from_slice(b",\"cache_saved_tokens\":");
        int(out, n);
    }
    if let Some(usd) = rec.cache_saved_usd {
        out.extend_from_slice(b",\"cache_saved_usd\":");
        float(out, usd);
    }
    if !rec.attempts.is_empty() {
        out.extend_from_slice(b",\"attempts\":[");
        for (i, a) in rec.attempts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            attempt(out, a);
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn attempt(out: &mut Vec<u8>, a: &Attempt) {
    out.extend_from_slice(b"{\"provider\":");
    string(out, &a.provider);
    out.extend_from_slice(b",\"model\":");
    string(out, &a.model);
    out.extend_from_slice(b",\"key\":");
    opt_string(out, a.key.as_deref());
    out.extend_from_slice(b",\"status\":");
    opt_int(out, a.status);
    out.extend_from_slice(b",\"error\":");
    opt_string(out, a.error.as_deref());
    out.extend_from_slice(b",\"latency_ms\":");
    float(out, a.latency_ms);
    out.push(b'}');
}

fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_int<I: itoa::Integer>(out: &mut Vec<u8>, n: Option<I>) {
    match n {
        Some(n) => int(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_float(out: &mut Vec<u8>, f: Option<f64>) {
    match f {
        Some(f) => float(out, f),
        None => out.extend_from_slice(b"null"),
    }
}

fn int<I: itoa::Integer>(out: &mut Vec<u8>, n: I) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// serde_json's own float form (`null` for NaN and infinities).
fn float(out: &mut Vec<u8>, f: f64) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &f);
}

/// Does any byte of these eight need escaping (a control byte, `"` or `\`)?
/// SWAR: the classic has-zero-byte and has-less-than tests on a word.
#[inline]
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    (below_space | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64))) != 0
}

fn needs_escape(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        if word_needs_escape(u64::from_le_bytes(c.try_into().expect("8 bytes"))) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// A JSON string, escaped exactly as serde_json escapes it.
fn string(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Rare (a path or an error text with a quote or a control byte):
    // serde_json's own escaping.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Plain text, and the bytes that need escaping, and non-ASCII.
        prop_oneof![
            "[a-zA-Z0-9 /._:-]{0,40}",
            "[\\x00-\\x1f\"\\\\a\u{7f}é€😀]{0,20}",
            any::<String>(),
        ]
    }

    fn float_value() -> impl Strategy<Value = f64> {
        prop_oneof![any::<f64>(), 0.0..10_000.0f64, Just(f64::NAN), Just(f64::INFINITY), Just(0.1 + 0.2)]
    }

    prop_compose! {
        fn attempt_value()(provider in text(), model in text(), key in proptest::option::of(text()),
                           status in proptest::option::of(any::<u16>()), error in proptest::option::of(text()),
                           latency_ms in float_value()) -> Attempt {
            Attempt { provider, model, key, status, error, latency_ms }
        }
    }

    prop_compose! {
        fn record_strings()(ts in text(), request_id in text(), client_ip in proptest::option::of(text()), method in text(),
                            upstream_host in proptest::option::of(text()), path in text(), model in proptest::option::of(text()),
                            virtual_key in proptest::option::of(text()), provider_key in proptest::option::of(text()),
                            error in proptest::option::of(text()), user_agent in proptest::option::of(text()),
                            async_job_id in proptest::option::of(text())) -> Record {
            Record { ts, request_id, client_ip, method, upstream_host, path, model, virtual_key, provider_key, error, user_agent, async_job_id, ..Default::default() }
        }
    }

    prop_compose! {
        fn record()(base in record_strings(),
                    route in proptest::option::of(prop_oneof![Just("openai"), Just("anthropic_passthrough")]),
                    provider in proptest::option::of(Just("anthropic")),
                    status in any::<u16>(), duration_ms in float_value(), ttfb_ms in proptest::option::of(float_value()),
                    request_bytes in any::<u64>(), response_bytes in any::<u64>(), stream in any::<bool>(),
                    tokens in proptest::collection::vec(proptest::option::of(any::<u64>()), 6),
                    cost_usd in proptest::option::of(float_value()),
                    fallback_index in proptest::option::of(any::<usize>()),
                    cache in proptest::option::of(Just("semantic-hit")),
                    cache_saved_tokens in proptest::option::of(any::<u64>()),
                    cache_saved_usd in proptest::option::of(float_value()),
                    attempts in proptest::collection::vec(attempt_value(), 0..3)) -> Record {
            Record {
                route, provider, status, duration_ms, ttfb_ms, request_bytes, response_bytes, stream,
                input_tokens: tokens[0], output_tokens: tokens[1], cached_tokens: tokens[2],
                cache_read_tokens: tokens[3], cache_write_tokens: tokens[4], reasoning_tokens: tokens[5],
                cost_usd, fallback_index, cache, cache_saved_tokens, cache_saved_usd, attempts,
                ..base
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The hand-written line is serde_json's line, byte for byte.
        #[test]
        fn same_bytes_as_serde(rec in record()) {
            let mut ours = Vec::new();
            write_record(&mut ours, &rec);
            let theirs = serde_json::to_vec(&rec).unwrap();
            prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(theirs).unwrap());
        }

        #[test]
        fn escape_test_agrees_with_a_byte_loop(s in any::<Vec<u8>>()) {
            prop_assert_eq!(needs_escape(&s), s.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\'));
        }
    }

    #[test]
    fn every_escape_position_in_a_word_is_seen() {
        for special in [0u8, 0x1f, b'"', b'\\', b'\n'] {
            for at in 0..17 {
                let mut s = vec![b'a'; 17];
                s[at] = special;
                assert!(needs_escape(&s), "{special:#x} at {at}");
            }
        }
        assert!(!needs_escape(b"plain text with / and \x7f and \xc3\xa9"));
        // The bytes just above the control range and around '"' and '\'.
        assert!(!needs_escape(&[0x20, 0x21, 0x23, 0x5b, 0x5d, 0x80, 0xff, 0x20, 0x21]));
    }
}
