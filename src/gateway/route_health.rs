//! Target health across requests (SPEC 10), kept by the gateway for its
//! whole life (a reload keeps the state of targets that remain): shared
//! with other instances through Redis when configured, exported as
//! `tollgate_route_target_cooldown{alias,provider,model}` (computed at each
//! scrape) and listed by `GET /admin/routes`.

use super::Gateway;
use crate::config::Config;
use crate::routing::{Candidate, Health};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub type SharedHealth = Arc<Mutex<Health>>;

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Gateway {
    pub(super) fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.route_health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A failure that moves on: counted here, and across the fleet with
    /// Redis (where `cooldown.failures` across instances start a shared
    /// cooldown).
    pub(super) async fn route_failed(&self, key: &str, conf: &crate::config::routing::CooldownConf) {
        let cooled = self.health().failure(key, Instant::now(), conf);
        let Some(shared) = &self.shared else {
            if cooled.is_some() {
                log::warn!("routing: {key} failed {} times within {}s: skipped for {}s", conf.failures, conf.window_s, conf.s);
            }
            return;
        };
        let fleet = match shared.route_failure(key, (conf.window_s * 1000.0) as u64).await {
            Ok(n) => n,
            Err(e) => {
                shared.failed("route_failure", &e);
                return;
            }
        };
        if cooled.is_none() && fleet < u64::from(conf.failures) {
            return;
        }
        let for_ms = (conf.s * 1000.0) as u64;
        let until = SystemTime::now() + Duration::from_millis(for_ms);
        self.health().adopt(key, Instant::now() + Duration::from_millis(for_ms));
        log::warn!("routing: {key} failed {} times within {}s across instances: skipped for {}s", conf.failures, conf.window_s, conf.s);
        if let Err(e) = shared.route_cool(key, unix_ms(until), for_ms).await {
            shared.failed("route_cool", &e);
        }
    }

    /// Cooldowns other instances started, adopted before ordering a
    /// request's candidates (one Redis round trip, only when there is a
    /// choice to make).
    pub(super) async fn adopt_shared_cooldowns(&self, cands: &[Candidate]) {
        let Some(shared) = &self.shared else { return };
        if cands.len() < 2 {
            return;
        }
        let keys: Vec<String> = cands.iter().map(|c| c.target.key()).collect();
        match shared.route_cooling(&keys).await {
            Ok(untils) => {
                let now_ms = unix_ms(SystemTime::now());
                let now = Instant::now();
                let mut h = self.health();
                for (k, until) in keys.iter().zip(untils) {
                    if let Some(u) = until.filter(|&u| u > now_ms) {
                        h.adopt(k, now + Duration::from_millis(u - now_ms));
                    }
                }
            }
            Err(e) => shared.failed("route_cooling", &e),
        }
    }

    /// `GET /admin/routes`: every alias with its targets and fallbacks, and
    /// each target's health.
    pub(crate) fn routes_view(&self) -> Value {
        let live = self.live.snapshot();
        let rc = &live.config.routing;
        let now = Instant::now();
        let h = self.health();
        let target = |m: &str, weight: Option<f64>| {
            let (p, model) = m.split_once('/').unwrap_or(("openai", m));
            let v = h.view(m, now, &rc.cooldown);
            let mut o = json!({
                "model": m, "provider": p, "provider_model": model,
                "cooling_down": v.cooling_s.is_some(), "cooldown_remaining_s": v.cooling_s,
                "probing": v.probing, "recent_failures": v.recent_failures,
                "ttfb_ms": v.ttfb_s.map(|s| (s * 1000.0 * 1000.0).round() / 1000.0), "cooldowns": v.cooldowns,
            });
            if let Some(w) = weight {
                o["weight"] = json!(w);
            }
            o
        };
        let aliases: Vec<Value> = rc
            .models
            .iter()
            .map(|(name, a)| {
                json!({
                    "alias": name,
                    "strategy": a.strategy.name(),
                    "targets": a.targets.iter().map(|t| target(&t.model, Some(t.weight))).collect::<Vec<_>>(),
                    "fallbacks": a.fallbacks.iter().map(|f| target(f, None)).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "max_attempts": rc.max_attempts,
            "max_fallbacks": rc.max_fallbacks,
            "retries": rc.retries,
            "cooldown": { "failures": rc.cooldown.failures, "window_s": rc.cooldown.window_s, "s": rc.cooldown.s },
            "aliases": aliases,
        })
    }
}

/// `tollgate_route_target_cooldown{alias,provider,model}`: 1 while the
/// target is skipped, 0 otherwise, for every alias target and fallback of
/// the configuration in force, computed when scraped.
pub struct CooldownCollector {
    pub health: SharedHealth,
    pub config: Arc<dyn Fn() -> Arc<Config> + Send + Sync>,
    gauge: GaugeVec,
    desc: Vec<Desc>,
}

impl CooldownCollector {
    pub fn new(health: SharedHealth, config: Arc<dyn Fn() -> Arc<Config> + Send + Sync>) -> CooldownCollector {
        let gauge = GaugeVec::new(
            Opts::new("tollgate_route_target_cooldown", "1 while an /openai routing target is cooling down (skipped), 0 otherwise"),
            &["alias", "provider", "model"],
        )
        .expect("gauge");
        let desc = gauge.desc().into_iter().cloned().collect();
        CooldownCollector { health, config, gauge, desc }
    }
}

impl Collector for CooldownCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let config = (self.config)();
        let rc = &config.routing;
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        self.gauge.reset();
        for (alias, a) in &rc.models {
            for m in a.targets.iter().map(|t| &t.model).chain(&a.fallbacks) {
                let (p, model) = m.split_once('/').unwrap_or(("openai", m));
                let cooling = h.cooling_left(m, now, &rc.cooldown).is_some();
                self.gauge.with_label_values(&[alias, p, model]).set(if cooling { 1.0 } else { 0.0 });
            }
        }
        self.gauge.collect()
    }
}
