//! `/admin/logs` (SPEC 12): the request log store's query API, and the
//! dashboard at `/admin/` with its assets built into the binary.
//!
//! * `GET /admin/logs?filters` — rows newest first, `next_cursor`, stats;
//! * `GET /admin/logs/series?filters&bucket_s=` — per virtual key over time;
//! * `GET /admin/logs/overview` — async jobs queued and running;
//! * `GET /admin/logs/{request_id}` — one row;
//! * `GET /admin/` and `/admin/assets/...` — the page.

use super::{AdminReply, AdminRequest};
use crate::gateway::Gateway;
use crate::logs::{parse_filter, LogStore};
use serde_json::{json, Value};

const PAGE: &[u8] = include_bytes!("../../logs/dashboard/index.html");
const SCRIPT: &[u8] = include_bytes!("../../logs/dashboard/dashboard.js");
const STYLE: &[u8] = include_bytes!("../../logs/dashboard/dashboard.css");

fn asset(content_type: &'static str, body: &[u8]) -> AdminReply {
    AdminReply { status: 200, content_type, body: body.to_vec() }
}

/// This concern's answer, or `None` when the path is not its own.
pub(super) async fn handle(gateway: &Gateway, req: &AdminRequest) -> Option<AdminReply> {
    let path = req.path.as_str();
    let ours = matches!(path, "/admin" | "/admin/" | "/admin/index.html") || path.starts_with("/admin/assets/") || path == "/admin/logs" || path.starts_with("/admin/logs/");
    if !ours {
        return None;
    }
    if req.method != http::Method::GET {
        return Some(AdminReply::error(405, "method_not_allowed", &format!("{path} answers GET only")));
    }
    match path {
        "/admin" | "/admin/" | "/admin/index.html" => return Some(asset("text/html; charset=utf-8", PAGE)),
        "/admin/assets/dashboard.js" => return Some(asset("text/javascript; charset=utf-8", SCRIPT)),
        "/admin/assets/dashboard.css" => return Some(asset("text/css; charset=utf-8", STYLE)),
        p if p.starts_with("/admin/assets/") => return Some(AdminReply::error(404, "route_not_found", "no such asset")),
        _ => {}
    }
    let Some(store) = gateway.logs.clone() else {
        return Some(AdminReply::error(404, "logs_not_configured", "the request log store is off: set tollgate.logs"));
    };
    let rest = path.strip_prefix("/admin/logs").unwrap_or("").trim_start_matches('/');
    if rest == "overview" {
        return Some(overview(gateway).await);
    }
    let query = req.query.clone();
    let rest = rest.to_string();
    let answer = tokio::task::spawn_blocking(move || read(&store, &rest, query.as_deref())).await;
    Some(answer.unwrap_or_else(|e| AdminReply::error(500, "internal_error", &format!("log query failed: {e}"))))
}

fn read(store: &LogStore, rest: &str, query: Option<&str>) -> AdminReply {
    let result: Result<Option<Value>, String> = match rest {
        "" | "series" => {
            let f = match parse_filter(query) {
                Ok(f) => f,
                Err(e) => return AdminReply::error(400, "invalid_request", &format!("`{}`: {}", e.param, e.message)),
            };
            if rest.is_empty() {
                store.page(&f).map(Some)
            } else {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
                store.series(&f, now).map(Some)
            }
        }
        id => store.by_request_id(id),
    };
    match result {
        Ok(Some(v)) => AdminReply::json(200, &v),
        Ok(None) => AdminReply::error(404, "log_not_found", &format!("no logged request with id `{rest}`")),
        Err(e) => AdminReply::error(503, "logs_unavailable", &format!("the log store cannot be read: {e}")),
    }
}

/// Async jobs: running in this process, and queued/running in the SQLite
/// store when it holds them (with Redis, only this process's count).
async fn overview(gateway: &Gateway) -> AdminReply {
    let snap = gateway.live.snapshot();
    let running_here = gateway.jobs.running();
    let (path, redis) = (snap.config.store_path.clone(), snap.config.redis.is_some());
    let counts = if redis {
        None
    } else {
        tokio::task::spawn_blocking(move || -> rusqlite::Result<(i64, i64)> {
            let c = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            c.busy_timeout(std::time::Duration::from_secs(1))?;
            c.query_row("SELECT COALESCE(SUM(state = 'queued'), 0), COALESCE(SUM(state = 'running'), 0) FROM jobs", [], |r| Ok((r.get(0)?, r.get(1)?)))
        })
        .await
        .ok()
        .and_then(Result::ok)
    };
    AdminReply::json(
        200,
        &json!({
            "async_jobs": { "queued": counts.map(|c| c.0), "running": counts.map(|c| c.1), "running_here": running_here },
            "logs_dropped": crate::logs::DROPPED.get(),
        }),
    )
}
