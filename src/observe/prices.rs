//! Cost: tokens × the price table (USD per million tokens per provider and
//! model). The shipped table `conf/prices.yaml` is compiled in; the config
//! can replace it (`prices_file`) and override single models (`prices`).

use crate::observe::usage::Usage;
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
    /// USD per million cached input tokens (prompt-cache reads); input
    /// price when absent.
    pub cached: Option<f64>,
    /// USD per million input tokens written to a prompt cache with the
    /// 5-minute TTL; when absent, input × [`CACHE_WRITE_FACTOR`].
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// The same for the 1-hour TTL; when absent, input × [`CACHE_WRITE_1H_FACTOR`].
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
}

/// Anthropic's published multiplier of the input price for 5-minute cache
/// writes: the fallback when a model's price names no `cache_write`.
pub const CACHE_WRITE_FACTOR: f64 = 1.25;
/// The same for 1-hour cache writes (`cache_write_1h`).
pub const CACHE_WRITE_1H_FACTOR: f64 = 2.0;

impl Price {
    /// USD per million tokens written to a prompt cache (`one_hour`: with the 1-hour TTL).
    pub fn write_rate(&self, one_hour: bool) -> f64 {
        if one_hour {
            self.cache_write_1h.unwrap_or(self.input * CACHE_WRITE_1H_FACTOR)
        } else {
            self.cache_write.unwrap_or(self.input * CACHE_WRITE_FACTOR)
        }
    }
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
                let optional = [price.cached, price.cache_write, price.cache_write_1h];
                if !ok(price.input) || !ok(price.output) || !optional.iter().all(|v| v.map_or(true, ok)) {
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
            // The exact name, else the longest listed prefix: both are the
            // greatest listed name <= `model` that is a prefix of it (a
            // shorter prefix sorts before a longer one), so the walk down
            // from `model` stops at the first prefix it meets.
            let models = self.table.get(&p)?;
            models
                .range::<str, _>((std::ops::Bound::Unbounded, std::ops::Bound::Included(model)))
                .rev()
                .find(|(name, _)| model.starts_with(name.as_str()))
                .map(|(_, price)| *price)
        })
    }

    /// The models priced for `provider` itself.
    pub fn models(&self, provider: Provider) -> Vec<&str> {
        self.table.get(&provider).map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default()
    }

    /// Cost in USD, as the provider bills it. `u.input_tokens` counts every
    /// input token; of them `cached_tokens` were read from a prompt cache
    /// (the cached rate) and `cache_write_tokens` written to one (the write
    /// rate of their TTL, `cache_write_1h_tokens` with the 1-hour one); the
    /// rest is plain input.
    pub fn cost(&self, provider: Provider, model: &str, u: &Usage) -> Option<f64> {
        let p = self.lookup(provider, model)?;
        let cached = u.cached_tokens.min(u.input_tokens);
        let written = u.cache_write_tokens.min(u.input_tokens - cached);
        let written_1h = u.cache_write_1h_tokens.min(written);
        let plain = u.input_tokens - cached - written;
        let usd = (plain as f64 * p.input
            + cached as f64 * p.cached.unwrap_or(p.input)
            + (written - written_1h) as f64 * p.write_rate(false)
            + written_1h as f64 * p.write_rate(true)
            + u.output_tokens as f64 * p.output)
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

    fn tokens(input: u64, output: u64, cached: u64, write: u64, write_1h: u64) -> Usage {
        Usage { input_tokens: input, output_tokens: output, cached_tokens: cached, cache_write_tokens: write, cache_write_1h_tokens: write_1h, seen: true, ..Default::default() }
    }

    /// The walk down from the name finds what the plain rule (exact, else
    /// the longest prefix) finds, over names made to share prefixes.
    #[test]
    fn lookup_is_the_longest_prefix() {
        use proptest::prelude::*;
        let names = proptest::collection::btree_set("[ab-]{0,5}", 0..12);
        proptest!(|(listed in names, model in "[ab-]{0,7}")| {
            let mut yaml = String::from("openai:\n");
            for (i, n) in listed.iter().enumerate() {
                yaml += &format!("  \"{n}\": {{ input: {i}.0, output: 0.0 }}\n");
            }
            let t = PriceTable::parse_yaml(&yaml).unwrap();
            let want = listed.iter().enumerate().filter(|(_, n)| model.starts_with(n.as_str())).max_by_key(|(_, n)| n.len()).map(|(i, _)| i as f64);
            prop_assert_eq!(t.lookup(Provider::OpenAi, &model).map(|p| p.input), want);
        });
    }

    #[test]
    fn cost_arithmetic() {
        let t = PriceTable::parse_yaml("openai:\n  m: { input: 2.0, output: 10.0, cached: 1.0 }\n  n: { input: 2.0, output: 10.0 }\n").unwrap();
        // 1000 input of which 400 cached, 500 output
        let c = t.cost(Provider::OpenAi, "m", &tokens(1000, 500, 400, 0, 0)).unwrap();
        assert!((c - (600.0 * 2.0 + 400.0 * 1.0 + 500.0 * 10.0) / 1e6).abs() < 1e-12);
        let c = t.cost(Provider::OpenAi, "n", &tokens(1000, 0, 400, 0, 0)).unwrap();
        assert!((c - 1000.0 * 2.0 / 1e6).abs() < 1e-12);
        assert_eq!(t.cost(Provider::OpenAi, "zzz", &tokens(1, 1, 0, 0, 0)), None);
    }

    /// The example: claude-sonnet-4-5 with 10 plain input tokens,
    /// 1,000 written (5 minutes), 2,000 read and 5 output is billed
    /// 10×3 + 1000×3.75 + 2000×0.30 + 5×15 per million = $0.004455.
    #[test]
    fn cache_writes_are_priced_at_their_own_rate() {
        let t = PriceTable::default_table();
        let c = t.cost(Provider::Anthropic, "claude-sonnet-4-5-20250929", &tokens(3010, 5, 2000, 1000, 0)).unwrap();
        assert!((c - 0.004455).abs() < 1e-12, "{c}");
        // 1-hour writes at 2× input: 400 of the 1,000 written.
        let c = t.cost(Provider::Anthropic, "claude-sonnet-4-5", &tokens(3010, 5, 2000, 1000, 400)).unwrap();
        assert!((c - (10.0 * 3.0 + 600.0 * 3.75 + 400.0 * 6.0 + 2000.0 * 0.30 + 5.0 * 15.0) / 1e6).abs() < 1e-12, "{c}");
        // Every Anthropic model ships both write rates, about 1.25× and 2×
        // input (Claude 3 Haiku's are published rounded: $0.30 and $0.50).
        for m in t.models(Provider::Anthropic) {
            let p = t.lookup(Provider::Anthropic, m).unwrap();
            let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() <= want * 0.05);
            assert!(near(p.cache_write, p.input * 1.25), "{m}: {p:?}");
            assert!(near(p.cache_write_1h, p.input * 2.0), "{m}: {p:?}");
        }
    }

    #[test]
    fn without_write_rates_the_documented_multipliers_apply() {
        let t = PriceTable::parse_yaml("anthropic:\n  m: { input: 4.0, output: 8.0, cached: 0.4 }\n").unwrap();
        let c = t.cost(Provider::Anthropic, "m", &tokens(1000, 0, 0, 1000, 500)).unwrap();
        assert!((c - (500.0 * 5.0 + 500.0 * 8.0) / 1e6).abs() < 1e-12, "never plain input: {c}");
        let t = PriceTable::parse_yaml("anthropic:\n  m: { input: 4.0, output: 8.0, cache_write: 4.5, cache_write_1h: 7.0 }\n").unwrap();
        let c = t.cost(Provider::Anthropic, "m", &tokens(1000, 0, 0, 1000, 500)).unwrap();
        assert!((c - (500.0 * 4.5 + 500.0 * 7.0) / 1e6).abs() < 1e-12, "{c}");
        assert!(PriceTable::parse_yaml("anthropic:\n  m: { input: 1, output: 1, cache_write: -1 }\n").is_err());
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
