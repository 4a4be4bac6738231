//! `logging`: one record per request (SPEC 6), the request metrics, and
//! the virtual key's tokens and spend (locally, and in Redis when shared).

use super::{Ctx, Gateway};
use crate::observe::access_log::{rfc3339, Record};
use crate::observe::metrics::{method_label, METRICS};
use crate::observe::trace::Finish;
use crate::providers::Provider;
use crate::routes::credentials::redact_query;
use crate::routes::RouteName;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::time::{Duration, Instant, SystemTime};

/// What the record says about the request itself: read from the client's
/// session, or made up by an async job's execution.
pub(super) struct Facts {
    pub client_ip: Option<String>,
    pub method: String,
    /// Path and query, query secrets redacted.
    pub path: String,
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub user_agent: Option<String>,
}

impl Facts {
    pub fn of(session: &Session) -> Facts {
        let req = session.req_header();
        Facts {
            client_ip: session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()),
            method: req.method.as_str().to_string(),
            path: match req.uri.query() {
                Some(q) => format!("{}?{}", req.uri.path(), redact_query(q)),
                None => req.uri.path().to_string(),
            },
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            request_bytes: session.as_ref().body_bytes_read() as u64,
            response_bytes: session.as_ref().body_bytes_sent() as u64,
            user_agent: req.headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string),
        }
    }
}

impl Gateway {
    pub(super) async fn record(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let facts = Facts::of(session);
        self.record_facts(facts, e, ctx).await
    }

    pub(super) async fn record_facts(&self, facts: Facts, e: Option<&Error>, ctx: &mut Ctx) {
        if ctx.outcome.counted_in_flight {
            METRICS.in_flight.dec();
        }
        if let Some(scanner) = ctx.outcome.scanner.as_mut() {
            if e.is_none() {
                scanner.finish();
            }
        }
        let provider = ctx.target.provider.map(Provider::name);
        let status = facts.status;
        let usage = ctx.outcome.scanner.as_ref().map(|s| s.usage().clone()).or_else(|| ctx.outcome.usage.as_deref().cloned());
        let model = usage.as_ref().and_then(|u| u.model.clone()).or_else(|| ctx.target.model.clone());
        let error = match (ctx.outcome.error, e) {
            (Some(g), _) => Some(g.kind().to_string()),
            (None, Some(err)) => Some(match err.esource() {
                ErrorSource::Downstream => "client_disconnected".to_string(),
                _ => err.etype().as_str().to_string(),
            }),
            (None, None) => None,
        };
        let duration = ctx.timing.start.elapsed();
        let tokens = usage.as_ref().filter(|u| u.seen);
        let cost = match (ctx.target.provider, tokens, model.as_deref()) {
            (Some(p), Some(u), Some(m)) => ctx.live.config.prices.cost(p, m, u),
            _ => None,
        };
        let mut rec = Record {
            ts: rfc3339(ctx.timing.start_wall),
            request_id: ctx.request_id.clone(),
            client_ip: facts.client_ip,
            method: facts.method.clone(),
            route: ctx.target.route.map(RouteName::prefix),
            provider,
            upstream_host: ctx.target.upstream.as_ref().map(|u| u.authority.clone()),
            path: facts.path,
            status,
            duration_ms: ms(duration),
            ttfb_ms: ctx.timing.ttfb.map(ms),
            request_bytes: facts.request_bytes,
            response_bytes: facts.response_bytes,
            stream: ctx.outcome.stream,
            model: model.clone(),
            input_tokens: tokens.map(|u| u.input_tokens),
            output_tokens: tokens.map(|u| u.output_tokens),
            cached_tokens: tokens.map(|u| u.cached_tokens),
            cache_read_tokens: tokens.map(|u| u.cached_tokens),
            cache_write_tokens: tokens.map(|u| u.cache_write_tokens),
            reasoning_tokens: tokens.map(|u| u.reasoning_tokens),
            cost_usd: cost,
            virtual_key: ctx.cred.virtual_key.clone(),
            provider_key: ctx.cred.key_name.clone(),
            error,
            user_agent: facts.user_agent,
            async_job_id: ctx.outcome.job_id.clone(),
            fallback_index: ctx.outcome.answered.as_ref().filter(|a| a.attempts > 0).map(|a| a.fallback_index),
            attempts: std::mem::take(&mut ctx.outcome.attempts),
            content: None,
            cache: ctx.outcome.cache,
            cache_saved_tokens: ctx.outcome.cache_saved.map(|s| s.0),
            cache_saved_usd: ctx.outcome.cache_saved.and_then(|s| s.1),
        };

        if let Some(t) = ctx.trace.take() {
            t.credentials(ctx.cred.virtual_key.as_deref(), ctx.cred.key_name.as_deref());
            t.finish(&Finish {
                status,
                error: rec.error.as_deref(),
                response_model: usage.as_ref().and_then(|u| u.model.as_deref()),
                tokens: tokens.map(|u| (u.input_tokens, u.output_tokens, u.cached_tokens)),
                finish_reasons: ctx.outcome.scanner.as_ref().map_or(&[], |s| s.finish_reasons()),
                cost_usd: cost,
            });
        }

        // Metrics.
        let plabel = ctx.provider_label();
        let route_label = ctx.target.route.map_or("none", RouteName::prefix);
        METRICS.count_request(plabel, route_label, method_label(&facts.method), status);
        if ctx.target.provider.is_some() {
            METRICS.with_provider(plabel, |series| {
                series.duration.observe(duration.as_secs_f64());
                if let Some(t) = ctx.timing.ttfb {
                    series.ttfb.observe(t.as_secs_f64());
                }
                series.overhead.observe(ctx.timing.overhead.as_secs_f64());
                series.request_bytes.inc_by(rec.request_bytes);
                series.response_bytes.inc_by(rec.response_bytes);
            });
            if let Some(u) = tokens {
                let vk_label = ctx.cred.virtual_key.as_deref().unwrap_or("none");
                METRICS.with_tokens(plabel, model.as_deref(), vk_label, |s| {
                    s.input.inc_by(u.input_tokens);
                    s.output.inc_by(u.output_tokens);
                    s.cached.inc_by(u.cached_tokens);
                    s.cache_write.inc_by(u.cache_write_tokens);
                    if let Some(c) = cost {
                        s.cost.inc_by(c);
                    }
                });
            }
        }
        if let Some(vk) = &ctx.cred.virtual_key {
            if ctx.outcome.error.is_none() || tokens.is_some() {
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
        // The request log store (SPEC 12) gets the record from the access
        // log's writer thread, with the line written for it; the captured
        // content rides along (never in the access log).
        if self.logs.is_some() {
            rec.content = ctx.outcome.log_content.take().map(Box::new);
        }
        self.access_log.write(rec);
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}
