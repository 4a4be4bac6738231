//! The response cache of `/openai` (SPEC 11), beside `store` and below
//! `gateway`:
//! * [`key`] — the canonical request, its exact key and its semantic
//!   partition (pure);
//! * [`directives`] — what a request asks of the cache (`x-bf-cache-*`,
//!   `Cache-Control`), and whose entries it may read (the owner);
//! * [`replay`] — a complete answer assembled from the events a client was
//!   sent, and replayed as events or as one object (pure);
//! * [`store`] — the entries: in an SQLite file beside the store, with the
//!   exact index and the semantic vectors in memory, TTL and eviction, and
//!   the coalescing of identical misses;
//! * [`semantic`] — each partition's vectors and the nearest-neighbour
//!   lookup: an exact scan for small partitions, an [`ivf`] index trained
//!   off the request path for large ones.

pub mod directives;
pub mod ivf;
pub mod key;
pub mod replay;
pub mod semantic;
pub mod store;

pub use directives::{Directives, Layer};
pub use store::{CacheStore, Hit};
