//! Routing across providers on `/openai` (SPEC 10), as plain decisions the
//! gateway's exchange loop asks for, with no I/O:
//! * [`plan`] — a request's candidates (an alias's targets, its fallbacks,
//!   the request's own `fallbacks`) and the order to try them in
//!   (weighted, least latency or ordered; cooling targets skipped).
//! * [`attempts`] — which failures move on, the attempt budget, and the
//!   backoff before a same-target retry.
//! * [`health`] — cooldowns after repeated failures (one probe after each),
//!   and each target's recent time to first byte.

pub mod attempts;
pub mod health;
pub mod plan;

pub use attempts::{Attempts, Budget, Failure, Outcome, Step};
pub use health::{Admit, Health};
pub use plan::{Candidate, Origin, Target};
