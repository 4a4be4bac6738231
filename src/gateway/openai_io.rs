//! The I/O of an `/openai` exchange: the client's body read whole (bounded),
//! the provider request sent over Pingora's connector (retried on another key
//! only when the connection failed, before anything was sent), and the
//! answer relayed to the client chunk by chunk: bytes unchanged for an
//! OpenAI-shaped provider, or translated event by event. A client that goes
//! away ends the upstream request at once; a provider stream that is cut
//! ends the client stream cleanly with an error event.

use crate::net::BaseUrl;
use crate::observe::usage::{ApiFamily, Usage, UsageScanner};
use crate::routes::openai::Endpoint;
use serde_json::Value;
use super::sink::{json, Sink};
use super::{Ctx, Gateway};
use crate::errors::GatewayError;
use crate::net::build_peer;
use crate::observe::metrics::METRICS;
use crate::routes::headers;
use crate::translate::sse::{encode, SseParser};
use crate::routing::Failure;
use crate::translate::{ClientEvent, StreamEnd, Translator};
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use std::time::{Duration, Instant};

/// A provider's whole answer (non-streaming JSON or an error) is read up to
/// this; a larger one is a 502.
const MAX_WHOLE_RESPONSE: usize = 64 * 1024 * 1024;

/// A provider's error answer that another target may replace is held
/// whole up to this (error bodies are small).
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// How the answer comes back.
pub(super) enum Mode {
    /// An OpenAI-shaped provider: the answer's bytes go to the client as
    /// sent; usage from the scanner.
    Passthrough,
    /// Translated both ways.
    Translated(Box<dyn Translator>),
}

/// An admitted `/openai` request: everything the exchange needs, with no
/// reference to the client's session (an async job runs it later).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Prepared {
    pub endpoint: Endpoint,
    pub provider: String,
    /// The provider's own model name.
    pub model: String,
    /// The client's request, `model` renamed; `Null` when the admission's
    /// translation took it (then `raw` has it for other candidates).
    pub req: Value,
    /// The client's body as sent, kept when the request was translated at
    /// admission and another candidate may need it (SPEC 10).
    #[serde(skip)]
    pub raw: Option<bytes::Bytes>,
    /// The client's headers less credentials, control and hop-by-hop ones.
    pub headers: Vec<(String, String)>,
    /// The reasoning replay memos the client's rebuilt turns lacked (SPEC
    /// 8), restored into each translated attempt's request.
    #[serde(default)]
    pub memos: std::collections::HashMap<String, crate::translate::replay::Memo>,
    /// The client's `api-version` query value (Azure).
    pub api_version: Option<String>,
    /// The client's own key (direct keys); never stored.
    #[serde(skip)]
    pub direct: Option<String>,
    /// The client's own key for each candidate's provider (direct keys);
    /// never stored.
    #[serde(skip)]
    pub directs: Vec<Option<String>>,
    /// The client-named Azure endpoint (with its own key only; the first
    /// candidate only).
    #[serde(skip)]
    pub client_base: Option<BaseUrl>,
    /// Where it may go (SPEC 10).
    #[serde(default)]
    pub route: super::openai_route::RoutePlan,
    /// What the response cache does for it (SPEC 11); never stored.
    #[serde(skip)]
    pub cache: Option<super::response_cache::CachePlan>,
}

/// What admission decided.
pub(super) enum Admitted {
    /// Refused; the answer is written.
    Answered,
    /// Admitted; for a synchronous translated request also the translation
    /// made at admission (to refuse what the provider cannot honour), so
    /// that execution does not translate the request a second time.
    Ready(Prepared, Option<Translated>),
}

/// A request translated at admission: the translator (it keeps what the
/// answer's translation needs) and the provider's request body, written.
pub(super) struct Translated {
    pub translator: Box<dyn Translator>,
    pub body: Vec<u8>,
}

/// The record's usage from a translator's.
pub(super) fn usage_of(t: &dyn Translator) -> Usage {
    let u = t.usage();
    Usage {
        model: t.response_model(),
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cached_tokens: u.cached_tokens,
        reasoning_tokens: u.reasoning_tokens,
        cache_write_tokens: u.cache_write_tokens,
        cache_write_1h_tokens: u.cache_write_1h_tokens,
        seen: u.seen,
    }
}

/// The scanner for an OpenAI-shaped answer.
pub(super) fn passthrough_scanner(content_type: Option<&str>, content_encoding: Option<&str>) -> UsageScanner {
    UsageScanner::new(ApiFamily::OpenAi, content_type, content_encoding)
}

pub(super) enum BodyRead {
    Whole(Vec<u8>),
    TooLarge,
}

/// Read the client's body whole, refusing it once it passes `limit`.
pub(super) async fn read_whole_body(session: &mut Session, limit: u64) -> Result<BodyRead> {
    let mut body = Vec::new();
    while let Some(chunk) = session.as_mut().read_request_body().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Ok(BodyRead::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(BodyRead::Whole(body))
}

/// The provider request, ready to send.
pub(super) struct Upstream {
    pub head: RequestHeader,
    pub body: Bytes,
}

impl Gateway {
    /// Send the request and relay the answer. `Answered` once anything
    /// reached the client (the answer, or an error that does not move on);
    /// `Failed` with the error to answer when the attempt failed before the
    /// first byte went out, so that the routing loop may try elsewhere.
    pub(super) async fn run_exchange(&self, sink: &mut dyn Sink, ctx: &mut Ctx, mut req: Upstream, mut mode: Mode) -> Result<AttemptEnd> {
        let (mut http, peer) = match self.connect(ctx).await {
            Ok(c) => c,
            Err((kind, msg)) => {
                METRICS.upstream_errors.with_label_values(&[ctx.provider_label(), kind.kind()]).inc();
                return Ok(AttemptEnd::failed(Failure::Connect, None, Reply::Gateway(kind, msg)));
            }
        };
        // The credential and host of the key finally used, set only here:
        // an identity's token is fetched while connecting, and a connect
        // failure may have moved the request to another key (and Azure
        // endpoint). The head carries no credential before this
        // (`provider_head`).
        if let Some(up) = &ctx.target.upstream {
            req.head.insert_header("host", up.authority.as_str())?;
        }
        if let Some((name, value)) = &ctx.cred.inject {
            req.head.insert_header(*name, value.as_str())?;
        }
        if let Some(q) = &ctx.cred.quota_project {
            req.head.insert_header("x-goog-user-project", q.as_str())?;
        }
        if let Some(t) = &ctx.trace {
            super::upstream::set_trace_headers(&mut req.head, t);
        }
        let deadline = ctx.timing.start + ctx.live.config.timeouts.total;
        let authority = ctx.target.upstream.as_ref().map_or(String::new(), |u| u.authority.clone());
        let sent = async {
            http.write_request_header(Box::new(req.head)).await?;
            http.write_request_body(req.body, true).await?;
            http.finish_request_body().await?;
            http.read_response_header().await
        };
        // Each write and read is bounded by the read/write timeouts, capped
        // at what was left of the total when connecting (`connect`); no
        // tokio timer (registering one per request woke the runtime's
        // parked I/O driver through its eventfd every time).
        let sent = sent.await.map_err(|e| {
            // A silent provider (no head within the read timeout) is a
            // timeout whatever the error's source says.
            let kind = match e.etype() {
                ErrorType::ReadTimedout | ErrorType::WriteTimedout => GatewayError::UpstreamTimeout,
                _ => GatewayError::from_proxy_error(&e).unwrap_or(GatewayError::UpstreamError),
            };
            (kind, e.to_string())
        });
        if let Err((kind, detail)) = sent {
            let kind = if kind == GatewayError::UpstreamUnreachable { GatewayError::UpstreamError } else { kind };
            return Ok(self.upstream_failed(ctx, kind, &authority, &detail));
        }
        let resp = http.response_header().cloned().ok_or_else(|| Error::explain(ErrorType::InternalError, "no response header"))?;
        ctx.timing.ttfb = Some(ctx.timing.start.elapsed());
        self.watch_key_health(&resp, ctx).await;
        let status = resp.status.as_u16();
        ctx.outcome.upstream_status = Some(status);
        if status >= 400 && Failure::Status(status).moves_on() {
            // An error that may succeed elsewhere: read whole (bounded) and
            // handed to the routing loop, which answers it only when nothing
            // else is tried.
            let (body, fault) = read_whole(&mut http, deadline, MAX_ERROR_BODY).await;
            if fault.is_none() {
                self.connector.release_http_session(http, &peer, Some(Duration::from_secs(60))).await;
            }
            let retry_after_raw = resp.headers.get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
            let retry_after = retry_after_raw.as_deref().and_then(crate::routing::attempts::parse_retry_after);
            ctx.outcome.error_detail = Some(format!("provider answered {status}"));
            let reply = match &mut mode {
                Mode::Passthrough => {
                    let mut out = resp;
                    headers::to_client(&mut out, &ctx.request_id);
                    out.remove_header("transfer-encoding");
                    out.insert_header("content-length", body.len().to_string())?;
                    Reply::Raw(out, Bytes::from(body))
                }
                Mode::Translated(tr) => {
                    let (st, err) = tr.error(status, &body);
                    Reply::Json { status: st, body: err.to_string().into_bytes(), retry_after: retry_after_raw }
                }
            };
            return Ok(AttemptEnd::failed(Failure::Status(status), retry_after, reply));
        }
        let relayed = match &mut mode {
            Mode::Passthrough => self.relay_bytes(sink, ctx, &mut http, resp, deadline).await?,
            Mode::Translated(tr) if status >= 400 => {
                let (body, fault) = read_whole(&mut http, deadline, MAX_WHOLE_RESPONSE).await;
                let (st, err) = tr.error(status, &body);
                let retry_after = resp.headers.get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
                ctx.outcome.error_detail = Some(format!("provider answered {status}"));
                json(sink, st, err.to_string().as_bytes(), &ctx.request_id, retry_after.as_deref()).await?;
                Relayed::Done(fault.is_none())
            }
            Mode::Translated(tr) if !tr.streaming() => {
                let (body, fault) = read_whole(&mut http, deadline, MAX_WHOLE_RESPONSE).await;
                if fault == Some(GatewayError::UpstreamTimeout) {
                    // Nothing was sent to the client yet: a 504, as a
                    // provider silent before its head gets.
                    return Ok(self.upstream_failed(ctx, GatewayError::UpstreamTimeout, &authority, "the answer's body timed out"));
                }
                let complete = fault.is_none();
                let out = if complete {
                    let mut trace = ctx.trace.as_mut().map(|t| move |v: &serde_json::Value| t.answer().object(ApiFamily::OpenAi, v));
                    crate::translate::whole_answer(tr.as_mut(), &body, trace.as_mut().map(|f| f as &mut dyn FnMut(&serde_json::Value)))
                } else {
                    Err(crate::translate::TranslateError::bad_upstream("the provider's answer was cut or is not JSON"))
                };
                ctx.outcome.usage = Some(Box::new(usage_of(tr.as_ref())));
                match out {
                    Ok(bytes) => {
                        // Before the client has the answer: its next turn
                        // may follow at once.
                        let memos = tr.replay_memos();
                        self.remember_reasoning(ctx, memos).await;
                        json(sink, 200, &bytes, &ctx.request_id, None).await?
                    }
                    Err(e) => {
                        // A cut or broken answer, nothing sent yet: another
                        // target may answer.
                        METRICS.upstream_errors.with_label_values(&[ctx.provider_label(), GatewayError::UpstreamError.kind()]).inc();
                        return Ok(AttemptEnd::failed(Failure::Status(502), None, Reply::OpenAi(e)));
                    }
                }
                Relayed::Done(complete)
            }
            Mode::Translated(tr) => {
                let relayed = self.relay_events(sink, ctx, &mut http, tr.as_mut(), deadline).await;
                ctx.outcome.usage = Some(Box::new(usage_of(tr.as_ref())));
                relayed?
            }
        };
        match relayed {
            Relayed::Done(clean) => {
                if clean {
                    self.connector.release_http_session(http, &peer, Some(Duration::from_secs(60))).await;
                }
                Ok(AttemptEnd::Answered)
            }
            // The provider failed before the first byte reached the client.
            Relayed::NothingSent(kind) => Ok(self.upstream_failed(ctx, kind, &authority, "the answer ended before its first byte")),
        }
    }

    /// The provider failed after the request was sent and before anything
    /// reached the client: counted and logged; the attempt failed with `kind`.
    fn upstream_failed(&self, ctx: &mut Ctx, kind: GatewayError, authority: &str, detail: &str) -> AttemptEnd {
        METRICS.upstream_errors.with_label_values(&[ctx.provider_label(), kind.kind()]).inc();
        log::warn!("/openai: {} ({authority}): {detail}", kind.describe());
        let failure = if kind == GatewayError::UpstreamTimeout { Failure::Timeout } else { Failure::Status(502) };
        AttemptEnd::failed(failure, None, Reply::Gateway(kind, format!("{} ({authority})", kind.describe())))
    }

    /// Connect to the planned upstream, on another key after a connect
    /// failure (nothing was sent), up to `connect_retries` times.
    async fn connect(&self, ctx: &mut Ctx) -> std::result::Result<(HttpSession, HttpPeer), (GatewayError, String)> {
        loop {
            self.identity_token(ctx).await.map_err(|m| (GatewayError::CredentialUnavailable, m))?;
            let up = ctx.target.upstream.clone().ok_or((GatewayError::Internal, "no upstream planned".to_string()))?;
            let addr = self.resolver.resolve(&up.host, up.port, ctx.cred.connect_attempts).await;
            if let Some(t) = ctx.trace.as_mut() {
                t.upstream_attempt(&super::upstream::outgoing(&up));
            }
            let attempt = match addr {
                Ok(addr) => {
                    let peer = build_peer(&up, addr, &ctx.live.config.timeouts);
                    match self.connector.get_http_session(&peer).await {
                        Ok((mut http, reused)) => {
                            if let Some(t) = &ctx.trace {
                                t.connected(reused);
                            }
                            // The total deadline caps every read and write
                            // from here on, as on the passthrough routes.
                            let t = ctx.live.config.timeouts.within(ctx.timing.start.elapsed());
                            http.set_read_timeout(Some(t.read));
                            http.set_write_timeout(Some(t.write));
                            return Ok((http, peer));
                        }
                        Err(e) => (GatewayError::from_proxy_error(&e).unwrap_or(GatewayError::UpstreamUnreachable), e.to_string()),
                    }
                }
                Err(e) => (GatewayError::UpstreamUnreachable, e.0),
            };
            ctx.cred.connect_attempts += 1;
            if let Some(t) = &ctx.trace {
                t.connect_failed(attempt.0.kind());
            }
            log::warn!("/openai: connect to {} failed: {}", up.authority, attempt.1);
            let limit = ctx.live.config.connect_retries.min(ctx.cred.connect_budget.unwrap_or(usize::MAX));
            if ctx.cred.connect_attempts > limit {
                return Err((attempt.0, format!("{} ({})", attempt.0.describe(), up.authority)));
            }
            // Another configured key when there is one (Azure keys carry
            // their own endpoints); the same one again otherwise.
            if let (Some(provider), Some(name)) = (ctx.target.provider, ctx.cred.key_name.clone()) {
                if name != "direct" && ctx.live.config.provider(provider).is_some_and(|c| c.keys.len() > 1) {
                    ctx.cred.tried_keys.push(name);
                    let previous = ctx.cred.inject.take();
                    if self.choose_configured_key(ctx, provider).is_err() {
                        ctx.cred.tried_keys.clear();
                        ctx.cred.inject = previous;
                    } else if provider == crate::providers::Provider::Azure {
                        let ctx = &mut **ctx;
                        let key = ctx.live.config.provider(provider).and_then(|c| c.keys.iter().find(|k| Some(&k.name) == ctx.cred.key_name.as_ref()));
                        if let (Some(ep), Some(up)) = (key.and_then(|k| k.endpoint.as_ref()), ctx.target.upstream.as_mut()) {
                            let pq = up.path_and_query.clone();
                            *up = crate::net::Upstream::at(ep, &pq);
                        }
                    }
                }
            }
        }
    }

    /// An OpenAI-shaped answer: head and bytes as the provider sent them.
    async fn relay_bytes(&self, sink: &mut dyn Sink, ctx: &mut Ctx, http: &mut HttpSession, resp: ResponseHeader, deadline: Instant) -> Result<Relayed> {
        let mut out = resp;
        headers::to_client(&mut out, &ctx.request_id);
        let header = |n: &str| out.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let ct = header("content-type");
        ctx.outcome.stream = ct.as_deref().is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        if out.status.is_success() {
            ctx.outcome.scanner = Some(passthrough_scanner(ct.as_deref(), header("content-encoding").as_deref()));
            if let Some(t) = ctx.trace.as_mut() {
                t.response_start(Some(ApiFamily::OpenAi), ct.as_deref(), header("content-encoding").as_deref());
            }
        }
        // The head goes out with the first chunk: until then the attempt
        // may still be replaced (SPEC 10).
        let mut head = Some(out);
        loop {
            match next_chunk(sink, http, deadline).await {
                Next::Chunk(b) => {
                    if let Some(h) = head.take() {
                        sink.head(h).await?;
                    }
                    if let Some(s) = ctx.outcome.scanner.as_mut() {
                        s.feed(&b);
                    }
                    if let Some(t) = ctx.trace.as_mut() {
                        t.response_body(Some(&b), false);
                    }
                    sink.body(Some(b), false).await?;
                }
                Next::End => {
                    if let Some(h) = head.take() {
                        sink.head(h).await?;
                    }
                    if let Some(s) = ctx.outcome.scanner.as_mut() {
                        s.finish();
                    }
                    if let Some(t) = ctx.trace.as_mut() {
                        t.response_body(None, true);
                    }
                    sink.body(None, true).await?;
                    return Ok(Relayed::Done(true));
                }
                Next::UpstreamFailed(kind) if head.is_some() => return Ok(Relayed::NothingSent(kind)),
                Next::UpstreamFailed(kind) => {
                    ctx.outcome.error = Some(kind);
                    // A stream says it was cut with an error event, and no
                    // `[DONE]` (SPEC 8 and 10); another body just ends
                    // where the provider's did.
                    if ctx.outcome.stream {
                        let err = crate::translate::openai_error("the provider stream was cut before its end", "upstream_error", None, Some("stream_cut"));
                        sink.body(Some(Bytes::from(format!("data: {err}\n\n"))), false).await?;
                    }
                    sink.body(None, true).await?;
                    return Ok(Relayed::Done(false));
                }
                Next::ClientGone => return Err(client_gone()),
            }
        }
    }

    /// A translated stream: each provider event becomes the client's events
    /// as it arrives.
    async fn relay_events(&self, sink: &mut dyn Sink, ctx: &mut Ctx, http: &mut HttpSession, tr: &mut dyn Translator, deadline: Instant) -> Result<Relayed> {
        let mut head = ResponseHeader::build_no_case(200, Some(6))?;
        head.insert_header("content-type", "text/event-stream; charset=utf-8")?;
        head.insert_header("cache-control", "no-cache")?;
        head.insert_header("transfer-encoding", "chunked")?;
        head.insert_header(headers::REQUEST_ID_HEADER, ctx.request_id.as_str())?;
        // The head goes out with the first event: until then the attempt
        // may still be replaced (SPEC 10).
        let mut head = Some(head);
        let mut parser = SseParser::default();
        let mut events: Vec<ClientEvent> = Vec::new();
        let mut bytes = Vec::new();
        let end: StreamEnd = loop {
            match next_chunk(sink, http, deadline).await {
                Next::Chunk(b) => {
                    parser.feed(&b, &mut |e, d| tr.stream_event(e, d, &mut events));
                }
                Next::End => {
                    parser.finish(&mut |e, d| tr.stream_event(e, d, &mut events));
                    break StreamEnd::Complete;
                }
                Next::UpstreamFailed(kind) if head.is_some() => return Ok(Relayed::NothingSent(kind)),
                Next::UpstreamFailed(kind) => {
                    ctx.outcome.error = Some(kind);
                    break StreamEnd::Cut;
                }
                Next::ClientGone => return Err(client_gone()),
            }
            if !events.is_empty() {
                if let Some(h) = head.take() {
                    sink.head(h).await?;
                }
                if let Some(t) = ctx.trace.as_mut() {
                    events.iter().for_each(|e| t.answer().client_event(e));
                }
                encode(&events, &mut bytes);
                events.clear();
                sink.body(Some(Bytes::from(std::mem::take(&mut bytes))), false).await?;
            }
        };
        tr.stream_end(end, &mut events);
        if end == StreamEnd::Complete {
            // Before the stream's last bytes: the next turn may follow at once.
            let memos = tr.replay_memos();
            self.remember_reasoning(ctx, memos).await;
        }
        if let Some(t) = ctx.trace.as_mut() {
            events.iter().for_each(|e| t.answer().client_event(e));
        }
        encode(&events, &mut bytes);
        if let Some(h) = head.take() {
            sink.head(h).await?;
        }
        if !bytes.is_empty() {
            sink.body(Some(Bytes::from(bytes)), false).await?;
        }
        sink.body(None, true).await?;
        Ok(Relayed::Done(end == StreamEnd::Complete))
    }
}

/// The client went away: the provider request ends with this exchange (its
/// connection is dropped, not pooled) and the record says so.
fn client_gone() -> Box<Error> {
    let mut e = Error::explain(ErrorType::ConnectionClosed, "client disconnected during the answer");
    e.as_down();
    e
}

/// How a relay ended.
enum Relayed {
    /// The answer went to the client; `true` when the provider's ended
    /// cleanly (its connection may be pooled).
    Done(bool),
    /// The provider failed before anything was written to the client.
    NothingSent(GatewayError),
}

/// What an attempt came to (SPEC 10).
pub(super) enum AttemptEnd {
    /// Something reached the client: nothing else may be tried.
    Answered,
    /// Failed before the first byte went to the client.
    Failed(Failed),
}

impl AttemptEnd {
    pub fn failed(failure: Failure, retry_after: Option<Duration>, reply: Reply) -> AttemptEnd {
        AttemptEnd::Failed(Failed { failure, retry_after, reply })
    }
}

/// A failed attempt: why, and the answer the client gets if it is the last.
pub(super) struct Failed {
    pub failure: Failure,
    pub retry_after: Option<Duration>,
    pub reply: Reply,
}

/// An answer not yet written.
pub(super) enum Reply {
    /// A gateway error (SPEC 5's shape).
    Gateway(GatewayError, String),
    /// An error in OpenAI's shape (SPEC 8).
    OpenAi(crate::translate::TranslateError),
    /// A translated provider error.
    Json { status: u16, body: Vec<u8>, retry_after: Option<String> },
    /// An OpenAI-shaped provider's own error answer.
    Raw(ResponseHeader, Bytes),
}

enum Next {
    Chunk(Bytes),
    End,
    UpstreamFailed(GatewayError),
    ClientGone,
}

/// The provider's next body chunk, unless the client went away first.
async fn next_chunk(sink: &mut dyn Sink, http: &mut HttpSession, deadline: Instant) -> Next {
    tokio::select! {
        r = read_chunk(http, deadline) => match r {
            Ok(Some(b)) => Next::Chunk(b),
            Ok(None) => Next::End,
            Err(kind) => Next::UpstreamFailed(kind),
        },
        _ = sink.gone() => Next::ClientGone,
    }
}

/// The provider's next body chunk (`None` at its end) within the total
/// deadline, or why not: `UpstreamTimeout` when the provider was silent for
/// the read timeout (capped at the deadline when connecting) or a chunk came
/// past the deadline (a slow drip, as `response_body_filter` checks on the
/// passthrough), `UpstreamError` for any other failure.
async fn read_chunk(http: &mut HttpSession, deadline: Instant) -> std::result::Result<Option<Bytes>, GatewayError> {
    match http.read_response_body().await {
        Ok(Some(_)) if Instant::now() > deadline => Err(GatewayError::UpstreamTimeout),
        Ok(chunk) => Ok(chunk),
        Err(e) if matches!(e.etype(), ErrorType::ReadTimedout) => Err(GatewayError::UpstreamTimeout),
        Err(_) => Err(GatewayError::UpstreamError),
    }
}

/// A whole (bounded) provider body, and why it is not whole: a timeout
/// (read timeout or the total deadline), or cut or too large.
async fn read_whole(http: &mut HttpSession, deadline: Instant, max: usize) -> (Vec<u8>, Option<GatewayError>) {
    let mut body = Vec::new();
    loop {
        match read_chunk(http, deadline).await {
            Ok(Some(b)) => {
                if body.len() + b.len() > max {
                    return (body, Some(GatewayError::UpstreamError));
                }
                body.extend_from_slice(&b);
            }
            Ok(None) => return (body, None),
            Err(kind) => return (body, Some(kind)),
        }
    }
}
