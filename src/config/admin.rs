//! `tollgate.admin_listen` and `tollgate.admin` (SPEC 12): where the admin
//! API and the dashboard listen, and the bearer token they require when that
//! is not a loopback address.

use super::{resolve_secret, ConfigError, Parse};
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    token: Option<String>,
}

/// The admin listener: `/admin/...` (logs, routes, cache) and, when it is
/// the metrics listener too, `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminConf {
    /// `admin_listen`, or the metrics listener when absent; `None` when
    /// neither is set (no admin API).
    pub listen: Option<SocketAddr>,
    /// `Authorization: Bearer <token>` required on every admin request.
    /// Required when `listen` is not a loopback address.
    pub token: Option<String>,
}

impl AdminConf {
    /// The admin API shares the metrics listener (one service serves both).
    pub fn on_metrics_listener(&self, metrics: Option<SocketAddr>) -> bool {
        self.listen.is_some() && self.listen == metrics
    }
}

pub(crate) fn parse(listen: Option<String>, raw: Option<RawAdmin>, metrics: Option<SocketAddr>, p: &Parse) -> Result<AdminConf, ConfigError> {
    let explicit = match listen {
        None => None,
        Some(s) => Some(s.parse::<SocketAddr>().map_err(|_| p.err("tollgate.admin_listen", format!("`{s}` is not host:port")))?),
    };
    let token = match raw.and_then(|r| r.token) {
        None => None,
        Some(t) => {
            let v = resolve_secret(&t, p.env).map_err(|var| p.err("tollgate.admin.token", format!("environment variable {var} is not set or empty")))?;
            if v.len() < 16 {
                return Err(p.err("tollgate.admin.token", "must be at least 16 characters".into()));
            }
            Some(v)
        }
    };
    // Defaulted to the metrics listener, the admin API is served there only
    // where that is safe: on loopback, or with a token. A metrics listener
    // on another address keeps serving /metrics as before (its own setting,
    // SPEC 12) and the admin API is off until admin_listen or admin.token
    // says where and how.
    let listen = match explicit {
        Some(a) => Some(a),
        None => metrics.filter(|m| m.ip().is_loopback() || token.is_some()),
    };
    if let Some(addr) = explicit {
        if !addr.ip().is_loopback() && token.is_none() {
            return Err(p.err(
                "tollgate.admin.token",
                format!("is required: the admin listener {addr} is not a loopback address (set admin.token, or bind admin_listen to 127.0.0.1)"),
            ));
        }
    }
    Ok(AdminConf { listen, token })
}

#[cfg(test)]
mod tests {
    use crate::config::test_load as load;

    #[test]
    fn defaults_to_the_metrics_listener() {
        let c = load("tollgate:\n  metrics_listen: 127.0.0.1:9100\n").unwrap();
        assert_eq!(c.admin.listen.unwrap().to_string(), "127.0.0.1:9100");
        assert!(c.admin.on_metrics_listener(c.metrics_listen));
        let c = load("tollgate:\n  listen: 127.0.0.1:1\n").unwrap();
        assert_eq!(c.admin.listen, None);
    }

    #[test]
    fn elsewhere_than_loopback_needs_a_token() {
        let e = load("tollgate:\n  admin_listen: 0.0.0.0:9200\n").unwrap_err();
        assert_eq!(e.key, "tollgate.admin.token");
        // The metrics listener elsewhere keeps /metrics; no admin API there
        // without a token.
        let c = load("tollgate:\n  metrics_listen: 0.0.0.0:9200\n").unwrap();
        assert_eq!(c.admin.listen, None);
        let c = load("tollgate:\n  metrics_listen: 0.0.0.0:9200\n  admin: { token: 0123456789abcdefXYZ }\n").unwrap();
        assert!(c.admin.on_metrics_listener(c.metrics_listen));
        let c = load("tollgate:\n  admin_listen: 0.0.0.0:9200\n  admin: { token: 0123456789abcdefXYZ }\n").unwrap();
        assert_eq!(c.admin.token.as_deref(), Some("0123456789abcdefXYZ"));
        assert!(!c.admin.on_metrics_listener(c.metrics_listen));
        let e = load("tollgate:\n  admin_listen: 127.0.0.1:9200\n  admin: { token: short }\n").unwrap_err();
        assert_eq!(e.key, "tollgate.admin.token");
        let e = load("tollgate:\n  admin_listen: nope\n").unwrap_err();
        assert_eq!(e.key, "tollgate.admin_listen");
    }
}
