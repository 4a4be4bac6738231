//! `tollgate.cache` (SPEC 11): the response cache on `/openai`.
//! (Skeleton: the section is parsed by the cache work.)

use super::{ConfigError, Parse};

/// `tollgate.cache`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CacheConf {}

pub(crate) fn parse(raw: Option<serde_yaml::Value>, p: &Parse) -> Result<Option<CacheConf>, ConfigError> {
    match raw {
        None => Ok(None),
        Some(_) => Err(p.err("tollgate.cache", "is not supported yet".into())),
    }
}
