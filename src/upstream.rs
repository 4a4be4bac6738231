//! Turning a planned [`Upstream`](crate::route::Upstream) into a Pingora
//! peer: asynchronous DNS with a small cache (Pingora's `HttpPeer::new`
//! resolves synchronously and panics on failure, so it only ever gets a
//! socket address from here), TLS with SNI and verification, timeouts.

use crate::config::Timeouts;
use crate::route::Upstream;
use pingora::upstreams::peer::HttpPeer;
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

/// Build the peer for an upstream at `addr`. TLS peers get the host as SNI
/// and certificate plus hostname verification on (an empty SNI would turn
/// verification off silently, so IP-literal hosts are checked too).
pub fn build_peer(up: &Upstream, addr: SocketAddr, t: &Timeouts) -> HttpPeer {
    let sni = if up.tls { up.host.clone() } else { String::new() };
    let mut peer = HttpPeer::new(addr, up.tls, sni);
    let o = &mut peer.options;
    o.connection_timeout = Some(t.connect);
    o.total_connection_timeout = Some(t.connect);
    o.read_timeout = Some(t.read);
    o.write_timeout = Some(t.write);
    // Pooled idle connections are closed after this long.
    o.idle_timeout = Some(Duration::from_secs(60));
    o.verify_cert = true;
    o.verify_hostname = true;
    if up.tls && up.host.parse::<IpAddr>().is_ok() {
        // Certificates for IP endpoints name the IP as CN/SAN.
        o.alternative_cn = Some(up.host.clone());
    }
    // HTTP/1.1 to providers: streaming semantics identical to the client's.
    o.set_http_version(1, 1);
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(host: &str, tls: bool) -> Upstream {
        Upstream { tls, host: host.into(), port: 443, authority: host.into(), path_and_query: "/".into() }
    }

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

    #[test]
    fn tls_peer_verifies_with_sni() {
        let t = Timeouts { connect: Duration::from_secs(1), read: Duration::from_secs(2), write: Duration::from_secs(3), total: Duration::from_secs(4) };
        let p = build_peer(&up("api.openai.com", true), "1.2.3.4:443".parse().unwrap(), &t);
        assert_eq!(p.sni, "api.openai.com");
        assert!(p.options.verify_cert && p.options.verify_hostname);
        assert_eq!(p.options.read_timeout, Some(Duration::from_secs(2)));
        let p = build_peer(&up("127.0.0.1", false), "127.0.0.1:80".parse().unwrap(), &t);
        assert_eq!(p.sni, "");
    }
}
