//! `tollgate.redis`: the Redis that several instances share limits and
//! spend through.

use super::{resolve_secret, ConfigError, Parse};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    url: Option<String>,
    key_prefix: Option<String>,
    timeout_ms: Option<u64>,
}

/// Where the shared Redis is: parsed from `redis://[:password@]host:port[/db]`
/// (`rediss://` for TLS, the server's certificate checked against the
/// system's roots).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConf {
    /// `rediss://`: TLS to Redis.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    pub db: u32,
    pub timeout: Duration,
    pub key_prefix: String,
}

impl std::fmt::Debug for RedisConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConf")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("timeout", &self.timeout)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

impl RedisConf {
    /// The URL again, `redis://` or `rediss://`, for the `redis` crate's
    /// client (shared counters and the job store). The password is
    /// percent-encoded, so it reaches Redis exactly as configured. It is in
    /// the URL: never log it (see `store::redis::redact`).
    pub fn url(&self) -> String {
        let auth = self.password.as_ref().map_or(String::new(), |p| format!(":{}@", percent_encode(p)));
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{auth}{host}:{}/{}", self.port, self.db)
    }

    /// Parse a `redis://` or `rediss://` (TLS) URL into (tls, host, port,
    /// password, db). A user name, if any, is ignored: AUTH with the
    /// password only, as Redis before ACLs.
    pub fn parse_url(url: &str) -> Result<(bool, String, u16, Option<String>, u32), String> {
        let (tls, rest) = match (url.strip_prefix("rediss://"), url.strip_prefix("redis://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err("must start with redis:// or rediss:// (TLS)".into()),
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let password = auth.map(|a| a.split_once(':').map_or(a, |(_, p)| p).to_string()).filter(|p| !p.is_empty());
        let (hostport, db) = match rest.split_once('/') {
            Some((h, d)) if !d.is_empty() => (h, d.parse::<u32>().map_err(|_| format!("database `{d}` is not a number"))?),
            Some((h, _)) => (h, 0),
            None => (rest, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("port `{p}` is not a number"))?),
            None => (hostport, 6379),
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        Ok((tls, host.trim_start_matches('[').trim_end_matches(']').to_string(), port, password, db))
    }
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}


/// Validate the redis section.
pub(super) fn parse(raw: Option<RawRedis>, p: &Parse<'_>) -> Result<Option<RedisConf>, ConfigError> {
    let env = p.env;
    let err = |key: &str, message: String| p.err(key, message);
    Ok(match raw {
        None => None,
        Some(r) => {
            let url = r.url.ok_or_else(|| err("tollgate.redis.url", "is required (redis[s]://[:password@]host:port[/db])".into()))?;
            let url = resolve_secret(&url, env).map_err(|var| err("tollgate.redis.url", format!("environment variable {var} is not set")))?;
            let (tls, host, port, password, db) = RedisConf::parse_url(&url).map_err(|m| err("tollgate.redis.url", m))?;
            let timeout_ms = r.timeout_ms.unwrap_or(250);
            if timeout_ms == 0 {
                return Err(err("tollgate.redis.timeout_ms", "must be greater than zero".into()));
            }
            Some(RedisConf {
                tls,
                host,
                port,
                password,
                db,
                timeout: Duration::from_millis(timeout_ms),
                key_prefix: r.key_prefix.unwrap_or_else(|| "tollgate".into()),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(RedisConf::parse_url("redis://127.0.0.1:6380/2").unwrap(), (false, "127.0.0.1".into(), 6380, None, 2));
        assert_eq!(RedisConf::parse_url("redis://:s3cret@cache").unwrap(), (false, "cache".into(), 6379, Some("s3cret".into()), 0));
        assert_eq!(RedisConf::parse_url("redis://user:pw@h:1/").unwrap(), (false, "h".into(), 1, Some("pw".into()), 0));
        assert!(RedisConf::parse_url("redis://h:x").is_err());
        assert!(RedisConf::parse_url("http://h:1").is_err());
        assert!(RedisConf::parse_url("redis:/h").is_err());
    }

    fn conf(url: &str) -> RedisConf {
        let (tls, host, port, password, db) = RedisConf::parse_url(url).unwrap();
        RedisConf { tls, host, port, password, db, timeout: Duration::from_millis(250), key_prefix: "tg".into() }
    }

    #[test]
    fn parses_rediss_urls_and_keeps_tls_and_the_password_hidden() {
        assert_eq!(RedisConf::parse_url("rediss://h").unwrap(), (true, "h".into(), 6379, None, 0));
        assert_eq!(
            RedisConf::parse_url("rediss://default:s3cret@cache.example:6380/4").unwrap(),
            (true, "cache.example".into(), 6380, Some("s3cret".into()), 4)
        );
        assert_eq!(RedisConf::parse_url("rediss://[::1]:6380").unwrap(), (true, "::1".into(), 6380, None, 0));
        assert!(RedisConf::parse_url("rediss://:pw@").is_err());
        assert!(RedisConf::parse_url("rediss://h/x").is_err());

        // url() gives the scheme back; the redis crate reads it the same way.
        let c = conf("rediss://:s3cret@cache.example:6380/4");
        assert_eq!(c.url(), "rediss://:s3cret@cache.example:6380/4");
        assert_eq!(conf("redis://h:1/2").url(), "redis://h:1/2");
        assert_eq!(conf("rediss://[::1]:6380").url(), "rediss://[::1]:6380/0");
        let info = ::redis::Client::open(c.url()).unwrap().get_connection_info().clone();
        assert!(matches!(info.addr(), ::redis::ConnectionAddr::TcpTls { host, port: 6380, insecure: false, .. } if host == "cache.example"));
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().db(), 4);
        // A password with URL syntax in it reaches Redis unchanged.
        let odd = conf("rediss://:p@ss/w%rd:x@h");
        assert_eq!(odd.password.as_deref(), Some("p@ss/w%rd:x"));
        let info = ::redis::Client::open(odd.url()).unwrap().get_connection_info().clone();
        assert_eq!(info.redis_settings().password(), Some("p@ss/w%rd:x"));

        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("tls: true") && debug.contains("<redacted>"), "{debug}");
    }
}
