//! Recorded-shape fixtures for each API family, fed whole, split at every
//! byte, one byte at a time, compressed, and cut short.

use super::*;

const OPENAI_CHAT_JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"model\": \"fake\" {usage}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":2,"audio_tokens":0}},"system_fingerprint":"fp_1"}"#;

const OPENAI_CHAT_SSE: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":2,\"total_tokens\":10,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n\
data: [DONE]\n\n";

const OPENAI_RESPONSES_JSON: &str = r#"{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"m","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi","annotations":[]}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":12},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":40},"total_tokens":123}}"#;

const OPENAI_RESPONSES_SSE: &str = "event: response.created\r\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"o4-mini-2025-04-16\",\"output\":[],\"usage\":null}}\r\n\r\n\
event: response.output_text.delta\r\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"m\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\r\n\r\n\
event: response.completed\r\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"model\":\"o4-mini-2025-04-16\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\"}]}],\"usage\":{\"input_tokens\":11,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":64,\"output_tokens_details\":{\"reasoning_tokens\":48},\"total_tokens\":75}}}\r\n\r\n";

const OPENAI_EMBEDDINGS_JSON: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,0.015797347]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;

const ANTHROPIC_JSON: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi! \"usage\": {\"input_tokens\": 999}"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":100,"cache_read_input_tokens":50,"output_tokens":12,"service_tier":"standard"}}"#;

const ANTHROPIC_SSE: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5-20251001\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":2}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

const GEMINI_JSON: &str = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":5,"totalTokenCount":40,"cachedContentTokenCount":4,"promptTokensDetails":[{"modality":"TEXT","tokenCount":9}],"thoughtsTokenCount":26},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#;

const GEMINI_SSE: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 7,\"candidatesTokenCount\": 1,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 7,\"candidatesTokenCount\": 6,\"totalTokenCount\": 13,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 7}]},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n";

const GEMINI_JSON_ARRAY: &str = r#"[{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1},"modelVersion":"gemini-2.5-pro"},
{"candidates":[{"content":{"parts":[{"text":"b"}]}}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4,"totalTokenCount":7},"modelVersion":"gemini-2.5-pro"}]"#;

const VERTEX_PREDICT_JSON: &str = r#"{"predictions":[{"embeddings":{"statistics":{"truncated":false,"token_count":6},"values":[0.1,0.2]}},{"embeddings":{"statistics":{"truncated":false,"token_count":4},"values":[0.3]}}],"metadata":{"billableCharacterCount":20}}"#;

fn u(model: &str, input: u64, output: u64, cached: u64, reasoning: u64) -> Usage {
    Usage { model: Some(model.into()), input_tokens: input, output_tokens: output, cached_tokens: cached, reasoning_tokens: reasoning, seen: true, ..Default::default() }
}

fn fixtures() -> Vec<(&'static str, ApiFamily, &'static str, &'static str, Usage)> {
    vec![
        ("openai chat json", ApiFamily::OpenAi, "application/json", OPENAI_CHAT_JSON, u("gpt-4o-2024-08-06", 19, 10, 3, 2)),
        ("openai chat sse", ApiFamily::OpenAi, "text/event-stream; charset=utf-8", OPENAI_CHAT_SSE, u("gpt-4o-mini-2024-07-18", 8, 2, 0, 0)),
        ("openai responses json", ApiFamily::OpenAi, "application/json", OPENAI_RESPONSES_JSON, u("gpt-4.1-2025-04-14", 36, 87, 12, 40)),
        ("openai responses sse", ApiFamily::OpenAi, "text/event-stream", OPENAI_RESPONSES_SSE, u("o4-mini-2025-04-16", 11, 64, 0, 48)),
        ("openai embeddings", ApiFamily::OpenAi, "application/json", OPENAI_EMBEDDINGS_JSON, u("text-embedding-3-small", 8, 0, 0, 0)),
        ("anthropic json", ApiFamily::Anthropic, "application/json", ANTHROPIC_JSON, Usage { cache_write_tokens: 100, ..u("claude-sonnet-4-5-20250929", 175, 12, 50, 0) }),
        ("anthropic sse", ApiFamily::Anthropic, "text/event-stream", ANTHROPIC_SSE, u("claude-haiku-4-5-20251001", 472, 15, 0, 0)),
        ("gemini json", ApiFamily::Gemini, "application/json; charset=UTF-8", GEMINI_JSON, u("gemini-2.5-flash", 9, 31, 4, 26)),
        ("gemini sse", ApiFamily::Gemini, "text/event-stream", GEMINI_SSE, u("gemini-2.0-flash", 7, 6, 0, 0)),
        ("gemini json array", ApiFamily::Gemini, "application/json", GEMINI_JSON_ARRAY, u("gemini-2.5-pro", 3, 4, 0, 0)),
    ]
}

fn scan(family: ApiFamily, ct: &str, enc: Option<&str>, chunks: &[&[u8]]) -> Usage {
    let mut s = UsageScanner::new(family, Some(ct), enc);
    for c in chunks {
        s.feed(c);
    }
    s.finish().clone()
}

#[test]
fn fixtures_whole_split_and_byte_by_byte() {
    for (name, fam, ct, body, want) in fixtures() {
        let b = body.as_bytes();
        assert_eq!(scan(fam, ct, None, &[b]), want, "{name}: whole");
        for cut in 0..=b.len() {
            assert_eq!(scan(fam, ct, None, &[&b[..cut], &b[cut..]]), want, "{name}: split at {cut}");
        }
        let bytes: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(scan(fam, ct, None, &bytes), want, "{name}: byte by byte");
    }
}

#[test]
fn vertex_predict_embeddings_sum_token_counts() {
    let got = scan(ApiFamily::Gemini, "application/json", None, &[VERTEX_PREDICT_JSON.as_bytes()]);
    assert_eq!((got.input_tokens, got.output_tokens, got.seen), (10, 0, true));
}

fn compress(enc: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match enc {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "raw-deflate" => {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                e.write_all(data).unwrap();
            }
            out
        }
        "zstd" => zstd::stream::encode_all(data, 3).unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn compressed_bodies_are_decoded_on_the_side() {
    for (name, fam, ct, body, want) in fixtures() {
        for enc in ["gzip", "deflate", "raw-deflate", "br", "zstd"] {
            let z = compress(enc, body.as_bytes());
            let header = if enc == "raw-deflate" { "deflate" } else { enc };
            for size in [1usize, 7, 64, 100_000] {
                let chunks: Vec<&[u8]> = z.chunks(size).collect();
                assert_eq!(scan(fam, ct, Some(header), &chunks), want, "{name} {enc} in {size}-byte chunks");
            }
        }
    }
}

#[test]
fn unknown_or_corrupt_encodings_disable_without_panicking() {
    let got = scan(ApiFamily::OpenAi, "application/json", Some("compress"), &[OPENAI_CHAT_JSON.as_bytes()]);
    assert!(!got.seen);
    let mut z = compress("gzip", OPENAI_CHAT_JSON.as_bytes());
    z[15] ^= 0xff;
    z[16] ^= 0xff;
    let _ = scan(ApiFamily::OpenAi, "application/json", Some("gzip"), &[&z]);
}

#[test]
fn a_stream_cut_midway_reports_what_was_seen() {
    let cut = ANTHROPIC_SSE.find("event: content_block_delta").unwrap();
    let mut s = UsageScanner::new(ApiFamily::Anthropic, Some("text/event-stream"), None);
    s.feed(&ANTHROPIC_SSE.as_bytes()[..cut + 10]);
    let got = s.usage().clone();
    assert_eq!(got.model.as_deref(), Some("claude-haiku-4-5-20251001"));
    assert_eq!((got.input_tokens, got.output_tokens), (472, 2));
}

#[test]
fn huge_values_do_not_grow_state_and_usage_after_them_is_found() {
    // A 5 MB embedding array and a 2 MB string before `usage`.
    let mut body = String::from(r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":["#);
    for i in 0..600_000 {
        body.push_str(if i == 0 { "0.0123456" } else { ",-0.0123456" });
    }
    body.push_str(r#"],"note":""#);
    body.push_str(&"x".repeat(2_000_000));
    body.push_str(r#""}],"model":"text-embedding-3-large","usage":{"prompt_tokens":4096,"total_tokens":4096}}"#);
    let mut s = UsageScanner::new(ApiFamily::OpenAi, Some("application/json"), None);
    let mut peak = 0;
    for c in body.as_bytes().chunks(16 * 1024) {
        s.feed(c);
        peak = peak.max(s.state_bytes());
    }
    let got = s.finish().clone();
    assert_eq!(got, u("text-embedding-3-large", 4096, 0, 0, 0));
    assert!(peak < 16 * 1024, "state grew to {peak} bytes");

    // An SSE event with a huge data line.
    let mut sse = String::from("data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"");
    sse.push_str(&"y".repeat(3_000_000));
    sse.push_str("\"}}]}\n\ndata: {\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n");
    let mut s = UsageScanner::new(ApiFamily::OpenAi, Some("text/event-stream"), Some("gzip"));
    let z = compress("gzip", sse.as_bytes());
    let mut peak = 0;
    for c in z.chunks(4096) {
        s.feed(c);
        peak = peak.max(s.state_bytes());
    }
    assert_eq!(s.finish().output_tokens, 2);
    assert!(peak < 512 * 1024, "state grew to {peak} bytes");
}

#[test]
fn deep_nesting_and_garbage_are_harmless() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let got = scan(ApiFamily::OpenAi, "application/json", None, &[deep.as_bytes()]);
    assert!(!got.seen);
    let got = scan(ApiFamily::Gemini, "text/event-stream", None, &[b"data: {{{{\n\n:comment\n\nretry: 5\n\ndata: \x00\xff\n\n"]);
    assert!(!got.seen);
}

/// A small deterministic generator (xorshift) for the fuzz-style test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn arbitrary_bytes_and_chunkings_never_panic_and_stay_bounded() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let alphabet: &[u8] = b"{}[]\":,.-0123456789eE \n\rdata:usage_tokensmodel\\ux\x00\xff";
    let families = [ApiFamily::OpenAi, ApiFamily::Anthropic, ApiFamily::Gemini];
    for round in 0..600 {
        let len = (rng.next() % 4000) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize]).collect();
        // Sometimes splice in a real fixture, sometimes mutate one.
        if round % 3 == 0 {
            let f = fixtures();
            let (_, _, _, body, _) = &f[(rng.next() % f.len() as u64) as usize];
            let mut b = body.as_bytes().to_vec();
            for _ in 0..(rng.next() % 8) {
                let i = (rng.next() % b.len() as u64) as usize;
                b[i] = alphabet[(rng.next() % alphabet.len() as u64) as usize];
            }
            data.extend(b);
        }
        let enc = [None, Some("gzip"), Some("br"), Some("zstd"), Some("deflate")][(rng.next() % 5) as usize];
        let payload = match (enc, round % 2) {
            (Some(e), 0) => compress(e, &data),
            _ => data.clone(), // also: garbage declared as compressed
        };
        let ct = if rng.next() % 2 == 0 { "text/event-stream" } else { "application/json" };
        let mut s = UsageScanner::new(families[round % 3], Some(ct), enc);
        let mut i = 0;
        while i < payload.len() {
            let n = 1 + (rng.next() % 300) as usize;
            s.feed(&payload[i..(i + n).min(payload.len())]);
            assert!(s.state_bytes() < 1024 * 1024, "round {round}: state {}", s.state_bytes());
            i += n;
        }
        let _ = s.finish();
    }
}

#[test]
fn line_ends_lf_cr_and_crlf_split_across_chunks_all_frame_events() {
    // One event whose JSON spans two data lines, framed three ways.
    let body = |eol: &str| format!("data: {{\"model\":\"m\",{eol}data: \"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":4}}}}{eol}{eol}");
    for eol in ["\n", "\r", "\r\n"] {
        let b = body(eol);
        let bytes = b.as_bytes();
        for cut in 0..=bytes.len() {
            let got = scan(ApiFamily::OpenAi, "text/event-stream", None, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!((got.input_tokens, got.output_tokens), (3, 4), "eol {eol:?} cut at {cut}");
        }
    }
}

#[test]
fn finish_reasons_per_family() {
    let mut s = UsageScanner::new(ApiFamily::OpenAi, Some("application/json"), None);
    s.feed(OPENAI_CHAT_JSON.as_bytes());
    s.finish();
    assert_eq!(s.finish_reasons(), ["stop"]);
    let mut s = UsageScanner::new(ApiFamily::Anthropic, Some("text/event-stream"), None);
    for e in [
        r#"{"type":"message_start","message":{"model":"claude","stop_reason":null,"usage":{"input_tokens":3}}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}"#,
    ] {
        s.feed(format!("data: {e}\n\n").as_bytes());
    }
    s.finish();
    assert_eq!(s.finish_reasons(), ["end_turn"]);
    let mut s = UsageScanner::new(ApiFamily::Gemini, Some("application/json"), None);
    s.feed(br#"{"candidates":[{"finishReason":"STOP"},{"finishReason":"MAX_TOKENS"}],"modelVersion":"g"}"#);
    s.finish();
    assert_eq!(s.finish_reasons(), ["STOP", "MAX_TOKENS"]);
    // A text that only looks like one is not.
    let mut s = UsageScanner::new(ApiFamily::OpenAi, Some("application/json"), None);
    s.feed(br#"{"choices":[{"message":{"content":"finish_reason stop"}}]}"#);
    s.finish();
    assert!(s.finish_reasons().is_empty());
}

#[test]
fn an_event_cut_mid_object_does_not_leak_its_keys_into_the_next() {
    // The first event breaks off three objects deep under a key named like a
    // wanted one; the scanner's frames are reused for the next event and must
    // start empty, or `prompt_tokens` would be read under the stale path.
    let sse = "data: {\"usage\":{\"x\":{\"prompt_tokens\":{\n\n\
data: {\"prompt_tokens\":99,\"model\":\"m-top\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\n";
    let mut s = UsageScanner::new(ApiFamily::OpenAi, Some("text/event-stream"), None);
    s.feed(sse.as_bytes());
    let u = s.finish().clone();
    assert_eq!((u.input_tokens, u.output_tokens, u.model.as_deref()), (5, 7, Some("m-top")));
}

/// Prompt-cache writes by TTL, from Anthropic's documented usage object, in
/// JSON and in the `message_start` / `message_delta` events.
#[test]
fn anthropic_cache_writes_by_ttl() {
    let json = r#"{"id":"msg_1","type":"message","model":"claude-sonnet-4-5","usage":{"input_tokens":10,"cache_creation_input_tokens":1000,"cache_read_input_tokens":2000,"cache_creation":{"ephemeral_5m_input_tokens":600,"ephemeral_1h_input_tokens":400},"output_tokens":5}}"#;
    let got = scan(ApiFamily::Anthropic, "application/json", None, &[json.as_bytes()]);
    assert_eq!((got.input_tokens, got.cached_tokens, got.cache_write_tokens, got.cache_write_1h_tokens, got.output_tokens), (3010, 2000, 1000, 400, 5));
    let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":1000,\"cache_read_input_tokens\":2000,\"cache_creation\":{\"ephemeral_5m_input_tokens\":1000,\"ephemeral_1h_input_tokens\":0},\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\n";
    let b = sse.as_bytes();
    for cut in 0..=b.len() {
        let got = scan(ApiFamily::Anthropic, "text/event-stream", None, &[&b[..cut], &b[cut..]]);
        assert_eq!((got.input_tokens, got.cached_tokens, got.cache_write_tokens, got.cache_write_1h_tokens, got.output_tokens), (3010, 2000, 1000, 0, 5), "split at {cut}");
    }
    // No TTL breakdown (older answers): every write is a 5-minute one.
    let json = r#"{"usage":{"input_tokens":1,"cache_creation_input_tokens":7,"output_tokens":1}}"#;
    let got = scan(ApiFamily::Anthropic, "application/json", None, &[json.as_bytes()]);
    assert_eq!((got.input_tokens, got.cache_write_tokens, got.cache_write_1h_tokens), (8, 7, 0));
}
