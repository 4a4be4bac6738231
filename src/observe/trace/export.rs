//! The tracer provider: the SDK's batch span processor (its own thread,
//! a bounded channel, exports on a timer or when a batch is full) in front
//! of the OTLP exporter: http/protobuf over a blocking HTTP client, or gRPC
//! over tonic. Nothing here runs on a request's task except `on_end`, which
//! only enqueues.
//!
//! gRPC and its runtime: the SDK's batch processor (0.33) runs on a plain
//! thread and drives each export with a bare `block_on`, no Tokio runtime;
//! tonic's channel needs one (its connection task is spawned when the
//! exporter is built, its timeouts and retry sleeps are Tokio timers).
//! [`OnRuntime`] owns a one-worker runtime of its own: the exporter is
//! built inside it and each export runs as a task on it, the batch thread
//! only waiting for the result. Pingora's runtimes are left alone (they
//! serve requests, and restart on upgrade).
//!
//! Accounting: [`Counted`] admits a span only while fewer than
//! `max_queue_size` are waiting, so the SDK's own queue never overflows
//! silently; a span refused there, and the spans of a batch the collector
//! did not take, count in `tollgate_otel_spans_dropped_total{reason}`.

use super::{OtlpProtocol, TraceSettings};
use crate::observe::metrics::METRICS;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Spans admitted and not yet handed to the exporter.
#[derive(Debug)]
struct Queue {
    waiting: AtomicUsize,
    max: usize,
}

impl Queue {
    /// Take a place for one span; `false` when the queue is full.
    fn admit(&self) -> bool {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn taken(&self, n: usize) {
        self.waiting.fetch_sub(n, Ordering::AcqRel);
    }
}

/// The batch processor, with the queue bound kept and drops counted.
#[derive(Debug)]
struct Counted {
    inner: BatchSpanProcessor,
    queue: Arc<Queue>,
}

impl SpanProcessor for Counted {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queue.admit() {
            self.inner.on_end(span);
        } else {
            dropped("queue_full", 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

/// The OTLP exporter, counting what it sends and what fails.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    queue: Arc<Queue>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let n = batch.len();
        self.queue.taken(n);
        let sent = self.inner.export(batch);
        async move {
            let r = sent.await;
            match &r {
                Ok(()) => METRICS.otel_spans_exported.inc_by(n as u64),
                Err(e) => {
                    dropped("export_failed", n as u64);
                    warn_export_failed(n, e);
                }
            }
            r
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

fn dropped(reason: &'static str, n: u64) {
    METRICS.otel_spans_dropped.with_label_values(&[reason]).inc_by(n);
}

/// A collector that is down fails every batch: say so once a minute.
fn warn_export_failed(n: usize, e: &dyn std::fmt::Display) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 60 && LAST.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        log::warn!("otel: export of {n} spans failed (dropped; counted in tollgate_otel_spans_dropped_total): {e}");
    }
}

/// An exporter that needs Tokio (tonic's), run on a runtime of its own.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: Arc<E>,
    rt: tokio::runtime::Runtime,
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let inner = self.inner.clone();
        let task = self.rt.spawn(async move { inner.export(batch).await });
        async move { task.await.unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(format!("export task: {e}")))) }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called once, when the provider is built: no export holds a clone yet.
        match Arc::get_mut(&mut self.inner) {
            Some(e) => e.set_resource(resource),
            None => log::warn!("otel: resource not set on the gRPC exporter (in use)"),
        }
    }
}

/// The OTLP/HTTP exporter. Blocking (builds the HTTP client on a thread of
/// its own, as the blocking client must not be built inside an async
/// runtime).
fn http_exporter(settings: &TraceSettings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let timeout = settings.timeout;
    let client = std::thread::Builder::new()
        .name("otel-client-build".into())
        .spawn(move || reqwest::blocking::Client::builder().timeout(timeout).build())
        .map_err(|e| format!("cannot spawn a thread: {e}"))?
        .join()
        .map_err(|_| "building the HTTP client panicked".to_string())?
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let headers: HashMap<String, String> = settings.headers.iter().cloned().collect();
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(settings.endpoint.as_str())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(settings.timeout)
        .with_headers(headers)
        .build()
        .map_err(|e| e.to_string())
}

/// The OTLP/gRPC exporter on its runtime: `headers` as gRPC metadata, TLS
/// with the system's CA certificates for `https://`.
fn grpc_exporter(settings: &TraceSettings) -> Result<OnRuntime<opentelemetry_otlp::SpanExporter>, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-grpc")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the gRPC exporter's runtime: {e}"))?;
    let mut metadata = http::HeaderMap::new();
    for (name, value) in &settings.headers {
        // Both were checked by the config.
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("header `{name}`: not a valid name"))?;
        let value = http::HeaderValue::from_str(value).map_err(|_| format!("header `{name}`: not a valid value"))?;
        metadata.append(name, value);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.as_str())
        .with_timeout(settings.timeout)
        .with_metadata(MetadataMap::from_headers(metadata));
    if settings.endpoint.starts_with("https://") {
        builder = builder.with_tls_config(ClientTlsConfig::new().with_native_roots());
    }
    let exporter = {
        let _in_runtime = rt.enter();
        builder.build().map_err(|e| e.to_string())?
    };
    Ok(OnRuntime { inner: Arc::new(exporter), rt })
}

fn batch<E: SpanExporter + 'static>(exporter: E, settings: &TraceSettings, queue: &Arc<Queue>) -> BatchSpanProcessor {
    BatchSpanProcessor::builder(CountingExporter { inner: exporter, queue: queue.clone() })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(settings.max_queue_size)
                .with_max_export_batch_size(settings.max_export_batch_size)
                .with_scheduled_delay(settings.scheduled_delay)
                .build(),
        )
        .build()
}

/// The provider for `settings`. Blocking: call it off the async runtimes.
pub fn provider(settings: &TraceSettings) -> Result<SdkTracerProvider, String> {
    let queue = Arc::new(Queue { waiting: AtomicUsize::new(0), max: settings.max_queue_size });
    let batch = match settings.protocol {
        OtlpProtocol::HttpProtobuf => batch(http_exporter(settings)?, settings, &queue),
        OtlpProtocol::Grpc => batch(grpc_exporter(settings)?, settings, &queue),
    };
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(Counted { inner: batch, queue })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio))))
        .with_resource(resource)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_admits_up_to_its_bound() {
        let q = Queue { waiting: AtomicUsize::new(0), max: 2 };
        assert!(q.admit());
        assert!(q.admit());
        assert!(!q.admit(), "third span refused while two wait");
        q.taken(2);
        assert!(q.admit());
        assert_eq!(q.waiting.load(Ordering::Relaxed), 1);
    }
}
