//! `DELETE /admin/cache[?key=<namespace>]` (SPEC 11): every entry of the
//! response cache, or one cache key's (namespace's), deleted at once.

use super::{AdminReply, AdminRequest};
use crate::gateway::Gateway;

/// This concern's answer, or `None` when the path is not its own.
pub(super) async fn handle(gateway: &Gateway, req: &AdminRequest) -> Option<AdminReply> {
    if req.path != "/admin/cache" {
        return None;
    }
    if req.method != http::Method::DELETE {
        return Some(AdminReply::error(405, "method_not_allowed", "DELETE /admin/cache[?key=<cache key>]"));
    }
    if gateway.cache.is_none() {
        return Some(AdminReply::error(404, "cache_off", "the response cache is not configured (tollgate.cache)"));
    }
    let key = req.query.as_deref().and_then(|q| crate::net::query::query_get(Some(q), "key")).map(str::to_string);
    let key = key.map(|k| percent_decode(&k));
    match gateway.cache_clear(key.as_deref()).await {
        Some(deleted) => Some(AdminReply::json(200, &serde_json::json!({ "deleted": deleted, "key": key }))),
        None => Some(AdminReply::error(503, "cache_store_unavailable", "the cache's Redis could not be reached; nothing was deleted")),
    }
}

/// `%XX` and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_decoded() {
        assert_eq!(super::percent_decode("faq%2Fv1+x"), "faq/v1 x");
        assert_eq!(super::percent_decode("100%"), "100%");
    }
}
