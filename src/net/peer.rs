//! Turning a planned [`Upstream`] into a Pingora peer: TLS with SNI and
//! verification, timeouts, HTTP/1.1.

use super::{Timeouts, Upstream};
use pingora::upstreams::peer::HttpPeer;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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
