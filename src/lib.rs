//! tollgate: an edge gateway for LLM provider APIs, built on Pingora.
//!
//! Layers, each importing only those above it in this list:
//! * `alloc`, `errors`, `net`, `translate`, `store` — the binary's allocator
//!   (mimalloc); gateway error kinds; URLs, DNS,
//!   peers, query strings; the OpenAI ↔ provider translators (pure, no
//!   I/O), the client's request as they take it (`chat_request`: read
//!   typed when it has the common shape, else a JSON value), and what a
//!   reasoning model's tool turn needs again (`replay`);
//!   async jobs and spend in SQLite (or jobs in Redis), and the reasoning
//!   replay memory's SQLite file.
//! * `providers` — one file per provider: base URL, auth form, path rules,
//!   usage family, price fallback (Vertex with its OAuth).
//! * `observe` — usage scanner, prices, metrics, access records, traces.
//! * `config` — the `tollgate:` section, one file per section.
//! * `cache` — the response cache of `/openai` (SPEC 11): canonical keys
//!   and owners, the entries in SQLite, their semantic vectors (an exact
//!   scan, or an inverted-file index trained off the request path), stored
//!   answers assembled from and replayed as stream events.
//! * `logs` — the request log store (append-only segments beside the
//!   store, fed by the access log's writer): its writer off the request
//!   path, the columns kept in memory, the query API, the dashboard.
//! * `governance` — virtual keys, limits (local and Redis), key pools; the
//!   Redis side of the cache, route cooldowns and the reasoning memory.
//! * `routing` — SPEC 10's decisions on `/openai`: an alias's candidates
//!   and their order, which failures move on, the attempt budget, cooldowns.
//! * `routes` — plain decisions over a request: prefix, path safety,
//!   Gemini or Vertex, credentials, upstream plan, header hygiene.
//! * `gateway` — the Pingora glue, one file per phase group.
//!
//! A request: `gateway::request` matches a route and validates it
//! (`routes`), admits it (`gateway::admission`: virtual key and limits from
//! `governance`, a provider key, the plan from `routes::plan`),
//! `gateway::upstream` picks the peer (`net`) and rewrites the head
//! (`routes::headers`), `gateway::response` feeds the usage scanner
//! (`observe`), and `gateway::logging` writes the record and metrics.

pub mod alloc;
pub mod cache;
pub mod config;
pub mod errors;
pub mod gateway;
pub mod governance;
pub mod logs;
pub mod net;
pub mod observe;
pub mod providers;
pub mod routes;
pub mod routing;
pub mod store;
pub mod translate;
