//! The response phases: provider key health from the answer's status,
//! header hygiene toward the client, the usage scanner fed a side copy of
//! the body (which reaches the client unchanged), the total deadline, and
//! the error answered when proxying fails.

use super::reply::{total_timeout, write_json};
use super::{Ctx, Gateway};
use crate::errors::GatewayError;
use crate::governance::key_pool;
use crate::observe::metrics::METRICS;
use crate::observe::usage::UsageScanner;
use crate::routes::headers;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, Session};
use std::time::Instant;

impl Gateway {
    pub(super) async fn watch_key_health(&self, resp: &ResponseHeader, ctx: &mut Ctx) {
        if ctx.timing.ttfb.is_none() && !resp.status.is_informational() {
            ctx.timing.ttfb = Some(ctx.timing.start.elapsed());
        }
        if let (Some(t), false) = (&ctx.trace, resp.status.is_informational()) {
            t.upstream_response(resp.status.as_u16());
        }
        // A configured key the provider refused or rate-limited rests; the
        // answer itself goes to the client unchanged (a sent request is
        // never replayed).
        if let (Some(provider), Some(key), false) = (ctx.target.provider, ctx.cred.key_name.as_deref(), ctx.cred.keep_client) {
            let retry_after = resp.headers.get("retry-after").and_then(|v| v.to_str().ok());
            if resp.status.as_u16() == 401 {
                if let Some(ts) = ctx.live.token_source(provider, key) {
                    ts.invalidate().await;
                }
            }
            if let Some(d) = key_pool::cooldown_for(resp.status.as_u16(), retry_after) {
                log::warn!("provider {} key {key} answered {}: out of rotation for {:.1}s", provider.name(), resp.status.as_u16(), d.as_secs_f64());
                self.key_health.cool_down(provider, key, d, Instant::now());
                METRICS.key_healthy.with_label_values(&[provider.name(), key]).set(0);
            }
        }
    }

    pub(super) fn client_response_head(&self, resp: &mut ResponseHeader, ctx: &mut Ctx) {
        let t = Instant::now();
        headers::to_client(resp, &ctx.request_id);
        if !resp.status.is_informational() {
            let header = |n: &str| resp.headers.get(n).and_then(|v| v.to_str().ok());
            let content_type = header("content-type");
            ctx.outcome.stream = content_type.is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
            let family = ctx.target.provider.and_then(|p| p.usage_family(&ctx.target.remainder));
            if let Some(family) = family {
                ctx.outcome.scanner = Some(UsageScanner::new(family, content_type, header("content-encoding")));
            }
            if let Some(t) = ctx.trace.as_mut().filter(|t| t.captures() && resp.status.is_success()) {
                t.response_start(family, content_type, header("content-encoding"));
            }
        }
        ctx.timing.overhead += t.elapsed();
    }

    pub(super) fn client_response_body(&self, body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut Ctx) -> Result<()> {
        let t = Instant::now();
        // Past the total deadline a response still arriving (a slow drip, a
        // stream that never ends) is cut; the client sees the stream end.
        if !end_of_stream && ctx.timing.start.elapsed() > ctx.live.config.timeouts.total {
            ctx.outcome.error = Some(GatewayError::UpstreamTimeout);
            return Err(total_timeout(&ctx.live.config.timeouts));
        }
        if let Some(scanner) = ctx.outcome.scanner.as_mut() {
            if let Some(b) = body.as_ref() {
                scanner.feed(b);
            }
            if end_of_stream {
                scanner.finish();
            }
        }
        if let Some(t) = ctx.trace.as_mut() {
            t.response_body(body.as_deref(), end_of_stream);
        }
        ctx.timing.overhead += t.elapsed();
        Ok(())
    }

    pub(super) async fn answer_failure(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let kind = if ctx.cred.token_failed { Some(GatewayError::CredentialUnavailable) } else { GatewayError::from_proxy_error(e) };
        if let Some(k) = kind {
            if matches!(k, GatewayError::UpstreamUnreachable | GatewayError::UpstreamTimeout | GatewayError::UpstreamError | GatewayError::CredentialUnavailable) {
                METRICS.upstream_errors.with_label_values(&[ctx.provider_label(), k.kind()]).inc();
            }
        }
        match kind {
            Some(k) => {
                ctx.outcome.error.get_or_insert(k);
                ctx.outcome.error_detail = Some(e.to_string());
            }
            None => ctx.outcome.error_detail = Some("client_disconnected".into()),
        }
        let already_answered = session.response_written().is_some();
        let code = match kind {
            Some(k) if !already_answered => {
                let msg = match k {
                    GatewayError::CredentialUnavailable => e.context.as_ref().map_or_else(|| k.describe().to_string(), |c| c.to_string()),
                    GatewayError::UpstreamUnreachable | GatewayError::UpstreamTimeout | GatewayError::UpstreamError => {
                        format!("{} ({})", k.describe(), ctx.target.upstream.as_ref().map_or("-", |u| u.authority.as_str()))
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
}
