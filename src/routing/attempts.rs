//! Which failures move a request on, and the attempt budget (SPEC 10).
//!
//! The exchange loop asks [`Attempts`] for a step, tries it, and reports
//! the outcome. One budget counts every send: a key-pool failover inside a
//! target, a move to the next target and a same-target retry alike, so no
//! layer multiplies another's retries.

use std::time::Duration;

/// Why an attempt failed, before anything reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connect or TLS failure: nothing was sent.
    Connect,
    /// No answer head (or whole answer) before the read timeout.
    Timeout,
    /// The provider answered this status.
    Status(u16),
    /// Not sent: this target cannot take the request (no key or endpoint
    /// for it, the request cannot be translated for it). Others may.
    Unsendable,
    /// Anything else the gateway cannot send elsewhere (the request cannot
    /// be translated for this provider, its answer is malformed...).
    Final,
}

impl Failure {
    /// May the same request succeed elsewhere? Connect/TLS, timeouts, 408,
    /// 429, 5xx gateway-ish statuses, 529, and 401/403 (the gateway's key,
    /// not the client's). Client errors (400, 404, 413, 422...) do not.
    pub fn moves_on(self) -> bool {
        match self {
            Failure::Connect | Failure::Timeout | Failure::Unsendable => true,
            Failure::Status(s) => matches!(s, 401 | 403 | 408 | 429 | 500 | 502 | 503 | 504 | 529),
            Failure::Final => false,
        }
    }

    /// A failure of the provider key itself (another key of the same
    /// provider may work).
    pub fn key_problem(self) -> bool {
        matches!(self, Failure::Connect | Failure::Status(401 | 403 | 429))
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Answered the client (a success, or an answer that started streaming).
    Answered,
    Failed {
        failure: Failure,
        /// The provider's `retry-after`.
        retry_after: Option<Duration>,
        /// The same target has another provider key not tried yet.
        another_key: bool,
    },
}

/// The limits of one request (`tollgate.routing`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub max_attempts: u32,
    /// Same-target retries, each after a backoff.
    pub retries: u32,
    pub max_retry_after: Duration,
}

/// The next thing to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Try the `index`th target of the order after `delay`; `other_key`:
    /// the same target on another provider key (key-pool failover).
    Try { index: usize, delay: Duration, other_key: bool },
    /// Done: answered, or the last failure is the answer.
    Stop,
}

/// The state of one request's attempts over `targets` targets in order.
#[derive(Debug, Clone)]
pub struct Attempts {
    targets: usize,
    budget: Budget,
    used: u32,
    index: usize,
    /// Passes over the targets so far (the first is pass 0; pass k > 0 are
    /// the retries).
    pass: u32,
    /// The latest `retry-after` each target gave.
    retry_after: Vec<Option<Duration>>,
}

impl Attempts {
    pub fn new(targets: usize, budget: Budget) -> Attempts {
        Attempts { targets, budget, used: 0, index: 0, pass: 0, retry_after: vec![None; targets] }
    }

    /// Attempts made (sends, counting each key failover).
    pub fn used(&self) -> u32 {
        self.used
    }

    /// Attempts the budget still allows after the current one.
    pub fn left(&self) -> u32 {
        self.budget.max_attempts.saturating_sub(self.used)
    }

    /// Count `extra` sends made inside the current attempt (connect
    /// retries on another key), never past the budget.
    pub fn consume(&mut self, extra: u32) {
        self.used = (self.used + extra).min(self.budget.max_attempts);
    }

    /// The current step was not sent after all (the target could not take
    /// the request, or is cooling down): it does not count.
    pub fn forgo(&mut self) {
        self.used = self.used.saturating_sub(1);
    }

    /// The first step.
    pub fn start(&mut self) -> Step {
        if self.targets == 0 || self.budget.max_attempts == 0 {
            return Step::Stop;
        }
        self.used = 1;
        Step::Try { index: 0, delay: Duration::ZERO, other_key: false }
    }

    /// The step after an attempt's outcome. `jitter` is uniform in [0, 1).
    pub fn after(&mut self, outcome: Outcome, jitter: f64) -> Step {
        let Outcome::Failed { failure, retry_after, another_key } = outcome else {
            return Step::Stop;
        };
        if !failure.moves_on() || self.used >= self.budget.max_attempts {
            return Step::Stop;
        }
        self.used += 1;
        if another_key && failure.key_problem() {
            return Step::Try { index: self.index, delay: Duration::ZERO, other_key: true };
        }
        self.retry_after[self.index] = retry_after;
        if self.index + 1 < self.targets {
            self.index += 1;
            // Another target at once; in a retry pass, after its own backoff.
            let delay = self.retry_delay(self.index, jitter);
            return Step::Try { index: self.index, delay, other_key: false };
        }
        if self.pass < self.budget.retries {
            self.pass += 1;
            self.index = 0;
            let delay = backoff(self.pass, jitter).max(self.retry_after[0].unwrap_or_default().min(self.budget.max_retry_after));
            return Step::Try { index: 0, delay, other_key: false };
        }
        self.used -= 1;
        Step::Stop
    }

    /// In a retry pass, the wait before trying the `index`th target again.
    pub fn retry_delay(&self, index: usize, jitter: f64) -> Duration {
        if self.pass == 0 {
            return Duration::ZERO;
        }
        backoff(self.pass, jitter).max(self.retry_after.get(index).copied().flatten().unwrap_or_default().min(self.budget.max_retry_after))
    }
}

/// A `retry-after` value in seconds (fractions accepted); an HTTP date or
/// anything else is ignored.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

/// The backoff before the `pass`th retry: 250 ms doubling per pass (capped
/// at 8 s), half of it fixed and half random.
pub fn backoff(pass: u32, jitter: f64) -> Duration {
    let full = (0.25 * 2f64.powi(pass.saturating_sub(1).min(5) as i32)).min(8.0);
    Duration::from_secs_f64(full / 2.0 + full / 2.0 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NONE: Option<Duration> = None;

    fn failed(failure: Failure) -> Outcome {
        Outcome::Failed { failure, retry_after: NONE, another_key: false }
    }

    fn budget(max_attempts: u32, retries: u32) -> Budget {
        Budget { max_attempts, retries, max_retry_after: Duration::from_secs(10) }
    }

    #[test]
    fn what_moves_on() {
        for s in [401, 403, 408, 429, 500, 502, 503, 504, 529] {
            assert!(Failure::Status(s).moves_on(), "{s}");
        }
        for s in [400, 404, 409, 413, 422, 501] {
            assert!(!Failure::Status(s).moves_on(), "{s}");
        }
        assert!(Failure::Connect.moves_on() && Failure::Timeout.moves_on() && !Failure::Final.moves_on());
    }

    #[test]
    fn another_target_at_once_the_same_only_after_backoff_honouring_retry_after() {
        let mut a = Attempts::new(2, budget(5, 1));
        assert_eq!(a.start(), Step::Try { index: 0, delay: Duration::ZERO, other_key: false });
        assert_eq!(a.after(failed(Failure::Status(503)), 0.5), Step::Try { index: 1, delay: Duration::ZERO, other_key: false });
        // The first target said retry-after 3 s: honoured on the retry.
        a.retry_after[0] = Some(Duration::from_secs(3));
        match a.after(failed(Failure::Status(429)), 0.0) {
            Step::Try { index: 0, delay, .. } => assert_eq!(delay, Duration::from_secs(3)),
            s => panic!("{s:?}"),
        }
        assert!(a.retry_delay(1, 0.0) >= Duration::from_millis(125));
        assert!(matches!(a.after(failed(Failure::Timeout), 0.0), Step::Try { index: 1, .. }));
        assert_eq!(a.after(failed(Failure::Timeout), 0.0), Step::Stop);
        assert_eq!(a.used(), 4);
    }

    #[test]
    fn a_capped_retry_after_and_a_client_error_stop() {
        let mut a = Attempts::new(1, Budget { max_attempts: 3, retries: 2, max_retry_after: Duration::from_secs(2) });
        a.start();
        let ra = Outcome::Failed { failure: Failure::Status(429), retry_after: Some(Duration::from_secs(3600)), another_key: false };
        assert_eq!(a.after(ra, 0.0), Step::Try { index: 0, delay: Duration::from_secs(2), other_key: false });
        assert_eq!(a.after(failed(Failure::Status(400)), 0.0), Step::Stop);
    }

    #[test]
    fn key_failover_counts_against_the_same_budget() {
        let mut a = Attempts::new(2, budget(2, 0));
        a.start();
        let k = Outcome::Failed { failure: Failure::Status(429), retry_after: NONE, another_key: true };
        assert_eq!(a.after(k, 0.0), Step::Try { index: 0, delay: Duration::ZERO, other_key: true });
        assert_eq!(a.after(k, 0.0), Step::Stop, "two sends were the budget");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1, 0.0) < backoff(2, 0.0) && backoff(2, 0.0) < backoff(3, 0.0));
        assert!(backoff(30, 1.0) <= Duration::from_secs(8));
        assert!(backoff(1, 0.99) > backoff(1, 0.0));
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        let failure = prop_oneof![
            Just(Failure::Connect),
            Just(Failure::Timeout),
            Just(Failure::Final),
            Just(Failure::Unsendable),
            prop::sample::select(vec![400u16, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504, 529]).prop_map(Failure::Status),
        ];
        prop_oneof![
            1 => Just(Outcome::Answered),
            6 => (failure, any::<bool>(), prop::option::of(0u64..100)).prop_map(|(failure, another_key, ra)| Outcome::Failed {
                failure,
                retry_after: ra.map(Duration::from_secs),
                another_key,
            }),
        ]
    }

    proptest! {
        /// For any sequence of target outcomes: attempts never exceed the
        /// budget, each target is tried at most 1 + retries times plus its
        /// key failovers, a success or a client error ends it, and what the
        /// client gets is the success or the last attempt's failure.
        #[test]
        fn attempts_are_bounded_and_the_answer_is_the_last(
            targets in 1usize..6,
            max_attempts in 1u32..8,
            retries in 0u32..3,
            outcomes in prop::collection::vec(outcome(), 40),
            jitter in 0.0f64..1.0,
        ) {
            let b = Budget { max_attempts, retries, max_retry_after: Duration::from_secs(5) };
            let mut a = Attempts::new(targets, b);
            let mut step = a.start();
            let mut tried = Vec::new();
            let mut sends = 0u32;
            let mut last = None;
            let mut outcomes = outcomes.into_iter();
            while let Step::Try { index, delay, other_key } = step {
                prop_assert!(index < targets);
                prop_assert!(delay <= Duration::from_secs(8).max(b.max_retry_after));
                if !other_key && tried.last().is_some_and(|&(i, _)| i == index) {
                    prop_assert!(targets == 1 && delay > Duration::ZERO, "the same target again only after a backoff");
                }
                let o = outcomes.next().unwrap();
                tried.push((index, other_key));
                if matches!(o, Outcome::Failed { failure: Failure::Unsendable, .. }) {
                    a.forgo();
                } else {
                    sends += 1;
                    last = Some(o);
                }
                step = a.after(o, jitter);
                if o == Outcome::Answered {
                    prop_assert_eq!(step, Step::Stop, "an answer ends it");
                }
                prop_assert!(tried.len() <= 64, "the loop ends");
            }
            prop_assert!(sends <= max_attempts);
            prop_assert_eq!(sends, a.used());
            for t in 0..targets {
                let fresh = tried.iter().filter(|&&(i, k)| i == t && !k).count() as u32;
                prop_assert!(fresh <= 1 + retries);
            }
            // The loop ended on an answer, on a failure that does not move
            // on, or with the budget or the targets spent: the client gets
            // that last outcome.
            match last {
                None | Some(Outcome::Answered) => {}
                Some(Outcome::Failed { failure, .. }) => {
                    let spent = sends == max_attempts;
                    let exhausted = tried.iter().filter(|&&(_, k)| !k).count() as u32 >= targets as u32 * (1 + retries);
                    prop_assert!(!failure.moves_on() || spent || exhausted);
                }
            }
        }
    }
}
