//! `upstream_peer`, `fail_to_connect` and `upstream_request_filter`: the
//! peer for the planned upstream (with a Vertex OAuth token minted when the
//! key is a service account), a retry on another key when nothing was sent,
//! and the request head as the provider must see it.

use super::reply::{total_timeout, upstream_error};
use super::{Ctx, Gateway};
use crate::governance::key_pool;
use crate::net::{build_peer, Upstream};
use crate::observe::trace::span::Outgoing;
use crate::observe::trace::{propagation, RequestTrace};
use crate::routes::headers::{self, UpstreamAuth};
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use std::time::Instant;

impl Gateway {
    pub(super) async fn pick_peer(&self, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        self.identity_token(ctx).await.map_err(|m| upstream_error(ErrorType::ConnectError, m))?;
        let ctx = &mut **ctx;
        let up = ctx.target.upstream.as_ref().ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream planned"))?;
        let addr = self
            .resolver
            .resolve(&up.host, up.port, ctx.cred.connect_attempts)
            .await
            .map_err(|e| upstream_error(ErrorType::ConnectError, e.0))?;
        // The total deadline caps every read and write from here on.
        let elapsed = ctx.timing.start.elapsed();
        if elapsed >= ctx.live.config.timeouts.total {
            return Err(total_timeout(&ctx.live.config.timeouts));
        }
        let timeouts = ctx.live.config.timeouts.within(elapsed);
        if let Some(tr) = ctx.trace.as_mut() {
            tr.upstream_attempt(&outgoing(up));
        }
        let t = Instant::now();
        let peer = build_peer(up, addr, &timeouts);
        ctx.timing.overhead += t.elapsed();
        Ok(Box::new(peer))
    }

    /// For a key that is a cloud identity (Vertex service account or ADC,
    /// Azure Entra ID): its access token, cached or fetched now, becomes the
    /// credential to inject as `Authorization: Bearer`. `Err` with the
    /// client's message (the cause is logged, without secrets) when none can
    /// be obtained; `ctx.cred.token_failed` is then set.
    pub(super) async fn identity_token(&self, ctx: &mut Ctx) -> std::result::Result<(), String> {
        if ctx.cred.inject.is_some() || ctx.cred.keep_client {
            return Ok(());
        }
        let (Some(provider), Some(name)) = (ctx.target.provider, ctx.cred.key_name.clone()) else { return Ok(()) };
        let Some(ts) = ctx.live.token_source(provider, &name).cloned() else { return Ok(()) };
        match ts.token(&self.connector, &self.resolver, &ctx.live.config.timeouts).await {
            Ok(token) => {
                ctx.cred.inject = Some(("authorization", format!("Bearer {token}")));
                ctx.cred.quota_project = ts.identity().quota_project().map(str::to_string);
                Ok(())
            }
            Err(e) => {
                log::error!("{}: cannot obtain an access token for key {name} ({}): {e}", provider.name(), ts.identity().describe());
                ctx.cred.token_failed = true;
                Err(format!("cannot obtain an access token for the {} key `{name}` (its token endpoint failed; see the gateway log)", provider.name()))
            }
        }
    }

    pub(super) fn retry_connect(&self, session: &mut Session, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
        // Nothing was sent: safe to retry, on another key when there is one
        // (Azure keys carry their own endpoints).
        ctx.cred.connect_attempts += 1;
        if let Some(t) = &ctx.trace {
            t.connect_failed(e.etype().as_str());
        }
        if ctx.cred.connect_attempts <= ctx.live.config.connect_retries {
            if let (Some(provider), Some(name)) = (ctx.target.provider, ctx.cred.key_name.clone()) {
                if !ctx.cred.keep_client {
                    ctx.cred.tried_keys.push(name);
                    let more = ctx
                        .live
                        .config
                        .provider(provider)
                        .is_some_and(|c| key_pool::select_key(&c.keys, ctx.target.model.as_deref(), &ctx.cred.tried_keys, &mut rand::thread_rng()).is_some());
                    if !more {
                        // Same key again on a fresh connection.
                        ctx.cred.tried_keys.clear();
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

    pub(super) fn rewrite_upstream_request(&self, session: &mut Session, upstream_request: &mut RequestHeader, ctx: &mut Ctx) -> Result<()> {
        let t = Instant::now();
        let up = ctx.target.upstream.as_ref().ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream planned"))?;
        let uri: http::Uri = up
            .path_and_query
            .parse()
            .map_err(|_| Error::explain(ErrorType::InternalError, "planned upstream path is not a valid URI"))?;
        upstream_request.set_uri(uri);
        let inject = ctx.cred.inject.as_ref().map(|(n, v)| (*n, v.as_str()));
        headers::to_provider(
            upstream_request,
            &up.authority,
            &UpstreamAuth { inject, keep_client_credentials: ctx.cred.keep_client },
            session.is_upgrade_req(),
        );
        if let Some(q) = &ctx.cred.quota_project {
            upstream_request.insert_header("x-goog-user-project", q.as_str())?;
        }
        if ctx.target.sent_continue {
            upstream_request.remove_header("expect");
        }
        if let Some(t) = &ctx.trace {
            set_trace_headers(upstream_request, t);
        }
        ctx.timing.overhead += t.elapsed();
        Ok(())
    }
}

/// The CLIENT span's view of the planned upstream.
pub(super) fn outgoing(up: &Upstream) -> Outgoing<'_> {
    let path = up.path_and_query.split('?').next().unwrap_or("/");
    Outgoing { scheme: if up.tls { "https" } else { "http" }, host: &up.host, port: up.port, path }
}

/// The provider's `traceparent`/`tracestate`: the gateway's CLIENT span,
/// replacing the client's (tracing on; headers pass untouched when off).
pub(super) fn set_trace_headers(req: &mut RequestHeader, t: &RequestTrace) {
    let headers = t.propagation_headers();
    if !headers.iter().any(|(k, _)| *k == propagation::TRACESTATE) {
        req.remove_header(propagation::TRACESTATE);
    }
    for (k, v) in headers {
        let _ = req.insert_header(k, v);
    }
}
