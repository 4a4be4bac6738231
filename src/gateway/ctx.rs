//! Per-request state shared across the phases, in a few named parts.

use super::live::Live;
use crate::errors::GatewayError;
use crate::net::Upstream;
use crate::observe::trace::RequestTrace;
use crate::observe::usage::{Usage, UsageScanner};
use crate::providers::Provider;
use crate::routes::genai::VertexRule;
use crate::routes::RouteName;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A request's state. Boxed: Pingora's per-connection future keeps the
/// context in more than one of its await states, so inline it would be
/// counted several times in every open connection's memory.
pub struct Ctx(Box<CtxState>);

impl std::ops::Deref for Ctx {
    type Target = CtxState;
    fn deref(&self) -> &CtxState {
        &self.0
    }
}

impl std::ops::DerefMut for Ctx {
    fn deref_mut(&mut self) -> &mut CtxState {
        &mut self.0
    }
}

pub struct CtxState {
    /// The configuration this request runs under (taken at its start).
    pub(super) live: Arc<Live>,
    pub(super) request_id: String,
    pub(super) timing: Timing,
    pub(super) target: Target,
    pub(super) cred: Credential,
    pub(super) outcome: Outcome,
    /// The request's spans; `None` when tracing is off or not started
    /// (health checks). Boxed: most deployments do not trace, and the
    /// spans (about 430 bytes) would sit in every open stream's context.
    pub(super) trace: Option<Box<RequestTrace>>,
}

/// When things happened.
pub(super) struct Timing {
    pub start: Instant,
    pub start_wall: SystemTime,
    /// Time to the response head.
    pub ttfb: Option<Duration>,
    /// Time spent inside tollgate's own phases.
    pub overhead: Duration,
}

/// What the request is and where it goes.
#[derive(Default)]
pub(super) struct Target {
    pub route: Option<RouteName>,
    pub provider: Option<Provider>,
    pub vertex_rule: Option<VertexRule>,
    /// The remainder after the prefix: the provider-native path.
    pub remainder: String,
    /// Model named by the request (body peek, Gemini path, Azure deployment).
    pub model: Option<String>,
    pub upstream: Option<Upstream>,
    /// A `100 Continue` was sent while peeking at the body.
    pub sent_continue: bool,
}

/// Who is calling, and with which provider key.
#[derive(Default)]
pub(super) struct Credential {
    /// The provider key's name (`direct` for a client's own key).
    pub key_name: Option<String>,
    /// Configured credential to set upstream, `(header, value)`.
    pub inject: Option<(&'static str, String)>,
    /// Forward the client's own credential (direct keys).
    pub keep_client: bool,
    /// Keys already tried for this request (connect failures).
    pub tried_keys: Vec<String>,
    pub connect_attempts: usize,
    /// `/openai`: connect retries this attempt may still make (each counts
    /// against `routing.max_attempts`); `None` on the passthrough routes.
    pub connect_budget: Option<usize>,
    /// The virtual key's name, when one was presented and accepted.
    pub virtual_key: Option<String>,
    /// `/openai`: whose reasoning replay memos the answer leaves
    /// (`jobs::owner`).
    pub owner: Option<String>,
    /// The client's credential header was a virtual key: never forward it.
    pub client_is_vk: bool,
    /// The key is a cloud identity and no access token could be obtained.
    pub token_failed: bool,
    /// `x-goog-user-project` to send: the quota project of Google user
    /// credentials (ADC `authorized_user`), as Google's libraries send it.
    pub quota_project: Option<String>,
}

/// How it went.
#[derive(Default)]
pub(super) struct Outcome {
    pub error: Option<GatewayError>,
    pub error_detail: Option<String>,
    pub scanner: Option<UsageScanner>,
    /// Usage from a translated answer (`/openai`), when not scanned.
    /// Boxed, as the scanner's decoder: only `/openai` sets it.
    pub usage: Option<Box<Usage>>,
    /// The async job this request submitted, polled or executed.
    pub job_id: Option<String>,
    pub stream: bool,
    pub counted_in_flight: bool,
    /// What the request log store keeps with `capture_content` (`/openai`).
    pub log_content: Option<crate::logs::Content>,
    /// `/openai`: who answered, for the answer's headers (SPEC 10).
    pub answered: Option<super::openai_route::Answered>,
    /// `/openai`: the status of the provider's answer head, this attempt.
    pub upstream_status: Option<u16>,
    /// `/openai`: what the response cache did (SPEC 11), and what a hit
    /// saved (tokens, USD).
    pub cache: Option<&'static str>,
    pub cache_saved: Option<(u64, Option<f64>)>,
    /// `/openai`: each attempt, for the record (SPEC 10).
    pub attempts: Vec<crate::observe::access_log::Attempt>,
}

impl Ctx {
    pub(super) fn new(live: Arc<Live>) -> Ctx {
        Ctx(Box::new(CtxState {
            live,
            request_id: String::new(),
            timing: Timing { start: Instant::now(), start_wall: SystemTime::now(), ttfb: None, overhead: Duration::ZERO },
            target: Target::default(),
            cred: Credential::default(),
            outcome: Outcome::default(),
            trace: None,
        }))
    }

    pub(super) fn provider_label(&self) -> &'static str {
        self.target.provider.map_or("none", Provider::name)
    }
}

#[cfg(test)]
mod tests {
    /// The context lives in Pingora's per-connection future, which holds it
    /// in several await states: it must stay a pointer there.
    #[test]
    fn the_context_is_one_pointer_inline() {
        assert_eq!(std::mem::size_of::<super::Ctx>(), std::mem::size_of::<usize>());
    }

    /// And what it points to is held by every open stream, for the stream's
    /// whole life: what only some requests use (tracing spans, a decoder
    /// for encoded answers, a translated answer's usage) is boxed, so that
    /// it costs the others nothing. 1,024 bytes is also one of mimalloc's
    /// size classes (the next is 1,280).
    #[test]
    fn the_context_state_stays_small() {
        let size = std::mem::size_of::<super::CtxState>();
        assert!(size <= 1024, "CtxState is {size} bytes");
    }
}
