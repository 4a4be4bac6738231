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

/// Where the shared Redis is: parsed from `redis://[:password@]host:port[/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConf {
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
    /// The `redis://` URL again (for the Redis client of the job store).
    pub fn url(&self) -> String {
        let auth = self.password.as_ref().map_or(String::new(), |p| format!(":{p}@"));
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("redis://{auth}{host}:{}/{}", self.port, self.db)
    }

    /// Parse a `redis://` URL (user name, if any, is ignored: AUTH with the
    /// password only, as Redis before ACLs).
    pub fn parse_url(url: &str) -> Result<(String, u16, Option<String>, u32), String> {
        let rest = url.strip_prefix("redis://").ok_or("must start with redis:// (TLS to Redis is not supported)")?;
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
        Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port, password, db))
    }
}


/// Validate the redis section.
pub(super) fn parse(raw: Option<RawRedis>, p: &Parse<'_>) -> Result<Option<RedisConf>, ConfigError> {
    let env = p.env;
    let err = |key: &str, message: String| p.err(key, message);
    Ok(match raw {
        None => None,
        Some(r) => {
            let url = r.url.ok_or_else(|| err("tollgate.redis.url", "is required (redis://[:password@]host:port[/db])".into()))?;
            let url = resolve_secret(&url, env).map_err(|var| err("tollgate.redis.url", format!("environment variable {var} is not set")))?;
            let (host, port, password, db) = RedisConf::parse_url(&url).map_err(|m| err("tollgate.redis.url", m))?;
            let timeout_ms = r.timeout_ms.unwrap_or(250);
            if timeout_ms == 0 {
                return Err(err("tollgate.redis.timeout_ms", "must be greater than zero".into()));
            }
            Some(RedisConf {
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
        assert_eq!(RedisConf::parse_url("redis://127.0.0.1:6380/2").unwrap(), ("127.0.0.1".into(), 6380, None, 2));
        assert_eq!(RedisConf::parse_url("redis://:s3cret@cache").unwrap(), ("cache".into(), 6379, Some("s3cret".into()), 0));
        assert_eq!(RedisConf::parse_url("redis://user:pw@h:1/").unwrap(), ("h".into(), 1, Some("pw".into()), 0));
        assert!(RedisConf::parse_url("rediss://h").is_err());
        assert!(RedisConf::parse_url("redis://h:x").is_err());
    }
}
