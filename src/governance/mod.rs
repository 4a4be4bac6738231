//! Who may spend what: virtual keys (allow-lists, rate limits, budgets and
//! the spend they persist), the same limits shared by several instances
//! through Redis, and the provider key pools with their health.

pub mod key_pool;
pub mod shared_counters;
pub mod virtual_keys;
