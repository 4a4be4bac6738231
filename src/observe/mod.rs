//! What the gateway reports about each request: the usage scanner (model
//! and tokens from a side copy of the response), prices and cost, Prometheus
//! metrics, and the JSON access records.

pub mod access_line;
pub mod access_log;
pub mod metrics;
pub mod prices;
pub mod usage;
pub mod trace;
