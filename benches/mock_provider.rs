//! Mock LLM provider for the tollgate benchmark (`benches/run.sh`).
//!
//! Raw HTTP/1.1 on tokio, keep-alive, no buffering of large bodies:
//!
//! * `POST …/chat/completions`: an OpenAI chat completion (JSON with `usage`),
//!   or, when the body has `"stream": true`, an SSE stream of
//!   `chat.completion.chunk` events (chunked transfer encoding, one chunk per
//!   event), a usage chunk and `data: [DONE]`. Each event carries `ts_ns`, the
//!   wall-clock time it was written, so a client on the same machine can
//!   measure how long each event took to reach it.
//! * `POST …/v1/messages`: an Anthropic Messages answer (JSON `message` with
//!   `usage`), or with `"stream": true` Anthropic's SSE sequence
//!   (`message_start`, `content_block_start`, `content_block_delta`
//!   `text_delta` × events, `content_block_stop`, `message_delta` with
//!   `stop_reason` and `usage`, `message_stop`). The send-time stamp must
//!   survive a translation to OpenAI chunks, so it is the *text* of each
//!   `text_delta`: the decimal wall-clock ns (then padding when
//!   `x-mock-event-bytes` asks for more), read back by `driver sse --stamp
//!   content` from `choices[0].delta.content`. Requests without `x-api-key`,
//!   `anthropic-version` or `max_tokens` get Anthropic's 401 / 400 error.
//! * `GET …/download?bytes=N`: N bytes (content-length), written from a
//!   fixed 256 KiB block.
//! * `POST|PUT …/upload`: reads the request body (content-length or chunked)
//!   and discards it, answers `{"received": N}`.
//! * `GET /healthz`: 200.
//!
//! Defaults come from the command line; a request may override them with
//! headers (they pass through proxies unchanged): `x-mock-ttfb-ms`,
//! `x-mock-events`, `x-mock-eps`, `x-mock-body-bytes`, `x-mock-event-bytes`.
//! A translating gateway sends its own headers, not the client's, so the same
//! knobs are also read from the request body as `x-mock-NAME=VALUE` (e.g. in
//! the text of a message, which translation keeps); a header wins.
//!
//! ```text
//! mock_provider [--listen 127.0.0.1:9100] [--threads 2] [--ttfb-ms 0]
//!               [--events 20] [--eps 50] [--body-bytes 600] [--event-bytes 0]
//! ```
//! `--eps 0` sends the events back to back.

#[path = "common/http1.rs"]
mod http1;

use bytes::BytesMut;
use http1::{read_body, read_head, BodyKind};
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[derive(Clone)]
struct Cfg {
    ttfb_ms: u64,
    events: u64,
    eps: f64,
    body_bytes: usize,
    event_bytes: usize,
}

static BLOCK: [u8; 256 * 1024] = [b'x'; 256 * 1024];

fn usage() -> ! {
    eprintln!(
        "usage: mock_provider [--listen ADDR] [--threads N] [--ttfb-ms MS] [--events N] [--eps RATE] \
         [--body-bytes N] [--event-bytes N]"
    );
    std::process::exit(2)
}

fn main() {
    let mut listen = "127.0.0.1:9100".to_string();
    let mut threads = 2usize;
    let mut cfg = Cfg { ttfb_ms: 0, events: 20, eps: 50.0, body_bytes: 600, event_bytes: 0 };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_else(|| usage());
        match args[i].as_str() {
            "--listen" => listen = v,
            "--threads" => threads = v.parse().unwrap_or_else(|_| usage()),
            "--ttfb-ms" => cfg.ttfb_ms = v.parse().unwrap_or_else(|_| usage()),
            "--events" => cfg.events = v.parse().unwrap_or_else(|_| usage()),
            "--eps" => cfg.eps = v.parse().unwrap_or_else(|_| usage()),
            "--body-bytes" => cfg.body_bytes = v.parse().unwrap_or_else(|_| usage()),
            "--event-bytes" => cfg.event_bytes = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
        i += 2;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(&listen).await.unwrap_or_else(|e| {
            eprintln!("mock_provider: cannot listen on {listen}: {e}");
            std::process::exit(1)
        });
        eprintln!("mock_provider listening on {listen}");
        let cfg = Arc::new(cfg);
        loop {
            let (sock, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("mock_provider: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let _ = serve(sock, cfg).await;
            });
        }
    });
}

fn header_or<T: std::str::FromStr>(head: &http1::Head, name: &str, default: T) -> T {
    head.get(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A knob from the header `name`, else from `name=VALUE` in the body, else `default`.
fn knob<T: std::str::FromStr>(head: &http1::Head, body: &[u8], name: &str, default: T) -> T {
    if let Some(v) = head.get(name).and_then(|v| v.parse().ok()) {
        return v;
    }
    let mut needle = name.as_bytes().to_vec();
    needle.push(b'=');
    if let Some(i) = http1::find(body, &needle) {
        let v: Vec<u8> =
            body[i + needle.len()..].iter().take_while(|b| b.is_ascii_digit() || **b == b'.').copied().collect();
        if let Some(v) = std::str::from_utf8(&v).ok().and_then(|v| v.parse().ok()) {
            return v;
        }
    }
    default
}

fn query_param<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let q = target.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// `"stream": true` at any nesting level is good enough for a benchmark body.
fn wants_stream(body: &[u8]) -> bool {
    let mut rest = body;
    while let Some(i) = http1::find(rest, b"\"stream\"") {
        let after = &rest[i + 8..];
        let trimmed: Vec<u8> = after.iter().take(16).copied().filter(|b| !b.is_ascii_whitespace()).collect();
        if trimmed.starts_with(b":true") {
            return true;
        }
        rest = after;
    }
    false
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

async fn serve(mut s: TcpStream, cfg: Arc<Cfg>) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let Some(head) = read_head(&mut s, &mut buf).await? else { return Ok(()) };
        let (method, target) = head.request();
        let (method, target) = (method.to_string(), target.to_string());
        let path = target.split('?').next().unwrap_or("");
        let keep = !head.close;
        if head.get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let anthropic = method == "POST" && path.ends_with("/v1/messages");
        if (method == "POST" && path.ends_with("/chat/completions")) || anthropic {
            let mut body = Vec::new();
            read_body(&mut s, &mut buf, head.request_body(), |d| {
                if body.len() < 1 << 20 {
                    body.extend_from_slice(d)
                }
            })
            .await?;
            if anthropic {
                let refusal = if head.get("x-api-key").is_none_or(str::is_empty) {
                    Some(("401 Unauthorized", "authentication_error", "mock: x-api-key header is required"))
                } else if head.get("anthropic-version").is_none() {
                    Some(("400 Bad Request", "invalid_request_error", "mock: anthropic-version header is required"))
                } else if http1::find(&body, b"\"max_tokens\"").is_none() {
                    Some(("400 Bad Request", "invalid_request_error", "mock: max_tokens: Field required"))
                } else {
                    None
                };
                if let Some((status, kind, message)) = refusal {
                    let body = format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}}}}"#);
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{}",
                        body.len(),
                        if keep { "" } else { "connection: close\r\n" },
                        body
                    );
                    s.write_all(resp.as_bytes()).await?;
                    if !keep {
                        return Ok(());
                    }
                    continue;
                }
            }
            let ttfb = knob(&head, &body, "x-mock-ttfb-ms", cfg.ttfb_ms);
            if ttfb > 0 {
                tokio::time::sleep(Duration::from_millis(ttfb)).await;
            }
            if wants_stream(&body) {
                let events = knob(&head, &body, "x-mock-events", cfg.events);
                let eps = knob(&head, &body, "x-mock-eps", cfg.eps);
                let event_bytes = knob(&head, &body, "x-mock-event-bytes", cfg.event_bytes);
                if anthropic {
                    anthropic_sse(&mut s, events, eps, event_bytes, keep).await?;
                } else {
                    sse(&mut s, events, eps, event_bytes, keep).await?;
                }
            } else {
                let size = knob(&head, &body, "x-mock-body-bytes", cfg.body_bytes);
                let body = if anthropic { message_json(size) } else { completion_json(size) };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     x-request-id: req_bench\r\n{}\r\n{}",
                    body.len(),
                    if keep { "" } else { "connection: close\r\n" },
                    body
                );
                s.write_all(resp.as_bytes()).await?;
            }
        } else if path.ends_with("/download") {
            read_body(&mut s, &mut buf, head.request_body(), |_| {}).await?;
            let n: u64 = query_param(&target, "bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| header_or(&head, "x-mock-bytes", 1 << 20));
            let h = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {n}\r\n{}\r\n",
                if keep { "" } else { "connection: close\r\n" }
            );
            s.write_all(h.as_bytes()).await?;
            let mut left = n;
            while left > 0 {
                let k = left.min(BLOCK.len() as u64) as usize;
                s.write_all(&BLOCK[..k]).await?;
                left -= k as u64;
            }
        } else if path.ends_with("/upload") {
            let n = read_body(&mut s, &mut buf, head.request_body(), |_| {}).await?;
            let body = format!("{{\"received\":{n}}}");
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{}",
                body.len(),
                if keep { "" } else { "connection: close\r\n" },
                body
            );
            s.write_all(resp.as_bytes()).await?;
        } else if path == "/healthz" {
            read_body(&mut s, &mut buf, head.request_body(), |_| {}).await?;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await?;
        } else {
            read_body(&mut s, &mut buf, head.request_body(), |_| {}).await?;
            let body = r#"{"error":{"message":"mock: no such endpoint","type":"invalid_request_error"}}"#;
            let resp = format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
                body.len(),
                body
            );
            s.write_all(resp.as_bytes()).await?;
        }
        if !keep {
            return Ok(());
        }
        if matches!(head.request_body(), BodyKind::None) && buf.capacity() > 64 * 1024 {
            buf = BytesMut::with_capacity(16 * 1024);
        }
    }
}

fn completion_json(size: usize) -> String {
    let head = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":""#;
    let tail = r#""},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":42,"total_tokens":54}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut s = String::with_capacity(head.len() + pad + tail.len());
    s.push_str(head);
    for i in 0..pad {
        s.push(if i % 6 == 5 { ' ' } else { 'a' });
    }
    s.push_str(tail);
    s
}

fn chunk(payload: &str) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", payload.len()).into_bytes();
    v.extend_from_slice(payload.as_bytes());
    v.extend_from_slice(b"\r\n");
    v
}

async fn sse(s: &mut TcpStream, events: u64, eps: f64, event_bytes: usize, keep: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\
         cache-control: no-cache\r\nx-request-id: req_bench\r\n{}\r\n",
        if keep { "" } else { "connection: close\r\n" }
    );
    let content: String = if event_bytes > 0 { "t".repeat(event_bytes) } else { "tok ".to_string() };
    let start = Instant::now();
    let period = if eps > 0.0 { Some(Duration::from_secs_f64(1.0 / eps)) } else { None };
    let mut out = head.into_bytes();
    for i in 0..events {
        if i > 0 {
            if let Some(p) = period {
                tokio::time::sleep_until(start + p * i as u32).await;
            }
        }
        let ev = format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\
             \"model\":\"gpt-4o-mini-2024-07-18\",\"ts_ns\":{},\"seq\":{i},\"choices\":[{{\"index\":0,\
             \"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n",
            now_ns()
        );
        out.extend_from_slice(&chunk(&ev));
        s.write_all(&out).await?;
        out.clear();
    }
    let fin = format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\
         \"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
         data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\
         \"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\
         \"completion_tokens\":{events},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
        events + 12
    );
    out.extend_from_slice(&chunk(&fin));
    out.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&out).await
}

/// An Anthropic `message`, padded to about `size` bytes (like `completion_json`).
fn message_json(size: usize) -> String {
    let head = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":""#;
    let tail = r#""}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":42}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut s = String::with_capacity(head.len() + pad + tail.len());
    s.push_str(head);
    for i in 0..pad {
        s.push(if i % 6 == 5 { ' ' } else { 'a' });
    }
    s.push_str(tail);
    s
}

fn anthropic_event(name: &str, data: &str) -> Vec<u8> {
    chunk(&format!("event: {name}\ndata: {data}\n\n"))
}

/// Anthropic's stream. Each `text_delta`'s text is the decimal wall-clock ns at
/// which it was written (padded with " ttt…" to `event_bytes` when asked), so
/// the stamp survives the translation into `choices[0].delta.content`. The
/// first text delta goes out in the same write as `message_start` and
/// `content_block_start`; the others at `eps`, as in `sse`.
async fn anthropic_sse(s: &mut TcpStream, events: u64, eps: f64, event_bytes: usize, keep: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\
         cache-control: no-cache\r\nrequest-id: req_bench\r\n{}\r\n",
        if keep { "" } else { "connection: close\r\n" }
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(&anthropic_event(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
    ));
    out.extend_from_slice(&anthropic_event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    ));
    let start = Instant::now();
    let period = if eps > 0.0 { Some(Duration::from_secs_f64(1.0 / eps)) } else { None };
    for i in 0..events {
        if i > 0 {
            if let Some(p) = period {
                tokio::time::sleep_until(start + p * i as u32).await;
            }
        }
        let mut text = now_ns().to_string();
        if event_bytes > text.len() + 1 {
            text.push(' ');
            text.push_str(&"t".repeat(event_bytes - text.len()));
        }
        let ev = format!(r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{text}"}}}}"#);
        out.extend_from_slice(&anthropic_event("content_block_delta", &ev));
        s.write_all(&out).await?;
        out.clear();
    }
    out.extend_from_slice(&anthropic_event("content_block_stop", r#"{"type":"content_block_stop","index":0}"#));
    out.extend_from_slice(&anthropic_event(
        "message_delta",
        &format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{events}}}}}"#
        ),
    ));
    out.extend_from_slice(&anthropic_event("message_stop", r#"{"type":"message_stop"}"#));
    out.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&out).await
}
