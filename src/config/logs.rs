//! `tollgate.logs` (SPEC 12): the request log store.
//! (Skeleton: the section is parsed by the logs work.)

use super::{ConfigError, Parse};

/// `tollgate.logs`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogsConf {}

pub(crate) fn parse(raw: Option<serde_yaml::Value>, p: &Parse) -> Result<Option<LogsConf>, ConfigError> {
    match raw {
        None => Ok(None),
        Some(_) => Err(p.err("tollgate.logs", "is not supported yet".into())),
    }
}
