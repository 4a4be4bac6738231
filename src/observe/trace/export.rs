//! The tracer provider: the SDK's batch span processor (its own thread,
//! a bounded channel, exports on a timer or when a batch is full) in front
//! of the OTLP http/protobuf exporter over a blocking HTTP client. Nothing
//! here runs on a request's task except `on_end`, which only enqueues.
//!
//! Accounting: [`Counted`] admits a span only while fewer than
//! `max_queue_size` are waiting, so the SDK's own queue never overflows
//! silently; a span refused there, and the spans of a batch the collector
//! did not take, count in `tollgate_otel_spans_dropped_total{reason}`.

use super::TraceSettings;
use crate::observe::metrics::METRICS;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
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

/// The provider for `settings`. Blocking (builds the HTTP client on a
/// thread of its own, as the blocking client must not be built inside an
/// async runtime).
pub fn provider(settings: &TraceSettings) -> Result<SdkTracerProvider, String> {
    let timeout = settings.timeout;
    let client = std::thread::Builder::new()
        .name("otel-client-build".into())
        .spawn(move || reqwest::blocking::Client::builder().timeout(timeout).build())
        .map_err(|e| format!("cannot spawn a thread: {e}"))?
        .join()
        .map_err(|_| "building the HTTP client panicked".to_string())?
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let headers: HashMap<String, String> = settings.headers.iter().cloned().collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(settings.endpoint.as_str())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(settings.timeout)
        .with_headers(headers)
        .build()
        .map_err(|e| e.to_string())?;
    let queue = Arc::new(Queue { waiting: AtomicUsize::new(0), max: settings.max_queue_size });
    let batch = BatchSpanProcessor::builder(CountingExporter { inner: exporter, queue: queue.clone() })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(settings.max_queue_size)
                .with_max_export_batch_size(settings.max_export_batch_size)
                .with_scheduled_delay(settings.scheduled_delay)
                .build(),
        )
        .build();
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
