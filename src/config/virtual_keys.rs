//! `tollgate.virtual_keys`: names, secrets (stored as SHA-256 digests, or
//! read from `env.VAR`), provider and model allow-lists, rate limits and
//! budgets. The live counters are `governance`'s.

use super::{resolve_secret, ConfigError, Parse};
use crate::providers::Provider;
use serde::Deserialize;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVirtualKey {
    name: Option<String>,
    secret: Option<String>,
    providers: Option<Vec<String>>,
    models: Option<Vec<String>>,
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u64>,
    budget: Option<RawBudget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    usd: f64,
    period: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    /// An id for the period containing `t` (UTC): days or months since 1970.
    pub fn id(self, t: SystemTime) -> i64 {
        let days = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64 / 86_400;
        match self {
            Period::Day => days,
            Period::Month => {
                let (y, m, _) = civil_from_days(days);
                y * 12 + (m as i64 - 1)
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// (year, month 1-12, day 1-31) from days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub usd: f64,
    pub period: Period,
}

#[derive(Clone)]
pub struct VirtualKey {
    pub name: String,
    /// SHA-256 of the secret.
    pub digest: [u8; 32],
    pub providers: Option<Vec<Provider>>,
    pub models: Option<Vec<String>>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    pub budget: Option<Budget>,
}

impl std::fmt::Debug for VirtualKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualKey").field("name", &self.name).field("digest", &"<redacted>").finish()
    }
}

pub fn sha256(s: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(s)
}


/// Parse `sha256:<hex>` into a digest.
pub fn parse_digest(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let h = (chunk[0] as char).to_digit(16)?;
        let l = (chunk[1] as char).to_digit(16)?;
        out[i] = (h * 16 + l) as u8;
    }
    Some(out)
}

/// Validate the virtual keys section.
pub(super) fn parse(raw: Vec<RawVirtualKey>, p: &Parse<'_>) -> Result<Vec<VirtualKey>, ConfigError> {
    let env = p.env;
    let err = |key: &str, message: String| p.err(key, message);
    let mut virtual_keys: Vec<VirtualKey> = Vec::new();
    for (i, rv) in raw.into_iter().enumerate() {
        let vkey = format!("tollgate.virtual_keys[{i}]");
        let name = rv
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err(&format!("{vkey}.name"), "is required".into()))?;
        if virtual_keys.iter().any(|v| v.name == name) {
            return Err(err(&format!("{vkey}.name"), format!("`{name}` is used twice")));
        }
        let secret = rv.secret.ok_or_else(|| err(&format!("{vkey}.secret"), "is required".into()))?;
        let digest = if secret.starts_with("sha256:") {
            parse_digest(&secret).ok_or_else(|| {
                err(&format!("{vkey}.secret"), "`sha256:` must be followed by 64 hex digits".into())
            })?
        } else if secret.starts_with("env.") {
            let v = resolve_secret(&secret, env).map_err(|var| {
                err(&format!("{vkey}.secret"), format!("environment variable {var} is not set or empty"))
            })?;
            sha256(v.as_bytes())
        } else {
            return Err(err(
                &format!("{vkey}.secret"),
                "must be `sha256:<hex>` or `env.VAR` (a literal secret does not belong in a config file)".into(),
            ));
        };
        if virtual_keys.iter().any(|v| v.digest == digest) {
            return Err(err(&format!("{vkey}.secret"), "is the same as another virtual key's".into()));
        }
        let providers = match rv.providers {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|p| {
                        Provider::from_name(p).ok_or_else(|| {
                            err(&format!("{vkey}.providers"), format!("unknown provider `{p}`"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        if rv.requests_per_minute == Some(0) {
            return Err(err(&format!("{vkey}.requests_per_minute"), "must be at least 1".into()));
        }
        if rv.tokens_per_minute == Some(0) {
            return Err(err(&format!("{vkey}.tokens_per_minute"), "must be at least 1".into()));
        }
        let budget = match rv.budget {
            None => None,
            Some(b) => {
                let period = match b.period.as_str() {
                    "day" => Period::Day,
                    "month" => Period::Month,
                    other => {
                        return Err(err(&format!("{vkey}.budget.period"), format!("`{other}` is not day or month")))
                    }
                };
                if !(b.usd.is_finite() && b.usd >= 0.0) {
                    return Err(err(&format!("{vkey}.budget.usd"), "must be a non-negative number".into()));
                }
                Some(Budget { usd: b.usd, period })
            }
        };
        virtual_keys.push(VirtualKey {
            name,
            digest,
            providers,
            models: rv.models,
            requests_per_minute: rv.requests_per_minute,
            tokens_per_minute: rv.tokens_per_minute,
            budget,
        });
    }
    Ok(virtual_keys)
}

#[cfg(test)]
mod tests {
    use super::super::test_load as load;
    use super::*;
    use std::time::Duration;

    #[test]
    fn virtual_keys_parse() {
        let hex: String = sha256(b"team-b-secret").iter().map(|b| format!("{b:02x}")).collect();
        let c = load(&format!(
            "tollgate:\n  require_virtual_key: true\n  virtual_keys:\n    - {{ name: a, secret: env.OPENAI_KEY, providers: [openai], models: ['gpt-4o*'], requests_per_minute: 5, tokens_per_minute: 100, budget: {{ usd: 2.5, period: month }} }}\n    - {{ name: b, secret: 'sha256:{hex}' }}\n"
        ))
        .unwrap();
        assert_eq!(c.virtual_keys.len(), 2);
        assert_eq!(c.virtual_keys[0].digest, sha256(b"sk-real"));
        assert_eq!(c.virtual_keys[0].budget, Some(Budget { usd: 2.5, period: Period::Month }));
        assert_eq!(c.virtual_keys[1].digest, sha256(b"team-b-secret"));
        assert!(!format!("{:?}", c.virtual_keys).contains("sk-real"));
    }

    #[test]
    fn digests_parse() {
        let d = sha256(b"secret");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_digest(&format!("sha256:{hex}")), Some(d));
        assert_eq!(parse_digest(&format!("sha256:{}", hex.to_uppercase())), Some(d));
        assert_eq!(parse_digest("sha256:abc"), None);
        assert_eq!(parse_digest(&hex), None);
    }

    #[test]
    fn periods() {
        // 2024-02-29 and 2024-03-01 are in different months, same for days.
        let feb29 = UNIX_EPOCH + Duration::from_secs(1_709_164_800);
        let mar1 = feb29 + Duration::from_secs(86_400);
        assert_eq!(civil_from_days(1_709_164_800 / 86_400), (2024, 2, 29));
        assert_ne!(Period::Month.id(feb29), Period::Month.id(mar1));
        assert_eq!(Period::Month.id(mar1), Period::Month.id(mar1 + Duration::from_secs(86_400 * 20)));
        assert_eq!(Period::Day.id(mar1) - Period::Day.id(feb29), 1);
    }
}
