//! `tollgate.routing` (SPEC 10): aliases, fallbacks, retries, cooldowns.
//! (Skeleton: the section is parsed by the routing work.)

use super::{ConfigError, Parse};

/// `tollgate.routing`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoutingConf {}

pub(crate) fn parse(raw: Option<serde_yaml::Value>, p: &Parse) -> Result<RoutingConf, ConfigError> {
    match raw {
        None => Ok(RoutingConf::default()),
        Some(_) => Err(p.err("tollgate.routing", "is not supported yet".into())),
    }
}
