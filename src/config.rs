//! The `tollgate:` section of the configuration file.
//!
//! Pingora's own settings live at the top level of the same YAML file and are
//! read by Pingora (`ServerConf`); this module reads only the gateway's section
//! and validates it completely at start, so a bad file fails with the key and
//! the file named, never at the first request.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::prices::PriceTable;
use crate::vkeys::{Budget, Period, VirtualKey};
use crate::route::Provider;

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
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    connect_retries: Option<usize>,
    prices_file: Option<String>,
    prices: Option<crate::prices::RawTable>,
    #[serde(default)]
    virtual_keys: Vec<RawVirtualKey>,
    state_file: Option<String>,
    redis: Option<RawRedis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: Option<String>,
    key_prefix: Option<String>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVirtualKey {
    name: Option<String>,
    secret: Option<String>,
    providers: Option<Vec<String>>,
    models: Option<Vec<String>>,
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u64>,
    budget: Option<RawBudget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    usd: f64,
    period: String,
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    base_url: Option<String>,
    project: Option<String>,
    location: Option<String>,
    #[serde(default)]
    keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: Option<String>,
    value: Option<String>,
    weight: Option<u32>,
    models: Option<Vec<String>>,
    endpoint: Option<String>,
    api_version: Option<String>,
    service_account_file: Option<String>,
    #[serde(default)]
    optional: bool,
}

// ---------------------------------------------------------------------------
// Validated configuration.
// ---------------------------------------------------------------------------

/// A parsed upstream base URL: `scheme://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash ("" when none).
    pub path: String,
}

impl BaseUrl {
    pub fn parse(s: &str) -> Result<BaseUrl, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("`{s}` is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("`{s}` has no usable host"));
        }
        if path.contains('?') || path.contains('#') {
            return Err(format!("`{s}` must not carry a query or fragment"));
        }
        let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })
            .ok_or_else(|| format!("`{s}` has an invalid port"))?;
        if host.is_empty() {
            return Err(format!("`{s}` has no usable host"));
        }
        Ok(BaseUrl {
            tls,
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }

    /// `host` or `host:port` when the port is not the scheme's default, as
    /// sent in the `Host` header and recorded as `upstream_host`.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Whether two listen addresses would claim the same socket: same port
/// (not 0, which asks for any) and the same address or a wildcard on
/// either side.
fn listeners_overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']')?;
        let host = rest[..end].to_string();
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

/// One provider key. `value` is secret: it is never logged or displayed.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyConf {
    pub name: String,
    pub value: String,
    pub weight: u32,
    /// Glob patterns; `None` allows every model.
    pub models: Option<Vec<String>>,
    /// Azure: the resource endpoint this key belongs to.
    pub endpoint: Option<BaseUrl>,
    /// Azure: replaces the client's `api-version` when set.
    pub api_version: Option<String>,
    /// Vertex: OAuth from this service account instead of an API key
    /// (`value` is then empty).
    pub service_account: Option<crate::vertex_auth::ServiceAccount>,
}

impl fmt::Debug for KeyConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConf")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("weight", &self.weight)
            .field("models", &self.models)
            .field("endpoint", &self.endpoint)
            .field("api_version", &self.api_version)
            .field("service_account", &self.service_account)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConf {
    /// Explicit base URL; `None` means the provider's public default.
    pub base_url: Option<BaseUrl>,
    /// Vertex: the project/location the gateway's credentials belong to.
    pub project: Option<String>,
    pub location: Option<String>,
    pub keys: Vec<KeyConf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// Each read from the provider: first byte and idle gap between chunks.
    pub read: Duration,
    /// Each write to the provider.
    pub write: Duration,
    /// The whole exchange, from the request's arrival to the response's end.
    pub total: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub file: String,
    pub listen: SocketAddr,
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
    /// Where virtual-key spend is persisted (none: in memory only).
    pub state_file: Option<std::path::PathBuf>,
    /// Shared virtual-key counters for several instances.
    pub redis: Option<crate::redis::RedisConf>,
}

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
        let err = |key: &str, message: String| ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            message,
        };
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

        let mut providers = BTreeMap::new();
        for (pname, rp) in raw.providers {
            let pkey = format!("tollgate.providers.{pname}");
            let provider = Provider::from_name(&pname).ok_or_else(|| {
                err(
                    &pkey,
                    "unknown provider (expected openai, anthropic, azure, gemini or vertex)".into(),
                )
            })?;
            let base_url = match rp.base_url {
                None => None,
                Some(s) => Some(
                    BaseUrl::parse(&s).map_err(|m| err(&format!("{pkey}.base_url"), m))?,
                ),
            };
            if provider != Provider::Vertex && (rp.project.is_some() || rp.location.is_some()) {
                return Err(err(&pkey, "`project`/`location` apply to vertex only".into()));
            }
            for (k, v) in [("project", &rp.project), ("location", &rp.location)] {
                if let Some(v) = v {
                    if !is_resource_segment(v) {
                        return Err(err(&format!("{pkey}.{k}"), format!("`{v}` is not a valid {k}")));
                    }
                }
            }
            let mut keys = Vec::new();
            for (i, rk) in rp.keys.into_iter().enumerate() {
                let kkey = format!("{pkey}.keys[{i}]");
                let name = rk
                    .name
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| err(&format!("{kkey}.name"), "is required".into()))?;
                if keys.iter().any(|k: &KeyConf| k.name == name) {
                    return Err(err(&format!("{kkey}.name"), format!("`{name}` is used twice")));
                }
                let service_account = match (&rk.service_account_file, &rk.value) {
                    (Some(_), _) if provider != Provider::Vertex => {
                        return Err(err(&format!("{kkey}.service_account_file"), "applies to vertex keys only".into()))
                    }
                    (Some(_), Some(_)) => {
                        return Err(err(&kkey, "set either `value` or `service_account_file`, not both".into()))
                    }
                    (Some(path), None) => Some(
                        crate::vertex_auth::ServiceAccount::load(path)
                            .map_err(|m| err(&format!("{kkey}.service_account_file"), m))?,
                    ),
                    (None, _) => None,
                };
                let raw_value = match (&service_account, rk.value) {
                    (Some(_), _) => String::new(),
                    (None, Some(v)) => v,
                    (None, None) => return Err(err(&format!("{kkey}.value"), "is required".into())),
                };
                let value = if service_account.is_some() { Ok(String::new()) } else { resolve_secret(&raw_value, env) };
                let value = match value {
                    Ok(v) => v,
                    Err(var) if rk.optional => {
                        log::warn!(
                            "{file}: `{kkey}` ({name}) skipped: environment variable {var} is not set"
                        );
                        continue;
                    }
                    Err(var) => {
                        return Err(err(
                            &format!("{kkey}.value"),
                            format!("environment variable {var} is not set or empty (mark the key `optional: true` to skip it)"),
                        ))
                    }
                };
                if value.bytes().any(|b| b < 0x20 || b == 0x7f) {
                    return Err(err(&format!("{kkey}.value"), "contains control characters".into()));
                }
                let weight = rk.weight.unwrap_or(1);
                if weight == 0 {
                    return Err(err(&format!("{kkey}.weight"), "must be at least 1".into()));
                }
                let endpoint = match rk.endpoint {
                    None => None,
                    Some(e) => {
                        let e = match resolve_secret(&e, env) {
                            Ok(e) => e,
                            Err(var) if rk.optional => {
                                log::warn!("{file}: `{kkey}` ({name}) skipped: environment variable {var} is not set");
                                continue;
                            }
                            Err(var) => {
                                return Err(err(
                                    &format!("{kkey}.endpoint"),
                                    format!("environment variable {var} is not set or empty"),
                                ))
                            }
                        };
                        Some(BaseUrl::parse(&e).map_err(|m| err(&format!("{kkey}.endpoint"), m))?)
                    }
                };
                if provider != Provider::Azure && (endpoint.is_some() || rk.api_version.is_some()) {
                    return Err(err(&kkey, "`endpoint`/`api_version` apply to azure keys only".into()));
                }
                if provider == Provider::Azure && endpoint.is_none() && base_url.is_none() {
                    return Err(err(
                        &format!("{kkey}.endpoint"),
                        "is required for azure keys (or set the provider's base_url)".into(),
                    ));
                }
                if let Some(v) = &rk.api_version {
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
                        return Err(err(&format!("{kkey}.api_version"), format!("`{v}` is not a valid api-version")));
                    }
                }
                if let Some(models) = &rk.models {
                    if models.is_empty() {
                        return Err(err(&format!("{kkey}.models"), "is empty: the key would never be used (omit it to allow every model)".into()));
                    }
                }
                keys.push(KeyConf {
                    name,
                    value,
                    weight,
                    models: rk.models,
                    endpoint,
                    api_version: rk.api_version,
                    service_account,
                });
            }
            // OAuth credentials belong to the service account's project.
            let project = rp.project.or_else(|| {
                keys.iter().find_map(|k| k.service_account.as_ref().and_then(|sa| sa.project_id.clone()))
            });
            providers.insert(
                provider,
                ProviderConf {
                    base_url,
                    project,
                    location: rp.location,
                    keys,
                },
            );
        }
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
        let mut virtual_keys: Vec<VirtualKey> = Vec::new();
        for (i, rv) in raw.virtual_keys.into_iter().enumerate() {
            let vkey = format!("tollgate.virtual_keys[{i}]");
            let name = rv
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| err(&format!("{vkey}.name"), "is required".into()))?;
            if virtual_keys.iter().any(|v| v.name == name) {
                return Err(err(&format!("{vkey}.name"), format!("`{name}` is used twice")));
            }
            let secret = rv.secret.ok_or_else(|| err(&format!("{vkey}.secret"), "is required".into()))?;
            let digest = if secret.starts_with("sha256:") {
                crate::vkeys::parse_digest(&secret).ok_or_else(|| {
                    err(&format!("{vkey}.secret"), "`sha256:` must be followed by 64 hex digits".into())
                })?
            } else if secret.starts_with("env.") {
                let v = resolve_secret(&secret, env).map_err(|var| {
                    err(&format!("{vkey}.secret"), format!("environment variable {var} is not set or empty"))
                })?;
                crate::vkeys::sha256(v.as_bytes())
            } else {
                return Err(err(
                    &format!("{vkey}.secret"),
                    "must be `sha256:<hex>` or `env.VAR` (a literal secret does not belong in a config file)".into(),
                ));
            };
            if virtual_keys.iter().any(|v| v.digest == digest) {
                return Err(err(&format!("{vkey}.secret"), "is the same as another virtual key's".into()));
            }
            let providers = match rv.providers {
                None => None,
                Some(list) => Some(
                    list.iter()
                        .map(|p| {
                            Provider::from_name(p).ok_or_else(|| {
                                err(&format!("{vkey}.providers"), format!("unknown provider `{p}`"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            if rv.requests_per_minute == Some(0) {
                return Err(err(&format!("{vkey}.requests_per_minute"), "must be at least 1".into()));
            }
            if rv.tokens_per_minute == Some(0) {
                return Err(err(&format!("{vkey}.tokens_per_minute"), "must be at least 1".into()));
            }
            let budget = match rv.budget {
                None => None,
                Some(b) => {
                    let period = match b.period.as_str() {
                        "day" => Period::Day,
                        "month" => Period::Month,
                        other => {
                            return Err(err(&format!("{vkey}.budget.period"), format!("`{other}` is not day or month")))
                        }
                    };
                    if !(b.usd.is_finite() && b.usd >= 0.0) {
                        return Err(err(&format!("{vkey}.budget.usd"), "must be a non-negative number".into()));
                    }
                    Some(Budget { usd: b.usd, period })
                }
            };
            virtual_keys.push(VirtualKey {
                name,
                digest,
                providers,
                models: rv.models,
                requests_per_minute: rv.requests_per_minute,
                tokens_per_minute: rv.tokens_per_minute,
                budget,
            });
        }
        if raw.require_virtual_key && virtual_keys.is_empty() {
            return Err(err("tollgate.require_virtual_key", "is true but no virtual_keys are configured".into()));
        }
        let redis = match raw.redis {
            None => None,
            Some(r) => {
                let url = r.url.ok_or_else(|| err("tollgate.redis.url", "is required (redis://[:password@]host:port[/db])".into()))?;
                let url = resolve_secret(&url, env).map_err(|var| err("tollgate.redis.url", format!("environment variable {var} is not set")))?;
                let (host, port, password, db) = crate::redis::RedisConf::parse_url(&url).map_err(|m| err("tollgate.redis.url", m))?;
                let timeout_ms = r.timeout_ms.unwrap_or(250);
                if timeout_ms == 0 {
                    return Err(err("tollgate.redis.timeout_ms", "must be greater than zero".into()));
                }
                Some(crate::redis::RedisConf {
                    host,
                    port,
                    password,
                    db,
                    timeout: Duration::from_millis(timeout_ms),
                    key_prefix: r.key_prefix.unwrap_or_else(|| "tollgate".into()),
                })
            }
        };
        let max_request_body_bytes = raw.limits.max_request_body_bytes;
        // Pingora itself answers 400 to request heads above 1 MiB.
        let max_header_bytes = raw.limits.max_header_bytes.unwrap_or(65_536);
        if !(1..=1_048_575).contains(&max_header_bytes) {
            return Err(err("tollgate.limits.max_header_bytes", "must be between 1 and 1048575 (Pingora refuses larger heads itself)".into()));
        }
        if max_request_body_bytes == Some(0) {
            return Err(err("tollgate.limits.max_request_body_bytes", "must be greater than zero".into()));
        }
        Ok(Config {
            file: file.to_string(),
            listen,
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
            state_file: raw.state_file.filter(|s| !s.is_empty()).map(std::path::PathBuf::from),
            redis,
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

/// A GCP project id or location: letters, digits, `-`, `_`, `.`.
pub fn is_resource_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &str) -> Option<String> {
        match v {
            "OPENAI_KEY" => Some("sk-real".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn load(y: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(y, "t.yaml", &env)
    }

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
    fn env_keys_resolved_and_redacted_in_debug() {
        let c = load(
            "tollgate:\n  providers:\n    openai: { keys: [{ name: a, value: env.OPENAI_KEY, weight: 3, models: ['gpt-4o*'] }] }\n",
        )
        .unwrap();
        let k = &c.provider(Provider::OpenAi).unwrap().keys[0];
        assert_eq!(k.value, "sk-real");
        assert_eq!(k.weight, 3);
        assert!(!format!("{c:?}").contains("sk-real"));
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
    fn optional_key_with_missing_env_is_skipped() {
        let c = load(
            "tollgate:\n  providers:\n    openai: { keys: [{ name: a, value: env.NOPE, optional: true }, { name: b, value: lit }] }\n",
        )
        .unwrap();
        let keys = &c.provider(Provider::OpenAi).unwrap().keys;
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "b");
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
    fn virtual_keys_parse() {
        let hex: String = crate::vkeys::sha256(b"team-b-secret").iter().map(|b| format!("{b:02x}")).collect();
        let c = load(&format!(
            "tollgate:\n  require_virtual_key: true\n  virtual_keys:\n    - {{ name: a, secret: env.OPENAI_KEY, providers: [openai], models: ['gpt-4o*'], requests_per_minute: 5, tokens_per_minute: 100, budget: {{ usd: 2.5, period: month }} }}\n    - {{ name: b, secret: 'sha256:{hex}' }}\n"
        ))
        .unwrap();
        assert_eq!(c.virtual_keys.len(), 2);
        assert_eq!(c.virtual_keys[0].digest, crate::vkeys::sha256(b"sk-real"));
        assert_eq!(c.virtual_keys[0].budget, Some(Budget { usd: 2.5, period: Period::Month }));
        assert_eq!(c.virtual_keys[1].digest, crate::vkeys::sha256(b"team-b-secret"));
        assert!(!format!("{:?}", c.virtual_keys).contains("sk-real"));
    }

    #[test]
    fn inline_prices_override_defaults() {
        let c = load("tollgate:\n  prices: { openai: { gpt-4o: { input: 1, output: 2 } } }\n").unwrap();
        assert_eq!(c.prices.lookup(Provider::OpenAi, "gpt-4o").unwrap().input, 1.0);
        assert!(c.prices.lookup(Provider::Anthropic, "claude-sonnet-4-5").is_some());
    }

    #[test]
    fn base_url_parsing() {
        let b = BaseUrl::parse("http://127.0.0.1:9000/mock/openai/").unwrap();
        assert_eq!((b.tls, b.host.as_str(), b.port, b.path.as_str()), (false, "127.0.0.1", 9000, "/mock/openai"));
        assert_eq!(b.authority(), "127.0.0.1:9000");
        let b = BaseUrl::parse("https://api.openai.com").unwrap();
        assert_eq!((b.tls, b.port, b.path.as_str()), (true, 443, ""));
        assert_eq!(b.authority(), "api.openai.com");
        let b = BaseUrl::parse("https://[::1]:8443").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 8443));
        assert_eq!(b.authority(), "[::1]:8443");
        assert!(BaseUrl::parse("https://user@host").is_err());
        assert!(BaseUrl::parse("https://host:notaport").is_err());
        assert!(BaseUrl::parse("https://host/x?y").is_err());
        assert!(BaseUrl::parse("host").is_err());
    }
}
