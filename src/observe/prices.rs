//! Cost: tokens × the price table (USD per million tokens per provider and
//! model). The shipped table `conf/prices.yaml` is compiled in; the config
//! can replace it (`prices_file`) and override single models (`prices`).

use crate::providers::Provider;
use serde::Deserialize;
use std::collections::BTreeMap;

pub const DEFAULT_TABLE: &str = include_str!("../../conf/prices.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
    /// USD per million cached input tokens; input price when absent.
    pub cached: Option<f64>,
}

/// provider name → model → price.
pub type RawTable = BTreeMap<String, BTreeMap<String, Price>>;

#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    table: BTreeMap<Provider, BTreeMap<String, Price>>,
}

impl PriceTable {
    /// Build from a raw table; errors name the offending `provider.model`.
    pub fn from_raw(raw: RawTable) -> Result<PriceTable, String> {
        let mut table: BTreeMap<Provider, BTreeMap<String, Price>> = BTreeMap::new();
        for (p, models) in raw {
            let provider = Provider::from_name(&p).ok_or_else(|| format!("{p}: unknown provider"))?;
            for (m, price) in models {
                let ok = |v: f64| v.is_finite() && v >= 0.0;
                if !ok(price.input) || !ok(price.output) || !price.cached.map_or(true, ok) {
                    return Err(format!("{p}.{m}: prices must be non-negative numbers"));
                }
                table.entry(provider).or_default().insert(m, price);
            }
        }
        Ok(PriceTable { table })
    }

    pub fn parse_yaml(text: &str) -> Result<PriceTable, String> {
        let raw: RawTable = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        Self::from_raw(raw)
    }

    pub fn default_table() -> PriceTable {
        Self::parse_yaml(DEFAULT_TABLE).expect("the shipped price table parses")
    }

    /// Entries of `other` replace or add to this table's.
    pub fn merge(&mut self, other: PriceTable) {
        for (p, models) in other.table {
            self.table.entry(p).or_default().extend(models);
        }
    }

    /// The price for a model: exact name, else the longest listed prefix.
    /// Azure falls back to the openai then anthropic tables, Vertex to
    /// gemini then anthropic. A `models/` or resource-path prefix is ignored.
    pub fn lookup(&self, provider: Provider, model: &str) -> Option<Price> {
        let model = model.rsplit('/').next().unwrap_or(model);
        let chain = std::iter::once(provider).chain(provider.spec().price_fallback.iter().copied());
        chain.into_iter().find_map(|p| {
            let models = self.table.get(&p)?;
            if let Some(price) = models.get(model) {
                return Some(*price);
            }
            models
                .iter()
                .filter(|(name, _)| model.starts_with(name.as_str()))
                .max_by_key(|(name, _)| name.len())
                .map(|(_, price)| *price)
        })
    }

    /// The models priced for `provider` itself.
    pub fn models(&self, provider: Provider) -> Vec<&str> {
        self.table.get(&provider).map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default()
    }

    /// Cost in USD. `input` counts every input token, `cached` the part of
    /// them served from a prompt cache (priced at the cached rate).
    pub fn cost(&self, provider: Provider, model: &str, input: u64, output: u64, cached: u64) -> Option<f64> {
        let p = self.lookup(provider, model)?;
        let cached = cached.min(input);
        let usd = ((input - cached) as f64 * p.input
            + cached as f64 * p.cached.unwrap_or(p.input)
            + output as f64 * p.output)
            / 1_000_000.0;
        Some(usd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_parses_and_prices_dated_versions() {
        let t = PriceTable::default_table();
        let p = t.lookup(Provider::OpenAi, "gpt-4o-2024-08-06").unwrap();
        assert_eq!(p.input, 2.5);
        let p = t.lookup(Provider::OpenAi, "gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(p.input, 0.15, "longest prefix wins over gpt-4o");
        assert!(t.lookup(Provider::Anthropic, "claude-sonnet-4-5-20250929").is_some());
        assert!(t.lookup(Provider::Gemini, "models/gemini-2.5-flash").is_some());
        assert!(t.lookup(Provider::OpenAi, "unknown-model").is_none());
        // Azure and Vertex fall back.
        assert_eq!(t.lookup(Provider::Azure, "gpt-4o").unwrap().output, 10.0);
        assert_eq!(t.lookup(Provider::Azure, "claude-sonnet-4-5").unwrap().output, 15.0);
        assert_eq!(t.lookup(Provider::Vertex, "gemini-2.5-pro").unwrap().input, 1.25);
    }

    #[test]
    fn cost_arithmetic() {
        let t = PriceTable::parse_yaml("openai:\n  m: { input: 2.0, output: 10.0, cached: 1.0 }\n  n: { input: 2.0, output: 10.0 }\n").unwrap();
        // 1000 input of which 400 cached, 500 output
        let c = t.cost(Provider::OpenAi, "m", 1000, 500, 400).unwrap();
        assert!((c - (600.0 * 2.0 + 400.0 * 1.0 + 500.0 * 10.0) / 1e6).abs() < 1e-12);
        let c = t.cost(Provider::OpenAi, "n", 1000, 0, 400).unwrap();
        assert!((c - 1000.0 * 2.0 / 1e6).abs() < 1e-12);
        assert_eq!(t.cost(Provider::OpenAi, "zzz", 1, 1, 0), None);
    }

    #[test]
    fn overrides_merge_and_bad_entries_fail() {
        let mut t = PriceTable::default_table();
        t.merge(PriceTable::parse_yaml("openai:\n  gpt-4o: { input: 1, output: 2 }\n  my-ft: { input: 3, output: 4 }\n").unwrap());
        assert_eq!(t.lookup(Provider::OpenAi, "gpt-4o").unwrap().input, 1.0);
        assert_eq!(t.lookup(Provider::OpenAi, "my-ft").unwrap().output, 4.0);
        assert!(t.lookup(Provider::OpenAi, "gpt-4.1").is_some(), "others kept");
        assert!(PriceTable::parse_yaml("nope:\n  m: { input: 1, output: 1 }\n").unwrap_err().contains("nope"));
        assert!(PriceTable::parse_yaml("openai:\n  m: { input: -1, output: 1 }\n").unwrap_err().contains("openai.m"));
    }
}
