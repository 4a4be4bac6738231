//! Target health: cooldowns after repeated failures, one probe when a
//! cooldown ends, and each target's recent time to first byte (SPEC 10).
//! Keyed by `provider/model`, so it outlives a reload that keeps the
//! target. Time is passed in.

use crate::config::routing::CooldownConf;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// May a request use a target now?
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admit {
    Healthy,
    /// Its cooldown ended and nobody is probing it: the first request to
    /// try it is the probe.
    Probe,
    /// Skipped until then.
    Cooling(Instant),
}

#[derive(Debug, Default)]
struct State {
    /// Failure times within the window.
    failures: VecDeque<Instant>,
    cooling_until: Option<Instant>,
    /// A probe in flight since then.
    probe: Option<Instant>,
    /// Smoothed time to first byte, seconds.
    ttfb: Option<f64>,
    cooldowns: u64,
}

/// One target's state as `/admin/routes` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub cooling_s: Option<f64>,
    pub probing: bool,
    pub recent_failures: usize,
    pub ttfb_s: Option<f64>,
    pub cooldowns: u64,
}

/// Every target's health.
#[derive(Debug, Default)]
pub struct Health {
    targets: HashMap<String, State>,
}

/// Past this many targets, idle healthy ones are forgotten.
const MAX_TARGETS: usize = 4096;

impl Health {
    pub fn admit(&self, key: &str, now: Instant, conf: &CooldownConf) -> Admit {
        let Some(s) = self.targets.get(key) else { return Admit::Healthy };
        match (s.cooling_until, s.probe) {
            (Some(until), _) if until > now => Admit::Cooling(until),
            // A probe is out: others wait for it (a lost probe is replaced
            // after another cooldown period).
            (Some(_), Some(p)) if now < p + secs(conf.s) => Admit::Cooling(p + secs(conf.s)),
            (Some(_), _) => Admit::Probe,
            (None, _) => Admit::Healthy,
        }
    }

    /// Seconds of cooldown left, `None` when the target may be used.
    pub fn cooling_left(&self, key: &str, now: Instant, conf: &CooldownConf) -> Option<f64> {
        match self.admit(key, now, conf) {
            Admit::Cooling(until) => Some(until.saturating_duration_since(now).as_secs_f64()),
            _ => None,
        }
    }

    /// Take the probe of a target whose cooldown ended: true for the one
    /// request that may try it (and for a healthy target).
    pub fn take_probe(&mut self, key: &str, now: Instant, conf: &CooldownConf) -> bool {
        match self.admit(key, now, conf) {
            Admit::Healthy => true,
            Admit::Cooling(_) => false,
            Admit::Probe => {
                if let Some(s) = self.targets.get_mut(key) {
                    s.probe = Some(now);
                }
                true
            }
        }
    }

    /// A success: the target is healthy again; its time to first byte is
    /// smoothed in.
    pub fn success(&mut self, key: &str, ttfb: Option<Duration>) {
        if !self.targets.contains_key(key) && self.targets.len() >= MAX_TARGETS {
            self.forget_idle();
        }
        let s = self.targets.entry(key.to_string()).or_default();
        s.failures.clear();
        s.cooling_until = None;
        s.probe = None;
        if let Some(t) = ttfb {
            let t = t.as_secs_f64();
            s.ttfb = Some(s.ttfb.map_or(t, |old| old * 0.7 + t * 0.3));
        }
    }

    /// A failure that moves requests on. Returns when a cooldown started.
    pub fn failure(&mut self, key: &str, now: Instant, conf: &CooldownConf) -> Option<Instant> {
        if !self.targets.contains_key(key) && self.targets.len() >= MAX_TARGETS {
            self.forget_idle();
        }
        let s = self.targets.entry(key.to_string()).or_default();
        let window = secs(conf.window_s);
        while s.failures.front().is_some_and(|&t| now.saturating_duration_since(t) > window) {
            s.failures.pop_front();
        }
        s.failures.push_back(now);
        // A failed probe cools down again at once.
        let probe_failed = s.probe.take().is_some();
        if probe_failed || s.failures.len() as u32 >= conf.failures {
            s.failures.clear();
            let until = now + secs(conf.s);
            s.cooling_until = Some(until);
            s.cooldowns += 1;
            return Some(until);
        }
        None
    }

    /// A cooldown another instance started (shared through Redis).
    pub fn adopt(&mut self, key: &str, until: Instant) {
        let s = self.targets.entry(key.to_string()).or_default();
        if s.cooling_until.is_none_or(|u| u < until) {
            s.cooling_until = Some(until);
            s.probe = None;
        }
    }

    /// Smoothed time to first byte, seconds.
    pub fn ttfb(&self, key: &str) -> Option<f64> {
        self.targets.get(key).and_then(|s| s.ttfb)
    }

    pub fn view(&self, key: &str, now: Instant, conf: &CooldownConf) -> View {
        let s = self.targets.get(key);
        View {
            cooling_s: self.cooling_left(key, now, conf),
            probing: s.is_some_and(|s| s.probe.is_some()),
            recent_failures: s.map_or(0, |s| s.failures.iter().filter(|&&t| now.saturating_duration_since(t) <= secs(conf.window_s)).count()),
            ttfb_s: s.and_then(|s| s.ttfb),
            cooldowns: s.map_or(0, |s| s.cooldowns),
        }
    }

    fn forget_idle(&mut self) {
        self.targets.retain(|_, s| s.cooling_until.is_some() || !s.failures.is_empty());
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: CooldownConf = CooldownConf { failures: 3, window_s: 10.0, s: 30.0 };

    #[test]
    fn n_failures_in_the_window_cool_a_target_then_one_probe() {
        let mut h = Health::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(h.failure("a/x", at(0), &C), None);
        assert_eq!(h.failure("a/x", at(1), &C), None);
        assert_eq!(h.admit("a/x", at(1), &C), Admit::Healthy);
        assert_eq!(h.failure("a/x", at(2), &C), Some(at(32)));
        assert_eq!(h.admit("a/x", at(3), &C), Admit::Cooling(at(32)));
        assert_eq!(h.cooling_left("a/x", at(12), &C), Some(20.0));
        assert_eq!(h.admit("a/x", at(33), &C), Admit::Probe);
        assert!(h.take_probe("a/x", at(33), &C));
        assert!(!h.take_probe("a/x", at(33), &C), "one probe at a time");
        assert!(matches!(h.admit("a/x", at(34), &C), Admit::Cooling(_)));
        // The probe fails: cooling again at once.
        assert_eq!(h.failure("a/x", at(34), &C), Some(at(64)));
        assert!(h.take_probe("a/x", at(65), &C));
        h.success("a/x", Some(Duration::from_millis(100)));
        assert_eq!(h.admit("a/x", at(65), &C), Admit::Healthy);
        assert_eq!(h.view("a/x", at(65), &C).cooldowns, 2);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let mut h = Health::default();
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(h.failure("a/x", t0 + Duration::from_secs(i * 6), &C), None, "failure {i}");
        }
        assert_eq!(h.admit("a/x", t0 + Duration::from_secs(60), &C), Admit::Healthy);
    }

    #[test]
    fn a_lost_probe_is_replaced_and_shared_cooldowns_are_adopted() {
        let mut h = Health::default();
        let t0 = Instant::now();
        h.adopt("a/x", t0 + Duration::from_secs(5));
        assert!(matches!(h.admit("a/x", t0, &C), Admit::Cooling(_)));
        assert!(h.take_probe("a/x", t0 + Duration::from_secs(6), &C));
        assert!(!h.take_probe("a/x", t0 + Duration::from_secs(7), &C));
        assert!(h.take_probe("a/x", t0 + Duration::from_secs(37), &C), "the probe never reported: another may go");
    }

    #[test]
    fn ttfb_is_smoothed() {
        let mut h = Health::default();
        h.success("a/x", Some(Duration::from_secs(1)));
        h.success("a/x", Some(Duration::from_secs(2)));
        assert!((h.ttfb("a/x").unwrap() - 1.3).abs() < 1e-9);
        assert_eq!(h.ttfb("b/y"), None);
    }
}
