//! Provider keys that are cloud identities rather than static values:
//! `service_account_file` and `adc: true` on vertex keys, `entra` on azure
//! keys. Everything is resolved at load (files read, environment looked
//! up), so a bad identity fails at start naming the key.

use super::{resolve_secret, Parse};
use crate::net::BaseUrl;
use crate::providers::azure::entra::{self, EntraClient, ManagedIdentity};
use crate::providers::identity::Identity;
use crate::providers::vertex::{adc, oauth::ServiceAccount};
use crate::providers::Provider;

/// The identity fields of one raw key.
pub(super) struct RawIdentity<'a> {
    pub service_account_file: Option<&'a str>,
    pub adc: bool,
    pub entra: Option<&'a serde_yaml::Value>,
    pub has_value: bool,
}

/// Why a key's identity could not be resolved.
pub(super) enum IdentityError {
    /// `(dotted key, message)`: a configuration error.
    Bad(String, String),
    /// `(dotted key, variable)`: an `env.VAR` that is not set (an
    /// `optional: true` key is then skipped).
    MissingEnv(String, String),
}

/// The key's identity, `None` for a static key (`value`).
pub(super) fn key_identity(provider: Provider, raw: &RawIdentity<'_>, kkey: &str, p: &Parse<'_>) -> Result<Option<Identity>, IdentityError> {
    let bad = |k: &str, m: &str| IdentityError::Bad(k.to_string(), m.to_string());
    let set = [raw.service_account_file.is_some(), raw.adc, raw.entra.is_some(), raw.has_value].iter().filter(|b| **b).count();
    if set > 1 {
        return Err(bad(kkey, "set one of `value`, `service_account_file`, `adc` or `entra`"));
    }
    if let Some(path) = raw.service_account_file {
        if provider != Provider::Vertex {
            return Err(bad(&format!("{kkey}.service_account_file"), "applies to vertex keys only"));
        }
        let sa = ServiceAccount::load(path).map_err(|m| IdentityError::Bad(format!("{kkey}.service_account_file"), m))?;
        return Ok(Some(Identity::GoogleServiceAccount(sa)));
    }
    if raw.adc {
        if provider != Provider::Vertex {
            return Err(bad(&format!("{kkey}.adc"), "applies to vertex keys only"));
        }
        let (id, from) = adc::find(p.env).map_err(|m| IdentityError::Bad(format!("{kkey}.adc"), m))?;
        log::info!("{}: `{kkey}`: application default credentials from {from}: {}", p.file, id.describe());
        return Ok(Some(id));
    }
    let Some(v) = raw.entra else { return Ok(None) };
    let ekey = format!("{kkey}.entra");
    if provider != Provider::Azure {
        return Err(bad(&ekey, "applies to azure keys only"));
    }
    if v.as_str() == Some("managed_identity") {
        let mi = ManagedIdentity::from_env(None, p.env).map_err(|m| IdentityError::Bad(ekey.clone(), m))?;
        return Ok(Some(Identity::EntraManagedIdentity(mi)));
    }
    let Some(map) = v.as_mapping() else {
        return Err(bad(&ekey, "expected `managed_identity` or { tenant_id, client_id, client_secret } or { managed_identity: true, client_id }"));
    };
    let mut fields = std::collections::BTreeMap::new();
    for (k, val) in map {
        let k = k.as_str().unwrap_or("");
        const KNOWN: [&str; 5] = ["tenant_id", "client_id", "client_secret", "authority", "managed_identity"];
        if !KNOWN.contains(&k) {
            return Err(bad(&format!("{ekey}.{k}"), &format!("unknown field (expected one of {})", KNOWN.join(", "))));
        }
        let s = match val {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            _ => return Err(bad(&format!("{ekey}.{k}"), "expected a string")),
        };
        fields.insert(k, s);
    }
    let field = |k: &str| -> Result<String, IdentityError> {
        let raw = fields.get(k).ok_or_else(|| bad(&format!("{ekey}.{k}"), "is required"))?;
        let v = resolve_secret(raw, p.env).map_err(|var| IdentityError::MissingEnv(format!("{ekey}.{k}"), var))?;
        if v.is_empty() || v.bytes().any(|b| b <= 0x20 || b == 0x7f) {
            return Err(bad(&format!("{ekey}.{k}"), "is empty or contains spaces or control characters"));
        }
        Ok(v)
    };
    if fields.get("managed_identity").map(String::as_str) == Some("true") {
        if let Some(k) = ["tenant_id", "client_secret", "authority"].iter().find(|k| fields.contains_key(**k)) {
            return Err(bad(&format!("{ekey}.{k}"), "does not apply to a managed identity"));
        }
        let client_id = if fields.contains_key("client_id") { Some(field("client_id")?) } else { None };
        let mi = ManagedIdentity::from_env(client_id, p.env).map_err(|m| IdentityError::Bad(ekey.clone(), m))?;
        return Ok(Some(Identity::EntraManagedIdentity(mi)));
    }
    if let Some(m) = fields.get("managed_identity").filter(|m| *m != "false") {
        return Err(bad(&format!("{ekey}.managed_identity"), &format!("`{m}` is not true or false")));
    }
    let tenant_id = field("tenant_id")?;
    if !tenant_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
        return Err(bad(&format!("{ekey}.tenant_id"), "is not a tenant id or domain"));
    }
    let authority = match fields.get("authority") {
        Some(_) => field("authority")?,
        None => (p.env)("AZURE_AUTHORITY_HOST").filter(|s| !s.is_empty()).unwrap_or_else(|| entra::DEFAULT_AUTHORITY.to_string()),
    };
    let authority = BaseUrl::parse(&authority).map_err(|m| IdentityError::Bad(format!("{ekey}.authority"), m))?;
    let client = EntraClient { authority, tenant_id, client_id: field("client_id")?, client_secret: field("client_secret")? };
    Ok(Some(Identity::EntraClient(client)))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::providers::azure::entra::MiEndpoint;
    use crate::providers::identity::Identity;
    use crate::providers::Provider;

    fn load(y: &str) -> Result<Config, crate::config::ConfigError> {
        let env = |v: &str| match v {
            "AZ_SECRET" => Some("entra-client-secret".to_string()),
            "HOME" => Some("/nonexistent-home".to_string()),
            "GCE_METADATA_HOST" => Some("127.0.0.1:1".to_string()),
            "GOOGLE_CLOUD_PROJECT" => Some("adc-project".to_string()),
            _ => None,
        };
        Config::from_yaml(y, "t.yaml", &env)
    }

    #[test]
    fn entra_and_adc_keys() {
        let c = load("tollgate:\n  providers:\n    azure: { keys: [{ name: sp, endpoint: 'https://r.openai.azure.com', entra: { tenant_id: t1, client_id: c1, client_secret: env.AZ_SECRET, authority: 'http://127.0.0.1:9' } }, { name: mi, endpoint: 'https://r.openai.azure.com', entra: managed_identity }, { name: uai, endpoint: 'https://r.openai.azure.com', entra: { managed_identity: true, client_id: u1 } }] }\n    vertex: { adc: true }\n").unwrap();
        let az = &c.provider(Provider::Azure).unwrap().keys;
        assert!(matches!(&az[0].identity, Some(Identity::EntraClient(e)) if e.client_secret == "entra-client-secret" && e.authority.authority() == "127.0.0.1:9" && e.tenant_id == "t1"));
        assert!(matches!(&az[1].identity, Some(Identity::EntraManagedIdentity(m)) if m.client_id.is_none() && matches!(m.endpoint, MiEndpoint::Imds(_))));
        assert!(matches!(&az[2].identity, Some(Identity::EntraManagedIdentity(m)) if m.client_id.as_deref() == Some("u1")));
        assert!(az.iter().all(|k| k.value.is_empty()));
        assert!(!format!("{c:?}").contains("entra-client-secret"));
        let v = c.provider(Provider::Vertex).unwrap();
        assert_eq!(v.keys[0].name, "adc");
        assert!(matches!(&v.keys[0].identity, Some(Identity::GoogleMetadata(b)) if b.authority() == "127.0.0.1:1"));
        assert_eq!(v.project.as_deref(), Some("adc-project"));
    }

    #[test]
    fn bad_identities_name_the_key() {
        let cases = [
            ("azure: { keys: [{ name: a, endpoint: 'https://r', entra: { tenant_id: t, client_id: c } }] }", "tollgate.providers.azure.keys[0].entra.client_secret"),
            ("azure: { keys: [{ name: a, endpoint: 'https://r', entra: { tenant_id: t, client_id: c, client_secret: env.NOPE } }] }", "tollgate.providers.azure.keys[0].entra.client_secret"),
            ("azure: { keys: [{ name: a, endpoint: 'https://r', entra: { tenant: t } }] }", "tollgate.providers.azure.keys[0].entra.tenant"),
            ("azure: { keys: [{ name: a, endpoint: 'https://r', entra: imds }] }", "tollgate.providers.azure.keys[0].entra"),
            ("azure: { keys: [{ name: a, endpoint: 'https://r', value: k, entra: managed_identity }] }", "tollgate.providers.azure.keys[0]"),
            ("openai: { keys: [{ name: a, entra: managed_identity }] }", "tollgate.providers.openai.keys[0].entra"),
            ("openai: { keys: [{ name: a, adc: true }] }", "tollgate.providers.openai.keys[0].adc"),
            ("vertex: { keys: [{ name: a, adc: true, value: x }] }", "tollgate.providers.vertex.keys[0]"),
            ("vertex: { adc: true, keys: [{ name: a, value: x }] }", "tollgate.providers.vertex.adc"),
        ];
        for (p, key) in cases {
            let e = load(&format!("tollgate:\n  providers:\n    {p}\n")).unwrap_err();
            assert_eq!(e.key, key, "{p}: {e}");
        }
        // An optional key whose secret is not set is skipped.
        let c = load("tollgate:\n  providers:\n    azure: { keys: [{ name: a, optional: true, endpoint: 'https://r', entra: { tenant_id: t, client_id: c, client_secret: env.NOPE } }] }\n").unwrap();
        assert!(c.provider(Provider::Azure).unwrap().keys.is_empty());
    }
}
