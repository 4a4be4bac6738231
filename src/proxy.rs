//! The Pingora glue: each `ProxyHttp` phase calls into the modules that
//! decide (route, credentials, headers, usage, metrics, access log).

use crate::access_log::{rfc3339, AccessLog, Record};
use crate::credentials::{self, client_credential};
use crate::errors::GatewayError;
use crate::headers::{self, UpstreamAuth, REQUEST_ID_HEADER};
use crate::metrics::{method_label, METRICS};
use crate::route::{self, PathError, PlanInput, Provider, RouteName, Upstream, VertexRule};
use crate::upstream::{build_peer, Resolver};
use crate::usage::{family_for, UsageScanner};
use crate::reload::{Live, LiveConfig};
use crate::shared_counters::SharedCounters;
use crate::vkeys::{VirtualKey, VirtualKeys};
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub struct Gateway {
    /// Configuration, replaced on reload; each request keeps a snapshot.
    pub live: Arc<LiveConfig>,
    pub resolver: Resolver,
    pub access_log: AccessLog,
    pub key_health: credentials::KeyHealth,
    /// Client for token exchanges (same TLS trust as upstream requests).
    token_connector: Connector,
    /// Virtual-key counters shared with other instances (`tollgate.redis`).
    shared: Option<SharedCounters>,
}

/// Per-request state shared across phases.
pub struct Ctx {
    /// The configuration this request runs under (taken at its start).
    live: Arc<Live>,
    start: Instant,
    start_wall: SystemTime,
    request_id: String,
    route: Option<RouteName>,
    provider: Option<Provider>,
    vertex_rule: Option<VertexRule>,
    /// The remainder after the prefix: the provider-native path.
    remainder: String,
    upstream: Option<Upstream>,
    key_name: Option<String>,
    /// Configured credential to set upstream, `(header, value)`.
    inject: Option<(&'static str, String)>,
    keep_client_credentials: bool,
    /// Model named by the request (body peek, Gemini path, Azure deployment).
    request_model: Option<String>,
    tried_keys: Vec<String>,
    connect_attempts: usize,
    sent_continue: bool,
    error: Option<GatewayError>,
    error_detail: Option<String>,
    ttfb: Option<Duration>,
    /// Time spent inside tollgate's own phases.
    overhead: Duration,
    scanner: Option<UsageScanner>,
    stream: bool,
    counted_in_flight: bool,
    /// The virtual key's name, when one was presented and accepted.
    virtual_key: Option<String>,
    /// The client's credential header was a virtual key: never forward it.
    credential_was_vk: bool,
}

impl Ctx {
    fn provider_label(&self) -> &'static str {
        self.provider.map_or("none", Provider::name)
    }
}

const HEALTH_BODY: &[u8] = b"{\"status\":\"ok\"}";

impl Gateway {
    pub fn new(live: Arc<LiveConfig>, access_log: AccessLog, connector_options: Option<ConnectorOptions>) -> Self {
        let shared = live.snapshot().config.redis.clone().map(SharedCounters::new);
        Gateway {
            shared,
            live,
            resolver: Resolver::default(),
            access_log,
            key_health: Default::default(),
            token_connector: Connector::new(connector_options),
        }
    }

    fn virtual_keys(&self) -> &VirtualKeys {
        &self.live.virtual_keys
    }

    /// Answer with a gateway error (SPEC 5) from `request_filter`.
    async fn refuse(&self, session: &mut Session, ctx: &mut Ctx, err: GatewayError, message: &str) -> Result<bool> {
        ctx.error = Some(err);
        ctx.error_detail = Some(message.to_string());
        write_json(session, err.status(), &err.body(message, &ctx.request_id), &ctx.request_id, None).await?;
        Ok(true)
    }

    /// Virtual key checks (SPEC 2): who is calling and may they use this
    /// provider and model. `Ok(None)` when no virtual key applies; `Err`
    /// carries the refusal to answer.
    fn check_virtual_key(&self, session: &Session, ctx: &mut Ctx, provider: Provider) -> std::result::Result<Option<Arc<VirtualKey>>, crate::vkeys::Refusal> {
        use crate::vkeys::Refusal;
        let req = session.req_header();
        let explicit = headers::virtual_key_header(&req.headers);
        let client = client_credential(&req.headers, req.uri.query());
        let refusal = |error: GatewayError, reason: &'static str, message: &str| Refusal { error, reason, message: message.to_string(), retry_after: None };
        if self.virtual_keys().is_empty() {
            // No virtual keys configured: control headers are just dropped.
            return Ok(None);
        }
        let vk = match (&explicit, &client) {
            (Some(e), _) => match self.virtual_keys().find(e) {
                Some(k) => Some(k),
                None => return Err(refusal(GatewayError::VirtualKeyInvalid, "invalid", "unknown virtual key")),
            },
            (None, Some(c)) => {
                let k = self.virtual_keys().find(&c.secret);
                ctx.credential_was_vk = k.is_some();
                k
            }
            (None, None) => None,
        };
        let Some(vk) = vk else {
            if !ctx.live.config.require_virtual_key {
                return Ok(None);
            }
            return Err(match client {
                Some(_) => refusal(GatewayError::VirtualKeyInvalid, "invalid", "unknown virtual key"),
                None => refusal(GatewayError::VirtualKeyRequired, "missing", "a virtual key is required (x-tollgate-vk header or the SDK's api key)"),
            });
        };
        ctx.virtual_key = Some(vk.name.clone());
        VirtualKeys::check_access(&vk, provider, ctx.request_model.as_deref())?;
        Ok(Some(vk))
    }

    /// Is there rate and budget left for `vk`? Counts the request. Uses the
    /// shared Redis counters when configured, local ones otherwise or when
    /// Redis fails.
    async fn admit_limits(&self, vk: &VirtualKey) -> std::result::Result<(), crate::vkeys::Refusal> {
        let wall = SystemTime::now();
        if let Some(shared) = self.shared.as_ref().filter(|_| SharedCounters::applies(vk)) {
            match shared.admit(vk, wall).await {
                Ok(r) => return r,
                Err(e) => shared.failed("admit", &e),
            }
        }
        self.virtual_keys().admit_limits(vk, Instant::now(), wall)
    }

    /// Answer a virtual-key refusal (401/402/403/429 with retry-after).
    async fn reject(&self, session: &mut Session, ctx: &mut Ctx, r: crate::vkeys::Refusal) -> Result<bool> {
        METRICS.vk_rejections.with_label_values(&[r.reason]).inc();
        ctx.error = Some(r.error);
        ctx.error_detail = Some(r.message.clone());
        let retry_after = r.retry_after.map(|s| s.to_string());
        write_json(session, r.error.status(), &r.error.body(&r.message, &ctx.request_id), &ctx.request_id, retry_after.as_deref()).await?;
        Ok(true)
    }

    /// Pick the provider key for this request, `Err` with the refusal when
    /// none can be used. Sets `ctx.inject`/`keep_client_credentials`.
    fn choose_credential(&self, session: &Session, ctx: &mut Ctx, provider: Provider) -> std::result::Result<(), (GatewayError, String)> {
        let req = session.req_header();
        let client = client_credential(&req.headers, req.uri.query());
        let direct = ctx.live.config.allow_direct_keys && provider != Provider::Azure && client.is_some() && !ctx.credential_was_vk;
        if direct {
            ctx.keep_client_credentials = true;
            ctx.inject = None;
            ctx.key_name = Some("direct".into());
            return Ok(());
        }
        let keys = ctx.live.config.provider(provider).map(|c| c.keys.as_slice()).unwrap_or(&[]);
        if keys.is_empty() {
            return Err((
                GatewayError::ProviderNotConfigured,
                format!("no key is configured for provider {} and direct keys are not allowed", provider.name()),
            ));
        }
        let model = ctx.request_model.as_deref();
        let mut rng = rand::thread_rng();
        // Keys resting after a 401/403/429 are skipped while others remain.
        let mut exclude = ctx.tried_keys.clone();
        exclude.extend(self.key_health.cooling(provider, Instant::now()));
        let key = credentials::select_key(keys, model, &exclude, &mut rng)
            .or_else(|| credentials::select_key(keys, model, &ctx.tried_keys, &mut rng));
        match key {
            Some(k) => {
                METRICS.key_healthy.with_label_values(&[provider.name(), &k.name]).set(1);
                ctx.key_name = Some(k.name.clone());
                // A service-account key's token is minted in upstream_peer.
                ctx.inject = match k.service_account {
                    Some(_) => None,
                    None => Some(credentials::provider_auth_header(provider, &k.value)),
                };
                Ok(())
            }
            None if !ctx.tried_keys.is_empty() => Err((GatewayError::UpstreamUnreachable, "every provider key was tried".into())),
            None => Err((
                GatewayError::Forbidden,
                match &ctx.request_model {
                    Some(m) => format!("no configured {} key allows model {m}", provider.name()),
                    None => format!("the {} keys are restricted to listed models and the request names none", provider.name()),
                },
            )),
        }
    }

    /// Compute `ctx.upstream` from the route and the chosen key.
    fn plan(&self, session: &Session, ctx: &mut Ctx) -> std::result::Result<(), (GatewayError, String)> {
        let provider = ctx.provider.expect("provider chosen before planning");
        let conf = ctx.live.config.provider(provider);
        let key = ctx.key_name.as_ref().and_then(|n| conf.and_then(|c| c.keys.iter().find(|k| &k.name == n)));
        let query = if ctx.keep_client_credentials {
            session.req_header().uri.query().map(str::to_string)
        } else {
            route::query_without(session.req_header().uri.query(), &credentials::SECRET_QUERY_PARAMS)
        };
        let up = route::plan_upstream(&PlanInput {
            provider,
            remainder: &ctx.remainder,
            query: query.as_deref(),
            conf,
            key,
            vertex_oauth: key.is_some_and(|k| k.service_account.is_some()),
        })
        .map_err(|m| (GatewayError::ProviderNotConfigured, m.to_string()))?;
        ctx.upstream = Some(up);
        Ok(())
    }
}

/// Write a complete small JSON response.
async fn write_json(session: &mut Session, status: u16, body: &[u8], request_id: &str, retry_after: Option<&str>) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(5))?;
    if let Some(s) = retry_after {
        resp.insert_header("retry-after", s)?;
    }
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header(REQUEST_ID_HEADER, request_id)?;
    resp.insert_header("cache-control", "no-store")?;
    // A request body we did not read makes the connection unusable.
    if !session.as_mut().is_body_empty() && !session.as_mut().is_body_done() {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(Bytes::copy_from_slice(body)), true).await?;
    Ok(())
}

fn new_request_id() -> String {
    use rand::Rng;
    let v: u128 = rand::thread_rng().gen();
    format!("{v:032x}")
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            live: self.live.snapshot(),
            start: Instant::now(),
            start_wall: SystemTime::now(),
            request_id: String::new(),
            route: None,
            provider: None,
            vertex_rule: None,
            remainder: String::new(),
            upstream: None,
            key_name: None,
            inject: None,
            keep_client_credentials: false,
            request_model: None,
            tried_keys: Vec::new(),
            connect_attempts: 0,
            sent_continue: false,
            error: None,
            error_detail: None,
            ttfb: None,
            overhead: Duration::ZERO,
            scanner: None,
            stream: false,
            counted_in_flight: false,
            virtual_key: None,
            credential_was_vk: false,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let t0 = Instant::now();
        ctx.start = t0;
        ctx.start_wall = SystemTime::now();
        METRICS.in_flight.inc();
        ctx.counted_in_flight = true;
        // HTTP/1.1 pipelining: requests sent back to back on one connection
        // are answered one after the other (Pingora closes the connection
        // after the first otherwise).
        session.as_mut().set_pipelining_enabled(true);
        let req = session.req_header();
        ctx.request_id = req
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| headers::valid_request_id(v))
            .map(str::to_string)
            .unwrap_or_else(new_request_id);
        let path = req.uri.path().to_string();

        match path.as_str() {
            "/healthz" => {
                write_json(session, 200, HEALTH_BODY, &ctx.request_id, None).await?;
                return Ok(true);
            }
            "/readyz" => {
                // Ready once config is loaded (it is, or we would not run);
                // not ready while draining for shutdown or upgrade.
                let (status, body): (u16, &[u8]) = if session.is_process_shutting_down() {
                    (503, b"{\"status\":\"draining\"}")
                } else {
                    (200, b"{\"status\":\"ready\"}")
                };
                write_json(session, status, body, &ctx.request_id, None).await?;
                return Ok(true);
            }
            _ => {}
        }

        let limit = ctx.live.config.max_header_bytes;
        if headers::head_size(session.req_header()) as u64 > limit {
            let msg = format!("request headers exceed the limit of {limit} bytes");
            return self.refuse(session, ctx, GatewayError::HeadersTooLarge, &msg).await;
        }
        let Some((route_name, remainder)) = route::match_route(&path) else {
            return self.refuse(session, ctx, GatewayError::RouteNotFound, GatewayError::RouteNotFound.describe()).await;
        };
        ctx.route = Some(route_name);
        ctx.remainder = remainder.to_string();
        match route::validate_remainder(remainder) {
            Ok(()) => {}
            Err(PathError::Invalid(why)) => return self.refuse(session, ctx, GatewayError::InvalidPath, why).await,
            Err(PathError::NotFound) => {
                return self.refuse(session, ctx, GatewayError::RouteNotFound, GatewayError::RouteNotFound.describe()).await
            }
        }

        // Bodies over the configured limit are refused before any upstream
        // contact when announced; chunked ones are cut in request_body_filter.
        if let (Some(limit), Some(len)) = (ctx.live.config.max_request_body_bytes, content_length(session)) {
            if len > limit {
                return self.refuse(session, ctx, GatewayError::PayloadTooLarge, &format!("request body of {len} bytes exceeds the limit of {limit}")).await;
            }
        }

        // Provider, and the request's model where a decision needs it.
        let authorization = session.req_header().headers.get("authorization").map(|v| v.as_bytes().to_vec());
        let mut provider = match route_name {
            RouteName::OpenAi => Provider::OpenAi,
            RouteName::Anthropic => Provider::Anthropic,
            RouteName::Azure => Provider::Azure,
            RouteName::GenAi => {
                ctx.vertex_rule = route::genai_vertex_without_body(remainder, authorization.as_deref());
                if ctx.vertex_rule.is_some() { Provider::Vertex } else { Provider::Gemini }
            }
        };
        let needs_body_model = (route_name == RouteName::GenAi && ctx.vertex_rule.is_none())
            || ctx.live.vk_models
            || ctx.live.config.provider(provider).is_some_and(|c| c.keys.iter().any(|k| k.models.is_some()));
        let mut busy = t0.elapsed();
        if needs_body_model && has_body(session) {
            if let Some(first) = peek_first_chunk(session, ctx).await? {
                ctx.request_model = route::peek_json_model(&first);
            }
        }
        let t1 = Instant::now();
        if route_name == RouteName::GenAi && ctx.vertex_rule.is_none() {
            if ctx.request_model.as_deref().is_some_and(route::body_model_is_vertex) {
                ctx.vertex_rule = Some(VertexRule::BodyModel);
                provider = Provider::Vertex;
            }
        }
        ctx.provider = Some(provider);
        if ctx.request_model.is_none() {
            ctx.request_model = match provider {
                Provider::Gemini | Provider::Vertex => route::path_model(remainder).map(str::to_string),
                Provider::Azure => route::azure_deployment(remainder).map(str::to_string),
                _ => None,
            };
        }

        match self.check_virtual_key(session, ctx, provider) {
            Err(r) => return self.reject(session, ctx, r).await,
            Ok(Some(vk)) => {
                if let Err(r) = self.admit_limits(&vk).await {
                    return self.reject(session, ctx, r).await;
                }
            }
            Ok(None) => {}
        }
        if let Err((err, msg)) = self.choose_credential(session, ctx, provider) {
            return self.refuse(session, ctx, err, &msg).await;
        }
        if let Err((err, msg)) = self.plan(session, ctx) {
            return self.refuse(session, ctx, err, &msg).await;
        }
        busy += t1.elapsed();
        ctx.overhead += busy;
        Ok(false)
    }

    async fn request_body_filter(&self, session: &mut Session, _body: &mut Option<Bytes>, _end: bool, ctx: &mut Ctx) -> Result<()> {
        if let Some(limit) = ctx.live.config.max_request_body_bytes {
            if session.as_ref().body_bytes_read() as u64 > limit {
                ctx.error = Some(GatewayError::PayloadTooLarge);
                return Error::e_explain(ErrorType::HTTPStatus(413), format!("request body exceeds the limit of {limit} bytes"));
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if ctx.inject.is_none() && !ctx.keep_client_credentials {
            if let Some(ts) = ctx.key_name.as_ref().and_then(|n| ctx.live.token_sources.get(n)) {
                let token = ts.token(&self.token_connector, &self.resolver, &ctx.live.config.timeouts).await.map_err(|e| {
                    log::error!("vertex: cannot obtain an access token for key {}: {e}", ctx.key_name.as_deref().unwrap_or(""));
                    upstream_error(ErrorType::ConnectError, "cannot obtain a Vertex access token".to_string())
                })?;
                ctx.inject = Some(("authorization", format!("Bearer {token}")));
            }
        }
        let up = ctx.upstream.as_ref().ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream planned"))?;
        let addr = self
            .resolver
            .resolve(&up.host, up.port, ctx.connect_attempts)
            .await
            .map_err(|e| upstream_error(ErrorType::ConnectError, e.0))?;
        // The total deadline caps every read and write from here on.
        let remaining = ctx.live.config.timeouts.total.saturating_sub(ctx.start.elapsed());
        if remaining.is_zero() {
            return Err(total_timeout(&ctx.live.config.timeouts));
        }
        let mut timeouts = ctx.live.config.timeouts.clone();
        timeouts.read = timeouts.read.min(remaining);
        timeouts.write = timeouts.write.min(remaining);
        let t = Instant::now();
        let peer = build_peer(up, addr, &timeouts);
        ctx.overhead += t.elapsed();
        Ok(Box::new(peer))
    }

    fn fail_to_connect(&self, session: &mut Session, _peer: &HttpPeer, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
        // Nothing was sent: safe to retry, on another key when there is one
        // (Azure keys carry their own endpoints).
        ctx.connect_attempts += 1;
        if ctx.connect_attempts <= ctx.live.config.connect_retries {
            if let (Some(provider), Some(name)) = (ctx.provider, ctx.key_name.clone()) {
                if !ctx.keep_client_credentials {
                    ctx.tried_keys.push(name);
                    let more = ctx
                        .live
                        .config
                        .provider(provider)
                        .is_some_and(|c| credentials::select_key(&c.keys, ctx.request_model.as_deref(), &ctx.tried_keys, &mut rand::thread_rng()).is_some());
                    if !more {
                        // Same key again on a fresh connection.
                        ctx.tried_keys.clear();
                    }
                    if self.choose_credential(session, ctx, provider).is_ok() && self.plan(session, ctx).is_err() {
                        return e;
                    }
                }
            }
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(&self, session: &mut Session, upstream_request: &mut RequestHeader, ctx: &mut Ctx) -> Result<()> {
        let t = Instant::now();
        let up = ctx.upstream.as_ref().ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream planned"))?;
        let uri: http::Uri = up
            .path_and_query
            .parse()
            .map_err(|_| Error::explain(ErrorType::InternalError, "planned upstream path is not a valid URI"))?;
        upstream_request.set_uri(uri);
        let inject = ctx.inject.as_ref().map(|(n, v)| (*n, v.as_str()));
        headers::to_provider(
            upstream_request,
            &up.authority,
            &UpstreamAuth { inject, keep_client_credentials: ctx.keep_client_credentials },
            session.is_upgrade_req(),
        );
        if ctx.sent_continue {
            upstream_request.remove_header("expect");
        }
        ctx.overhead += t.elapsed();
        Ok(())
    }

    async fn upstream_response_filter(&self, _session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        if ctx.ttfb.is_none() && !resp.status.is_informational() {
            ctx.ttfb = Some(ctx.start.elapsed());
        }
        // A configured key the provider refused or rate-limited rests; the
        // answer itself goes to the client unchanged (a sent request is
        // never replayed).
        if let (Some(provider), Some(key), false) = (ctx.provider, ctx.key_name.as_deref(), ctx.keep_client_credentials) {
            let retry_after = resp.headers.get("retry-after").and_then(|v| v.to_str().ok());
            if resp.status.as_u16() == 401 {
                if let Some(ts) = ctx.live.token_sources.get(key) {
                    ts.invalidate().await;
                }
            }
            if let Some(d) = credentials::cooldown_for(resp.status.as_u16(), retry_after) {
                log::warn!("provider {} key {key} answered {}: out of rotation for {:.1}s", provider.name(), resp.status.as_u16(), d.as_secs_f64());
                self.key_health.cool_down(provider, key, d, Instant::now());
                METRICS.key_healthy.with_label_values(&[provider.name(), key]).set(0);
            }
        }
        Ok(())
    }

    async fn response_filter(&self, _session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        let t = Instant::now();
        headers::to_client(resp, &ctx.request_id);
        if !resp.status.is_informational() {
            let header = |n: &str| resp.headers.get(n).and_then(|v| v.to_str().ok());
            let content_type = header("content-type");
            ctx.stream = content_type.is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
            if let Some(family) = ctx.provider.and_then(|p| family_for(p.name(), &ctx.remainder)) {
                ctx.scanner = Some(UsageScanner::new(family, content_type, header("content-encoding")));
            }
        }
        ctx.overhead += t.elapsed();
        Ok(())
    }

    fn response_body_filter(&self, _session: &mut Session, body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut Ctx) -> Result<Option<Duration>> {
        let t = Instant::now();
        // Past the total deadline a response still arriving (a slow drip, a
        // stream that never ends) is cut; the client sees the stream end.
        if !end_of_stream && ctx.start.elapsed() > ctx.live.config.timeouts.total {
            ctx.error = Some(GatewayError::UpstreamTimeout);
            return Err(total_timeout(&ctx.live.config.timeouts));
        }
        if let Some(scanner) = ctx.scanner.as_mut() {
            if let Some(b) = body.as_ref() {
                scanner.feed(b);
            }
            if end_of_stream {
                scanner.finish();
            }
        }
        ctx.overhead += t.elapsed();
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let kind = GatewayError::from_proxy_error(e);
        if let Some(k) = kind {
            if matches!(k, GatewayError::UpstreamUnreachable | GatewayError::UpstreamTimeout | GatewayError::UpstreamError) {
                METRICS.upstream_errors.with_label_values(&[ctx.provider_label(), k.kind()]).inc();
            }
        }
        match kind {
            Some(k) => {
                ctx.error.get_or_insert(k);
                ctx.error_detail = Some(e.to_string());
            }
            None => ctx.error_detail = Some("client_disconnected".into()),
        }
        let already_answered = session.response_written().is_some();
        let code = match kind {
            Some(k) if !already_answered => {
                let msg = match k {
                    GatewayError::UpstreamUnreachable | GatewayError::UpstreamTimeout | GatewayError::UpstreamError => {
                        format!("{} ({})", k.describe(), ctx.upstream.as_ref().map_or("-", |u| u.authority.as_str()))
                    }
                    _ => k.describe().to_string(),
                };
                if let Err(we) = write_json(session, k.status(), &k.body(&msg, &ctx.request_id), &ctx.request_id, None).await {
                    log::debug!("could not send error response: {we}");
                }
                k.status()
            }
            _ => session.response_written().map_or(0, |r| r.status.as_u16()),
        };
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if ctx.counted_in_flight {
            METRICS.in_flight.dec();
        }
        if let Some(scanner) = ctx.scanner.as_mut() {
            if e.is_none() {
                scanner.finish();
            }
        }
        let req = session.req_header();
        let provider = ctx.provider.map(Provider::name);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let usage = ctx.scanner.as_ref().map(|s| s.usage().clone());
        let model = usage.as_ref().and_then(|u| u.model.clone()).or_else(|| ctx.request_model.clone());
        let error = match (ctx.error, e) {
            (Some(g), _) => Some(g.kind().to_string()),
            (None, Some(err)) => Some(match err.esource() {
                ErrorSource::Downstream => "client_disconnected".to_string(),
                _ => err.etype().as_str().to_string(),
            }),
            (None, None) => None,
        };
        let path = match req.uri.query() {
            Some(q) => format!("{}?{}", req.uri.path(), route::redact_query(q)),
            None => req.uri.path().to_string(),
        };
        let duration = ctx.start.elapsed();
        let tokens = usage.as_ref().filter(|u| u.seen);
        let cost = match (ctx.provider, tokens, model.as_deref()) {
            (Some(p), Some(u), Some(m)) => ctx.live.config.prices.cost(p, m, u.input_tokens, u.output_tokens, u.cached_tokens),
            _ => None,
        };
        let rec = Record {
            ts: rfc3339(ctx.start_wall),
            request_id: ctx.request_id.clone(),
            client_ip: session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()),
            method: req.method.as_str().to_string(),
            route: ctx.route.map(RouteName::prefix),
            provider,
            upstream_host: ctx.upstream.as_ref().map(|u| u.authority.clone()),
            path,
            status,
            duration_ms: ms(duration),
            ttfb_ms: ctx.ttfb.map(ms),
            request_bytes: session.as_ref().body_bytes_read() as u64,
            response_bytes: session.as_ref().body_bytes_sent() as u64,
            stream: ctx.stream,
            model: model.clone(),
            input_tokens: tokens.map(|u| u.input_tokens),
            output_tokens: tokens.map(|u| u.output_tokens),
            cached_tokens: tokens.map(|u| u.cached_tokens),
            reasoning_tokens: tokens.map(|u| u.reasoning_tokens),
            cost_usd: cost,
            virtual_key: ctx.virtual_key.clone(),
            provider_key: ctx.key_name.clone(),
            error,
            user_agent: req.headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string),
        };

        // Metrics.
        let plabel = ctx.provider_label();
        let route_label = ctx.route.map_or("none", RouteName::prefix);
        METRICS
            .requests
            .with_label_values(&[plabel, route_label, method_label(req.method.as_str()), &status.to_string()])
            .inc();
        if ctx.provider.is_some() {
            METRICS.duration.with_label_values(&[plabel]).observe(duration.as_secs_f64());
            if let Some(t) = ctx.ttfb {
                METRICS.ttfb.with_label_values(&[plabel]).observe(t.as_secs_f64());
            }
            METRICS.overhead.with_label_values(&[plabel]).observe(ctx.overhead.as_secs_f64());
            METRICS.request_bytes.with_label_values(&[plabel]).inc_by(rec.request_bytes);
            METRICS.response_bytes.with_label_values(&[plabel]).inc_by(rec.response_bytes);
            if let Some(u) = tokens {
                let m = METRICS.model_label(model.as_deref());
                let vk_label = ctx.virtual_key.as_deref().unwrap_or("none");
                let labels = [plabel, m.as_str(), vk_label];
                METRICS.input_tokens.with_label_values(&labels).inc_by(u.input_tokens);
                METRICS.output_tokens.with_label_values(&labels).inc_by(u.output_tokens);
                METRICS.cached_tokens.with_label_values(&labels).inc_by(u.cached_tokens);
                if let Some(c) = cost {
                    METRICS.cost.with_label_values(&labels).inc_by(c);
                }
            }
        }
        if let Some(vk) = &ctx.virtual_key {
            if ctx.error.is_none() || tokens.is_some() {
                let used = tokens.map_or(0, |u| u.input_tokens + u.output_tokens);
                let wall = SystemTime::now();
                self.virtual_keys().record(vk, used, cost.unwrap_or(0.0), Instant::now(), wall);
                let mut spend = self.virtual_keys().spend(vk, wall);
                if let (Some(shared), Some(key)) = (&self.shared, self.virtual_keys().by_name(vk)) {
                    match shared.record(&key, used, cost.unwrap_or(0.0), wall).await {
                        Ok(Some(fleet)) => spend = fleet,
                        Ok(None) => {}
                        Err(e) => shared.failed("record", &e),
                    }
                }
                METRICS.vk_spend.with_label_values(&[vk]).set(spend);
            }
        }
        self.access_log.write(rec);
    }
}

/// An error on the provider's side (counted and answered as upstream).
fn upstream_error(etype: ErrorType, context: String) -> Box<Error> {
    let mut e = Error::explain(etype, context);
    e.as_up();
    e
}

/// The error for a request past `timeouts.total` (504 `upstream_timeout`).
fn total_timeout(t: &crate::config::Timeouts) -> Box<Error> {
    upstream_error(ErrorType::ReadTimedout, format!("total timeout of {} ms reached", t.total.as_millis()))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

fn content_length(session: &Session) -> Option<u64> {
    session.req_header().headers.get("content-length")?.to_str().ok()?.trim().parse().ok()
}

fn has_body(session: &mut Session) -> bool {
    let h = &session.req_header().headers;
    let chunked = h.get("transfer-encoding").is_some();
    chunked || content_length(session).is_some_and(|l| l > 0)
}

/// Read the first body chunk (bounded by Pingora's 64 KiB read buffer) with
/// retry buffering on, so Pingora still sends it upstream; the rest of the
/// body streams through untouched.
async fn peek_first_chunk(session: &mut Session, ctx: &mut Ctx) -> Result<Option<Bytes>> {
    let expects_continue = session
        .req_header()
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session.as_mut().write_continue_response().await?;
        ctx.sent_continue = true;
    }
    session.as_mut().enable_retry_buffering();
    session.as_mut().read_request_body().await
}
