//! OpenTelemetry traces (issue 17): one SERVER span per request and a
//! CLIENT child span for the provider call, with the GenAI semantic
//! conventions, W3C trace context continued from the client and passed to
//! the provider, exported over OTLP/HTTP in batches off the request path.
//!
//! * [`export`]: the tracer provider, its batch processor on its own thread
//!   (bounded queue; drops counted in `tollgate_otel_spans_dropped_total`);
//! * [`propagation`]: `traceparent`/`tracestate` in and out;
//! * [`span`]: the request's spans and their attributes;
//! * [`content`], [`answer`]: prompt and answer for `capture_content`, and
//!   the answer's finish reasons, in the GenAI conventions' shapes;
//! * [`raw`]: the side copy of passthrough bodies read for content.
//!
//! Off (no `tollgate.otel`): [`tracer`] is `None`, and the gateway creates
//! no span objects at all.

use std::sync::OnceLock;
use std::time::Duration;

pub mod answer;
pub mod content;
pub mod export;
pub mod propagation;
pub mod raw;
pub mod span;

pub use span::{Finish, RequestTrace};

/// How spans reach the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (port 4318).
    HttpProtobuf,
    /// OTLP/gRPC (port 4317), over HTTP/2, TLS for `https://`.
    Grpc,
}

/// `tollgate.otel`, as validated by `config::otel`.
#[derive(Clone, PartialEq)]
pub struct TraceSettings {
    /// HTTP: the URL spans are POSTed to (`…/v1/traces`); gRPC: the
    /// collector's `http(s)://host:port`.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Sent with every export (collector credentials: never logged).
    pub headers: Vec<(String, String)>,
    pub service_name: String,
    /// Share of new traces sampled; a client's sampled flag is followed.
    pub sample_ratio: f64,
    /// Prompt and completion text on spans (off by default).
    pub capture_content: bool,
    /// One export request, retries included.
    pub timeout: Duration,
    /// How long spans wait in the queue before a batch is sent.
    pub scheduled_delay: Duration,
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
}

impl std::fmt::Debug for TraceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSettings")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("headers", &self.headers.iter().map(|(n, _)| (n.as_str(), "<redacted>")).collect::<Vec<_>>())
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .field("capture_content", &self.capture_content)
            .field("timeout", &self.timeout)
            .field("scheduled_delay", &self.scheduled_delay)
            .field("max_queue_size", &self.max_queue_size)
            .field("max_export_batch_size", &self.max_export_batch_size)
            .finish()
    }
}

/// The process's tracing, once started.
struct Active {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    capture_content: bool,
}

static ACTIVE: OnceLock<Active> = OnceLock::new();

/// Start exporting with `settings` (once per process; later calls do
/// nothing). Blocking: it builds the HTTP client and spawns the batch
/// thread. Call it after Pingora daemonized (threads do not survive fork):
/// [`TraceService`] does.
pub fn start(settings: &TraceSettings) -> Result<(), String> {
    if ACTIVE.get().is_some() {
        return Ok(());
    }
    let provider = export::provider(settings)?;
    let tracer = opentelemetry::trace::TracerProvider::tracer_with_scope(
        &provider,
        opentelemetry::InstrumentationScope::builder("tollgate").with_version(env!("CARGO_PKG_VERSION")).build(),
    );
    if ACTIVE.set(Active { provider, tracer, capture_content: settings.capture_content }).is_err() {
        log::debug!("otel: started twice; the first provider is kept");
    }
    let protocol = match settings.protocol {
        OtlpProtocol::HttpProtobuf => "OTLP/HTTP",
        OtlpProtocol::Grpc => "OTLP/gRPC",
    };
    log::info!("otel: exporting traces to {} over {protocol} (sample ratio {})", settings.endpoint, settings.sample_ratio);
    Ok(())
}

/// The tracer when tracing is on (one atomic load when off).
#[inline]
pub fn tracer() -> Option<&'static opentelemetry_sdk::trace::SdkTracer> {
    ACTIVE.get().map(|a| &a.tracer)
}

/// Prompt and completion text may go on spans.
pub fn capture_content() -> bool {
    ACTIVE.get().is_some_and(|a| a.capture_content)
}

/// Export what is queued and stop (after the server drained).
pub fn shutdown() {
    if let Some(a) = ACTIVE.get() {
        if let Err(e) = a.provider.shutdown_with_timeout(Duration::from_secs(10)) {
            log::warn!("otel: final flush: {e}");
        }
    }
}

/// A Pingora background service that starts the exporter in the serving
/// process (after daemonizing) and is ready once it runs; the proxy
/// service depends on it, so the first request is traced.
pub struct TraceService(pub TraceSettings);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for TraceService {
    async fn start_with_ready_notifier(&self, _shutdown: pingora::server::ShutdownWatch, ready: pingora::services::ServiceReadyNotifier) {
        let settings = self.0.clone();
        match tokio::task::spawn_blocking(move || start(&settings)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("otel: cannot start the exporter, requests are not traced: {e}"),
            Err(e) => log::error!("otel: exporter start failed: {e}"),
        }
        ready.notify_ready();
    }
}

#[cfg(test)]
#[path = "content_tests.rs"]
mod content_tests;
