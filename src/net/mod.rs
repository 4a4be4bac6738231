//! Network building blocks with no knowledge of providers or routes:
//! upstream base URLs, the planned upstream target, timeouts, asynchronous
//! DNS with a cache, and Pingora peers with TLS verification.

use std::time::Duration;

pub mod peer;
pub mod query;
pub mod resolver;

pub use peer::build_peer;
pub use resolver::{ResolveError, Resolver};

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
        let v6 = self.host.contains(':');
        // Built by hand: one allocation, no formatting machinery (once per
        // request on the passthrough routes).
        let mut out = String::with_capacity(self.host.len() + 8);
        if v6 {
            out.push('[');
        }
        out.push_str(&self.host);
        if v6 {
            out.push(']');
        }
        if self.port != default {
            out.push(':');
            out.push_str(itoa::Buffer::new().format(self.port));
        }
        out
    }
}

/// Whether two listen addresses would claim the same socket: same port
/// (not 0, which asks for any) and the same address or a wildcard on

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


/// Where a request goes: computed from the route, the provider's config and
/// the chosen key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Value of the `Host` header and the record's `upstream_host`.
    pub authority: String,
    /// Path and query as sent upstream.
    pub path_and_query: String,
}


impl Upstream {
    /// The upstream for `base` with `path_and_query` appended to its path.
    pub fn at(base: &BaseUrl, path_and_query: &str) -> Upstream {
        Upstream {
            tls: base.tls,
            authority: base.authority(),
            host: base.host.clone(),
            port: base.port,
            path_and_query: format!("{}{}", base.path, path_and_query),
        }
    }
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

impl Timeouts {
    /// The read and write timeouts for an exchange `elapsed` into its total:
    /// each capped at what is left of the total (zero once it has passed),
    /// so no read or write outlasts the deadline.
    pub fn within(&self, elapsed: Duration) -> Timeouts {
        let remaining = self.total.saturating_sub(elapsed);
        Timeouts { read: self.read.min(remaining), write: self.write.min(remaining), ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn timeouts_within_the_total() {
        let t = Timeouts { connect: Duration::from_secs(1), read: Duration::from_secs(60), write: Duration::from_secs(30), total: Duration::from_secs(100) };
        assert_eq!(t.within(Duration::from_secs(10)), t);
        let late = t.within(Duration::from_secs(80));
        assert_eq!((late.read, late.write, late.connect, late.total), (Duration::from_secs(20), Duration::from_secs(20), t.connect, t.total));
        let past = t.within(Duration::from_secs(120));
        assert_eq!((past.read, past.write), (Duration::ZERO, Duration::ZERO));
    }
}
