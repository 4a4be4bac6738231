//! The response cache on `/openai` (SPEC 11), wired into the exchange: the
//! plan made at admission (before the request is rewritten), the lookup
//! (exact, then semantic through the gateway's own embedding call), the
//! coalescing of identical non-streamed misses, the answer captured as the
//! client gets it and stored when complete, and hits served in the form
//! asked (one object, or real stream events). Decisions are
//! `crate::cache`'s.

use super::openai_io::{Prepared, Translated};
use super::openai_route::Answered;
use super::sink::{JobSink, SessionSink, Sink};
use super::{Ctx, Gateway};
use crate::cache::directives::{self, BadHeader};
use crate::cache::store::{Flight, NewEntry};
use crate::cache::{key, replay, CacheStore, Directives, Hit, Layer};
use crate::observe::metrics::METRICS;
use crate::observe::usage::Usage;
use crate::providers::Provider;
use crate::routes::credentials::client_credential;
use crate::routes::headers::REQUEST_ID_HEADER;
use crate::routes::openai::Endpoint;
use crate::routes::RouteName;
use crate::translate::chat_request::OpenAiRequest;
use crate::translate::sse::encode;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the cache does for one request, decided at admission.
#[derive(Debug, Clone)]
pub(super) struct CachePlan {
    pub dir: Directives,
    pub endpoint: Endpoint,
    /// The entry's key: owner, namespace and the request's exact key.
    pub key: String,
    /// The semantic partition and the text to embed, when the semantic
    /// layer applies.
    pub semantic: Option<(String, String)>,
    pub stream: bool,
    pub include_usage: bool,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Gateway {
    /// At admission, with the request as the client sent it (`fallbacks`
    /// removed, `model` as requested): the cache's plan, `None` when the
    /// cache is off or not asked for, `Err` for a malformed cache header.
    pub(super) fn cache_plan(&self, session: &Session, ctx: &Ctx, endpoint: Endpoint, req: &OpenAiRequest) -> std::result::Result<Option<CachePlan>, BadHeader> {
        let Some(conf) = ctx.live.config.cache.as_ref() else { return Ok(None) };
        if self.cache.is_none() || !matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Embeddings) {
            return Ok(None);
        }
        let h = session.req_header();
        let Some(dir) = directives::of(&h.headers, conf)? else { return Ok(None) };
        // Whose entries: the virtual key's, or the client's own key's (a
        // digest), never chosen by a header.
        let direct = (ctx.live.config.allow_direct_keys && ctx.cred.virtual_key.is_none()).then(|| client_credential(&h.headers, h.uri.query())).flatten();
        let owner = directives::owner(ctx.cred.virtual_key.as_deref(), direct.as_ref().map(|c| c.secret.as_str()));
        let path = endpoint.openai_path();
        let exact = match req {
            OpenAiRequest::Typed(r) => key::exact_key_typed(path, r),
            OpenAiRequest::Parsed(v) => key::exact_key(path, v),
        };
        let entry = key::digest(&["entry", &owner, &dir.namespace, &exact]);
        let semantic = match (&conf.semantic, endpoint, dir.layer) {
            (Some(s), Endpoint::ChatCompletions | Endpoint::Responses, Layer::Both | Layer::Semantic) => key::semantic_parts(path, &req.to_value(), s.max_messages)
                .map(|(params, text)| (key::digest(&["partition", &owner, &dir.namespace, &s.model, &params]), text)),
            _ => None,
        };
        let (stream, include_usage) = req.stream_flags();
        Ok(Some(CachePlan { dir, endpoint, key: entry, semantic, stream, include_usage }))
    }

    /// Serve an admitted request through the cache: a hit, or the
    /// provider's answer (stored when complete).
    pub(super) async fn serve_with_cache(&self, session: &mut Session, ctx: &mut Ctx, p: Prepared, t: Option<Translated>, plan: CachePlan) -> Result<bool> {
        let Some(store) = self.cache.clone() else {
            let mut sink = SessionSink(session);
            self.execute_openai(&mut sink, ctx, p, t).await?;
            return Ok(true);
        };
        let mut embedding: Option<Vec<f32>> = None;
        // Redis down: the cache is skipped (counted), the request goes on.
        let mut down = false;
        if plan.dir.read && plan.dir.layer != Layer::Semantic {
            match self.cache_get(&store, &plan.key).await {
                Ok(Some(hit)) => return self.serve_hit(session, ctx, &plan, hit, "hit").await,
                Ok(None) => {}
                Err(()) => down = true,
            }
        }
        // An identical non-streamed request producing this entry now: wait
        // for it (within this request's deadline) rather than call again.
        let mut _lead = None;
        if !down && plan.dir.read && !plan.stream && plan.dir.layer != Layer::Semantic {
            match store.begin(&plan.key) {
                Flight::Leader(g) => _lead = Some(g),
                Flight::Follower(n) => {
                    let waiting = n.notified();
                    tokio::pin!(waiting);
                    waiting.as_mut().enable();
                    if !matches!(self.cache_get(&store, &plan.key).await, Ok(Some(_))) {
                        let left = (ctx.timing.start + ctx.live.config.timeouts.total).saturating_duration_since(std::time::Instant::now());
                        let _ = tokio::time::timeout(left, waiting).await;
                    }
                    if let Ok(Some(hit)) = self.cache_get(&store, &plan.key).await {
                        return self.serve_hit(session, ctx, &plan, hit, "hit").await;
                    }
                }
            }
        }
        if !down && plan.dir.read {
            if let Some((partition, text)) = &plan.semantic {
                embedding = self.embed(ctx, text).await;
                if let Some(v) = &embedding {
                    match self.cache_nearest(&store, partition, v, plan.dir.threshold).await {
                        Ok(Some(hit)) => return self.serve_hit(session, ctx, &plan, hit, "semantic-hit").await,
                        Ok(None) => {}
                        Err(()) => down = true,
                    }
                }
            }
        }
        if down {
            METRICS.cache_lookups.with_label_values(&["bypass"]).inc();
            ctx.outcome.cache = Some("bypass");
            let mut inner = SessionSink(session);
            let mut cap = Capture { inner: &mut inner, mark: "bypass", status: None, bytes: Vec::new(), limit: 0, over: true, save: None };
            self.execute_openai(&mut cap, ctx, p, t).await?;
            return Ok(true);
        }
        let result = if plan.dir.read { "miss" } else { "refresh" };
        ctx.outcome.cache = Some(result);
        METRICS.cache_lookups.with_label_values(&[result]).inc();
        // The vector is ready before the answer ends (a refresh has not
        // embedded yet), so that the entry is stored before the client has
        // its last byte: its next identical request finds it.
        if embedding.is_none() && plan.dir.write {
            if let Some((_, text)) = &plan.semantic {
                embedding = self.embed(ctx, text).await;
            }
        }
        let limit = ctx.live.config.cache.as_ref().map_or(1 << 20, |c| c.max_entry_bytes as usize) * 4 + 65_536;
        let save = plan.dir.write.then_some(Save { gateway: self, store: &store, plan: &plan, embedding });
        let mut inner = SessionSink(session);
        let mut cap = Capture { inner: &mut inner, mark: result, status: None, bytes: Vec::new(), limit, over: false, save };
        self.execute_openai(&mut cap, ctx, p, t).await?;
        Ok(true)
    }

    /// The entry under `key`: from Redis when configured (shared by every
    /// instance), else from the embedded store. `Err` when Redis failed.
    async fn cache_get(&self, store: &CacheStore, key: &str) -> std::result::Result<Option<Hit>, ()> {
        let now = now_ms();
        let Some(shared) = &self.shared else { return Ok(store.get(key, now)) };
        match shared.cache_get(key).await {
            Ok(v) => Ok(v.map(|(created, body)| Hit { body, age_s: now.saturating_sub(created) / 1000, similarity: None })),
            Err(e) => {
                shared.failed("cache", &e);
                Err(())
            }
        }
    }

    /// The nearest entry of `partition` at least `threshold` similar; with
    /// Redis, the vectors other instances stored are read in first.
    async fn cache_nearest(&self, store: &CacheStore, partition: &str, v: &[f32], threshold: f64) -> std::result::Result<Option<Hit>, ()> {
        let Some(shared) = &self.shared else { return Ok(store.nearest(partition, v, threshold, now_ms())) };
        loop {
            let after = store.stream_position();
            match shared.cache_vectors(&after, 1000).await {
                Ok(batch) => {
                    let now = now_ms();
                    let n = batch.len();
                    for (id, key, p, expires, blob) in batch {
                        store.index_vector(&p, &key, &crate::cache::store::from_blob(&blob), expires, now);
                        store.set_stream_position(&id);
                    }
                    if n < 1000 {
                        break;
                    }
                }
                Err(e) => {
                    shared.failed("cache", &e);
                    return Err(());
                }
            }
        }
        let Some((key, sim)) = store.nearest_key(partition, v, threshold, now_ms()) else { return Ok(None) };
        Ok(self.cache_get(store, &key).await?.map(|mut h| {
            h.similarity = Some(sim.min(1.0));
            h
        }))
    }

    /// Store an answer: in Redis (with its vector on the shared stream)
    /// when configured, else in the embedded store.
    async fn cache_put(&self, store: &CacheStore, e: NewEntry) {
        let Some(shared) = &self.shared else {
            store.put(e);
            return;
        };
        if e.body.len() as u64 > store.max_entry_bytes() {
            return;
        }
        let blob = e.semantic.as_ref().map(|(p, v)| (p.clone(), crate::cache::store::to_blob(v)));
        let ttl = e.expires_ms.saturating_sub(e.created_ms);
        let vector = blob.as_ref().map(|(p, b)| (p.as_str(), b.as_slice()));
        match shared.cache_put(&e.key, &e.namespace, &e.body, e.created_ms, ttl, vector, store.max_entries()).await {
            Ok(()) => {
                if let Some((p, v)) = &e.semantic {
                    store.index_vector(p, &e.key, v, e.expires_ms, e.created_ms);
                }
            }
            Err(err) => shared.failed("cache", &err),
        }
    }

    /// `DELETE /admin/cache`: every entry, or one namespace's.
    pub(crate) async fn cache_clear(&self, namespace: Option<&str>) -> Option<u64> {
        let store = self.cache.as_ref()?;
        let Some(shared) = &self.shared else { return Some(store.clear(namespace)) };
        match shared.cache_clear(namespace).await {
            Ok((n, keys)) => {
                store.unindex(keys.as_deref());
                Some(n)
            }
            Err(e) => {
                shared.failed("cache", &e);
                None
            }
        }
    }

    /// A stored answer, in the form the request asked for; nothing is
    /// charged against tokens or budgets, and the record says what it saved.
    async fn serve_hit(&self, session: &mut Session, ctx: &mut Ctx, plan: &CachePlan, hit: Hit, result: &'static str) -> Result<bool> {
        let obj: Value = serde_json::from_slice(&hit.body).unwrap_or(Value::Null);
        METRICS.cache_lookups.with_label_values(&[result]).inc();
        ctx.outcome.cache = Some(result);
        ctx.outcome.stream = plan.stream;
        let usage = saved_usage(&obj);
        let provider = ctx.target.provider;
        let cost = match (provider, usage.model.as_deref()) {
            (Some(p), Some(m)) => ctx.live.config.prices.cost(p, m, &usage),
            _ => None,
        };
        ctx.outcome.cache_saved = Some((usage.input_tokens + usage.output_tokens, cost));
        METRICS.cache_saved_tokens.inc_by(usage.input_tokens + usage.output_tokens);
        if let Some(c) = cost {
            METRICS.cache_saved_usd.inc_by(c);
        }
        let tags = Answered { attempts: 0, ..ctx.outcome.answered.clone().unwrap_or_default() };
        let mark = |h: &mut ResponseHeader| -> Result<()> {
            tags.apply(h)?;
            h.insert_header("x-tollgate-cache", result)?;
            h.insert_header("age", hit.age_s.to_string())?;
            if let Some(s) = hit.similarity {
                h.insert_header("x-tollgate-cache-similarity", format!("{s:.4}"))?;
            }
            Ok(())
        };
        super::drain::close_when_draining(session);
        if !plan.stream {
            let body = serde_json::to_vec(&obj).unwrap_or_default();
            let mut head = super::reply::json_head(200, body.len(), &ctx.request_id, None)?;
            mark(&mut head)?;
            session.write_response_header(Box::new(head), false).await?;
            session.write_response_body(Some(Bytes::from(body)), true).await?;
            return Ok(true);
        }
        let events = match plan.endpoint {
            Endpoint::Responses => replay::response_events(&obj),
            _ => replay::chat_events(&obj, plan.include_usage),
        };
        let mut head = ResponseHeader::build_no_case(200, Some(8))?;
        head.insert_header("content-type", "text/event-stream; charset=utf-8")?;
        head.insert_header("cache-control", "no-cache")?;
        head.insert_header("transfer-encoding", "chunked")?;
        head.insert_header(REQUEST_ID_HEADER, ctx.request_id.as_str())?;
        mark(&mut head)?;
        session.write_response_header(Box::new(head), false).await?;
        for e in &events {
            let mut bytes = Vec::new();
            encode(std::slice::from_ref(e), &mut bytes);
            session.write_response_body(Some(Bytes::from(bytes)), false).await?;
        }
        session.write_response_body(None, true).await?;
        Ok(true)
    }

    /// The conversation's embedding, through the gateway's own providers
    /// and keys (`cache.semantic.model`); the call is recorded on its own.
    async fn embed(&self, ctx: &Ctx, text: &str) -> Option<Vec<f32>> {
        let model = ctx.live.config.cache.as_ref()?.semantic.as_ref()?.model.clone();
        let (provider, native) = model.split_once('/')?;
        let provider = Provider::from_name(provider)?;
        let mut sub = Ctx::new(ctx.live.clone());
        sub.request_id = format!("{}-embed", ctx.request_id);
        sub.target.route = Some(RouteName::OpenAiCompat);
        // The gateway's own call: recorded with its usage and cost, not
        // charged to the caller's virtual key (whose limits count its own
        // requests, hits included).
        let req = json!({ "model": native, "input": text });
        let request_bytes = req.to_string().len() as u64;
        let p = Prepared {
            endpoint: Endpoint::Embeddings,
            provider: provider.name().to_string(),
            model: native.to_string(),
            req,
            raw: None,
            headers: vec![("content-type".into(), "application/json".into()), ("user-agent".into(), "tollgate-cache".into())],
            api_version: None,
            direct: None,
            directs: Vec::new(),
            client_base: None,
            route: Default::default(),
            cache: None,
            memos: Default::default(),
        };
        let mut sink = JobSink::new(64 * 1024 * 1024);
        let ok = self.execute_openai(&mut sink, &mut sub, p, None).await.is_ok();
        let facts = super::logging::Facts {
            client_ip: None,
            method: "POST".into(),
            path: "/openai/embeddings".into(),
            status: sink.status.unwrap_or(502),
            request_bytes,
            response_bytes: sink.body.len() as u64,
            user_agent: Some("tollgate-cache".into()),
        };
        self.record_facts(facts, None, &mut sub).await;
        if !ok || sink.status != Some(200) {
            log::warn!("cache: the embedding call to {model} failed ({:?}); the semantic layer is skipped", sink.status);
            return None;
        }
        let v: Value = serde_json::from_slice(&sink.body).ok()?;
        let emb = v.pointer("/data/0/embedding")?.as_array()?;
        let out: Vec<f32> = emb.iter().filter_map(Value::as_f64).map(|x| x as f32).collect();
        (!out.is_empty() && out.len() == emb.len()).then_some(out)
    }
}

/// The tokens a stored answer would have cost.
fn saved_usage(obj: &Value) -> Usage {
    let u = obj.get("usage").cloned().unwrap_or(Value::Null);
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = if u.get("input_tokens").is_some() { (n("input_tokens"), n("output_tokens")) } else { (n("prompt_tokens"), n("completion_tokens")) };
    Usage { model: obj.get("model").and_then(Value::as_str).map(str::to_string), input_tokens: input, output_tokens: output, seen: !u.is_null(), ..Usage::default() }
}

/// The complete object an answer amounts to, when it is one to store.
fn assemble(endpoint: Endpoint, stream: bool, bytes: &[u8]) -> Option<Value> {
    match (endpoint, stream) {
        (Endpoint::Responses, true) => replay::response_from_sse(bytes),
        (_, true) => replay::chat_from_sse(bytes),
        (_, false) => {
            let v: Value = serde_json::from_slice(bytes).ok()?;
            let ok = match endpoint {
                Endpoint::ChatCompletions => v.get("object").and_then(Value::as_str) == Some("chat.completion") && v.get("choices").and_then(Value::as_array).is_some_and(|c| !c.is_empty()),
                Endpoint::Responses => v.get("status").and_then(Value::as_str) == Some("completed"),
                Endpoint::Embeddings => v.get("data").and_then(Value::as_array).is_some_and(|d| !d.is_empty()),
                Endpoint::Models => false,
            };
            ok.then_some(v)
        }
    }
}

/// The client's sink, marking the answer `x-tollgate-cache` and keeping a
/// bounded copy of what it was sent.
struct Capture<'a> {
    inner: &'a mut dyn Sink,
    mark: &'static str,
    status: Option<u16>,
    bytes: Vec<u8>,
    limit: usize,
    over: bool,
    /// Store the answer when it ends complete (before its end is sent).
    save: Option<Save<'a>>,
}

/// What storing a captured answer needs.
struct Save<'a> {
    gateway: &'a Gateway,
    store: &'a CacheStore,
    plan: &'a CachePlan,
    embedding: Option<Vec<f32>>,
}

impl Save<'_> {
    /// Store `bytes` when they are a complete successful answer.
    async fn store(self, bytes: &[u8]) {
        let plan = self.plan;
        let Some(obj) = assemble(plan.endpoint, plan.stream, bytes) else { return };
        let now = now_ms();
        let semantic = plan.semantic.as_ref().and_then(|(p, _)| self.embedding.map(|v| (p.clone(), v)));
        let body = serde_json::to_vec(&obj).unwrap_or_default();
        self.gateway.cache_put(self.store, NewEntry { key: plan.key.clone(), namespace: plan.dir.namespace.clone(), semantic, body, created_ms: now, expires_ms: now + plan.dir.ttl_s * 1000 }).await;
    }
}

#[async_trait]
impl Sink for Capture<'_> {
    async fn head(&mut self, mut head: ResponseHeader) -> Result<()> {
        self.status = Some(head.status.as_u16());
        head.insert_header("x-tollgate-cache", self.mark)?;
        self.inner.head(head).await
    }
    async fn body(&mut self, data: Option<Bytes>, end: bool) -> Result<()> {
        if let Some(d) = &data {
            if self.bytes.len() + d.len() > self.limit {
                self.over = true;
            } else if !self.over {
                self.bytes.extend_from_slice(d);
            }
        }
        if end && !self.over && self.status == Some(200) {
            if let Some(save) = self.save.take() {
                save.store(&self.bytes).await;
            }
        }
        self.inner.body(data, end).await
    }
    async fn gone(&mut self) {
        self.inner.gone().await
    }
}

/// The cache, opened beside the store when `cache` is configured.
pub fn open(config: &crate::config::Config) -> std::result::Result<Option<Arc<CacheStore>>, String> {
    let Some(c) = &config.cache else { return Ok(None) };
    let path = crate::store::beside(&config.store_path, "tollgate-cache.db");
    CacheStore::open(&path, c.max_entries, c.max_entry_bytes).map(|s| Some(Arc::new(s)))
}

