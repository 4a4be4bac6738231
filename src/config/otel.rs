//! `tollgate.otel`: OpenTelemetry traces exported over OTLP (issue 17).
//! Absent means off: no exporter, no spans.

use super::{resolve_secret, ConfigError, Parse};
use crate::observe::trace::{OtlpProtocol, TraceSettings};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtel {
    endpoint: Option<String>,
    protocol: Option<String>,
    service_name: Option<String>,
    sample_ratio: Option<f64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    capture_content: bool,
    timeout_ms: Option<u64>,
    scheduled_delay_ms: Option<u64>,
    max_queue_size: Option<usize>,
    max_export_batch_size: Option<usize>,
}

/// The OTLP/HTTP path for traces, appended to an endpoint given without a
/// path (as `OTEL_EXPORTER_OTLP_ENDPOINT` does).
const TRACES_PATH: &str = "/v1/traces";

pub(super) fn parse(raw: Option<RawOtel>, p: &Parse<'_>) -> Result<Option<TraceSettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let key = |k: &str| format!("tollgate.otel.{k}");
    let protocol = match raw.protocol.as_deref().unwrap_or("http/protobuf") {
        "http/protobuf" => OtlpProtocol::HttpProtobuf,
        "grpc" => OtlpProtocol::Grpc,
        other => return Err(p.err(&key("protocol"), format!("`{other}` is not one of http/protobuf, grpc"))),
    };
    // The OTLP exporter defaults: a collector on this host, 4318 for
    // OTLP/HTTP, 4317 for OTLP/gRPC.
    let endpoint = raw.endpoint.unwrap_or_else(|| match protocol {
        OtlpProtocol::HttpProtobuf => "http://127.0.0.1:4318".into(),
        OtlpProtocol::Grpc => "http://127.0.0.1:4317".into(),
    });
    let endpoint = match protocol {
        OtlpProtocol::HttpProtobuf => traces_url(endpoint.trim()),
        OtlpProtocol::Grpc => grpc_url(endpoint.trim()),
    }
    .map_err(|m| p.err(&key("endpoint"), m))?;
    let service_name = raw.service_name.unwrap_or_else(|| "tollgate".into());
    if service_name.trim().is_empty() {
        return Err(p.err(&key("service_name"), "is empty".into()));
    }
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(p.err(&key("sample_ratio"), "must be between 0.0 and 1.0".into()));
    }
    let mut headers = Vec::new();
    for (name, value) in raw.headers {
        let hkey = format!("tollgate.otel.headers.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(p.err(&hkey, "is not a valid header name".into()));
        }
        let value = resolve_secret(&value, p.env).map_err(|var| p.err(&hkey, format!("environment variable {var} is not set or empty")))?;
        if http::HeaderValue::from_str(&value).is_err() {
            // The value may be a secret: never echo it.
            return Err(p.err(&hkey, "is not a valid header value (visible ASCII only)".into()));
        }
        headers.push((name.to_ascii_lowercase(), value));
    }
    let ms = |k: &str, v: Option<u64>, default: u64, max: u64| -> Result<Duration, ConfigError> {
        match v.unwrap_or(default) {
            n if n == 0 || n > max => Err(p.err(&key(k), format!("must be between 1 and {max}"))),
            n => Ok(Duration::from_millis(n)),
        }
    };
    let timeout = ms("timeout_ms", raw.timeout_ms, 10_000, 600_000)?;
    let scheduled_delay = ms("scheduled_delay_ms", raw.scheduled_delay_ms, 5_000, 600_000)?;
    let max_queue_size = raw.max_queue_size.unwrap_or(2048);
    if !(1..=1_000_000).contains(&max_queue_size) {
        return Err(p.err(&key("max_queue_size"), "must be between 1 and 1000000".into()));
    }
    let max_export_batch_size = raw.max_export_batch_size.unwrap_or(512.min(max_queue_size));
    if max_export_batch_size == 0 || max_export_batch_size > max_queue_size {
        return Err(p.err(&key("max_export_batch_size"), format!("must be between 1 and max_queue_size ({max_queue_size})")));
    }
    Ok(Some(TraceSettings {
        endpoint,
        protocol,
        headers,
        service_name,
        sample_ratio,
        capture_content: raw.capture_content,
        timeout,
        scheduled_delay,
        max_queue_size,
        max_export_batch_size,
    }))
}

/// `http(s)://host[:port][/path]` → the URL spans are POSTed to:
/// `/v1/traces` appended when no path is given.
fn traces_url(endpoint: &str) -> Result<String, String> {
    let uri = plain_url(endpoint)?;
    Ok(match uri.path() {
        "" | "/" => format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/')),
        _ => endpoint.to_string(),
    })
}

/// `http(s)://host[:port]` of an OTLP/gRPC collector (the gRPC method is
/// the path): port 4317 when none is given.
fn grpc_url(endpoint: &str) -> Result<String, String> {
    let uri = plain_url(endpoint)?;
    if !matches!(uri.path(), "" | "/") {
        return Err(format!("`{endpoint}` has a path: an OTLP/gRPC endpoint is `http(s)://host:port`"));
    }
    let base = endpoint.trim_end_matches('/');
    Ok(if uri.port().is_some() { base.to_string() } else { format!("{base}:4317") })
}

/// A URL with a scheme and host, and nothing that could hold a secret.
fn plain_url(endpoint: &str) -> Result<http::Uri, String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| format!("`{endpoint}` must start with http:// or https://"))?;
    if endpoint.contains(['?', '#']) || rest.contains('@') {
        return Err(format!("`{endpoint}` must be a plain URL (no query, fragment or user info; use `headers` for credentials)"));
    }
    let uri: http::Uri = endpoint.parse().map_err(|e| format!("`{endpoint}` is not a URL: {e}"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{endpoint}` has no host"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use crate::config::test_load as load;
    use std::time::Duration;

    #[test]
    fn absent_is_off() {
        assert!(load("tollgate: {}\n").unwrap().otel.is_none());
    }

    #[test]
    fn defaults_and_endpoint_path() {
        let c = load("tollgate:\n  otel: { endpoint: 'http://127.0.0.1:4318' }\n").unwrap();
        let o = c.otel.unwrap();
        assert_eq!(o.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(o.service_name, "tollgate");
        assert_eq!(o.sample_ratio, 1.0);
        assert!(!o.capture_content);
        assert_eq!(o.scheduled_delay, Duration::from_secs(5));
        assert_eq!((o.max_queue_size, o.max_export_batch_size), (2048, 512));
        let c = load("tollgate:\n  otel: { endpoint: 'https://otel.example:4318/', service_name: gw, sample_ratio: 0.25, capture_content: true }\n").unwrap();
        let o = c.otel.unwrap();
        assert_eq!(o.endpoint, "https://otel.example:4318/v1/traces");
        assert_eq!((o.service_name.as_str(), o.sample_ratio, o.capture_content), ("gw", 0.25, true));
        // A path given is used as is.
        let c = load("tollgate:\n  otel: { endpoint: 'http://c:4318/custom/traces', protocol: http/protobuf }\n").unwrap();
        assert_eq!(c.otel.unwrap().endpoint, "http://c:4318/custom/traces");
    }

    #[test]
    fn grpc_endpoint_and_defaults() {
        use crate::observe::trace::OtlpProtocol;
        let o = load("tollgate:\n  otel: { protocol: grpc }\n").unwrap().otel.unwrap();
        assert_eq!((o.protocol, o.endpoint.as_str()), (OtlpProtocol::Grpc, "http://127.0.0.1:4317"));
        let o = load("tollgate:\n  otel: {}\n").unwrap().otel.unwrap();
        assert_eq!((o.protocol, o.endpoint.as_str()), (OtlpProtocol::HttpProtobuf, "http://127.0.0.1:4318/v1/traces"));
        let o = load("tollgate:\n  otel: { protocol: grpc, endpoint: 'https://otel.example/' }\n").unwrap().otel.unwrap();
        assert_eq!(o.endpoint, "https://otel.example:4317");
        let o = load("tollgate:\n  otel: { protocol: grpc, endpoint: 'http://10.0.0.9:14317' }\n").unwrap().otel.unwrap();
        assert_eq!(o.endpoint, "http://10.0.0.9:14317");
    }

    #[test]
    fn headers_resolve_env_and_never_echo_values() {
        let c = load("tollgate:\n  otel: { endpoint: 'http://c:4318', headers: { x-honeycomb-team: env.OPENAI_KEY, X-Plain: v } }\n").unwrap();
        let o = c.otel.unwrap();
        assert!(o.headers.contains(&("x-honeycomb-team".into(), "sk-real".into())));
        assert!(o.headers.contains(&("x-plain".into(), "v".into())));
        assert!(!format!("{o:?}").contains("sk-real"), "Debug redacts header values");
        let e = load("tollgate:\n  otel: { endpoint: 'http://c:4318', headers: { x-k: \"sec\\nret\" } }\n").unwrap_err();
        assert_eq!(e.key, "tollgate.otel.headers.x-k");
        assert!(!e.to_string().contains("sec"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("otel: { endpoint: 'ftp://x' }", "tollgate.otel.endpoint"),
            ("otel: { endpoint: 'http://' }", "tollgate.otel.endpoint"),
            ("otel: { endpoint: 'http://u:p@c:4318' }", "tollgate.otel.endpoint"),
            ("otel: { endpoint: 'http://c:4317/v1/traces', protocol: grpc }", "tollgate.otel.endpoint"),
            ("otel: { endpoint: 'c:4317', protocol: grpc }", "tollgate.otel.endpoint"),
            ("otel: { endpoint: 'http://c', protocol: http/json }", "tollgate.otel.protocol"),
            ("otel: { endpoint: 'http://c', sample_ratio: 1.5 }", "tollgate.otel.sample_ratio"),
            ("otel: { endpoint: 'http://c', sample_ratio: -0.1 }", "tollgate.otel.sample_ratio"),
            ("otel: { endpoint: 'http://c', service_name: ' ' }", "tollgate.otel.service_name"),
            ("otel: { endpoint: 'http://c', headers: { 'bad name': x } }", "tollgate.otel.headers.bad name"),
            ("otel: { endpoint: 'http://c', headers: { k: env.NOPE } }", "tollgate.otel.headers.k"),
            ("otel: { endpoint: 'http://c', scheduled_delay_ms: 0 }", "tollgate.otel.scheduled_delay_ms"),
            ("otel: { endpoint: 'http://c', timeout_ms: 0 }", "tollgate.otel.timeout_ms"),
            ("otel: { endpoint: 'http://c', max_queue_size: 0 }", "tollgate.otel.max_queue_size"),
            ("otel: { endpoint: 'http://c', max_queue_size: 10, max_export_batch_size: 11 }", "tollgate.otel.max_export_batch_size"),
        ];
        for (y, key) in cases {
            let e = load(&format!("tollgate:\n  {y}\n")).unwrap_err();
            assert_eq!(e.key, key, "for {y:?}: {e}");
            assert!(e.to_string().contains("t.yaml"), "{e}");
        }
        let e = load("tollgate:\n  otel: { endpoint: 'http://c', protocol: grpc2 }\n").unwrap_err();
        assert!(e.message.contains("http/protobuf, grpc"), "{e}");
        let e = load("tollgate:\n  otel: { endpoint: 'http://c', bogus: 1 }\n").unwrap_err();
        assert!(e.message.contains("bogus"), "{e}");
    }
}
