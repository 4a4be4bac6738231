//! `tollgate.providers`: base URLs, Vertex project and location, and the
//! key pools (literal or `env.VAR` values, weights, model allow-lists, Azure
//! endpoints and api-versions, cloud identities: `config::identity`).

use super::{resolve_secret, ConfigError, Parse};
use crate::net::BaseUrl;
use super::identity::{key_identity, IdentityError, RawIdentity};
use crate::providers::identity::Identity;
use crate::providers::vertex::is_resource_segment;
use crate::providers::Provider;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    /// `openai_compatible` for a provider tollgate has no file for.
    kind: Option<String>,
    base_url: Option<String>,
    project: Option<String>,
    location: Option<String>,
    /// Vertex: one key named `adc` with Application Default Credentials.
    #[serde(default)]
    adc: bool,
    #[serde(default)]
    keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: Option<String>,
    value: Option<String>,
    weight: Option<u32>,
    models: Option<Vec<String>>,
    endpoint: Option<String>,
    api_version: Option<String>,
    service_account_file: Option<String>,
    #[serde(default)]
    adc: bool,
    entra: Option<serde_yaml::Value>,
    #[serde(default)]
    optional: bool,
}

#[derive(Clone, PartialEq, Eq)]
pub struct KeyConf {
    pub name: String,
    pub value: String,
    pub weight: u32,
    /// Glob patterns; `None` allows every model.
    pub models: Option<Vec<String>>,
    /// Azure: the resource endpoint this key belongs to.
    pub endpoint: Option<BaseUrl>,
    /// Azure: replaces the client's `api-version` when set.
    pub api_version: Option<String>,
    /// OAuth access tokens from this identity instead of a static key
    /// (`value` is then empty): a Google service account or ADC (vertex), an
    /// Entra ID identity (azure).
    pub identity: Option<Identity>,
}

impl fmt::Debug for KeyConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConf")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("weight", &self.weight)
            .field("models", &self.models)
            .field("endpoint", &self.endpoint)
            .field("api_version", &self.api_version)
            .field("identity", &self.identity)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConf {
    /// Explicit base URL; `None` means the provider's public default.
    pub base_url: Option<BaseUrl>,
    /// Vertex: the project/location the gateway's credentials belong to.
    pub project: Option<String>,
    pub location: Option<String>,
    pub keys: Vec<KeyConf>,
}

/// Validate the providers section.
pub(super) fn parse(raw: BTreeMap<String, RawProvider>, p: &Parse<'_>) -> Result<BTreeMap<Provider, ProviderConf>, ConfigError> {
    let (file, env) = (p.file, p.env);
    let err = |key: &str, message: String| p.err(key, message);
    let mut providers = BTreeMap::new();
    for (pname, rp) in raw {
        let pkey = format!("tollgate.providers.{pname}");
        let provider = match rp.kind.as_deref() {
            None => Provider::from_name(&pname).filter(|p| !matches!(p, Provider::Compatible(_))).ok_or_else(|| {
                err(
                    &pkey,
                    "unknown provider (expected openai, anthropic, azure, gemini, vertex or ollama, or set `kind: openai_compatible`)".into(),
                )
            })?,
            Some("openai_compatible") => {
                if Provider::ALL.iter().chain([&Provider::Ollama]).any(|b| b.name() == pname) {
                    return Err(err(&format!("{pkey}.kind"), format!("`{pname}` is a built-in provider; `kind` is for other names")));
                }
                if rp.base_url.is_none() {
                    return Err(err(&format!("{pkey}.base_url"), "is required for an openai_compatible provider".into()));
                }
                if pname.is_empty() || !pname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    return Err(err(&pkey, "provider names are letters, digits, `-` and `_`".into()));
                }
                crate::providers::openai_compatible::register(&pname)
            }
            Some(other) => return Err(err(&format!("{pkey}.kind"), format!("`{other}` is not a kind (expected openai_compatible)"))),
        };
        let base_url = match rp.base_url {
            None => None,
            Some(s) => Some(
                BaseUrl::parse(&s).map_err(|m| err(&format!("{pkey}.base_url"), m))?,
            ),
        };
        if provider != Provider::Vertex && (rp.project.is_some() || rp.location.is_some()) {
            return Err(err(&pkey, "`project`/`location` apply to vertex only".into()));
        }
        for (k, v) in [("project", &rp.project), ("location", &rp.location)] {
            if let Some(v) = v {
                if !is_resource_segment(v) {
                    return Err(err(&format!("{pkey}.{k}"), format!("`{v}` is not a valid {k}")));
                }
            }
        }
        let mut raw_keys = rp.keys;
        if rp.adc {
            if provider != Provider::Vertex {
                return Err(err(&format!("{pkey}.adc"), "applies to vertex only".into()));
            }
            if !raw_keys.is_empty() {
                return Err(err(&format!("{pkey}.adc"), "with `keys`, set `adc: true` on a key instead".into()));
            }
            raw_keys.push(RawKey { name: Some("adc".into()), value: None, weight: None, models: None, endpoint: None, api_version: None, service_account_file: None, adc: true, entra: None, optional: false });
        }
        let mut keys = Vec::new();
        for (i, rk) in raw_keys.into_iter().enumerate() {
            let kkey = format!("{pkey}.keys[{i}]");
            let name = rk
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| err(&format!("{kkey}.name"), "is required".into()))?;
            if keys.iter().any(|k: &KeyConf| k.name == name) {
                return Err(err(&format!("{kkey}.name"), format!("`{name}` is used twice")));
            }
            let raw_identity = RawIdentity {
                service_account_file: rk.service_account_file.as_deref(),
                adc: rk.adc,
                entra: rk.entra.as_ref(),
                has_value: rk.value.is_some(),
            };
            let identity = match key_identity(provider, &raw_identity, &kkey, p) {
                Ok(id) => id,
                Err(IdentityError::Bad(k, m)) => return Err(err(&k, m)),
                Err(IdentityError::MissingEnv(_, var)) if rk.optional => {
                    log::warn!("{file}: `{kkey}` ({name}) skipped: environment variable {var} is not set");
                    continue;
                }
                Err(IdentityError::MissingEnv(k, var)) => {
                    return Err(err(&k, format!("environment variable {var} is not set or empty (mark the key `optional: true` to skip it)")))
                }
            };
            let raw_value = match (&identity, rk.value) {
                (Some(_), _) => String::new(),
                (None, Some(v)) => v,
                (None, None) => return Err(err(&format!("{kkey}.value"), "is required".into())),
            };
            let value = if identity.is_some() { Ok(String::new()) } else { resolve_secret(&raw_value, env) };
            let value = match value {
                Ok(v) => v,
                Err(var) if rk.optional => {
                    log::warn!(
                        "{file}: `{kkey}` ({name}) skipped: environment variable {var} is not set"
                    );
                    continue;
                }
                Err(var) => {
                    return Err(err(
                        &format!("{kkey}.value"),
                        format!("environment variable {var} is not set or empty (mark the key `optional: true` to skip it)"),
                    ))
                }
            };
            if value.bytes().any(|b| b < 0x20 || b == 0x7f) {
                return Err(err(&format!("{kkey}.value"), "contains control characters".into()));
            }
            let weight = rk.weight.unwrap_or(1);
            if weight == 0 {
                return Err(err(&format!("{kkey}.weight"), "must be at least 1".into()));
            }
            let endpoint = match rk.endpoint {
                None => None,
                Some(e) => {
                    let e = match resolve_secret(&e, env) {
                        Ok(e) => e,
                        Err(var) if rk.optional => {
                            log::warn!("{file}: `{kkey}` ({name}) skipped: environment variable {var} is not set");
                            continue;
                        }
                        Err(var) => {
                            return Err(err(
                                &format!("{kkey}.endpoint"),
                                format!("environment variable {var} is not set or empty"),
                            ))
                        }
                    };
                    Some(BaseUrl::parse(&e).map_err(|m| err(&format!("{kkey}.endpoint"), m))?)
                }
            };
            if provider != Provider::Azure && (endpoint.is_some() || rk.api_version.is_some()) {
                return Err(err(&kkey, "`endpoint`/`api_version` apply to azure keys only".into()));
            }
            if provider == Provider::Azure && endpoint.is_none() && base_url.is_none() {
                return Err(err(
                    &format!("{kkey}.endpoint"),
                    "is required for azure keys (or set the provider's base_url)".into(),
                ));
            }
            if let Some(v) = &rk.api_version {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
                    return Err(err(&format!("{kkey}.api_version"), format!("`{v}` is not a valid api-version")));
                }
            }
            if let Some(models) = &rk.models {
                if models.is_empty() {
                    return Err(err(&format!("{kkey}.models"), "is empty: the key would never be used (omit it to allow every model)".into()));
                }
            }
            keys.push(KeyConf {
                name,
                value,
                weight,
                models: rk.models,
                endpoint,
                api_version: rk.api_version,
                identity,
            });
        }
        // OAuth credentials belong to the service account's project; for
        // other Google identities, as in Google's libraries, the project is
        // GOOGLE_CLOUD_PROJECT's.
        let project = rp.project.or_else(|| keys.iter().find_map(|k| k.identity.as_ref().and_then(|id| id.project_id().map(str::to_string))));
        // On GCE, GKE and Cloud Run, the metadata server says it last.
        let project = match project {
            None if provider == Provider::Vertex && keys.iter().any(|k| k.identity.is_some()) => {
                ["GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"].iter().find_map(|v| env(v).filter(|p| is_resource_segment(p))).or_else(|| metadata_project(&keys, file))
            }
            p => p,
        };
        providers.insert(
            provider,
            ProviderConf {
                base_url,
                project,
                location: rp.location,
                keys,
            },
        );
    }
    Ok(providers)
}

/// The project from the metadata server, when a vertex key's identity is
/// the metadata server and nothing else named one. Unreachable: no project
/// (requests that need one are refused, saying so), and a warning.
fn metadata_project(keys: &[KeyConf], file: &str) -> Option<String> {
    let base = keys.iter().find_map(|k| match &k.identity {
        Some(Identity::GoogleMetadata(b)) => Some(b.clone()),
        _ => None,
    })?;
    match crate::providers::vertex::adc::metadata_project(&base, crate::providers::vertex::adc::METADATA_PROJECT_TIMEOUT) {
        Ok(project) => {
            log::info!("{file}: `tollgate.providers.vertex`: project {project} from the metadata server");
            Some(project)
        }
        Err(e) => {
            log::warn!("{file}: `tollgate.providers.vertex` names no project and none was found ({e}); set `project` or GOOGLE_CLOUD_PROJECT");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_load as load;
    use crate::providers::Provider;

    #[test]
    fn env_keys_resolved_and_redacted_in_debug() {
        let c = load(
            "tollgate:\n  providers:\n    openai: { keys: [{ name: a, value: env.OPENAI_KEY, weight: 3, models: ['gpt-4o*'] }] }\n",
        )
        .unwrap();
        let k = &c.provider(Provider::OpenAi).unwrap().keys[0];
        assert_eq!(k.value, "sk-real");
        assert_eq!(k.weight, 3);
        assert!(!format!("{c:?}").contains("sk-real"));
    }

    #[test]
    fn missing_env_fails_naming_key_and_var() {
        let e = load("tollgate:\n  providers:\n    openai: { keys: [{ name: a, value: env.NOPE }] }\n")
            .unwrap_err();
        assert_eq!(e.key, "tollgate.providers.openai.keys[0].value");
        assert!(e.message.contains("NOPE"));
        assert!(e.to_string().contains("t.yaml"));
        let e = load("tollgate:\n  providers:\n    openai: { keys: [{ name: a, value: env.EMPTY }] }\n")
            .unwrap_err();
        assert!(e.message.contains("EMPTY"));
    }

    #[test]
    fn optional_key_with_missing_env_is_skipped() {
        let c = load(
            "tollgate:\n  providers:\n    openai: { keys: [{ name: a, value: env.NOPE, optional: true }, { name: b, value: lit }] }\n",
        )
        .unwrap();
        let keys = &c.provider(Provider::OpenAi).unwrap().keys;
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "b");
    }
}
