//! Usage scanner: no-op stand-in with the final API, replaced by the streaming scanner (issue 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFamily { OpenAi, Anthropic, Gemini }
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage { pub model: Option<String>, pub input_tokens: u64, pub output_tokens: u64, pub cached_tokens: u64, pub reasoning_tokens: u64, pub seen: bool }
pub struct UsageScanner { u: Usage }
impl UsageScanner {
    pub fn new(_f: ApiFamily, _ct: Option<&str>, _ce: Option<&str>) -> Self { UsageScanner { u: Usage::default() } }
    pub fn feed(&mut self, _c: &[u8]) {}
    pub fn usage(&self) -> &Usage { &self.u }
    pub fn finish(&mut self) -> &Usage { &self.u }
}
pub fn family_for(_p: &str, _path: &str) -> Option<ApiFamily> { None }
