//! `tollgate.logs` (SPEC 12): the request log store. Every record of SPEC 6
//! is also kept in a directory beside the store (`crate::logs`).

use super::{ConfigError, Parse};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    retention_days: Option<u32>,
    max_rows: Option<u64>,
    capture_content: Option<bool>,
}

/// `tollgate.logs`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogsConf {
    /// Rows older than this are deleted.
    pub retention_days: u32,
    /// Past this many rows, the oldest are deleted.
    pub max_rows: u64,
    /// Keep request messages and answer text on `/openai` (bounded per row).
    pub capture_content: bool,
}

impl Default for LogsConf {
    fn default() -> LogsConf {
        LogsConf { retention_days: 30, max_rows: 1_000_000, capture_content: false }
    }
}

pub(crate) fn parse(raw: Option<serde_yaml::Value>, p: &Parse) -> Result<Option<LogsConf>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.is_null() {
        return Ok(Some(LogsConf::default()));
    }
    let r: RawLogs = serde_yaml::from_value(raw).map_err(|e| p.err("tollgate.logs", e.to_string()))?;
    let d = LogsConf::default();
    let retention_days = r.retention_days.unwrap_or(d.retention_days);
    if retention_days == 0 {
        return Err(p.err("tollgate.logs.retention_days", "must be at least 1".into()));
    }
    let max_rows = r.max_rows.unwrap_or(d.max_rows);
    if max_rows == 0 || max_rows > 1_000_000_000 {
        return Err(p.err("tollgate.logs.max_rows", "must be between 1 and 1000000000".into()));
    }
    Ok(Some(LogsConf { retention_days, max_rows, capture_content: r.capture_content.unwrap_or(false) }))
}

#[cfg(test)]
mod tests {
    use super::LogsConf;
    use crate::config::test_load as load;

    #[test]
    fn parses_with_defaults() {
        assert_eq!(load("tollgate:\n  listen: 127.0.0.1:1\n").unwrap().logs, None);
        assert_eq!(load("tollgate:\n  logs: {}\n").unwrap().logs, Some(LogsConf::default()));
        let c = load("tollgate:\n  logs: { retention_days: 2, max_rows: 50, capture_content: false }\n").unwrap().logs.unwrap();
        assert_eq!(c, LogsConf { retention_days: 2, max_rows: 50, capture_content: false });
        assert!(load("tollgate:\n  logs: { capture_content: true }\n").unwrap().logs.unwrap().capture_content);
    }

    #[test]
    fn bad_values_name_the_key() {
        assert_eq!(load("tollgate:\n  logs: { retention_days: 0 }\n").unwrap_err().key, "tollgate.logs.retention_days");
        assert_eq!(load("tollgate:\n  logs: { max_rows: 0 }\n").unwrap_err().key, "tollgate.logs.max_rows");
        assert_eq!(load("tollgate:\n  logs: { nope: 1 }\n").unwrap_err().key, "tollgate.logs");
        assert_eq!(load("tollgate:\n  logs: { retention_days: x }\n").unwrap_err().key, "tollgate.logs");
    }
}
