//! `request_filter` and `request_body_filter`: health endpoints, the head
//! size limit, the route and its path safety, the body size limit, the
//! provider (GenAI: Gemini or Vertex) and the request's model, then
//! admission (virtual key, provider key, plan).

use super::reply::write_json;
use super::{Ctx, Gateway};
use crate::errors::GatewayError;
use crate::observe::metrics::METRICS;
use crate::observe::trace::span::{operation_for, route_template, Incoming};
use crate::observe::trace::{self, RequestTrace};
use crate::providers::{azure, gemini, Provider};
use crate::routes::genai::{self, VertexRule};
use crate::routes::path::{validate_remainder, PathError};
use crate::routes::openai::{self, OpenAiRoute};
use crate::routes::{headers, match_route, RouteName};
use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::time::{Instant, SystemTime};

const HEALTH_BODY: &[u8] = b"{\"status\":\"ok\"}";

impl Gateway {
    pub(super) async fn route_request(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let t0 = Instant::now();
        ctx.timing.start = t0;
        ctx.timing.start_wall = SystemTime::now();
        METRICS.in_flight.inc();
        ctx.outcome.counted_in_flight = true;
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

        if let Some(tracer) = trace::tracer() {
            ctx.trace = Some(Box::new(start_trace(tracer, session, &path, &ctx.request_id, ctx.timing.start_wall)));
        }
        let limit = ctx.live.config.max_header_bytes;
        if headers::head_size(session.req_header()) as u64 > limit {
            let msg = format!("request headers exceed the limit of {limit} bytes");
            return self.refuse(session, ctx, GatewayError::HeadersTooLarge, &msg).await;
        }
        let Some((route_name, remainder)) = match_route(&path) else {
            return self.refuse(session, ctx, GatewayError::RouteNotFound, GatewayError::RouteNotFound.describe()).await;
        };
        ctx.target.route = Some(route_name);
        ctx.target.remainder = remainder.to_string();
        if let Some(t) = &ctx.trace {
            t.routed(&route_template(route_name.prefix(), remainder));
        }
        match validate_remainder(remainder) {
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

        // `/openai`: its endpoints are translated (gateway::openai); any other
        // path goes to OpenAI as on the passthrough.
        let forward_path;
        let mut remainder = remainder;
        if route_name == RouteName::OpenAiCompat {
            let method = session.req_header().method.as_str().to_string();
            match openai::classify(&method, remainder) {
                OpenAiRoute::Endpoint { endpoint, azure_deployment } => {
                    ctx.timing.overhead += t0.elapsed();
                    return self.serve_openai(session, ctx, endpoint, azure_deployment).await;
                }
                OpenAiRoute::Forward(p) => {
                    forward_path = p;
                    remainder = &forward_path;
                    ctx.target.remainder = forward_path.clone();
                }
            }
        }

        // Provider, and the request's model where a decision needs it.
        let authorization = session.req_header().headers.get("authorization").map(|v| v.as_bytes().to_vec());
        let mut provider = match route_name {
            RouteName::OpenAi | RouteName::OpenAiCompat => Provider::OpenAi,
            RouteName::Anthropic => Provider::Anthropic,
            RouteName::Azure => Provider::Azure,
            RouteName::GenAi => {
                ctx.target.vertex_rule = genai::genai_vertex_without_body(remainder, authorization.as_deref());
                if ctx.target.vertex_rule.is_some() { Provider::Vertex } else { Provider::Gemini }
            }
        };
        let needs_body_model = (route_name == RouteName::GenAi && ctx.target.vertex_rule.is_none())
            || ctx.live.vk_models
            || ctx.live.config.provider(provider).is_some_and(|c| c.keys.iter().any(|k| k.models.is_some()))
            // Traces name the requested model (gen_ai.request.model).
            || (ctx.trace.is_some() && operation_for(remainder).is_some());
        let mut busy = t0.elapsed();
        if needs_body_model && has_body(session) {
            if let Some(first) = peek_first_chunk(session, ctx).await? {
                ctx.target.model = genai::peek_json_model(&first);
            }
        }
        let t1 = Instant::now();
        if route_name == RouteName::GenAi && ctx.target.vertex_rule.is_none() {
            if ctx.target.model.as_deref().is_some_and(genai::body_model_is_vertex) {
                ctx.target.vertex_rule = Some(VertexRule::BodyModel);
                provider = Provider::Vertex;
            }
        }
        ctx.target.provider = Some(provider);
        if ctx.target.model.is_none() {
            ctx.target.model = match provider {
                Provider::Gemini | Provider::Vertex => gemini::path_model(remainder).map(str::to_string),
                Provider::Azure => azure::deployment(remainder).map(str::to_string),
                _ => None,
            };
        }

        let state = &mut **ctx;
        if let Some(t) = state.trace.as_mut() {
            t.target(provider, operation_for(remainder), state.target.model.as_deref());
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
        ctx.timing.overhead += busy;
        Ok(false)
    }

    pub(super) fn limit_request_body(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        if let Some(limit) = ctx.live.config.max_request_body_bytes {
            if session.as_ref().body_bytes_read() as u64 > limit {
                ctx.outcome.error = Some(GatewayError::PayloadTooLarge);
                return Error::e_explain(ErrorType::HTTPStatus(413), format!("request body exceeds the limit of {limit} bytes"));
            }
        }
        Ok(())
    }
}

/// The SERVER span for the client's request (tracing on).
fn start_trace(tracer: &opentelemetry_sdk::trace::SdkTracer, session: &Session, path: &str, request_id: &str, start: SystemTime) -> RequestTrace {
    let req = session.req_header();
    RequestTrace::start(
        tracer,
        &Incoming {
            method: req.method.as_str(),
            path,
            headers: &req.headers,
            request_id,
            client_ip: session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()),
            start,
        },
    )
}

fn new_request_id() -> String {
    use rand::Rng;
    let v: u128 = rand::thread_rng().gen();
    format!("{v:032x}")
}

fn content_length(session: &Session) -> Option<u64> {
    session.req_header().headers.get("content-length")?.to_str().ok()?.trim().parse().ok()
}

fn has_body(session: &mut Session) -> bool {
    // HTTP/2 frames bodies itself: a request may carry one with neither
    // header, and its stream says whether it does.
    if session.req_header().version == http::Version::HTTP_2 {
        return !session.as_mut().is_body_empty();
    }
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
        ctx.target.sent_continue = true;
    }
    session.as_mut().enable_retry_buffering();
    session.as_mut().read_request_body().await
}
