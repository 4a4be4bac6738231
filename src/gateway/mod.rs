//! The Pingora glue. [`Gateway`]'s `ProxyHttp` impl only wires phases to
//! the modules that decide; each phase group has its own file:
//!
//! * [`request`]: `request_filter` (route, validate, virtual key, provider
//!   key, upstream plan) and `request_body_filter` (size limit; an empty
//!   last HTTP/2 DATA frame dropped);
//! * [`upstream`]: `upstream_peer` (peer from the plan, OAuth token),
//!   `fail_to_connect` (retry on another key), `upstream_request_filter`
//!   (path, host and credential);
//! * [`response`]: key health, header hygiene, the usage scanner fed a side
//!   copy, and errors answered when proxying fails;
//! * [`logging`]: the record, metrics and spend.
//!
//! [`live`] holds the configuration snapshots and hot reload; [`drain`]
//! the graceful upgrade and stop; [`tls`] the client-facing TLS listener's
//! settings and its reloadable certificate.

use crate::governance::key_pool::KeyHealth;
use crate::governance::shared_counters::SharedCounters;
use crate::governance::virtual_keys::VirtualKeys;
use crate::net::Resolver;
use crate::observe::access_log::AccessLog;
use async_trait::async_trait;
use bytes::Bytes;
use live::LiveConfig;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use std::sync::Arc;
use std::time::Duration;

pub mod admin;
mod admission;
mod ctx;
pub mod drain;
pub mod live;
mod log_content;
mod logging;
mod openai;
mod openai_attempts;
mod openai_io;
mod openai_route;
mod sink;
pub mod jobs;
mod reply;
mod reasoning;
pub use reasoning::open as open_reasoning;
mod response_cache;
pub use response_cache::open as open_cache;
mod route_health;
mod request;
mod response;
pub mod tls;
mod upstream;

pub use ctx::Ctx;

/// Cheap to clone: the async job workers hold one too.
#[derive(Clone)]
pub struct Gateway {
    /// Configuration, replaced on reload; each request keeps a snapshot.
    pub live: Arc<LiveConfig>,
    pub resolver: Arc<Resolver>,
    pub access_log: AccessLog,
    pub key_health: Arc<KeyHealth>,
    /// Client for token exchanges and `/openai` exchanges (same TLS trust
    /// and pool settings as proxied requests).
    connector: Arc<Connector>,
    /// Virtual-key counters shared with other instances (`tollgate.redis`).
    shared: Option<Arc<SharedCounters>>,
    /// Async jobs (SPEC 9).
    pub jobs: jobs::Jobs,
    /// The request log store (SPEC 12), when `tollgate.logs` is set.
    pub logs: Option<crate::logs::LogStore>,
    /// `/openai` targets' cooldowns and latency (SPEC 10), across reloads.
    pub route_health: route_health::SharedHealth,
    /// The response cache (SPEC 11), when `tollgate.cache` is set.
    pub cache: Option<Arc<crate::cache::CacheStore>>,
    /// The reasoning replay memory's embedded store (SPEC 8); Redis holds
    /// it instead when configured.
    pub reasoning: Option<Arc<crate::store::replay::ReplayStore>>,
}


impl Gateway {
    pub fn new(live: Arc<LiveConfig>, access_log: AccessLog, connector_options: Option<ConnectorOptions>) -> Self {
        let shared = live.snapshot().config.redis.clone().map(|r| Arc::new(SharedCounters::new(r)));
        // tollgate_logs_dropped_total is exported (0) with the logs off too.
        std::sync::LazyLock::force(&crate::logs::DROPPED);
        // The cache's lookup counters exist (at 0) with the cache off too, so
        // the README's metric list holds for every config.
        for result in ["hit", "semantic-hit", "miss", "refresh", "bypass"] {
            crate::observe::metrics::METRICS.cache_lookups.with_label_values(&[result]);
        }
        let route_health = route_health::SharedHealth::default();
        {
            let live = live.clone();
            let collector = route_health::CooldownCollector::new(route_health.clone(), Arc::new(move || live.snapshot().config.clone()));
            // One per process in the default registry (tests build several
            // gateways: the first one's stays).
            let _ = prometheus::register(Box::new(collector));
        }
        Gateway {
            shared,
            live,
            resolver: Arc::new(Resolver::default()),
            access_log,
            key_health: Default::default(),
            connector: Arc::new(Connector::new(connector_options)),
            jobs: jobs::Jobs::default(),
            logs: None,
            route_health,
            cache: None,
            reasoning: None,
        }
    }

    fn virtual_keys(&self) -> &VirtualKeys {
        &self.live.virtual_keys
    }

}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        drain::request_begun();
        Ctx::new(self.live.snapshot())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.route_request(session, ctx).await
    }

    async fn request_body_filter(&self, session: &mut Session, body: &mut Option<Bytes>, end: bool, ctx: &mut Ctx) -> Result<()> {
        // An HTTP/2 client may end its body with an empty DATA frame.
        // Pingora would write that to an HTTP/1.1 provider as a chunk of
        // size 0, the chunked terminator, and then the terminator again:
        // stray bytes the provider reads as the next request.
        if end && body.as_ref().is_some_and(|b| b.is_empty()) {
            *body = None;
        }
        let state = &mut **ctx;
        if let Some(t) = state.trace.as_mut().filter(|t| t.captures()) {
            let family = state.target.provider.and_then(|p| p.usage_family(&state.target.remainder));
            t.request_body(family, body.as_deref(), end);
        }
        self.limit_request_body(session, ctx)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        self.pick_peer(ctx).await
    }

    fn fail_to_connect(&self, session: &mut Session, _peer: &HttpPeer, ctx: &mut Ctx, e: Box<Error>) -> Box<Error> {
        self.retry_connect(session, ctx, e)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(t) = &ctx.trace {
            t.connected(reused);
        }
        Ok(())
    }

    async fn upstream_request_filter(&self, session: &mut Session, upstream_request: &mut RequestHeader, ctx: &mut Ctx) -> Result<()> {
        self.rewrite_upstream_request(session, upstream_request, ctx)
    }

    async fn upstream_response_filter(&self, _session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        self.watch_key_health(resp, ctx).await;
        Ok(())
    }

    async fn response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        drain::close_when_draining(session);
        self.client_response_head(resp, ctx);
        Ok(())
    }

    fn response_body_filter(&self, _session: &mut Session, body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut Ctx) -> Result<Option<Duration>> {
        self.client_response_body(body, end_of_stream, ctx)?;
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        self.answer_failure(session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        self.record(session, e, ctx).await
    }
}
