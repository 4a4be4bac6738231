//! Asynchronous DNS with a small cache. Pingora's `HttpPeer::new` resolves
//! synchronously and panics on failure, so it only ever gets a socket
//! address from here.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a resolved address is reused. Provider endpoints sit behind
/// anycast/CDN addresses that change rarely; a minute bounds staleness.
const DNS_TTL: Duration = Duration::from_secs(60);
/// How long a resolution may take before the request fails as a connect error.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Resolver {
    cache: Mutex<HashMap<(String, u16), (Vec<SocketAddr>, Instant)>>,
}

#[derive(Debug)]
pub struct ResolveError(pub String);

impl Resolver {
    /// Resolve `host:port`, from the cache when fresh. Returns one address,
    /// rotating over the set by `attempt` so a retry tries another one.
    pub async fn resolve(&self, host: &str, port: u16, attempt: usize) -> Result<SocketAddr, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        if let Some((addrs, at)) = self.cache.lock().expect("dns cache lock").get(&key) {
            if at.elapsed() < DNS_TTL && !addrs.is_empty() {
                return Ok(addrs[attempt % addrs.len()]);
            }
        }
        let lookup = tokio::net::lookup_host((host, port));
        let addrs: Vec<SocketAddr> = match tokio::time::timeout(DNS_TIMEOUT, lookup).await {
            Ok(Ok(it)) => it.collect(),
            Ok(Err(e)) => return Err(ResolveError(format!("cannot resolve {host}: {e}"))),
            Err(_) => return Err(ResolveError(format!("resolving {host} timed out"))),
        };
        if addrs.is_empty() {
            return Err(ResolveError(format!("{host} has no addresses")));
        }
        let chosen = addrs[attempt % addrs.len()];
        self.cache
            .lock()
            .expect("dns cache lock")
            .insert(key, (addrs, Instant::now()));
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_need_no_lookup_and_names_are_cached() {
        let r = Resolver::default();
        assert_eq!(r.resolve("127.0.0.1", 80, 0).await.unwrap(), "127.0.0.1:80".parse().unwrap());
        let a = r.resolve("localhost", 8080, 0).await.unwrap();
        assert_eq!(a.port(), 8080);
        assert!(a.ip().is_loopback());
        assert!(r.cache.lock().unwrap().contains_key(&("localhost".to_string(), 8080)));
        assert!(r.resolve("no-such-host.invalid", 80, 0).await.is_err());
    }
}
