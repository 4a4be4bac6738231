//! The `tollgate:` section of the configuration file.
//!
//! Pingora's own settings live at the top level of the same YAML file and are
//! read by Pingora (`ServerConf`); this module reads only the gateway's section
//! and validates it completely at start, so a bad file fails with the key and
//! the file named, never at the first request. Each section is parsed and
//! validated in its own file: `providers`, `virtual_keys`, `redis`, `otel`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::net::Timeouts;
use crate::observe::access_log::AccessLogTarget;
use crate::observe::prices::PriceTable;
use crate::providers::Provider;

pub mod admin;
pub mod cache;
pub mod glob;
pub mod identity;
pub mod logs;
pub mod otel;
pub mod providers;
pub mod redis;
pub mod routing;
mod summary;
pub mod tls;
pub mod virtual_keys;

pub use providers::{KeyConf, ProviderConf};
pub use redis::RedisConf;
pub use tls::TlsConf;
pub use virtual_keys::{Budget, Period, VirtualKey};

/// A configuration error: the dotted key that is wrong, the file and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: `{}`: {}", self.file, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// What every section parser needs: the file (for errors) and the
/// environment (for `env.VAR` values).
pub(crate) struct Parse<'a> {
    pub file: &'a str,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Parse<'_> {
    /// An error at the dotted `key`.
    pub fn err(&self, key: &str, message: String) -> ConfigError {
        ConfigError { file: self.file.to_string(), key: key.to_string(), message }
    }
}

// ---------------------------------------------------------------------------
// Raw shape, as written in YAML. Unknown keys are refused so a typo is caught.
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct RawFile {
    tollgate: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    listen: Option<String>,
    tls: Option<tls::RawTls>,
    metrics_listen: Option<String>,
    access_log: Option<String>,
    #[serde(default)]
    allow_direct_keys: bool,
    #[serde(default)]
    require_virtual_key: bool,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    providers: BTreeMap<String, providers::RawProvider>,
    #[serde(default)]
    connect_retries: Option<usize>,
    prices_file: Option<String>,
    prices: Option<crate::observe::prices::RawTable>,
    #[serde(default)]
    virtual_keys: Vec<virtual_keys::RawVirtualKey>,
    state_file: Option<String>,
    redis: Option<redis::RawRedis>,
    #[serde(default)]
    openai_compat: RawOpenAiCompat,
    store: Option<RawStore>,
    #[serde(default, rename = "async")]
    async_jobs: RawAsync,
    otel: Option<otel::RawOtel>,
    // Sections 10-12.
    routing: Option<serde_yaml::Value>,
    cache: Option<serde_yaml::Value>,
    admin_listen: Option<String>,
    admin: Option<admin::RawAdmin>,
    logs: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAsync {
    workers: Option<usize>,
    result_ttl_s: Option<u64>,
    max_result_ttl_s: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOpenAiCompat {
    default_max_tokens: Option<u64>,
    azure_endpoint_allowlist: Option<Vec<String>>,
    reasoning_ttl_s: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect_ms: Option<u64>,
    read_ms: Option<u64>,
    total_ms: Option<u64>,
    write_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_request_body_bytes: Option<u64>,
    max_header_bytes: Option<u64>,
}

/// either side.
fn listeners_overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[derive(Debug, Clone)]
pub struct Config {
    pub file: String,
    pub listen: SocketAddr,
    /// TLS (and HTTP/2 by ALPN) on `listen`; plain HTTP/1.1 when absent.
    pub tls: Option<TlsConf>,
    pub metrics_listen: Option<SocketAddr>,
    pub access_log: AccessLogTarget,
    pub allow_direct_keys: bool,
    pub require_virtual_key: bool,
    pub timeouts: Timeouts,
    pub max_request_body_bytes: Option<u64>,
    /// Request line plus headers; larger heads get 431.
    pub max_header_bytes: u64,
    pub connect_retries: usize,
    pub providers: BTreeMap<Provider, ProviderConf>,
    pub prices: PriceTable,
    pub virtual_keys: Vec<VirtualKey>,
    /// Shared virtual-key counters for several instances.
    pub redis: Option<RedisConf>,
    /// The `/openai` route (SPEC 8).
    pub openai_compat: OpenAiCompat,
    /// The embedded store (SQLite) for async jobs.
    pub store_path: std::path::PathBuf,
    /// Async inference (SPEC 9).
    pub async_jobs: AsyncJobs,
    /// OpenTelemetry traces (`tollgate.otel`); `None` is off.
    pub otel: Option<crate::observe::trace::TraceSettings>,
    /// Routing across providers on `/openai` (SPEC 10).
    pub routing: routing::RoutingConf,
    /// The response cache on `/openai` (SPEC 11); `None` is off.
    pub cache: Option<cache::CacheConf>,
    /// The admin listener and its token (SPEC 12).
    pub admin: admin::AdminConf,
    /// The request log store (SPEC 12); `None` is off.
    pub logs: Option<logs::LogsConf>,
}

/// `tollgate.async`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncJobs {
    /// Jobs run at once by this instance.
    pub workers: usize,
    /// How long a result is kept after the job finished.
    pub result_ttl_s: u64,
    /// The most a client may ask for with `x-bf-async-job-result-ttl`.
    pub max_result_ttl_s: u64,
}

/// `tollgate.openai_compat`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiCompat {
    /// `max_tokens` for providers that require one when the request has none.
    pub default_max_tokens: u64,
    /// URL globs (`scheme://host:port`) a client may name in `x-bf-azure-endpoint`.
    pub azure_endpoint_allowlist: Vec<String>,
    /// How long the reasoning replay memory keeps what a tool-using turn
    /// needs on the next one (SPEC 8, "Reasoning models").
    pub reasoning_ttl_s: u64,
}

/// The allowlist when the config names none (SPEC 7).
pub const DEFAULT_AZURE_ALLOWLIST: [&str; 3] = ["https://*.openai.azure.com", "https://*.cognitiveservices.azure.com", "https://*.services.ai.azure.com"];

impl Config {
    pub fn provider(&self, p: Provider) -> Option<&ProviderConf> {
        self.providers.get(&p)
    }

    /// Read and validate the `tollgate:` section of `path`.
    pub fn load(path: &str) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_string(),
            key: String::new(),
            message: format!("cannot read file: {e}"),
        })?;
        Self::from_yaml(&text, path, &|v| std::env::var(v).ok())
    }

    /// Parse from text. `env` looks up `env.VAR` references (injected so
    /// tests need not touch the process environment).
    pub fn from_yaml(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let p = Parse { file, env };
        let err = |key: &str, message: String| p.err(key, message);
        let raw: RawFile =
            serde_yaml::from_str(text).map_err(|e| err("", format!("invalid YAML: {e}")))?;
        let section = raw
            .tollgate
            .ok_or_else(|| err("tollgate", "section is missing".into()))?;
        let raw: RawGateway = serde_yaml::from_value(section).map_err(|e| {
            err("tollgate", format!("{}", e).replace("unknown field", "unknown key"))
        })?;

        let listen_s = raw.listen.unwrap_or_else(|| "0.0.0.0:8080".to_string());
        let listen = listen_s
            .parse()
            .map_err(|_| err("tollgate.listen", format!("`{listen_s}` is not host:port")))?;
        let tls = tls::parse(raw.tls, &p)?;
        let metrics_listen: Option<SocketAddr> = match raw.metrics_listen {
            None => None,
            Some(s) => Some(s.parse().map_err(|_| {
                err("tollgate.metrics_listen", format!("`{s}` is not host:port"))
            })?),
        };
        // Pingora shares one socket between services given the same address,
        // so the proxy and /metrics would take turns accepting connections;
        // an overlapping address (0.0.0.0 vs 127.0.0.1) fails to bind later.
        if let Some(m) = metrics_listen {
            if listeners_overlap(&listen, &m) {
                return Err(err(
                    "tollgate.metrics_listen",
                    format!("`{m}` overlaps tollgate.listen `{listen}`; give /metrics its own port"),
                ));
            }
        }
        let access_log = match raw.access_log.as_deref() {
            None | Some("stdout") | Some("-") => AccessLogTarget::Stdout,
            Some("") => return Err(err("tollgate.access_log", "is empty".into())),
            Some(p) => AccessLogTarget::File(p.to_string()),
        };
        let ms = |key: &str, v: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
            match v.unwrap_or(default) {
                0 => Err(err(key, "must be greater than zero".into())),
                n if n > 604_800_000 => Err(err(key, "must be at most 604800000 (7 days)".into())),
                n => Ok(Duration::from_millis(n)),
            }
        };
        let timeouts = Timeouts {
            connect: ms("tollgate.timeouts.connect_ms", raw.timeouts.connect_ms, 5_000)?,
            read: ms("tollgate.timeouts.read_ms", raw.timeouts.read_ms, 600_000)?,
            write: ms("tollgate.timeouts.write_ms", raw.timeouts.write_ms, 60_000)?,
            total: ms("tollgate.timeouts.total_ms", raw.timeouts.total_ms, 1_800_000)?,
        };


        let providers = providers::parse(raw.providers, &p)?;
        let mut prices = match &raw.prices_file {
            None => PriceTable::default_table(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| err("tollgate.prices_file", format!("cannot read {p}: {e}")))?;
                PriceTable::parse_yaml(&text).map_err(|m| err("tollgate.prices_file", format!("{p}: {m}")))?
            }
        };
        if let Some(inline) = raw.prices {
            prices.merge(PriceTable::from_raw(inline).map_err(|m| err("tollgate.prices", m))?);
        }
        let virtual_keys = virtual_keys::parse(raw.virtual_keys, &p)?;
        if raw.require_virtual_key && virtual_keys.is_empty() {
            return Err(err("tollgate.require_virtual_key", "is true but no virtual_keys are configured".into()));
        }
        let redis = redis::parse(raw.redis, &p)?;
        let otel = otel::parse(raw.otel, &p)?;
        if raw.state_file.is_some() {
            return Err(err(
                "tollgate.state_file",
                "is replaced by `tollgate.store.path`: virtual-key spend now lives in the store (SQLite, next to the config file unless set); remove state_file".into(),
            ));
        }
        // The store sits next to the config file unless placed elsewhere.
        let store_path = match raw.store.and_then(|s| s.path) {
            Some(p) if p.is_empty() => return Err(err("tollgate.store.path", "is empty".into())),
            Some(p) => std::path::PathBuf::from(p),
            None => std::path::Path::new(file).parent().map_or_else(|| std::path::PathBuf::from("tollgate.db"), |d| d.join("tollgate.db")),
        };
        let workers = raw.async_jobs.workers.unwrap_or(16);
        if !(1..=1024).contains(&workers) {
            return Err(err("tollgate.async.workers", "must be between 1 and 1024".into()));
        }
        let max_result_ttl_s = raw.async_jobs.max_result_ttl_s.unwrap_or(86_400);
        let result_ttl_s = raw.async_jobs.result_ttl_s.unwrap_or(3600.min(max_result_ttl_s));
        if max_result_ttl_s == 0 || max_result_ttl_s > 30 * 86_400 {
            return Err(err("tollgate.async.max_result_ttl_s", "must be between 1 and 2592000 (30 days)".into()));
        }
        if result_ttl_s == 0 || result_ttl_s > max_result_ttl_s {
            return Err(err("tollgate.async.result_ttl_s", format!("must be between 1 and max_result_ttl_s ({max_result_ttl_s})")));
        }
        let default_max_tokens = raw.openai_compat.default_max_tokens.unwrap_or(4096);
        if default_max_tokens == 0 {
            return Err(err("tollgate.openai_compat.default_max_tokens", "must be at least 1".into()));
        }
        let reasoning_ttl_s = raw.openai_compat.reasoning_ttl_s.unwrap_or(86_400);
        if reasoning_ttl_s == 0 || reasoning_ttl_s > 30 * 86_400 {
            return Err(err("tollgate.openai_compat.reasoning_ttl_s", "must be between 1 and 2592000 (30 days)".into()));
        }
        let azure_endpoint_allowlist = raw.openai_compat.azure_endpoint_allowlist.unwrap_or_else(|| DEFAULT_AZURE_ALLOWLIST.map(str::to_string).to_vec());
        for (i, pat) in azure_endpoint_allowlist.iter().enumerate() {
            if !(pat.starts_with("https://") || pat.starts_with("http://")) || pat.contains('?') {
                return Err(err(&format!("tollgate.openai_compat.azure_endpoint_allowlist[{i}]"), format!("`{pat}` is not an http(s):// URL glob")));
            }
        }
        let max_request_body_bytes = raw.limits.max_request_body_bytes;
        // Pingora itself answers 400 to request heads above 1 MiB.
        let max_header_bytes = raw.limits.max_header_bytes.unwrap_or(65_536);
        if !(1..=1_048_575).contains(&max_header_bytes) {
            return Err(err("tollgate.limits.max_header_bytes", "must be between 1 and 1048575 (Pingora refuses larger heads itself)".into()));
        }
        if max_request_body_bytes == Some(0) {
            return Err(err("tollgate.limits.max_request_body_bytes", "must be greater than zero".into()));
        }
        let known = |name: &str| Provider::from_name(name).is_some_and(|pr| providers.contains_key(&pr));
        let routing = routing::parse(raw.routing, &known, &p)?;
        let cache = cache::parse(raw.cache, &known, &p)?;
        let admin = admin::parse(raw.admin_listen, raw.admin, metrics_listen, &p)?;
        // Its own address must not collide with the proxy's or the metrics
        // listener's (sharing the metrics listener exactly is the default).
        if let Some(a) = admin.listen {
            let with_metrics = metrics_listen.is_some_and(|m| m != a && listeners_overlap(&a, &m));
            if listeners_overlap(&listen, &a) || with_metrics {
                return Err(err("tollgate.admin_listen", format!("`{a}` overlaps tollgate.listen or tollgate.metrics_listen; give it its own port, or the metrics listener's exact address")));
            }
        }
        let logs = logs::parse(raw.logs, &p)?;
        Ok(Config {
            file: file.to_string(),
            listen,
            tls,
            metrics_listen,
            access_log,
            allow_direct_keys: raw.allow_direct_keys,
            require_virtual_key: raw.require_virtual_key,
            timeouts,
            max_request_body_bytes,
            max_header_bytes,
            connect_retries: raw.connect_retries.unwrap_or(2),
            providers,
            prices,
            virtual_keys,
            redis,
            openai_compat: OpenAiCompat { default_max_tokens, azure_endpoint_allowlist, reasoning_ttl_s },
            store_path,
            async_jobs: AsyncJobs { workers, result_ttl_s, max_result_ttl_s },
            otel,
            routing,
            cache,
            admin,
            logs,
        })
    }
}

/// `env.VAR` → the variable's value (missing or empty is an error naming the
/// variable); anything else is a literal.
fn resolve_secret(v: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    match v.strip_prefix("env.") {
        Some(var) => match env(var) {
            Some(val) if !val.is_empty() => Ok(val),
            _ => Err(var.to_string()),
        },
        None => Ok(v.to_string()),
    }
}

#[cfg(test)]
pub(crate) fn test_load(y: &str) -> Result<Config, ConfigError> {
    fn env(v: &str) -> Option<String> {
        match v {
            "OPENAI_KEY" => Some("sk-real".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }
    Config::from_yaml(y, "t.yaml", &env)
}

#[cfg(test)]
mod tests {
    use super::test_load as load;
    use super::*;

    #[test]
    fn minimal_and_defaults() {
        let c = load("version: 1\ntollgate:\n  listen: 127.0.0.1:1234\n").unwrap();
        assert_eq!(c.listen.port(), 1234);
        assert_eq!(c.access_log, AccessLogTarget::Stdout);
        assert!(!c.allow_direct_keys);
        assert_eq!(c.timeouts.connect, Duration::from_secs(5));
        assert!(c.providers.is_empty());
    }


    #[test]
    fn missing_env_fails_naming_key_and_var() {
        let e = load("tollgate:\n  providers:\n    openai: { keys: [{ name: a, value: env.NOPE }] }\n")
            .unwrap_err();
        assert_eq!(e.key, "tollgate.providers.openai.keys[0].value");
        assert!(e.message.contains("NOPE"));
        assert!(e.to_string().contains("t.yaml"));
        let e = load("tollgate:\n  providers:\n    openai: { keys: [{ name: a, value: env.EMPTY }] }\n")
            .unwrap_err();
        assert!(e.message.contains("EMPTY"));
    }


    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("tollgate:\n  listen: nope\n", "tollgate.listen"),
            ("tollgate:\n  metrics_listen: x\n", "tollgate.metrics_listen"),
            ("tollgate:\n  listen: 127.0.0.1:9000\n  metrics_listen: 127.0.0.1:9000\n", "tollgate.metrics_listen"),
            ("tollgate:\n  listen: 0.0.0.0:9000\n  metrics_listen: 127.0.0.1:9000\n", "tollgate.metrics_listen"),
            ("tollgate:\n  metrics_listen: 0.0.0.0:8080\n", "tollgate.metrics_listen"),
            ("tollgate:\n  providers:\n    foo: {}\n", "tollgate.providers.foo"),
            ("tollgate:\n  providers:\n    openai: { base_url: 'ftp://x' }\n", "tollgate.providers.openai.base_url"),
            ("tollgate:\n  providers:\n    openai: { keys: [{ value: x }] }\n", "tollgate.providers.openai.keys[0].name"),
            ("tollgate:\n  providers:\n    openai: { keys: [{ name: a }] }\n", "tollgate.providers.openai.keys[0].value"),
            ("tollgate:\n  providers:\n    openai: { keys: [{ name: a, value: x, weight: 0 }] }\n", "tollgate.providers.openai.keys[0].weight"),
            ("tollgate:\n  providers:\n    azure: { keys: [{ name: a, value: x }] }\n", "tollgate.providers.azure.keys[0].endpoint"),
            ("tollgate:\n  providers:\n    openai: { project: p }\n", "tollgate.providers.openai"),
            ("tollgate:\n  providers:\n    vertex: { location: 'us/../x' }\n", "tollgate.providers.vertex.location"),
            ("tollgate:\n  timeouts: { read_ms: 0 }\n", "tollgate.timeouts.read_ms"),
            ("tollgate:\n  bogus: 1\n", "tollgate"),
            ("tollgate:\n  virtual_keys: [{ secret: env.OPENAI_KEY }]\n", "tollgate.virtual_keys[0].name"),
            ("tollgate:\n  virtual_keys: [{ name: a, secret: plaintext }]\n", "tollgate.virtual_keys[0].secret"),
            ("tollgate:\n  virtual_keys: [{ name: a, secret: 'sha256:zz' }]\n", "tollgate.virtual_keys[0].secret"),
            ("tollgate:\n  virtual_keys: [{ name: a, secret: env.NOPE }]\n", "tollgate.virtual_keys[0].secret"),
            ("tollgate:\n  virtual_keys: [{ name: a, secret: env.OPENAI_KEY, providers: [x] }]\n", "tollgate.virtual_keys[0].providers"),
            ("tollgate:\n  virtual_keys: [{ name: a, secret: env.OPENAI_KEY, budget: { usd: 1, period: year } }]\n", "tollgate.virtual_keys[0].budget.period"),
            ("tollgate:\n  virtual_keys: [{ name: a, secret: env.OPENAI_KEY, requests_per_minute: 0 }]\n", "tollgate.virtual_keys[0].requests_per_minute"),
            ("tollgate:\n  require_virtual_key: true\n", "tollgate.require_virtual_key"),
            ("tollgate:\n  prices: { openai: { m: { input: -1, output: 1 } } }\n", "tollgate.prices"),
            ("tollgate:\n  prices_file: /nonexistent/p.yaml\n", "tollgate.prices_file"),
            ("tollgate:\n  limits: { max_header_bytes: 2000000 }\n", "tollgate.limits.max_header_bytes"),
            ("tollgate:\n  timeouts: { total_ms: 0 }\n", "tollgate.timeouts.total_ms"),
            ("tollgate:\n  timeouts: { read_ms: 18446744073709551615 }\n", "tollgate.timeouts.read_ms"),
            ("tollgate:\n  redis: { key_prefix: x }\n", "tollgate.redis.url"),
            ("tollgate:\n  redis: { url: 'http://h:1' }\n", "tollgate.redis.url"),
            ("tollgate:\n  redis: { url: 'redis://h:1', timeout_ms: 0 }\n", "tollgate.redis.timeout_ms"),
            ("version: 1\n", "tollgate"),
            ("tollgate:\n  openai_compat: { default_max_tokens: 0 }\n", "tollgate.openai_compat.default_max_tokens"),
            ("tollgate:\n  openai_compat: { reasoning_ttl_s: 0 }\n", "tollgate.openai_compat.reasoning_ttl_s"),
            ("tollgate:\n  async: { workers: 0 }\n", "tollgate.async.workers"),
            ("tollgate:\n  async: { result_ttl_s: 100, max_result_ttl_s: 10 }\n", "tollgate.async.result_ttl_s"),
            ("tollgate:\n  store: { path: '' }\n", "tollgate.store.path"),
            ("tollgate:\n  state_file: /var/lib/tollgate/state.json\n", "tollgate.state_file"),
            ("tollgate:\n  openai_compat: { azure_endpoint_allowlist: ['*.azure.com'] }\n", "tollgate.openai_compat.azure_endpoint_allowlist[0]"),
            ("tollgate:\n  providers:\n    mistral: { base_url: 'https://api.mistral.ai' }\n", "tollgate.providers.mistral"),
            ("tollgate:\n  providers:\n    mistral: { kind: openai_compatible }\n", "tollgate.providers.mistral.base_url"),
            ("tollgate:\n  providers:\n    openai: { kind: openai_compatible, base_url: 'https://x' }\n", "tollgate.providers.openai.kind"),
            ("tollgate:\n  providers:\n    m: { kind: bogus, base_url: 'https://x' }\n", "tollgate.providers.m.kind"),
        ];
        for (y, key) in cases {
            let e = load(y).unwrap_err();
            assert_eq!(e.key, key, "for {y:?}: {e}");
        }
        let e = load("tollgate:\n  bogus: 1\n").unwrap_err();
        assert!(e.message.contains("bogus"), "{e}");
    }

    #[test]
    fn metrics_may_share_a_port_only_on_another_address() {
        for (listen, metrics) in [("127.0.0.1:9000", "127.0.0.2:9000"), ("127.0.0.1:0", "127.0.0.1:0"), ("0.0.0.0:9000", "0.0.0.0:9100")] {
            let c = load(&format!("tollgate:\n  listen: {listen}\n  metrics_listen: {metrics}\n")).unwrap();
            assert_eq!(c.metrics_listen.unwrap().to_string(), metrics);
        }
    }


    #[test]
    fn inline_prices_override_defaults() {
        let c = load("tollgate:\n  prices: { openai: { gpt-4o: { input: 1, output: 2 } } }\n").unwrap();
        assert_eq!(c.prices.lookup(Provider::OpenAi, "gpt-4o").unwrap().input, 1.0);
        assert!(c.prices.lookup(Provider::Anthropic, "claude-sonnet-4-5").is_some());
    }

}
