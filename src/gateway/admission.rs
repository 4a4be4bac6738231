//! Admission, called from `request_filter`: the virtual key (who is
//! calling, may they use this provider and model, is there rate and budget
//! left), the provider key to use, and the upstream plan for it. Refusals
//! are answered here.

use super::reply::write_json_tagged;
use super::{Ctx, Gateway};
use crate::config::VirtualKey;
use crate::errors::GatewayError;
use crate::governance::key_pool;
use crate::governance::shared_counters::SharedCounters;
use crate::governance::virtual_keys::{Refusal, VirtualKeys};
use crate::net::query::query_without;
use crate::observe::metrics::METRICS;
use crate::providers::Provider;
use crate::routes::credentials::{client_credential, virtual_key_header, SECRET_QUERY_PARAMS};
use crate::routes::plan::{plan_upstream, PlanInput};
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

impl Gateway {
    /// Answer with a gateway error (SPEC 5) from `request_filter`.
    pub(super) async fn refuse(&self, session: &mut Session, ctx: &mut Ctx, err: GatewayError, message: &str) -> Result<bool> {
        ctx.outcome.error = Some(err);
        ctx.outcome.error_detail = Some(message.to_string());
        write_json_tagged(session, err.status(), &err.body(message, &ctx.request_id), &ctx.request_id, None, ctx.outcome.answered.as_ref()).await?;
        Ok(true)
    }

    /// Virtual key checks (SPEC 2): who is calling and may they use this
    /// provider and model. `Ok(None)` when no virtual key applies; `Err`
    /// carries the refusal to answer.
    pub(super) fn check_virtual_key(&self, session: &Session, ctx: &mut Ctx, provider: Provider) -> std::result::Result<Option<Arc<VirtualKey>>, Refusal> {
        let vk = self.identify_virtual_key(session, ctx)?;
        if let Some(vk) = &vk {
            VirtualKeys::check_access(vk, provider, ctx.target.model.as_deref())?;
        }
        Ok(vk)
    }

    /// Who is calling (SPEC 2): the virtual key presented, when one is;
    /// `Err` when it is unknown or one is required. Access to a provider
    /// and model is checked by the caller.
    pub(super) fn identify_virtual_key(&self, session: &Session, ctx: &mut Ctx) -> std::result::Result<Option<Arc<VirtualKey>>, Refusal> {
        if self.virtual_keys().is_empty() {
            // No virtual keys configured: control headers are just dropped.
            return Ok(None);
        }
        let req = session.req_header();
        let explicit = virtual_key_header(&req.headers);
        let client = client_credential(&req.headers, req.uri.query());
        let refusal = |error: GatewayError, reason: &'static str, message: &str| Refusal { error, reason, message: message.to_string(), retry_after: None };
        let vk = match (&explicit, &client) {
            (Some(e), _) => match self.virtual_keys().find(e) {
                Some(k) => Some(k),
                None => return Err(refusal(GatewayError::VirtualKeyInvalid, "invalid", "unknown virtual key")),
            },
            (None, Some(c)) => {
                let k = self.virtual_keys().find(&c.secret);
                ctx.cred.client_is_vk = k.is_some();
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
        ctx.cred.virtual_key = Some(vk.name.clone());
        Ok(Some(vk))
    }

    /// Is there rate and budget left for `vk`? Counts the request. Uses the
    /// shared Redis counters when configured, local ones otherwise or when
    /// Redis fails.
    pub(super) async fn admit_limits(&self, vk: &VirtualKey) -> std::result::Result<(), Refusal> {
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
    pub(super) async fn reject(&self, session: &mut Session, ctx: &mut Ctx, r: Refusal) -> Result<bool> {
        METRICS.vk_rejections.with_label_values(&[r.reason]).inc();
        ctx.outcome.error = Some(r.error);
        ctx.outcome.error_detail = Some(r.message.clone());
        let retry_after = r.retry_after.map(|s| s.to_string());
        write_json_tagged(session, r.error.status(), &r.error.body(&r.message, &ctx.request_id), &ctx.request_id, retry_after.as_deref(), ctx.outcome.answered.as_ref()).await?;
        Ok(true)
    }

    /// Pick the provider key for this request, `Err` with the refusal when
    /// none can be used. Sets `ctx.cred.inject`/`keep_client_credentials`.
    pub(super) fn choose_credential(&self, session: &Session, ctx: &mut Ctx, provider: Provider) -> std::result::Result<(), (GatewayError, String)> {
        let req = session.req_header();
        let client = client_credential(&req.headers, req.uri.query());
        let direct = ctx.live.config.allow_direct_keys && provider != Provider::Azure && client.is_some() && !ctx.cred.client_is_vk;
        if direct {
            ctx.cred.keep_client = true;
            ctx.cred.inject = None;
            ctx.cred.key_name = Some("direct".into());
            return Ok(());
        }
        self.choose_configured_key(ctx, provider)
    }

    /// Pick one of the provider's configured keys (weighted, allowing the
    /// model, skipping tried and resting keys); sets `ctx.cred`.
    pub(super) fn choose_configured_key(&self, ctx: &mut Ctx, provider: Provider) -> std::result::Result<(), (GatewayError, String)> {
        let ctx = &mut **ctx;
        let keys = ctx.live.config.provider(provider).map(|c| c.keys.as_slice()).unwrap_or(&[]);
        if keys.is_empty() {
            return Err((
                GatewayError::ProviderNotConfigured,
                format!("no key is configured for provider {} and direct keys are not allowed", provider.name()),
            ));
        }
        let model = ctx.target.model.as_deref();
        let mut rng = rand::thread_rng();
        // Keys resting after a 401/403/429 are skipped while others remain.
        let mut exclude = ctx.cred.tried_keys.clone();
        exclude.extend(self.key_health.cooling(provider, Instant::now()));
        let key = key_pool::select_key(keys, model, &exclude, &mut rng)
            .or_else(|| key_pool::select_key(keys, model, &ctx.cred.tried_keys, &mut rng));
        match key {
            Some(k) => {
                METRICS.key_healthy.with_label_values(&[provider.name(), &k.name]).set(1);
                ctx.cred.key_name = Some(k.name.clone());
                // An identity key's token is fetched when connecting
                // (`Gateway::identity_token`).
                ctx.cred.quota_project = None;
                ctx.cred.inject = match k.identity {
                    Some(_) => None,
                    None => Some(provider.auth_header(&k.value)),
                };
                Ok(())
            }
            None if !ctx.cred.tried_keys.is_empty() => Err((GatewayError::UpstreamUnreachable, "every provider key was tried".into())),
            None => Err((
                GatewayError::Forbidden,
                match &ctx.target.model {
                    Some(m) => format!("no configured {} key allows model {m}", provider.name()),
                    None => format!("the {} keys are restricted to listed models and the request names none", provider.name()),
                },
            )),
        }
    }

    /// Compute `ctx.target.upstream` from the route and the chosen key.
    pub(super) fn plan(&self, session: &Session, ctx: &mut Ctx) -> std::result::Result<(), (GatewayError, String)> {
        let provider = ctx.target.provider.expect("provider chosen before planning");
        let conf = ctx.live.config.provider(provider);
        let key = ctx.cred.key_name.as_ref().and_then(|n| conf.and_then(|c| c.keys.iter().find(|k| &k.name == n)));
        let query = if ctx.cred.keep_client {
            session.req_header().uri.query().map(str::to_string)
        } else {
            query_without(session.req_header().uri.query(), &SECRET_QUERY_PARAMS)
        };
        let up = plan_upstream(&PlanInput {
            provider,
            remainder: &ctx.target.remainder,
            query: query.as_deref(),
            conf,
            key,
            vertex_oauth: key.is_some_and(|k| k.identity.is_some()),
        })
        .map_err(|m| (GatewayError::ProviderNotConfigured, m.to_string()))?;
        ctx.target.upstream = Some(up);
        Ok(())
    }
}
