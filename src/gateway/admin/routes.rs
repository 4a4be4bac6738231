//! `GET /admin/routes` (SPEC 10): the aliases of the configuration in
//! force, their targets and fallbacks, and each target's health
//! (cooling down and for how long, a probe out, recent failures, smoothed
//! time to first byte).

use super::{AdminReply, AdminRequest};
use crate::gateway::Gateway;

/// This concern's answer, or `None` when the path is not its own.
pub(super) async fn handle(gateway: &Gateway, req: &AdminRequest) -> Option<AdminReply> {
    if req.path != "/admin/routes" {
        return None;
    }
    if req.method != http::Method::GET {
        return Some(AdminReply::error(405, "method_not_allowed", "GET /admin/routes"));
    }
    Some(AdminReply::json(200, &gateway.routes_view()))
}
