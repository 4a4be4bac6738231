//! Live configuration and hot reload (issue 5).
//!
//! Every request takes a snapshot of the current [`Live`] configuration when
//! it starts and keeps it to the end, so a reload never changes a request
//! half way. `SIGHUP` re-reads the file: provider keys, virtual keys, prices,
//! timeouts and switches take effect for the next request; connections and
//! in-flight streams are untouched. A file that does not validate is refused
//! with a log line and the running configuration stays.
//!
//! Settings bound at start (listen addresses, TLS on or off, access log,
//! store, redis, otel and Pingora's own top-level settings) need a restart or a
//! graceful upgrade (`systemctl reload`); a reload that changes them says so
//! in the log and keeps the old values. The TLS certificate and key are
//! re-read: new connections get the new certificate, open ones keep theirs;
//! a file that does not load refuses the whole reload.

use super::tls::Certificates;
use crate::config::Config;
use crate::governance::virtual_keys::VirtualKeys;
use crate::observe::metrics::METRICS;
use crate::providers::identity::TokenSource;
use crate::providers::Provider;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What a reload replaces: the configuration and what is derived from it.
pub struct Live {
    pub config: Arc<Config>,
    /// Token sources of the keys that are cloud identities (Vertex service
    /// accounts and ADC, Azure Entra ID), by provider and key name.
    pub token_sources: HashMap<(Provider, String), Arc<TokenSource>>,
    /// Some virtual key restricts models: requests need their model known.
    pub vk_models: bool,
}

impl Live {
    /// Build from `config`, keeping the token sources (and their cached
    /// tokens) of `previous` for identity keys that did not change.
    pub fn new(config: Arc<Config>, previous: Option<&Live>) -> Live {
        let mut token_sources = HashMap::new();
        for (p, c) in &config.providers {
            for k in &c.keys {
                let Some(id) = &k.identity else { continue };
                let at = (*p, k.name.clone());
                let kept = previous.and_then(|prev| prev.token_sources.get(&at)).filter(|ts| ts.identity() == id).cloned();
                token_sources.insert(at, kept.unwrap_or_else(|| Arc::new(TokenSource::new(id.clone()))));
            }
        }
        let vk_models = config.virtual_keys.iter().any(|k| k.models.is_some());
        Live { config, token_sources, vk_models }
    }

    /// The token source of `provider`'s key `name`, when it is an identity.
    pub fn token_source(&self, provider: Provider, name: &str) -> Option<&Arc<TokenSource>> {
        self.token_sources.get(&(provider, name.to_string()))
    }
}

/// The current [`Live`] configuration, shared by the proxy and the reloader.
pub struct LiveConfig {
    current: RwLock<Arc<Live>>,
    pub virtual_keys: Arc<VirtualKeys>,
    /// The TLS listener's certificate, replaced by a reload.
    tls: Option<Arc<Certificates>>,
}

impl LiveConfig {
    pub fn new(config: Arc<Config>, virtual_keys: Arc<VirtualKeys>) -> LiveConfig {
        let tls = config.tls.as_ref().map(|t| Arc::new(Certificates::new(t.identity.clone())));
        let live = LiveConfig { current: RwLock::new(Arc::new(Live::new(config.clone(), None))), virtual_keys, tls };
        publish_gauges(&config, None, &live.virtual_keys);
        // Counters exported from the start (at 0), so dashboards and alerts
        // see them before the first event.
        for r in ["success", "failure"] {
            METRICS.config_reloads.with_label_values(&[r]);
        }
        for op in ["admit", "record"] {
            METRICS.redis_errors.with_label_values(&[op]);
        }
        live
    }

    /// The certificate holder of the TLS listener, when `tollgate.tls` is set.
    pub fn certificates(&self) -> Option<Arc<Certificates>> {
        self.tls.clone()
    }

    /// The configuration for a request starting now.
    pub fn snapshot(&self) -> Arc<Live> {
        self.current.read().expect("live config lock").clone()
    }

    /// Swap in `config`. Returns the start-bound settings that differ from
    /// the running ones (kept as they are).
    pub fn apply(&self, config: Config) -> Vec<&'static str> {
        let old = self.snapshot();
        let mut config = config;
        let ignored = keep_start_bound(&old.config, &mut config);
        let config = Arc::new(config);
        if let (Some(certs), Some(tls)) = (&self.tls, &config.tls) {
            if certs.replace(tls.identity.clone()) {
                log::info!("reload: TLS certificate from {} served to new connections ({})", tls.cert.display(), tls.identity.describe());
            }
            if tls.identity.expired() {
                log::warn!("TLS certificate {} has expired ({})", tls.cert.display(), tls.identity.describe());
            }
        }
        // Counters (rate buckets, spend) stay with the key's name.
        self.virtual_keys.set_keys(config.virtual_keys.clone());
        publish_gauges(&config, Some(&old.config), &self.virtual_keys);
        let live = Arc::new(Live::new(config, Some(&old)));
        *self.current.write().expect("live config lock") = live;
        ignored
    }

    /// Re-read `path` and apply it; on error the running config stays.
    /// Logs the outcome either way and counts it in
    /// `tollgate_config_reloads_total`.
    pub fn reload_from(&self, path: &str) -> Result<(), String> {
        match Config::load(path) {
            Ok(c) => {
                let (keys, vks) = (c.providers.values().map(|p| p.keys.len()).sum::<usize>(), c.virtual_keys.len());
                let ignored = self.apply(c);
                for what in &ignored {
                    log::warn!("reload: `tollgate.{what}` changed; it applies after a restart or upgrade (kept the running value)");
                }
                log::info!("reload: configuration from {path} applied ({keys} provider keys, {vks} virtual keys)");
                METRICS.config_reloads.with_label_values(&["success"]).inc();
                Ok(())
            }
            Err(e) => {
                log::error!("reload refused, running configuration kept: {e}");
                METRICS.config_reloads.with_label_values(&["failure"]).inc();
                Err(e.to_string())
            }
        }
    }
}

/// Give `new` the running values of the settings bound at start; the names
/// of those it wanted changed.
fn keep_start_bound(old: &Config, new: &mut Config) -> Vec<&'static str> {
    fn keep<T: PartialEq + Clone>(name: &'static str, old: &T, new: &mut T, changed: &mut Vec<&'static str>) {
        if old != new {
            changed.push(name);
            *new = old.clone();
        }
    }
    let mut changed = Vec::new();
    keep("listen", &old.listen, &mut new.listen, &mut changed);
    // TLS on or off is the listener's kind; its files and their content
    // (other paths, a renewed certificate) do apply.
    if old.tls.is_some() != new.tls.is_some() {
        changed.push("tls");
        new.tls = old.tls.clone();
    }
    keep("metrics_listen", &old.metrics_listen, &mut new.metrics_listen, &mut changed);
    keep("admin_listen", &old.admin.listen, &mut new.admin.listen, &mut changed);
    keep("access_log", &old.access_log, &mut new.access_log, &mut changed);
    keep("redis", &old.redis, &mut new.redis, &mut changed);
    keep("store.path", &old.store_path, &mut new.store_path, &mut changed);
    keep("async.workers", &old.async_jobs.workers, &mut new.async_jobs.workers, &mut changed);
    keep("otel", &old.otel, &mut new.otel, &mut changed);
    changed
}

/// Per-key gauges: budgets and spend of virtual keys, health of provider
/// keys. Series of keys that were removed are dropped.
fn publish_gauges(config: &Config, old: Option<&Config>, vks: &VirtualKeys) {
    let now = std::time::SystemTime::now();
    if let Some(old) = old {
        for vk in &old.virtual_keys {
            if !config.virtual_keys.iter().any(|k| k.name == vk.name) {
                let _ = METRICS.vk_budget.remove_label_values(&[&vk.name]);
                let _ = METRICS.vk_spend.remove_label_values(&[&vk.name]);
            }
        }
        for (p, c) in &old.providers {
            for k in &c.keys {
                if !config.provider(*p).is_some_and(|n| n.keys.iter().any(|nk| nk.name == k.name)) {
                    let _ = METRICS.key_healthy.remove_label_values(&[p.name(), &k.name]);
                }
            }
        }
    }
    for vk in &config.virtual_keys {
        METRICS.vk_budget.with_label_values(&[&vk.name]).set(vk.budget.map_or(0.0, |b| b.usd));
        METRICS.vk_spend.with_label_values(&[&vk.name]).set(vks.spend(&vk.name, now));
    }
    for (p, c) in &config.providers {
        for k in &c.keys {
            let existing = old.is_some_and(|o| o.provider(*p).is_some_and(|oc| oc.keys.iter().any(|ok| ok.name == k.name)));
            if !existing {
                METRICS.key_healthy.with_label_values(&[p.name(), &k.name]).set(1);
            }
        }
    }
}

/// Waits for `SIGHUP` and reloads. Runs as a Pingora background service,
/// so the handler is in place once the server runs.
pub struct Reloader {
    pub live: Arc<LiveConfig>,
    pub path: String,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Reloader {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot handle SIGHUP, hot reload is off: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    log::info!("SIGHUP: reloading {}", self.path);
                    let _ = self.live.reload_from(&self.path);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let yaml = format!(
            "tollgate:\n  listen: 127.0.0.1:1\n  providers:\n    openai: {{ keys: [{{ name: a, value: sk-a }}] }}\n{extra}"
        );
        Config::from_yaml(&yaml, "t.yaml", &|_| None).unwrap()
    }

    #[test]
    fn apply_swaps_keys_and_keeps_start_bound_settings() {
        let vks = Arc::new(VirtualKeys::new(vec![]));
        let live = LiveConfig::new(Arc::new(config("")), vks.clone());
        let before = live.snapshot();
        let mut next = config("  require_virtual_key: true\n  virtual_keys:\n    - { name: t, secret: \"sha256:0000000000000000000000000000000000000000000000000000000000000000\" }\n");
        next.listen = "127.0.0.1:2".parse().unwrap();
        let ignored = live.apply(next);
        assert_eq!(ignored, vec!["listen"]);
        let after = live.snapshot();
        assert!(after.config.require_virtual_key);
        assert_eq!(after.config.listen, before.config.listen, "listen needs a restart");
        assert!(!vks.is_empty(), "virtual keys replaced");
        // The snapshot taken before the reload is unchanged.
        assert!(!before.config.require_virtual_key);
    }

    #[test]
    fn identity_token_sources_survive_a_reload_unless_the_identity_changed() {
        let load = |secret: &str| {
            let y = format!("tollgate:\n  listen: 127.0.0.1:1\n  providers:\n    azure: {{ keys: [{{ name: sp, endpoint: 'https://r', entra: {{ tenant_id: t, client_id: c, client_secret: {secret} }} }}] }}\n    openai: {{ keys: [{{ name: sp, value: sk-a }}] }}\n");
            Arc::new(Config::from_yaml(&y, "t.yaml", &|_| None).unwrap())
        };
        let first = Live::new(load("secret-1"), None);
        let ts = first.token_source(Provider::Azure, "sp").unwrap().clone();
        assert!(first.token_source(Provider::OpenAi, "sp").is_none(), "a static key has no token source");
        let same = Live::new(load("secret-1"), Some(&first));
        assert!(Arc::ptr_eq(&ts, same.token_source(Provider::Azure, "sp").unwrap()), "cached token kept");
        let changed = Live::new(load("secret-2"), Some(&same));
        assert!(!Arc::ptr_eq(&ts, changed.token_source(Provider::Azure, "sp").unwrap()), "new secret, new source");
    }

    #[test]
    fn a_reload_replaces_the_tls_certificate_and_a_bad_one_is_refused() {
        use crate::config::tls::tests::{key, self_signed};
        let dir = std::env::temp_dir().join(format!("tollgate-reload-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key_path, conf) = (dir.join("c.pem"), dir.join("k.pem"), dir.join("t.yaml"));
        let issue = |serial: u32| {
            let k = key();
            let c = self_signed("gw", serial, &k);
            std::fs::write(&cert, c.to_pem().unwrap()).unwrap();
            std::fs::write(&key_path, k.private_key_to_pem_pkcs8().unwrap()).unwrap();
            c.to_der().unwrap()
        };
        let with_tls = format!("tollgate:\n  listen: 127.0.0.1:1\n  tls: {{ cert: \"{}\", key: \"{}\" }}\n", cert.display(), key_path.display());
        std::fs::write(&conf, &with_tls).unwrap();
        let first = issue(1);
        let live = LiveConfig::new(Arc::new(Config::load(conf.to_str().unwrap()).unwrap()), Arc::new(VirtualKeys::new(vec![])));
        let certs = live.certificates().expect("tls configured");
        assert_eq!(certs.current().leaf.to_der().unwrap(), first);

        let second = issue(2);
        live.reload_from(conf.to_str().unwrap()).unwrap();
        assert_eq!(certs.current().leaf.to_der().unwrap(), second, "renewed on reload");

        std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nbroken").unwrap();
        let err = live.reload_from(conf.to_str().unwrap()).unwrap_err();
        assert!(err.contains("tollgate.tls.cert") && err.contains(cert.to_str().unwrap()), "{err}");
        assert_eq!(certs.current().leaf.to_der().unwrap(), second, "the running certificate stays");

        // Turning TLS off needs a restart: kept, and said.
        std::fs::write(&conf, "tollgate:\n  listen: 127.0.0.1:1\n").unwrap();
        live.reload_from(conf.to_str().unwrap()).unwrap();
        assert!(live.snapshot().config.tls.is_some());
        assert_eq!(certs.current().leaf.to_der().unwrap(), second);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bad_file_is_refused_and_the_running_config_stays() {
        let vks = Arc::new(VirtualKeys::new(vec![]));
        let live = LiveConfig::new(Arc::new(config("")), vks);
        let dir = std::env::temp_dir().join(format!("tollgate-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.yaml");
        std::fs::write(&p, "tollgate:\n  listen: 127.0.0.1:1\n  providers:\n    openai: { keys: [{ name: a, valeu: x }] }\n").unwrap();
        let err = live.reload_from(p.to_str().unwrap()).unwrap_err();
        assert!(err.contains("valeu"), "{err}");
        assert_eq!(live.snapshot().config.providers.values().next().unwrap().keys[0].value, "sk-a");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
