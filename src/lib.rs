//! tollgate: an edge gateway for LLM provider APIs, built on Pingora.
//!
//! Decisions live in plain modules (`route`, `credentials`, `headers`,
//! `usage`, `config`); `proxy` wires them into Pingora's phases.

pub mod access_log;
pub mod config;
pub mod credentials;
pub mod errors;
pub mod headers;
pub mod metrics;
pub mod prices;
pub mod proxy;
pub mod redis;
pub mod reload;
pub mod route;
pub mod shared_counters;
pub mod upstream;
pub mod usage;
pub mod vertex_auth;
pub mod vkeys;
