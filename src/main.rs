//! `tollgate -c conf/tollgate.yaml` (Pingora's `-d`, `-u` and `-t` work too;
//! `tollgate check -c FILE` prints what would be served: see cli.rs).

mod cli;

/// mimalloc, not glibc's malloc: a request allocates some 70 times (Pingora's
/// buffers and headers, tollgate's strings and JSON), and glibc spent about
/// 450 instructions per allocation and free across the proxy's threads.
/// Measured in benches/README.md (issue 28).
#[global_allocator]
static ALLOCATOR: tollgate::alloc::Mimalloc = tollgate::alloc::Mimalloc;

use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::proxy::http_proxy;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::{L4BufferSettings, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::services::listening::Service;
use std::sync::Arc;
use tollgate::observe::access_log::AccessLog;
use tollgate::config::Config;
use pingora::server::RunArgs;
use pingora::services::background::background_service;
use std::time::Duration;
use tollgate::gateway::live::{LiveConfig, Reloader};
use tollgate::gateway::drain::{DrainTimes, Draining};
use tollgate::gateway::jobs::JobWorkers;
use tollgate::observe::metrics::METRICS;
use tollgate::gateway::Gateway;
use tollgate::governance::virtual_keys::{SpendPersistence, VirtualKeys};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let opt = cli::parse();
    let Some(conf_path) = opt.conf.clone() else {
        eprintln!("tollgate: no configuration file given; run `tollgate -c conf/tollgate.yaml`");
        std::process::exit(2);
    };
    // The gateway's own section is validated completely before anything
    // listens: a bad file fails here, naming the key and the file.
    let config = match Config::load(&conf_path) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("tollgate: invalid configuration: {e}");
            std::process::exit(1);
        }
    };
    // Pingora's own settings. Its grace period is stretched over both drain
    // phases (gateway/drain.rs): the operator's grace period for idle
    // kept-alive connections, then the shutdown timeout for what still runs.
    // Pingora's work stealing stays on (its default): without it, pooled
    // upstream connections are often not reused across worker threads
    // (benches/README.md).
    let mut server_conf = match ServerConf::load_yaml_with_opt_override(&opt) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate: invalid configuration: {conf_path}: {e}");
            std::process::exit(1);
        }
    };
    let drain_times = DrainTimes::from_settings(server_conf.grace_period_seconds, server_conf.graceful_shutdown_timeout_seconds);
    server_conf.grace_period_seconds = Some(drain_times.pingora_grace());
    let mut opt = opt;
    opt.conf = None; // loaded above
    let mut server = Server::new_with_opt_and_conf(Some(opt), server_conf);
    // `-t`: both sections parsed; Pingora exits here after its own checks.
    server.bootstrap();

    let access_log = match AccessLog::open(&config.access_log) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tollgate: {conf_path}: `tollgate.access_log`: cannot open: {e}");
            std::process::exit(1);
        }
    };
    // The embedded store (SQLite): virtual-key spend, and async jobs unless
    // Redis holds them. Opened now: a store that cannot be opened is a start
    // error naming the file. Spend is loaded before serving, flushed every
    // two seconds, and once more after the server has drained.
    let store = match tollgate::store::SqliteStore::open(&config.store_path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tollgate: {conf_path}: `tollgate.store.path`: {e}");
            std::process::exit(1);
        }
    };
    let virtual_keys = Arc::new(VirtualKeys::new(config.virtual_keys.clone()));
    let persistence = config.virtual_keys.iter().any(|k| k.budget.is_some()).then(|| SpendPersistence {
        keys: virtual_keys.clone(),
        store: store.clone(),
        interval: Duration::from_secs(2),
    });
    if let Some(p) = &persistence {
        if let Err(e) = p.keys.sync_store(&p.store, std::time::SystemTime::now()) {
            eprintln!("tollgate: {conf_path}: `tollgate.store.path`: {e}");
            std::process::exit(1);
        }
    }
    let connector_options = Some(pingora::connectors::ConnectorOptions::from_server_conf(&server.configuration));
    let live = Arc::new(LiveConfig::new(config.clone(), virtual_keys.clone()));
    let mut gateway = Gateway::new(live.clone(), access_log.clone(), connector_options);
    // The request log store (SPEC 12): its own directory beside the store,
    // fed by the access log's writer with each record and its line.
    if let Some(conf) = &config.logs {
        let path = tollgate::logs::path_beside(&config.store_path);
        match tollgate::logs::LogStore::open(&path, conf.clone()) {
            Ok(l) => {
                access_log.set_tee(Arc::new(l.clone()));
                gateway.logs = Some(l);
            }
            Err(e) => {
                eprintln!("tollgate: {conf_path}: `tollgate.logs`: cannot open the log store {e}");
                std::process::exit(1);
            }
        }
    }
    match tollgate::gateway::open_cache(&config) {
        Ok(c) => gateway.cache = c,
        Err(e) => {
            eprintln!("tollgate: {conf_path}: `tollgate.cache`: cannot open the response cache {e}");
            std::process::exit(1);
        }
    }
    match tollgate::gateway::open_reasoning(&config) {
        Ok(r) => gateway.reasoning = Some(r),
        Err(e) => {
            eprintln!("tollgate: {conf_path}: cannot open the reasoning replay memory {e}");
            std::process::exit(1);
        }
    }
    let logs_at_exit = gateway.logs.clone();
    // Async jobs (SPEC 9): in Redis when configured (connected by the worker
    // service, on its own runtime), else in the SQLite store.
    let redis_jobs = config.redis.as_ref().map(|r| (r.url(), r.key_prefix.clone()));
    if redis_jobs.is_none() {
        gateway.jobs.set_store(Arc::new(store));
    }
    let admin_gateway = gateway.clone();
    let workers = JobWorkers { gateway: gateway.clone(), workers: config.async_jobs.workers, redis: redis_jobs };
    // Traces (tollgate.otel): the exporter starts in the serving process
    // (after Pingora daemonized), before the proxy takes requests.
    let otel = config
        .otel
        .clone()
        .map(|s| server.add_service(background_service("otel exporter", tollgate::observe::trace::TraceService(s))));
    // The last records, spans and spend, written once the server has drained
    // (by the drain when it ends the process, else after `run` returns).
    let final_flush = persistence.clone();
    let log_at_exit = access_log.clone();
    let finish: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        log_at_exit.flush();
        if let Some(l) = &logs_at_exit {
            l.flush(Duration::from_secs(5));
        }
        tollgate::observe::trace::shutdown();
        if let Some(p) = &final_flush {
            p.flush();
        }
    });
    let jobs = gateway.jobs.clone();
    let busy = move || METRICS.in_flight.get() > 0 || jobs.running() > 0;
    let app = Draining::new(http_proxy(&server.configuration, gateway), drain_times, busy, finish.clone());
    let mut proxy = Service::new("tollgate proxy".to_string(), app);
    // Plain HTTP downstream: Pingora's default 64 KiB L4 read buffer (tokio's
    // BufReader, zero-filled at accept) only pays off under TLS's 16 KiB
    // records. Without it every read lands straight in the HTTP layer's own
    // buffers, and each open connection costs ~64 KiB less (benches/README).
    // TLS (`tollgate.tls`): Pingora's default L4 buffer stays, it fits TLS
    // records; HTTP/2 or HTTP/1.1 by ALPN; the certificate comes from the
    // live configuration at each handshake (a reload replaces it).
    match live.certificates() {
        None => proxy.add_listener(
            ListenerConfig::tcp(config.listen.to_string()).l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE)),
        ),
        Some(certs) => {
            let settings = match certs.listener_settings() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("tollgate: {conf_path}: `tollgate.tls`: {e}");
                    std::process::exit(1);
                }
            };
            let id = certs.current();
            let tls = config.tls.as_ref().expect("certificates come from tollgate.tls");
            log::info!("TLS on {} (HTTP/2 and HTTP/1.1): {} from {}", config.listen, id.describe(), tls.cert.display());
            if id.expired() {
                log::warn!("TLS certificate {} has expired ({})", tls.cert.display(), id.describe());
            }
            proxy.add_listener(ListenerConfig::tcp(config.listen.to_string()).tls(settings));
        }
    }
    let proxy = server.add_service(proxy);
    if let Some(otel) = &otel {
        proxy.add_dependency(otel);
    }

    // The admin API (SPEC 12) shares the metrics listener unless it has its
    // own address; one service then answers /metrics and /admin/.
    let admin_shares = config.admin.on_metrics_listener(config.metrics_listen);
    if let Some(addr) = config.metrics_listen.filter(|_| !admin_shares) {
        let mut metrics = Service::new("metrics".to_string(), tollgate::observe::metrics::MetricsApp);
        metrics.add_tcp(&addr.to_string());
        server.add_service(metrics);
    }
    if let Some(addr) = config.admin.listen {
        let app = tollgate::gateway::admin::AdminApp { gateway: admin_gateway, with_metrics: admin_shares };
        let mut admin = Service::new("admin".to_string(), app);
        admin.add_tcp(&addr.to_string());
        server.add_service(admin);
    } else if config.metrics_listen.is_some() {
        log::warn!("admin API off: metrics_listen is not a loopback address and admin.token is not set (README, Admin API)");
    }
    if let Some(p) = persistence {
        server.add_service(background_service("spend persistence", p));
    }
    server.add_service(background_service("async jobs", workers));
    // SIGHUP: re-read keys, virtual keys, prices and limits (see reload.rs).
    server.add_service(background_service("config reload", Reloader { live, path: conf_path.clone() }));
    log::info!("tollgate listening on {} (config {conf_path})", config.listen);
    server.run(RunArgs::default());
    finish();
    std::process::exit(0);
}
