//! The admin listener (SPEC 12): `/admin/...` and, when it shares the
//! metrics listener, `/metrics`. Loopback by default; elsewhere every admin
//! request must carry `Authorization: Bearer <admin.token>` (`/metrics`
//! keeps its own setting: it is never behind the token).
//!
//! Each concern answers its own paths in its own file: [`routes`]
//! (`/admin/routes`, SPEC 10), [`cache`] (`/admin/cache`, SPEC 11),
//! [`logs`] (`/admin/logs` and the dashboard at `/admin/`, SPEC 12). A
//! handler returns `None` for a path that is not its own.

use super::Gateway;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

mod cache;
mod logs;
mod routes;

/// An admin request as the handlers see it: method, path, query and the
/// body (bounded), with no reference to the session.
#[allow(dead_code)] // query and body: read by the handlers that take them
pub(crate) struct AdminRequest {
    pub method: http::Method,
    pub path: String,
    pub query: Option<String>,
    pub body: Vec<u8>,
}

/// An admin answer.
pub(crate) struct AdminReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl AdminReply {
    pub fn json(status: u16, v: &serde_json::Value) -> AdminReply {
        AdminReply { status, content_type: "application/json", body: serde_json::to_vec(v).unwrap_or_default() }
    }

    /// SPEC 5's error shape.
    pub fn error(status: u16, kind: &str, message: &str) -> AdminReply {
        AdminReply::json(status, &serde_json::json!({ "error": { "type": kind, "message": message } }))
    }
}

/// Admin request bodies are small (a filter, a cache key).
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The admin service. `with_metrics`: it is the metrics listener too.
pub struct AdminApp {
    pub gateway: Gateway,
    pub with_metrics: bool,
}

impl AdminApp {
    async fn dispatch(&self, req: &AdminRequest) -> AdminReply {
        if let Some(r) = routes::handle(&self.gateway, req).await {
            return r;
        }
        if let Some(r) = cache::handle(&self.gateway, req).await {
            return r;
        }
        if let Some(r) = logs::handle(&self.gateway, req).await {
            return r;
        }
        AdminReply::error(404, "route_not_found", &format!("no admin endpoint at {} {}", req.method, req.path))
    }
}

/// Is the bearer token the configured one (compared in constant time)?
fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    let Some(v) = header.and_then(|h| std::str::from_utf8(h).ok()) else { return false };
    let Some((scheme, presented)) = v.trim().split_once(' ') else { return false };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let (a, b) = (presented.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[async_trait::async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        if self.with_metrics && path == "/metrics" {
            return crate::observe::metrics::MetricsApp.response(session).await;
        }
        let reply = if path == "/admin" || path.starts_with("/admin/") {
            let token = self.gateway.live.snapshot().config.admin.token.clone();
            let auth = session.req_header().headers.get("authorization").map(|v| v.as_bytes().to_vec());
            // The dashboard's page and assets are static (no data): open, so
            // a browser can load them; the page then sends the token.
            let public = matches!(path.as_str(), "/admin" | "/admin/") || path.starts_with("/admin/assets/");
            if !public && token.as_deref().is_some_and(|t| !authorized(auth.as_deref(), t)) {
                AdminReply::error(401, "admin_unauthorized", "the admin API needs Authorization: Bearer <admin.token>")
            } else {
                let mut body = Vec::new();
                let mut too_large = false;
                while let Ok(Some(chunk)) = session.read_request_body().await {
                    if body.len() + chunk.len() > MAX_ADMIN_BODY {
                        too_large = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                if too_large {
                    AdminReply::error(413, "payload_too_large", "admin request bodies are limited to 64 KiB")
                } else {
                    let h = session.req_header();
                    let req = AdminRequest { method: h.method.clone(), path, query: h.uri.query().map(str::to_string), body };
                    self.dispatch(&req).await
                }
            }
        } else {
            AdminReply::error(404, "route_not_found", "the admin API is under /admin/")
        };
        let mut b = http::Response::builder().status(reply.status).header("content-type", reply.content_type).header("content-length", reply.body.len());
        // The admin answers are private and live.
        b = b.header("cache-control", "no-store");
        b.body(reply.body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::authorized;

    #[test]
    fn the_token_must_match_exactly() {
        let t = "0123456789abcdef";
        assert!(authorized(Some(b"Bearer 0123456789abcdef"), t));
        assert!(authorized(Some(b"bearer  0123456789abcdef "), t));
        assert!(!authorized(Some(b"Bearer 0123456789abcdeg"), t));
        assert!(!authorized(Some(b"Bearer 0123456789abcde"), t));
        assert!(!authorized(Some(b"Basic 0123456789abcdef"), t));
        assert!(!authorized(Some(b"0123456789abcdef"), t));
        assert!(!authorized(None, t));
    }
}
