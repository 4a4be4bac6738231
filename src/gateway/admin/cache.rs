//! The admin endpoints of this concern (skeleton: none yet).

use super::{AdminReply, AdminRequest};
use crate::gateway::Gateway;

/// This concern's answer, or `None` when the path is not its own.
pub(super) async fn handle(_gateway: &Gateway, _req: &AdminRequest) -> Option<AdminReply> {
    None
}
