//! A request's candidates and the order to try them in.

use crate::config::routing::{Alias, Strategy};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// One place a request may go: a configured provider and its own model name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub provider: String,
    pub model: String,
}

impl Target {
    /// `provider/model`: the key of its health and the label of its metrics.
    pub fn key(&self) -> String {
        let mut k = String::with_capacity(self.provider.len() + 1 + self.model.len());
        k.push_str(&self.provider);
        k.push('/');
        k.push_str(&self.model);
        k
    }
}

/// Where a candidate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// The request's model, or one of its alias's targets.
    Primary,
    /// The alias's `fallbacks`.
    AliasFallback,
    /// The request's own `fallbacks`.
    RequestFallback,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub target: Target,
    pub origin: Origin,
    /// An alias target's weight (1 for everything else).
    pub weight: f64,
}

/// The candidates in the order written: the alias's targets (or the model
/// itself), the alias's fallbacks, then the request's. A target named twice
/// is kept where it first appears. `split` turns `provider/model` (or a
/// bare model) into a target.
pub fn candidates(model: &str, alias: Option<&Alias>, request_fallbacks: &[String], split: &dyn Fn(&str) -> Target) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut push = |target: Target, origin: Origin, weight: f64| {
        if !out.iter().any(|c| c.target == target) {
            out.push(Candidate { target, origin, weight });
        }
    };
    match alias {
        Some(a) => {
            for t in &a.targets {
                push(split(&t.model), Origin::Primary, t.weight);
            }
            for f in &a.fallbacks {
                push(split(f), Origin::AliasFallback, 1.0);
            }
        }
        None => push(split(model), Origin::Primary, 1.0),
    }
    for f in request_fallbacks {
        push(split(f), Origin::RequestFallback, 1.0);
    }
    out
}

/// The order to try `cands` in, as indexes into it. Primary candidates
/// come first, ordered by `strategy`; then the fallbacks as written.
/// Targets that `cooling` says are cooling down (`Some(seconds left)`) are
/// skipped; when every one is, only the one whose cooldown ends first is
/// tried. `latency`: a target's recent time to first byte, when known.
pub fn order(
    cands: &[Candidate],
    strategy: Strategy,
    cooling: &dyn Fn(&Target) -> Option<f64>,
    latency: &dyn Fn(&Target) -> Option<f64>,
    rng: &mut dyn rand::RngCore,
) -> Vec<usize> {
    let n = cands.len();
    // One allocation: healthy primaries first, then healthy fallbacks.
    let mut out = Vec::with_capacity(n);
    let mut fallback_healthy = 0u64; // a bit per candidate (at most 64 ordered fully)
    let mut earliest: Option<(usize, f64)> = None;
    for (i, c) in cands.iter().enumerate() {
        match cooling(&c.target) {
            None if c.origin == Origin::Primary => out.push(i),
            None => fallback_healthy |= 1u64 << i.min(63),
            Some(left) => {
                if earliest.is_none_or(|(_, e)| left < e) {
                    earliest = Some((i, left));
                }
            }
        }
    }
    let primaries = out.len();
    match strategy {
        Strategy::Ordered => {}
        Strategy::LeastLatency => {
            // Unknown latency first: a target is measured before it is judged.
            out.sort_by(|&a, &b| latency(&cands[a].target).unwrap_or(0.0).total_cmp(&latency(&cands[b].target).unwrap_or(0.0)));
        }
        Strategy::Weighted => weighted_order(cands, &mut out[..primaries], rng),
    }
    for i in 0..n {
        if cands[i].origin != Origin::Primary && fallback_healthy & (1u64 << i.min(63)) != 0 && (i < 63 || cooling(&cands[i].target).is_none()) {
            out.push(i);
        }
    }
    if out.is_empty() {
        out.extend(earliest.map(|(i, _)| i));
    }
    out
}

/// Weighted random order without replacement over the positive weights,
/// then the zero-weight targets as written, in place. Fractional weights
/// count as they are (never truncated).
fn weighted_order(cands: &[Candidate], idx: &mut [usize], rng: &mut dyn rand::RngCore) {
    // Positive weights first, keeping the written order of the zeros.
    let mut positive = 0;
    for j in 0..idx.len() {
        if cands[idx[j]].weight > 0.0 {
            idx[positive..=j].rotate_right(1);
            positive += 1;
        }
    }
    for pos in 0..positive {
        let total: f64 = idx[pos..positive].iter().map(|&i| cands[i].weight).sum();
        let mut x = rng.gen_range(0.0..total);
        let mut pick = positive - 1;
        for (k, &i) in idx[pos..positive].iter().enumerate() {
            if x < cands[i].weight {
                pick = pos + k;
                break;
            }
            x -= cands[i].weight;
        }
        // Keep the rest in order (a rotation, not a swap).
        idx[pos..=pick].rotate_right(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::routing::AliasTarget;
    use rand::SeedableRng;

    fn split(s: &str) -> Target {
        let (p, m) = s.split_once('/').unwrap_or(("openai", s));
        Target { provider: p.into(), model: m.into() }
    }

    fn alias(strategy: Strategy, targets: &[(&str, f64)], fallbacks: &[&str]) -> Alias {
        Alias {
            strategy,
            targets: targets.iter().map(|(m, w)| AliasTarget { model: m.to_string(), weight: *w }).collect(),
            fallbacks: fallbacks.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn keys(c: &[Candidate], o: &[usize]) -> Vec<String> {
        o.iter().map(|&i| c[i].target.key()).collect()
    }

    #[test]
    fn alias_targets_then_alias_fallbacks_then_the_requests_without_duplicates() {
        let a = alias(Strategy::Ordered, &[("openai/a", 1.0), ("azure/a", 1.0)], &["anthropic/c", "openai/a"]);
        let c = candidates("smart", Some(&a), &["gemini/g".into(), "anthropic/c".into()], &split);
        assert_eq!(c.iter().map(|c| c.target.key()).collect::<Vec<_>>(), ["openai/a", "azure/a", "anthropic/c", "gemini/g"]);
        assert_eq!(c[2].origin, Origin::AliasFallback);
        assert_eq!(c[3].origin, Origin::RequestFallback);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(keys(&c, &order(&c, Strategy::Ordered, &|_| None, &|_| None, &mut rng)), ["openai/a", "azure/a", "anthropic/c", "gemini/g"]);
        let plain = candidates("anthropic/x", None, &["openai/y".into()], &split);
        assert_eq!(plain.iter().map(|c| c.target.key()).collect::<Vec<_>>(), ["anthropic/x", "openai/y"]);
    }

    #[test]
    fn cooling_targets_are_skipped_and_the_earliest_tried_when_all_cool() {
        let a = alias(Strategy::Ordered, &[("openai/a", 1.0), ("azure/a", 1.0)], &["anthropic/c"]);
        let c = candidates("smart", Some(&a), &[], &split);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let cool = |t: &Target| (t.provider == "openai").then_some(5.0);
        assert_eq!(keys(&c, &order(&c, Strategy::Ordered, &cool, &|_| None, &mut rng)), ["azure/a", "anthropic/c"]);
        let all = |t: &Target| Some(match t.provider.as_str() { "openai" => 9.0, "azure" => 2.0, _ => 4.0 });
        assert_eq!(keys(&c, &order(&c, Strategy::Ordered, &all, &|_| None, &mut rng)), ["azure/a"]);
    }

    #[test]
    fn least_latency_prefers_the_fastest_and_measures_the_unknown() {
        let a = alias(Strategy::LeastLatency, &[("openai/a", 1.0), ("azure/a", 1.0), ("gemini/g", 1.0)], &[]);
        let c = candidates("smart", Some(&a), &[], &split);
        let lat = |t: &Target| match t.provider.as_str() { "openai" => Some(0.9), "azure" => Some(0.2), _ => None };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(keys(&c, &order(&c, Strategy::LeastLatency, &|_| None, &lat, &mut rng)), ["gemini/g", "azure/a", "openai/a"]);
    }

    #[test]
    fn fractional_weights_hold_and_zero_is_only_a_fallback() {
        let a = alias(Strategy::Weighted, &[("openai/a", 0.25), ("azure/a", 0.75), ("gemini/z", 0.0)], &[]);
        let c = candidates("smart", Some(&a), &[], &split);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut first = [0u32; 3];
        for _ in 0..20_000 {
            let o = order(&c, Strategy::Weighted, &|_| None, &|_| None, &mut rng);
            assert_eq!(o.len(), 3);
            assert_eq!(o[2], 2, "the zero-weight target comes last");
            first[o[0]] += 1;
        }
        assert_eq!(first[2], 0);
        let share = first[0] as f64 / 20_000.0;
        assert!((share - 0.25).abs() < 0.02, "0.25 of 1.0 weight took {share}");
    }
}
