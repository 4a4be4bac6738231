//! One JSON line per request (SPEC 6), written from the logging phase to
//! stdout or to a file opened for append.

use crate::config::AccessLogTarget;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default, Serialize)]
pub struct Record {
    pub ts: String,
    pub request_id: String,
    pub client_ip: Option<String>,
    pub method: String,
    pub route: Option<&'static str>,
    pub provider: Option<&'static str>,
    pub upstream_host: Option<String>,
    /// Client path and query, with secret query values redacted.
    pub path: String,
    pub status: u16,
    pub duration_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub stream: bool,
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub virtual_key: Option<String>,
    pub provider_key: Option<String>,
    pub error: Option<String>,
    pub user_agent: Option<String>,
}

pub struct AccessLog {
    file: Option<File>,
}

impl AccessLog {
    pub fn open(target: &AccessLogTarget) -> std::io::Result<AccessLog> {
        let file = match target {
            AccessLogTarget::Stdout => None,
            AccessLogTarget::File(p) => Some(OpenOptions::new().create(true).append(true).open(p)?),
        };
        Ok(AccessLog { file })
    }

    /// Write one record as one line with a single `write` call, so lines
    /// from concurrent requests never interleave.
    pub fn write(&self, rec: &Record) {
        let mut line = match serde_json::to_vec(rec) {
            Ok(l) => l,
            Err(e) => {
                log::error!("access record not serialisable: {e}");
                return;
            }
        };
        line.push(b'\n');
        let res = match &self.file {
            Some(f) => (&*f).write_all(&line),
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&line).and_then(|_| out.flush())
            }
        };
        if let Err(e) = res {
            log::error!("cannot write access record: {e}");
        }
    }
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn writes_one_line_per_record() {
        let dir = std::env::temp_dir().join(format!("tollgate-al-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.log");
        let log = AccessLog::open(&AccessLogTarget::File(p.to_string_lossy().into())).unwrap();
        log.write(&Record { request_id: "a".into(), status: 200, ..Default::default() });
        log.write(&Record { request_id: "b".into(), status: 404, ..Default::default() });
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["status"], 404);
        assert!(lines[0].get("input_tokens").is_some(), "fields are present even when null");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
