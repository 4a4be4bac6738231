//! Graceful upgrades (`SIGQUIT` with a new process started by `-u`) and
//! drains (`SIGTERM`) that lose no request.
//!
//! When the watch flips: at once on `SIGTERM`; on `SIGQUIT`, 5 s after the
//! listening sockets were handed to the new process (Pingora's fixed
//! `CLOSE_TIMEOUT`, time for the new process to start accepting). Until
//! then the old process serves its open connections as usual.
//!
//! What Pingora 0.9 does on its own when its shutdown watch flips: the accept
//! loops stop, and the HTTP app's `http_cleanup` runs at once. That drops
//! every kept-alive connection parked between two requests, so a client that
//! had just sent its next request on one sees the connection closed with no
//! response. Requests that were already running get `Connection: keep-alive`
//! on their response, and their connection is then dropped the same way.
//! After `grace_period_seconds` Pingora shuts its runtimes down, and tokio
//! drops every task still running at that point, streams included
//! (`graceful_shutdown_timeout_seconds` only bounds blocking threads).
//!
//! What tollgate does instead ([`Draining`] wraps Pingora's proxy app and
//! delegates everything but the cleanup):
//! 1. From the moment the shutdown begins, every response carries
//!    `Connection: close` and its connection closes after it
//!    ([`close_when_draining`]). A request that arrives on an idle kept-alive
//!    connection during the drain is still served, with that header.
//! 2. An HTTP/1 connection waiting for its next request is closed once it
//!    has been idle for [`IDLE_CLOSE`] (1 s, counted from its last response,
//!    so a client sending back to back is served, not raced), and at the
//!    latest when `grace_period_seconds` ends.
//! 3. Requests (streams) and async jobs still running get the grace period
//!    and up to `graceful_shutdown_timeout_seconds` more. Pingora's own
//!    grace period is set to the sum of both ([`DrainTimes::pingora_grace`])
//!    so its runtimes stay up that long.
//! 4. As soon as no client connection is open and no job runs (for a quarter
//!    of a second), the process writes its last records and spend and
//!    exits: at once on an idle host, about [`IDLE_CLOSE`] later with only
//!    idle kept-alive connections, when the last stream ends otherwise.
//!
//! HTTP/2 connections (TLS listener) need nothing of this: Pingora
//! (`protocols/http/v2/server.rs`, `accept_downstream_sessions`) answers the
//! shutdown watch with h2's graceful GOAWAY, keeps serving the streams
//! already opened, and closes the connection after its last one; new
//! streams are refused by the GOAWAY. [`close_when_draining`] is a no-op
//! there (`ServerSession::set_keepalive` ignores h2), and the busy count
//! includes h2 streams, so the process outlives them
//! (tests/tls_listener.rs `h2_streams_in_flight_survive_a_drain_and_an_upgrade`).

use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set once the shutdown has begun; never cleared (the process ends).
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Whether this process is draining.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Acquire)
}

/// Called before a response head is written (proxied or the gateway's own):
/// while draining, the response says `Connection: close` and the connection
/// is closed after it, so the client's next request opens a new connection,
/// which reaches the new process (upgrade) or is refused (stop).
pub(super) fn close_when_draining(session: &mut Session) {
    if draining() {
        session.set_keepalive(None);
    }
}

/// Pingora's two shutdown settings, as the operator wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainTimes {
    /// `grace_period_seconds`: how long idle kept-alive connections stay
    /// open and are served after the shutdown begins.
    pub grace: Duration,
    /// `graceful_shutdown_timeout_seconds`: how much longer requests and
    /// jobs still running may take.
    pub timeout: Duration,
}

impl DrainTimes {
    /// Pingora's defaults when a setting is absent (5 min, 5 s).
    pub fn from_settings(grace_period_seconds: Option<u64>, graceful_shutdown_timeout_seconds: Option<u64>) -> DrainTimes {
        DrainTimes {
            grace: Duration::from_secs(grace_period_seconds.unwrap_or(300)),
            timeout: Duration::from_secs(graceful_shutdown_timeout_seconds.unwrap_or(5)),
        }
    }

    /// The grace period Pingora is given: both phases, so that its runtimes
    /// (and the tasks on them) live until the drain is over.
    pub fn pingora_grace(&self) -> u64 {
        (self.grace + self.timeout).as_secs()
    }
}

/// Pingora's HTTP proxy app with a drain that loses no request (module doc).
pub struct Draining<A> {
    inner: Arc<A>,
    times: DrainTimes,
    /// Whether anything still runs (requests in flight, async jobs).
    busy: Box<dyn Fn() -> bool + Send + Sync>,
    /// Writes the last records and spend; called before the process exits.
    finish: Arc<dyn Fn() + Send + Sync>,
}

impl<A> Draining<A> {
    pub fn new(inner: A, times: DrainTimes, busy: impl Fn() -> bool + Send + Sync + 'static, finish: Arc<dyn Fn() + Send + Sync>) -> Self {
        Draining { inner: Arc::new(inner), times, busy: Box::new(busy), finish }
    }
}

/// Open client connections of the proxy listener: an HTTP/1 connection from
/// its first request's read until it closes (Pingora calls
/// `process_new_http` once per request, back to back, with no await between
/// them), an HTTP/2 stream while it runs.
static OPEN: AtomicUsize = AtomicUsize::new(0);

struct Open;
impl Open {
    fn new() -> Open {
        OPEN.fetch_add(1, Ordering::AcqRel);
        Open
    }
}
impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

tokio::task_local! {
    /// Set by [`request_begun`] once the HTTP/1 request this task waits for
    /// has been read: from then on its connection is not idle.
    static BEGUN: Arc<AtomicBool>;
}

/// Called by the proxy when a request's head has been read (`new_ctx`): the
/// connection it came on is no longer idle, the drain does not close it.
pub fn request_begun() {
    let _ = BEGUN.try_with(|b| b.store(true, Ordering::Release));
}

/// How long an HTTP/1 connection must have been idle (since its last
/// response, or its accept) before a drain closes it. A client sending
/// requests back to back, or one that reads an answer and asks again at
/// once (an agent's next turn), sends within this: its request is served
/// with `Connection: close` instead of racing a close (a request written
/// onto a connection the server is closing is lost unread). A connection
/// idle this long is a pooled one; the client sees it closed before it
/// writes, or, at worst, retries as RFC 9112 9.3.1 asks (the SDKs do).
/// One second is also what it adds, at most, to a stop.
pub const IDLE_CLOSE: Duration = Duration::from_secs(1);

/// When a connection waiting for its next request is closed by a drain
/// that began at `drain_start`: once idle for [`IDLE_CLOSE`], at the latest
/// when the grace period ends.
fn idle_deadline(idle_since: Instant, drain_start: Instant, grace: Duration) -> Instant {
    (idle_since + IDLE_CLOSE).min(drain_start + grace).max(drain_start)
}

/// Resolves when a drain should close this idle HTTP/1 connection: the
/// shutdown began and no request came within its [`idle_deadline`]. Never
/// resolves once a request has begun (its response closes the connection).
async fn close_when_idle(shutdown: &ShutdownWatch, idle_since: Instant, begun: &AtomicBool, grace: Duration) {
    let mut watch = shutdown.clone();
    if watch.wait_for(|down| *down).await.is_err() {
        return std::future::pending().await;
    }
    tokio::time::sleep_until(idle_deadline(idle_since, Instant::now(), grace).into()).await;
    if begun.load(Ordering::Acquire) {
        std::future::pending::<()>().await;
    }
}

/// The HTTP/1 exchange, or `None` when a drain closes the connection while
/// it waits idle for its request ([`close_when_idle`]).
async fn exchange_or_idle_close(
    _open: Open,
    exchange: impl Future<Output = Option<ReusedHttpStream>>,
    shutdown: &ShutdownWatch,
    idle_since: Instant,
    begun: Arc<AtomicBool>,
    grace: Duration,
) -> Option<ReusedHttpStream> {
    tokio::select! {
        biased;
        reused = exchange => reused,
        _ = close_when_idle(shutdown, idle_since, &begun, grace) => None,
    }
}

#[async_trait::async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for Draining<A> {
    /// One request (HTTP/1: the wait for it, then its exchange). While the
    /// process drains, an HTTP/1 connection still waiting for its next
    /// request is closed after [`IDLE_CLOSE`] (dropping the wait, as
    /// Pingora's own cleanup does, but only for connections idle that long).
    ///
    /// Written out rather than `async fn`: an async fn keeps its arguments
    /// in its future for the future's whole life, and the session (about
    /// 680 bytes) would sit in every open connection's memory twice, here and
    /// in the proxy's own future. The session is handed to the proxy before
    /// this future is built, which then holds only pointers and the drain
    /// timer (`draining_future_is_small`).
    fn process_new_http<'life0, 'life1, 'async_trait>(
        self: &'life0 Arc<Self>,
        session: ServerSession,
        shutdown: &'life1 ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let open = Open::new();
        if session.is_http2() {
            // Pingora's GOAWAY drains HTTP/2 (module doc).
            let exchange = self.inner.process_new_http(session, shutdown);
            return Box::pin(async move {
                let _open = open;
                exchange.await
            });
        }
        let idle_since = Instant::now();
        let begun = Arc::new(AtomicBool::new(false));
        let exchange = BEGUN.scope(begun.clone(), self.inner.process_new_http(session, shutdown));
        let grace = self.times.grace;
        Box::pin(exchange_or_idle_close(open, exchange, shutdown, idle_since, begun, grace))
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    /// Runs when the accept loops have stopped: the drain of the module doc.
    /// Pingora's own cleanup is never called: it would close at once every
    /// connection that becomes idle from then on, including one whose client
    /// is sending its next request after a stream that began before the
    /// drain. Idle connections are closed by [`Self::process_new_http`]
    /// after [`IDLE_CLOSE`]; the process exits as soon as no connection is
    /// open and no job runs, else at the end of both phases.
    async fn http_cleanup(&self) {
        DRAINING.store(true, Ordering::Release);
        log::info!(
            "draining: {} connections open; idle ones close after {:?} (at most grace_period_seconds, {:?}); requests and jobs still running get up to {:?} more",
            OPEN.load(Ordering::Acquire),
            IDLE_CLOSE,
            self.times.grace,
            self.times.timeout
        );
        let finished = wait_until_quiet(&|| OPEN.load(Ordering::Acquire) > 0 || (self.busy)(), Instant::now() + self.times.grace + self.times.timeout).await;
        if finished {
            log::info!("draining: done, no connection open and nothing left running");
        } else {
            log::warn!(
                "draining: {} connections still open after grace_period_seconds + graceful_shutdown_timeout_seconds; they are cut",
                OPEN.load(Ordering::Acquire)
            );
        }
        let finish = self.finish.clone();
        let _ = tokio::task::spawn_blocking(move || finish()).await;
        std::process::exit(0);
    }
}

/// How long no connection may be open and nothing run before a draining
/// process exits. HTTP/1 connections are counted without a gap; this covers
/// an HTTP/2 connection between its graceful GOAWAY and the last stream its
/// client had sent before receiving it (one loopback or LAN round trip).
const QUIET: Duration = Duration::from_millis(250);

/// Wait until `busy` has been false for [`QUIET`], or until `deadline`;
/// true when it went quiet.
async fn wait_until_quiet(busy: &(dyn Fn() -> bool + Send + Sync), deadline: Instant) -> bool {
    let mut quiet_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if busy() {
            quiet_since = None;
        } else if now.duration_since(*quiet_since.get_or_insert(now)) >= QUIET {
            return true;
        }
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an open HTTP/1 connection's drain wrapper costs: the proxy's
    /// exchange (one boxed pointer in the task-local scope), the idle-close
    /// timer and the counters, not the session (`process_new_http`).
    #[test]
    fn draining_future_is_small() {
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let inner: Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send>> = Box::pin(async { None });
        let begun = Arc::new(AtomicBool::new(false));
        let exchange = BEGUN.scope(begun.clone(), inner);
        let fut = exchange_or_idle_close(Open::new(), exchange, &shutdown, Instant::now(), begun, Duration::from_secs(1));
        let size = std::mem::size_of_val(&fut);
        assert!(size < 512, "the drain wrapper's future is {size} bytes");
        assert!(size < std::mem::size_of::<ServerSession>(), "the session ({} bytes) is what the wrapper must not hold", std::mem::size_of::<ServerSession>());
    }

    #[test]
    fn pingora_waits_for_both_phases_and_absent_settings_take_its_defaults() {
        let t = DrainTimes::from_settings(Some(3), Some(10));
        assert_eq!((t.grace, t.timeout), (Duration::from_secs(3), Duration::from_secs(10)));
        assert_eq!(t.pingora_grace(), 13);
        let d = DrainTimes::from_settings(None, None);
        assert_eq!(d.pingora_grace(), 305);
        assert_eq!(DrainTimes::from_settings(Some(0), Some(0)).pingora_grace(), 0);
    }

    #[test]
    fn an_idle_connection_closes_after_its_idle_moment_at_most_at_the_grace_end() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // Idle for long before the drain: closed at once.
        assert_eq!(idle_deadline(t0, t0 + s(10), s(30)), t0 + s(10));
        // Became idle just before the drain: after its idle moment.
        assert_eq!(idle_deadline(t0, t0 + Duration::from_millis(200), s(30)), t0 + IDLE_CLOSE);
        // A grace period shorter than the idle moment wins.
        assert_eq!(idle_deadline(t0, t0, s(0)), t0);
        assert_eq!(idle_deadline(t0, t0, Duration::from_millis(300)), t0 + Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_drain_ends_after_a_quiet_moment_or_at_its_deadline() {
        use std::sync::atomic::AtomicUsize;
        // Busy for the first 5 polls, then quiet: ends after QUIET.
        let polls = AtomicUsize::new(0);
        let busy = move || polls.fetch_add(1, Ordering::Relaxed) < 5;
        let t = Instant::now();
        assert!(wait_until_quiet(&busy, t + Duration::from_secs(10)).await);
        assert!(t.elapsed() >= QUIET);
        // Never quiet: gives up at the deadline.
        let t = Instant::now();
        assert!(!wait_until_quiet(&|| true, t + Duration::from_millis(100)).await);
        assert!(t.elapsed() >= Duration::from_millis(100));
    }
}
