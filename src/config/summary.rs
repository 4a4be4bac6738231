//! What a configuration would serve, in words (`tollgate check`): listeners,
//! routes, providers with their key names and kinds, virtual key names, the
//! store. Names only: a key value, client secret or password never appears.

use super::Config;
use crate::observe::access_log::AccessLogTarget;
use crate::providers::identity::Identity;
use crate::providers::Provider;
use std::fmt::Write;

/// The passthrough routes and the providers behind them.
const ROUTES: [(&str, &[Provider]); 4] = [
    ("/openai_passthrough", &[Provider::OpenAi]),
    ("/anthropic_passthrough", &[Provider::Anthropic]),
    ("/azure_passthrough", &[Provider::Azure]),
    ("/genai_passthrough", &[Provider::Gemini, Provider::Vertex]),
];

impl Config {
    /// A multi-line description for operators.
    pub fn summary(&self) -> String {
        let mut o = String::new();
        let _ = self.write_summary(&mut o);
        o
    }

    fn write_summary(&self, o: &mut String) -> std::fmt::Result {
        writeln!(o, "configuration: {}", self.file)?;
        match &self.tls {
            Some(t) => writeln!(o, "listen:        https://{} (HTTP/2 and HTTP/1.1 by ALPN; certificate {}, key {})", self.listen, t.cert.display(), t.key.display())?,
            None => writeln!(o, "listen:        http://{} (HTTP/1.1)", self.listen)?,
        }
        if let Some(t) = &self.otel {
            let protocol = match t.protocol {
                crate::observe::trace::OtlpProtocol::HttpProtobuf => "http/protobuf",
                crate::observe::trace::OtlpProtocol::Grpc => "grpc",
            };
            writeln!(o, "traces:        {} (OTLP {protocol}, sample ratio {})", t.endpoint, t.sample_ratio)?;
        }
        match self.metrics_listen {
            Some(m) => writeln!(o, "metrics:       http://{m}/metrics")?,
            None => writeln!(o, "metrics:       off")?,
        }
        match &self.access_log {
            AccessLogTarget::Stdout => writeln!(o, "access log:    stdout")?,
            AccessLogTarget::File(f) => writeln!(o, "access log:    {f}")?,
        }
        writeln!(o, "store:         {}", self.store_path.display())?;
        match &self.redis {
            Some(r) => writeln!(o, "redis:         {}:{} db {} (limits, spend and async jobs shared)", r.host, r.port, r.db)?,
            None => writeln!(o, "redis:         off")?,
        }
        writeln!(o, "direct keys:   {}", if self.allow_direct_keys { "allowed" } else { "not allowed" })?;
        let names: Vec<&str> = self.virtual_keys.iter().map(|k| k.name.as_str()).collect();
        writeln!(
            o,
            "virtual keys:  {} ({})",
            if names.is_empty() { "none".to_string() } else { names.join(", ") },
            if self.require_virtual_key { "required" } else { "optional" }
        )?;
        writeln!(o, "routes:")?;
        writeln!(o, "  /healthz, /readyz")?;
        for (prefix, providers) in ROUTES {
            let served: Vec<String> = providers.iter().map(|p| format!("{} ({})", p.name(), self.availability(*p))).collect();
            writeln!(o, "  {prefix:<24} -> {}", served.join(", "))?;
        }
        let mut shaped: Vec<&str> = self.providers.keys().map(|p| p.name()).collect();
        if !shaped.contains(&"openai") {
            shaped.insert(0, "openai");
        }
        writeln!(o, "  {:<24} -> OpenAI-shaped API over {}", "/openai", shaped.join(", "))?;
        let r = &self.routing;
        writeln!(
            o,
            "routing:       at most {} attempts per request, {} same-target retries, {} request fallbacks; cooldown after {} failures in {}s for {}s",
            r.max_attempts, r.retries, r.max_fallbacks, r.cooldown.failures, r.cooldown.window_s, r.cooldown.s
        )?;
        for (name, a) in &r.models {
            let targets: Vec<String> = a.targets.iter().map(|t| format!("{} (weight {})", t.model, t.weight)).collect();
            let mut line = format!("  alias {name} ({}): {}", a.strategy.name(), targets.join(", "));
            if !a.fallbacks.is_empty() {
                let _ = write!(line, "; fallbacks {}", a.fallbacks.join(", "));
            }
            writeln!(o, "{line}")?;
        }
        writeln!(o, "providers:")?;
        if self.providers.is_empty() {
            writeln!(o, "  none")?;
        }
        for (p, c) in &self.providers {
            let mut head = format!("  {}", p.name());
            if let Some(b) = &c.base_url {
                let _ = write!(head, ", base {}://{}{}", if b.tls { "https" } else { "http" }, b.authority(), b.path);
            }
            for (k, v) in [("project", &c.project), ("location", &c.location)] {
                if let Some(v) = v {
                    let _ = write!(head, ", {k} {v}");
                }
            }
            if c.keys.is_empty() {
                head.push_str(&match p {
                    Provider::Ollama => ": no key needed".to_string(),
                    _ => format!(": no keys ({})", self.availability(*p)),
                });
            }
            writeln!(o, "{head}")?;
            for k in &c.keys {
                let what = match &k.identity {
                    Some(id) => identity_kind(id),
                    None => format!("static key ({})", p.auth_header("").0),
                };
                let mut line = format!("    key {}: {what}", k.name);
                if let Some(e) = &k.endpoint {
                    let _ = write!(line, ", endpoint {}://{}", if e.tls { "https" } else { "http" }, e.authority());
                }
                if let Some(v) = &k.api_version {
                    let _ = write!(line, ", api-version {v}");
                }
                if k.weight != 1 {
                    let _ = write!(line, ", weight {}", k.weight);
                }
                if let Some(m) = &k.models {
                    let _ = write!(line, ", models {}", m.join(" "));
                }
                writeln!(o, "{line}")?;
            }
        }
        Ok(())
    }

    /// How requests for `p` are authenticated, in a word or two.
    fn availability(&self, p: Provider) -> String {
        match self.provider(p).map(|c| c.keys.len()) {
            Some(n) if n > 0 => format!("{n} key{}", if n == 1 { "" } else { "s" }),
            _ if self.allow_direct_keys && p != Provider::Azure => "clients' own keys".into(),
            _ => "no key: 503".into(),
        }
    }
}

fn identity_kind(id: &Identity) -> String {
    let header = match id {
        Identity::EntraClient(_) | Identity::EntraManagedIdentity(_) => "Entra ID token",
        _ => "Google OAuth token",
    };
    format!("{header} (authorization), {}", id.describe())
}

#[cfg(test)]
mod tests {
    use super::super::test_load as load;

    #[test]
    fn names_keys_never_values() {
        let c = load(
            "tollgate:\n  listen: 127.0.0.1:8080\n  virtual_keys: [{ name: team-a, secret: env.OPENAI_KEY }]\n  providers:\n    openai: { keys: [{ name: main, value: env.OPENAI_KEY, models: ['gpt-4o*'] }, { name: spare, value: sk-literal-secret, weight: 3 }] }\n    azure: { keys: [{ name: eastus, value: az-secret-value, endpoint: 'https://res.openai.azure.com', api_version: '2024-10-21' }] }\n",
        )
        .unwrap();
        let s = c.summary();
        for want in ["http://127.0.0.1:8080", "key main: static key (authorization)", "models gpt-4o*", "key spare", "weight 3", "key eastus: static key (api-key), endpoint https://res.openai.azure.com, api-version 2024-10-21", "team-a (optional)", "/anthropic_passthrough", "anthropic (no key: 503)", "openai (2 keys)"] {
            assert!(s.contains(want), "{want:?} missing from:\n{s}");
        }
        for secret in ["sk-real", "sk-literal-secret", "az-secret-value"] {
            assert!(!s.contains(secret), "{secret} leaked:\n{s}");
        }
    }

    #[test]
    fn lists_the_aliases_and_their_targets() {
        let c = load("tollgate:\n  providers:\n    openai: { keys: [{ name: a, value: x }] }\n    anthropic: { keys: [{ name: a, value: x }] }\n  routing:\n    max_attempts: 3\n    models:\n      smart: { strategy: ordered, targets: [{ model: openai/gpt-4o, weight: 0.5 }], fallbacks: [anthropic/claude-sonnet-4-5] }\n").unwrap();
        let s = c.summary();
        for want in ["at most 3 attempts", "alias smart (ordered): openai/gpt-4o (weight 0.5); fallbacks anthropic/claude-sonnet-4-5"] {
            assert!(s.contains(want), "{want:?} missing from:\n{s}");
        }
    }
}
