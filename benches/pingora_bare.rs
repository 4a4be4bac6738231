//! The floor: Pingora's own proxy with no tollgate logic at all, for the
//! CPU-per-request comparison in benches/README.md ("what holds it back").
//! Every request goes to one upstream over pooled keep-alive connections;
//! no routing, no header rewriting, no records, no metrics, no scanner.
//!
//!     cargo build --release --locked --bench pingora_bare
//!     target/release/deps/pingora_bare-* 127.0.0.1:18400 127.0.0.1:MOCK_PORT
//!
//! 2 threads and keep-alive pool 256 as tollgate's bench config; work
//! stealing off, Pingora's cheapest setting, so this is a floor.
//! `PINGORA_BARE_WORK_STEALING=1` turns it on, as tollgate runs, to compare
//! the two at a low rate (wake-ups between threads, added latency).

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Bare {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (listen, upstream) = match (args.get(1), args.get(2)) {
        (Some(l), Some(u)) if !l.starts_with('-') => (l.clone(), u.parse().expect("upstream host:port")),
        _ => {
            eprintln!("usage: pingora_bare LISTEN UPSTREAM");
            return;
        }
    };
    let mut conf = ServerConf::default();
    conf.threads = 2;
    conf.work_stealing = std::env::var("PINGORA_BARE_WORK_STEALING").is_ok_and(|v| v == "1");
    conf.upstream_keepalive_pool_size = 256;
    conf.grace_period_seconds = Some(0);
    conf.graceful_shutdown_timeout_seconds = Some(1);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    // The same downstream read buffering as tollgate (src/main.rs): none.
    proxy.add_listener(
        pingora::listeners::ListenerConfig::tcp(listen.clone())
            .l4_buffer(pingora::protocols::l4::stream::L4BufferSettings::new(0, pingora::protocols::l4::stream::DEFAULT_L4_WRITE_BUFFER_SIZE)),
    );
    server.add_service(proxy);
    server.run_forever();
}
