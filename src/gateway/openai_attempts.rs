//! The `/openai` exchange loop (SPEC 10): asks `crate::routing` for the
//! order of an admitted request's candidates and for each next step, tries
//! one target per step (`attempt_target`: key, translation, endpoint, then
//! `run_exchange`), and answers the client once: the first answer, or the
//! last failure when nothing else may be tried. Health (cooldowns, time to
//! first byte) is fed after every attempt.

use super::openai::{translator_for, AZURE_DEFAULT_API_VERSION};
use super::openai_io::{AttemptEnd, Failed, Mode, Prepared, Reply, Translated, Upstream as Exchange};
use super::openai_route::{Answered, Tagged};
use super::sink::Sink;
use super::{Ctx, Gateway};
use crate::errors::GatewayError;
use crate::net::{BaseUrl, Upstream};
use crate::observe::access_log::Attempt;
use crate::observe::metrics::METRICS;
use crate::observe::trace::span::operation_for;
use crate::providers::{vertex, Provider};
use crate::routes::openai::{self as route, PathInput};
use crate::routing::{plan, Attempts, Budget, Candidate, Failure, Outcome, Step};
use crate::translate::Options;
use pingora::prelude::*;
use rand::Rng;
use serde_json::Value;
use std::time::{Duration, Instant};

impl Gateway {
    /// Send an admitted request to its candidates in turn and write the
    /// answer to `sink`: the session's client, or an async job's result.
    /// `translated`: the translation made at admission for the first
    /// candidate, when there was one.
    pub(super) async fn execute_openai(&self, sink: &mut dyn Sink, ctx: &mut Ctx, p: Prepared, mut translated: Option<Translated>) -> Result<()> {
        let live = ctx.live.clone();
        let rc = &live.config.routing;
        let single;
        let cands: &[Candidate] = if p.route.candidates.is_empty() {
            single = super::openai_route::single(&p.provider, &p.model);
            &single
        } else {
            &p.route.candidates
        };
        // The order to try them in: decided at admission for a request
        // that runs now (its first target's translation was made there),
        // here for an async job.
        let order = if p.route.ordered {
            (0..cands.len()).collect()
        } else {
            self.route_order(cands, p.route.alias.as_deref(), rc).await
        };
        let budget = Budget { max_attempts: rc.max_attempts, retries: rc.retries, max_retry_after: Duration::from_secs_f64(rc.max_retry_after_s) };
        let mut attempts = Attempts::new(order.len(), budget);
        let deadline = ctx.timing.start + live.config.timeouts.total;
        let mut last: Option<(Failed, Answered)> = None;
        let mut unsent_only = true;
        let mut step = attempts.start();
        while let Step::Try { index, delay, other_key } = step {
            if !delay.is_zero() {
                if Instant::now() + delay >= deadline {
                    break;
                }
                tokio::time::sleep(delay).await;
            }
            let ci = order[index];
            let cand = &cands[ci];
            let key = cand.target.key();
            let tags = Answered { provider: Some(cand.target.provider.clone()), model: Some(cand.target.model.clone()), attempts: attempts.used(), fallback_index: index };
            ctx.outcome.answered = Some(tags.clone());
            let started = Instant::now();
            // A target whose cooldown just ended takes one probe request;
            // others skip it meanwhile (unless it is all there is).
            let probe_ok = order.len() == 1 || other_key || self.health().take_probe(&key, started, &rc.cooldown);
            let end = if !probe_ok {
                AttemptEnd::failed(Failure::Unsendable, None, Reply::Gateway(GatewayError::UpstreamUnreachable, format!("{key} is cooling down")))
            } else {
                let t = if ci == 0 && !other_key { translated.take() } else { None };
                let mut tagged = Tagged { inner: &mut *sink, tags: tags.clone() };
                // Connect retries on the same key only when there is no
                // other target to move to (key-pool failover is a step of
                // its own, `other_key`).
                ctx.cred.connect_budget = Some(if order.len() > 1 { 0 } else { attempts.left() as usize });
                let end = self.attempt_target(&mut tagged, ctx, &p, cand, ci, t, other_key).await?;
                // Connect retries inside the attempt (key-pool failover on a
                // refused connection) count against the same budget.
                attempts.consume(ctx.cred.connect_attempts.saturating_sub(usize::from(matches!(&end, AttemptEnd::Failed(f) if f.failure == Failure::Connect))) as u32);
                end
            };
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            let provider_label = Provider::from_name(&cand.target.provider).map_or("none", Provider::name);
            let model_label = METRICS.model_label(Some(&cand.target.model));
            match end {
                AttemptEnd::Answered => {
                    if probe_ok {
                        let ttfb = ctx.timing.ttfb.map(|t| t.saturating_sub(started.saturating_duration_since(ctx.timing.start)));
                        self.health().success(&key, ttfb);
                    }
                    let status = ctx.outcome.upstream_status;
                    METRICS.route_attempts.with_label_values(&[provider_label, &model_label, "answered"]).inc();
                    let a = Attempt { provider: cand.target.provider.clone(), model: cand.target.model.clone(), key: ctx.cred.key_name.clone(), status, error: ctx.outcome.error.map(|e| e.kind().to_string()), latency_ms };
                    ctx.outcome.attempts.push(a);
                    return Ok(());
                }
                AttemptEnd::Failed(f) if f.failure == Failure::Unsendable => {
                    // Not sent (cooling down, no key or endpoint, cannot be
                    // translated for it): not an attempt; its reason is the
                    // answer only when nothing was sent at all.
                    attempts.forgo();
                    if probe_ok {
                        let a = Attempt { provider: cand.target.provider.clone(), model: cand.target.model.clone(), key: ctx.cred.key_name.clone(), status: None, error: Some("unsendable".into()), latency_ms };
                        ctx.outcome.attempts.push(a);
                    }
                    step = attempts.after(Outcome::Failed { failure: f.failure, retry_after: None, another_key: false }, rand::thread_rng().gen());
                    if last.is_none() || unsent_only {
                        last = Some((f, tags));
                    }
                }
                AttemptEnd::Failed(f) => {
                    unsent_only = false;
                    let error = failure_name(f.failure);
                    if f.failure.moves_on() {
                        self.route_failed(&key, &rc.cooldown).await;
                    }
                    METRICS.route_attempts.with_label_values(&[provider_label, &model_label, &error]).inc();
                    if let Some(t) = ctx.trace.as_mut() {
                        t.attempt_failed(&error);
                    }
                    let status = match f.failure {
                        Failure::Status(s) => Some(s),
                        _ => None,
                    };
                    let a = Attempt { provider: cand.target.provider.clone(), model: cand.target.model.clone(), key: ctx.cred.key_name.clone(), status, error: Some(error), latency_ms };
                    ctx.outcome.attempts.push(a);
                    let another_key = self.another_key(ctx);
                    step = attempts.after(Outcome::Failed { failure: f.failure, retry_after: f.retry_after, another_key }, rand::thread_rng().gen());
                    last = Some((f, tags));
                }
            }
        }
        // Every attempt failed: the last one's error, saying how many there were.
        let Some((f, mut tags)) = last else {
            return self.sink_refuse(sink, ctx, GatewayError::UpstreamUnreachable, "no target could be tried").await;
        };
        tags.attempts = attempts.used();
        ctx.outcome.answered = Some(tags.clone());
        let mut tagged = Tagged { inner: sink, tags };
        self.write_reply(&mut tagged, ctx, f.reply).await
    }

    /// The order to try `cands` in (indexes into it): the alias's strategy,
    /// cooling targets left out (SPEC 10).
    pub(super) async fn route_order(&self, cands: &[Candidate], alias: Option<&str>, rc: &crate::config::routing::RoutingConf) -> Vec<usize> {
        if cands.len() == 1 {
            return vec![0];
        }
        self.adopt_shared_cooldowns(cands).await;
        let strategy = alias.and_then(|a| rc.models.get(a)).map_or(crate::config::routing::Strategy::Ordered, |a| a.strategy);
        let health = self.health();
        let now = Instant::now();
        let mut rng = rand::thread_rng();
        plan::order(cands, strategy, &|t| health.cooling_left(&t.key(), now, &rc.cooldown), &|t| health.ttfb(&t.key()), &mut rng)
    }

    /// A failed attempt's answer, written.
    async fn write_reply(&self, sink: &mut dyn Sink, ctx: &mut Ctx, reply: Reply) -> Result<()> {
        match reply {
            Reply::Gateway(kind, msg) => self.sink_refuse(sink, ctx, kind, &msg).await,
            Reply::OpenAi(e) => {
                self.sink_openai_error(sink, ctx, &e).await?;
                ctx.outcome.error = Some(GatewayError::UpstreamError);
                Ok(())
            }
            Reply::Json { status, body, retry_after } => {
                ctx.outcome.error = Some(GatewayError::UpstreamError);
                super::sink::json(sink, status, &body, &ctx.request_id, retry_after.as_deref()).await
            }
            Reply::Raw(head, body) => {
                ctx.outcome.error = Some(GatewayError::UpstreamError);
                sink.head(head).await?;
                sink.body(Some(body), true).await
            }
        }
    }

    /// Has the current target's provider another configured key this
    /// request has not tried (key-pool failover, SPEC 7)?
    fn another_key(&self, ctx: &Ctx) -> bool {
        let (Some(provider), Some(name)) = (ctx.target.provider, ctx.cred.key_name.as_deref()) else { return false };
        if name == "direct" {
            return false;
        }
        let keys = ctx.live.config.provider(provider).map_or(0, |c| c.keys.len());
        keys > ctx.cred.tried_keys.len() + 1
    }

    /// One attempt on candidate `ci`: the provider key (another one when
    /// `other_key`), the translation (the admission's for the first
    /// candidate), the endpoint, then the exchange.
    #[allow(clippy::too_many_arguments)]
    async fn attempt_target(&self, sink: &mut dyn Sink, ctx: &mut Ctx, p: &Prepared, cand: &Candidate, ci: usize, translated: Option<Translated>, other_key: bool) -> Result<AttemptEnd> {
        let unsendable = |kind: GatewayError, msg: String| Ok(AttemptEnd::failed(Failure::Unsendable, None, Reply::Gateway(kind, msg)));
        let config = ctx.live.config.clone();
        let Some(provider) = Provider::from_name(&cand.target.provider).filter(|p| config.provider(*p).is_some() || *p == Provider::OpenAi) else {
            return unsendable(GatewayError::ProviderNotConfigured, format!("provider {} is no longer configured", cand.target.provider));
        };
        let endpoint = p.endpoint;
        let native = cand.target.model.clone();
        // A fresh start on this target, or the same target on another key.
        ctx.target.provider = Some(provider);
        ctx.target.model = Some(native.clone());
        ctx.target.upstream = None;
        ctx.timing.ttfb = None;
        ctx.outcome.error = None;
        ctx.outcome.error_detail = None;
        ctx.outcome.usage = None;
        ctx.outcome.scanner = None;
        ctx.outcome.upstream_status = None;
        if other_key {
            if let Some(k) = ctx.cred.key_name.take() {
                ctx.cred.tried_keys.push(k);
            }
        } else {
            ctx.cred.tried_keys.clear();
            ctx.cred.key_name = None;
        }
        ctx.cred.inject = None;
        ctx.cred.quota_project = None;
        ctx.cred.connect_attempts = 0;
        if let Some(t) = ctx.trace.as_mut() {
            t.target(provider, operation_for(endpoint.openai_path()), Some(&native));
        }
        let direct = p.directs.get(ci).cloned().flatten().or_else(|| if ci == 0 { p.direct.clone() } else { None });
        match &direct {
            Some(key) => {
                ctx.cred.inject = Some(provider.auth_header(key));
                ctx.cred.key_name = Some("direct".into());
            }
            None if provider == Provider::Ollama && config.provider(provider).is_some_and(|c| c.keys.is_empty()) => {}
            None => {
                if let Err((err, msg)) = self.choose_configured_key(ctx, provider) {
                    return unsendable(err, msg);
                }
            }
        }

        // The translation and the provider request body.
        let (mode, body, stream) = match translated {
            Some(Translated { translator, body }) => {
                let stream = translator.streaming();
                (Mode::Translated(translator), body, stream)
            }
            None => {
                let mut req = match (&p.req, &p.raw) {
                    (Value::Null, Some(raw)) => {
                        let mut v: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
                        if let Some(o) = v.as_object_mut() {
                            o.remove("fallbacks");
                        }
                        v
                    }
                    (req, _) => req.clone(),
                };
                req["model"] = Value::String(native.clone());
                let stream_requested = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
                let mut mode = match translator_for(provider, endpoint, &native) {
                    Ok(m) => m,
                    Err(e) => return Ok(AttemptEnd::failed(Failure::Unsendable, None, Reply::OpenAi(e))),
                };
                let opts = Options { default_max_tokens: config.openai_compat.default_max_tokens };
                let (body, stream) = match &mut mode {
                    Mode::Passthrough => (serde_json::to_vec(&req).unwrap_or_default(), stream_requested),
                    Mode::Translated(t) => match t.request(super::reasoning::with_memos(req, &p.memos), &opts) {
                        Ok(v) => (serde_json::to_vec(&v).unwrap_or_default(), t.streaming()),
                        Err(e) => return Ok(AttemptEnd::failed(Failure::Unsendable, None, Reply::OpenAi(e))),
                    },
                };
                (mode, body, stream)
            }
        };
        ctx.outcome.stream = stream;

        // Where it goes.
        let conf = config.provider(provider);
        let key = ctx.cred.key_name.as_ref().and_then(|n| conf.and_then(|c| c.keys.iter().find(|k| &k.name == n)));
        let oauth = provider == Provider::Vertex && key.is_some_and(|k| k.identity.is_some());
        let api_version = key.and_then(|k| k.api_version.clone()).or_else(|| p.api_version.clone()).unwrap_or_else(|| AZURE_DEFAULT_API_VERSION.to_string());
        let project = conf.and_then(|c| c.project.clone());
        let location = conf.and_then(|c| c.location.clone()).unwrap_or_else(|| "global".to_string());
        let client_base = if ci == 0 { p.client_base.clone() } else { None };
        let base = match provider {
            Provider::Azure => client_base.or_else(|| key.and_then(|k| k.endpoint.clone())).or_else(|| conf.and_then(|c| c.base_url.clone())),
            Provider::Vertex => conf.and_then(|c| c.base_url.clone()).or_else(|| Some(BaseUrl { tls: true, host: vertex::host(Some(&location)), port: 443, path: String::new() })),
            p => conf.and_then(|c| c.base_url.clone()).or_else(|| p.default_base()),
        };
        let Some(base) = base else {
            return unsendable(GatewayError::ProviderNotConfigured, format!("{} has no endpoint configured", provider.name()));
        };
        if oauth && project.is_none() {
            return unsendable(GatewayError::ProviderNotConfigured, "vertex needs `project` (or a service account with project_id) for OAuth".into());
        }
        let path = route::provider_path(&PathInput {
            provider,
            endpoint,
            model: &native,
            stream,
            api_version: &api_version,
            vertex_project: if oauth { project.as_deref().map(|p| (p, location.as_str())) } else { None },
            base_path: &base.path,
        });
        let upstream = Upstream::at(&base, &path);
        let head = self.provider_head(&p.headers, ctx, &upstream, provider, &mode, body.len(), stream)?;
        ctx.target.upstream = Some(upstream);
        let exchange = Exchange { head, body: bytes::Bytes::from(body) };
        self.run_exchange(sink, ctx, exchange, mode).await
    }
}

/// The attempt's error as the record and the metrics name it.
fn failure_name(f: Failure) -> String {
    match f {
        Failure::Connect => "connect".into(),
        Failure::Timeout => "timeout".into(),
        Failure::Status(s) => format!("status_{s}"),
        Failure::Unsendable => "unsendable".into(),
        Failure::Final => "failed".into(),
    }
}
