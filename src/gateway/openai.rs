//! The `/openai` exchange (SPEC 8), called from `request_filter` for the
//! translated endpoints. The body is read whole (bounded: it must be
//! rewritten, and `model` may come last), the provider is taken from the
//! model's prefix, the request is admitted like a passthrough one (virtual
//! key, limits, provider key), and the gateway itself sends the provider
//! request over Pingora's connector and streams the answer back, translated
//! event by event. Decisions are `routes::openai`'s and `translate`'s.

use super::openai_io::{read_whole_body, Admitted, BodyRead, Mode, Prepared, Translated};
use super::reply::write_json;
use super::sink::Sink;
use super::{Ctx, Gateway};
use crate::errors::GatewayError;
use crate::net::{BaseUrl, Upstream};
use crate::observe::trace::span::operation_for;
use crate::providers::Provider;
use crate::routes::headers;
use crate::routes::openai::{self as route, Endpoint};
use crate::translate::anthropic_chat::AnthropicChat;
use crate::translate::gemini_chat::GeminiChat;
use crate::translate::gemini_embeddings::{GeminiEmbeddings, VertexEmbeddings};
use crate::translate::responses_chat::ResponsesOverChat;
use crate::routing::Candidate;
use crate::translate::chat_request::OpenAiRequest;
use crate::translate::{Options, TranslateError, Translator};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::{json, Value};

/// The body bound when `limits.max_request_body_bytes` is not set.
pub(super) const DEFAULT_BODY_LIMIT: u64 = 32 * 1024 * 1024;

/// Azure's api-version when neither the key nor the client names one.
pub(super) const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

impl Gateway {
    pub(super) async fn serve_openai(&self, session: &mut Session, ctx: &mut Ctx, endpoint: Endpoint, azure_deployment: Option<String>) -> Result<bool> {
        if endpoint == Endpoint::Models {
            return self.list_models(session, ctx).await;
        }
        let is_async = route::async_requested(&session.req_header().headers);
        if let Some(id) = route::async_poll_id(&session.req_header().headers) {
            return self.poll_job(session, ctx, endpoint, &id).await;
        }
        let (mut prepared, translated) = match self.admit_openai(session, ctx, endpoint, azure_deployment, is_async).await? {
            Admitted::Answered => return Ok(true),
            Admitted::Ready(p, t) => (p, t),
        };
        if is_async {
            return self.submit_job(session, ctx, prepared).await;
        }
        if let Some(plan) = prepared.cache.take() {
            return self.serve_with_cache(session, ctx, prepared, translated, plan).await;
        }
        let mut sink = super::sink::SessionSink(session);
        if ctx.outcome.log_content.is_some() {
            // capture_content: the answer's text, read from a bounded copy.
            let mut copy = super::log_content::ContentSink { inner: &mut sink, copy: Vec::new() };
            let done = self.execute_openai(&mut copy, ctx, prepared, translated).await;
            let answer = super::log_content::answer_text(&copy.copy);
            if let Some(c) = ctx.outcome.log_content.as_mut() {
                *c = crate::logs::Content::new(&c.request, &answer);
            }
            done?;
            return Ok(true);
        }
        self.execute_openai(&mut sink, ctx, prepared, translated).await?;
        Ok(true)
    }

    /// Read and check the request as SPEC 8 asks before anything is sent:
    /// the body (bounded, JSON, a model), the provider, the virtual key and
    /// its limits, direct keys and a client-named Azure endpoint, a key
    /// configured for the provider, and the translation itself (a parameter
    /// the provider cannot honour is refused here). A request that will run
    /// later (`keep_request`: an async job) keeps the client's request in
    /// the `Prepared` to translate it then; otherwise the translation made
    /// here is handed on and `Prepared.req` is left empty.
    pub(super) async fn admit_openai(&self, session: &mut Session, ctx: &mut Ctx, endpoint: Endpoint, azure_deployment: Option<String>, keep_request: bool) -> Result<Admitted> {
        let limit = ctx.live.config.max_request_body_bytes.unwrap_or(DEFAULT_BODY_LIMIT);
        let body = match read_whole_body(session, limit).await? {
            BodyRead::Whole(b) => b,
            BodyRead::TooLarge => {
                self.refuse(session, ctx, GatewayError::PayloadTooLarge, &format!("request body exceeds the limit of {limit} bytes")).await?;
                return Ok(Admitted::Answered);
            }
        };
        // A chat request of the common shape that runs now is read typed,
        // borrowing the body (`ChatRequest`): a translator that takes it
        // writes the provider's body without a `Value` tree.
        let typed = endpoint == Endpoint::ChatCompletions && !keep_request;
        let Some(mut req) = OpenAiRequest::read(&body, typed) else {
            return self.openai_refused(session, ctx, &TranslateError::invalid_body("We could not parse the JSON body of your request: it must be a JSON object.")).await;
        };
        let Some(model) = req.model().map(str::to_string) else {
            return self.openai_refused(session, ctx, &TranslateError::invalid("model", "you must provide a model parameter")).await;
        };
        let config = ctx.live.config.clone();
        let configured = |p: Provider| config.provider(p).is_some();
        {
            // Who would answer, for the headers of a refusal before routing.
            let (p, m) = match &azure_deployment {
                Some(d) => (Provider::Azure, d.as_str()),
                None => route::split_model(&model, &configured),
            };
            ctx.outcome.answered = Some(super::openai_route::Answered { provider: Some(p.name().to_string()), model: Some(m.to_string()), attempts: 0, fallback_index: 0 });
        }
        let known = |name: &str| Provider::from_name(name).is_some_and(configured);
        // SPEC 10: the request's own fallbacks (removed before it leaves),
        // after an alias's targets and fallbacks.
        // (A typed request has none.)
        let fallbacks = match req.parsed_mut().map(|v| super::openai_route::take_fallbacks(v, config.routing.max_fallbacks, &known)) {
            None => Vec::new(),
            Some(Ok(f)) => f,
            Some(Err(e)) => return self.openai_refused(session, ctx, &e).await,
        };
        let alias = if azure_deployment.is_some() { None } else { config.routing.models.get(&model) };
        let named = match &azure_deployment {
            Some(d) => format!("azure/{d}"),
            None => model.clone(),
        };
        let mut candidates = crate::routing::plan::candidates(&named, alias, &fallbacks, &|m| super::openai_route::split_target(m, &configured));
        let first = &candidates[0].target;
        let (provider, native) = (Provider::from_name(&first.provider).unwrap_or(Provider::OpenAi), first.model.clone());
        if !provider.openai_shaped() && !route::valid_model_segment(&native) {
            return self.openai_refused(session, ctx, &TranslateError::invalid("model", format!("`{native}` is not a valid {} model name", provider.name()))).await;
        }
        ctx.target.provider = Some(provider);
        ctx.target.model = Some(native.clone());
        ctx.outcome.answered = Some(super::openai_route::Answered { provider: Some(provider.name().to_string()), model: Some(native.clone()), attempts: 0, fallback_index: 0 });

        // Who is calling, and may they: a candidate the virtual key does
        // not allow is left out, never contacted; none allowed is a 403.
        let vk = match self.identify_virtual_key(session, ctx) {
            Err(r) => {
                self.reject(session, ctx, r).await?;
                return Ok(Admitted::Answered);
            }
            Ok(vk) => vk,
        };
        if let Some(vk) = &vk {
            let mut refusal = None;
            candidates.retain(|c| {
                let p = Provider::from_name(&c.target.provider).unwrap_or(Provider::OpenAi);
                match crate::governance::virtual_keys::VirtualKeys::check_access(vk, p, Some(&c.target.model)) {
                    Ok(()) => true,
                    Err(r) => {
                        refusal.get_or_insert(r);
                        false
                    }
                }
            });
            if let (true, Some(r)) = (candidates.is_empty(), refusal) {
                self.reject(session, ctx, r).await?;
                return Ok(Admitted::Answered);
            }
            if let Err(r) = self.admit_limits(vk).await {
                self.reject(session, ctx, r).await?;
                return Ok(Admitted::Answered);
            }
        }
        // Candidates no key serves (none configured, no direct key) are left
        // out; when none is left, the first one's 503.
        let keyless = |p: Provider| p == Provider::Ollama && config.provider(p).is_some_and(|c| c.keys.is_empty());
        let mut directs = Vec::with_capacity(candidates.len());
        let mut unserved = None;
        candidates.retain(|c| {
            let p = Provider::from_name(&c.target.provider).unwrap_or(Provider::OpenAi);
            let direct = self.direct_key(session, ctx, p);
            let served = direct.is_some() || keyless(p) || config.provider(p).is_some_and(|c| !c.keys.is_empty());
            if served {
                directs.push(direct);
            } else {
                unserved.get_or_insert(p);
            }
            served
        });
        if candidates.is_empty() {
            let p = unserved.unwrap_or(provider);
            let msg = format!("no key is configured for provider {} and direct keys are not allowed", p.name());
            self.refuse(session, ctx, GatewayError::ProviderNotConfigured, &msg).await?;
            return Ok(Admitted::Answered);
        }
        // The response cache (SPEC 11) keys the request as the client sent
        // it (`fallbacks` removed, `model` as requested).
        let cache = if keep_request {
            None
        } else {
            match self.cache_plan(session, ctx, endpoint, &req) {
                Ok(c) => c,
                Err(bad) => return self.openai_refused(session, ctx, &TranslateError::invalid(bad.header, bad.message)).await,
            }
        };
        // A request that runs now is ordered now, so that the translation
        // made here is the first target's.
        let ordered = !keep_request;
        if ordered && candidates.len() > 1 {
            let order = self.route_order(&candidates, alias.map(|_| model.as_str()), &config.routing).await;
            let mut all: Vec<Option<Candidate>> = candidates.into_iter().map(Some).collect();
            let mut all_directs: Vec<Option<Option<String>>> = directs.into_iter().map(Some).collect();
            candidates = order.iter().filter_map(|&i| all[i].take()).collect();
            directs = order.iter().filter_map(|&i| all_directs[i].take()).collect();
        }
        let first = &candidates[0].target;
        let (provider, native) = (Provider::from_name(&first.provider).unwrap_or(Provider::OpenAi), first.model.clone());
        req.set_model(&native);
        ctx.target.provider = Some(provider);
        ctx.target.model = Some(native.clone());
        ctx.outcome.answered = Some(super::openai_route::Answered { provider: Some(provider.name().to_string()), model: Some(native.clone()), attempts: 0, fallback_index: 0 });
        let capture = self.logs.as_ref().is_some_and(|l| l.conf.capture_content);
        if ctx.trace.is_some() || capture {
            // Written out once for both (a typed request has no `Value`).
            let shown = req.to_value();
            if let Some(t) = ctx.trace.as_mut() {
                t.target(provider, operation_for(endpoint.openai_path()), Some(&native));
                t.input(crate::providers::ApiFamily::OpenAi, &shown);
            }
            if capture {
                ctx.outcome.log_content = Some(crate::logs::Content::new(&super::log_content::request_text(&shown), ""));
            }
        }

        // The client-named Azure endpoint, with the client's own key only.
        let direct = directs[0].clone();
        let azure_endpoint = session.req_header().headers.get("x-bf-azure-endpoint").and_then(|v| v.to_str().ok()).map(str::to_string);
        let client_base = match (&azure_endpoint, provider) {
            (Some(e), Provider::Azure) => match self.client_azure_endpoint(e, direct.is_some(), ctx) {
                Ok(b) => Some(b),
                Err(msg) => {
                    let err = TranslateError { status: 400, kind: "invalid_azure_endpoint", message: msg, param: None, code: Some("invalid_azure_endpoint") };
                    return self.openai_refused(session, ctx, &err).await;
                }
            },
            _ => None,
        };
        // What the client's rebuilt reasoning turns lack, from the replay
        // memory (SPEC 8); its answer leaves memos under the same owner.
        // Only a translated target takes them (an OpenAI-shaped one gets the
        // request as the client wrote it), and only a request with tools or
        // earlier tool calls can have or leave any: only then is the owner
        // worked out (a key lookup and a digest, some 35k instructions).
        // (A typed request has neither tools nor tool calls.)
        let wanted = req.parsed().map(crate::translate::replay::wanted).unwrap_or_default();
        let tool_turn = !wanted.is_empty() || req.parsed().and_then(|r| r.get("tools")).and_then(Value::as_array).is_some_and(|t| !t.is_empty());
        let translated_somewhere = tool_turn
            && matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Responses)
            && candidates.iter().any(|c| Provider::from_name(&c.target.provider).is_some_and(|p| !p.openai_shaped() || route::claude_model(p, &c.target.model)));
        let memos = if translated_somewhere {
            let owner = super::jobs::owner(self, session);
            let memos = self.recall_reasoning(ctx, &owner, wanted).await;
            ctx.cred.owner = Some(owner);
            memos
        } else {
            Default::default()
        };
        // The translation, to refuse what the provider cannot honour now.
        let translated = match translator_for(provider, endpoint, &native) {
            Err(e) => return self.openai_refused(session, ctx, &e).await,
            Ok(Mode::Translated(mut translator)) => {
                let opts = Options { default_max_tokens: config.openai_compat.default_max_tokens };
                let written = match &req {
                    OpenAiRequest::Typed(r) => translator.typed_request(r, &opts),
                    OpenAiRequest::Parsed(_) => None,
                };
                let body = match written {
                    Some(b) => Ok(b),
                    None => {
                        // Kept for a later translation: an async job's.
                        let input = if keep_request { req.to_value().into_owned() } else { std::mem::replace(&mut req, OpenAiRequest::Parsed(Value::Null)).into_value() };
                        translator.request(super::reasoning::with_memos(input, &memos), &opts).map(|v| serde_json::to_vec(&v).unwrap_or_default())
                    }
                };
                match body {
                    Ok(body) => (!keep_request).then_some(Translated { translator, body }),
                    Err(e) => return self.openai_refused(session, ctx, &e).await,
                }
            }
            Ok(Mode::Passthrough) => None,
        };
        // The request a translation made now has taken is not kept: the
        // client's bytes are, while another candidate may need it again
        // (SPEC 10; parsing them again on a fallback is cheaper than
        // copying the request for every request).
        let req = if translated.is_some() {
            // (Dropped here: the body it may borrow is kept below.)
            drop(req);
            Value::Null
        } else {
            req.into_value()
        };
        let h = &session.req_header();
        // An OpenAI-shaped provider gets the client's headers as on the
        // passthrough; a translated request only the client's user-agent
        // (`provider_head`), so only that is kept.
        let headers = if provider.openai_shaped() {
            let mut clean = RequestHeader::build_no_case("POST", b"/", None)?;
            for (name, value) in h.headers.iter() {
                clean.append_header(name.clone(), value.clone())?;
            }
            headers::to_provider(&mut clean, "-", &headers::UpstreamAuth { inject: None, keep_client_credentials: false }, false);
            clean
                .headers
                .iter()
                .filter(|(n, _)| !matches!(n.as_str(), "host" | "content-length" | "transfer-encoding" | "expect"))
                .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_string(), v.to_string())))
                .collect()
        } else {
            h.headers.get("user-agent").and_then(|v| v.to_str().ok()).map(|ua| vec![("user-agent".to_string(), ua.to_string())]).unwrap_or_default()
        };
        let api_version = crate::net::query::query_get(h.uri.query(), "api-version").map(str::to_string);
        let route = super::openai_route::RoutePlan { alias: alias.map(|_| model.clone()), candidates, ordered };
        let raw = if req.is_null() && route.candidates.len() > 1 { Some(bytes::Bytes::from(body)) } else { None };
        Ok(Admitted::Ready(Prepared { endpoint, provider: provider.name().to_string(), model: native, req, raw, headers, api_version, direct, directs, client_base, route, cache, memos }, translated))
    }

    /// The client's own key for `provider` in that provider's form, when
    /// direct keys are allowed and it is not a virtual key.
    pub(super) fn direct_key(&self, session: &Session, ctx: &Ctx, provider: Provider) -> Option<String> {
        if !ctx.live.config.allow_direct_keys || ctx.cred.client_is_vk {
            return None;
        }
        let h = &session.req_header().headers;
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        let key = match provider {
            Provider::Anthropic => get("x-api-key"),
            Provider::Gemini | Provider::Vertex => get("x-goog-api-key"),
            Provider::Azure => get("api-key"),
            Provider::OpenAi | Provider::Ollama | Provider::Compatible(_) => {
                get("authorization").and_then(|v| v.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, k)| k.trim().to_string()))
            }
        }?;
        // A presented virtual key is never a provider key.
        (self.virtual_keys().find(&key).is_none()).then_some(key)
    }

    /// `x-bf-azure-endpoint`: honoured only with the client's own key and
    /// for an allow-listed endpoint; otherwise the reason for the 400.
    fn client_azure_endpoint(&self, endpoint: &str, has_client_key: bool, ctx: &Ctx) -> std::result::Result<BaseUrl, String> {
        if !has_client_key {
            return Err("x-bf-azure-endpoint is honoured only with the client's own Azure key (api-key header and allow_direct_keys); a configured key is never sent to a client-named endpoint".into());
        }
        let base = BaseUrl::parse(endpoint.trim()).map_err(|e| format!("x-bf-azure-endpoint: {e}"))?;
        if !route::azure_endpoint_allowed(&base, &ctx.live.config.openai_compat.azure_endpoint_allowlist) {
            return Err(format!("x-bf-azure-endpoint {endpoint} is not in openai_compat.azure_endpoint_allowlist"));
        }
        Ok(base)
    }

    /// The provider request head: OpenAI-shaped providers get the client's
    /// headers as on the passthrough (cleaned at admission by
    /// `headers::to_provider`: hop-by-hop, credentials and control headers
    /// removed); translated requests get the provider's own set. `host` and
    /// the credential are set by `run_exchange` once connected.
    pub(super) fn provider_head(&self, client: &[(String, String)], ctx: &Ctx, up: &Upstream, provider: Provider, mode: &Mode, len: usize, stream: bool) -> Result<RequestHeader> {
        let mut h = RequestHeader::build_no_case("POST", up.path_and_query.as_bytes(), None)?;
        match mode {
            Mode::Passthrough => {
                for (name, value) in client {
                    h.append_header(name.clone(), value.as_str())?;
                }
            }
            Mode::Translated(t) => {
                h.insert_header("content-type", "application/json")?;
                h.insert_header("accept", if stream { "text/event-stream" } else { "application/json" })?;
                h.insert_header("accept-encoding", "identity")?;
                if let Some((_, ua)) = client.iter().find(|(n, _)| n == "user-agent") {
                    h.insert_header("user-agent", ua.as_str())?;
                }
                if provider == Provider::Anthropic || route::claude_on(provider, &up.path_and_query) {
                    h.insert_header("anthropic-version", "2023-06-01")?;
                }
                for (name, value) in t.request_headers() {
                    h.insert_header(name, value)?;
                }
            }
        }
        h.insert_header("content-length", len.to_string())?;
        h.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(h)
    }

    /// A 400 (or other) in OpenAI's error shape at admission, nothing sent.
    async fn openai_refused(&self, session: &mut Session, ctx: &mut Ctx, e: &TranslateError) -> Result<Admitted> {
        let mut inner = super::sink::SessionSink(session);
        let tags = ctx.outcome.answered.clone().unwrap_or_default();
        let mut sink = super::openai_route::Tagged { inner: &mut inner, tags };
        self.sink_openai_error(&mut sink, ctx, e).await?;
        Ok(Admitted::Answered)
    }

    /// An error in OpenAI's shape.
    pub(super) async fn sink_openai_error(&self, sink: &mut dyn Sink, ctx: &mut Ctx, e: &TranslateError) -> Result<()> {
        ctx.outcome.error = Some(if e.status == 400 { GatewayError::BadRequest } else { GatewayError::UpstreamError });
        ctx.outcome.error_detail = Some(e.message.clone());
        let body = e.to_openai().to_string();
        super::sink::json(sink, e.status, body.as_bytes(), &ctx.request_id, None).await
    }

    /// A gateway error (SPEC 5's shape).
    pub(super) async fn sink_refuse(&self, sink: &mut dyn Sink, ctx: &mut Ctx, err: GatewayError, message: &str) -> Result<()> {
        ctx.outcome.error = Some(err);
        ctx.outcome.error_detail = Some(message.to_string());
        super::sink::json(sink, err.status(), &err.body(message, &ctx.request_id), &ctx.request_id, None).await
    }

    /// `GET /openai/models`: the models the gateway knows a price for, per
    /// configured provider, as `provider/model`.
    async fn list_models(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let config = &ctx.live.config;
        let mut data = Vec::new();
        for (p, c) in &config.providers {
            let mut models: Vec<String> = config.prices.models(*p).into_iter().map(str::to_string).collect();
            for k in &c.keys {
                models.extend(k.models.iter().flatten().filter(|m| !m.contains(['*', '?'])).cloned());
            }
            models.sort();
            models.dedup();
            if models.is_empty() {
                models.push("default".into());
            }
            for m in models {
                data.push(json!({ "id": format!("{}/{m}", p.name()), "object": "model", "created": 0, "owned_by": p.name() }));
            }
        }
        let body = json!({ "object": "list", "data": data }).to_string();
        write_json(session, 200, body.as_bytes(), &ctx.request_id, None).await?;
        Ok(true)
    }
}

/// The translation for a provider and endpoint.
pub(super) fn translator_for(provider: Provider, endpoint: Endpoint, model: &str) -> std::result::Result<Mode, TranslateError> {
    // Claude on Vertex or Azure speaks Anthropic's Messages API there.
    if route::claude_model(provider, model) {
        let chat = || if provider == Provider::Vertex { AnthropicChat::on_vertex() } else { AnthropicChat::new() };
        return match endpoint {
            Endpoint::ChatCompletions => Ok(Mode::Translated(Box::new(chat()))),
            Endpoint::Responses => Ok(Mode::Translated(Box::new(ResponsesOverChat::new(Box::new(chat()))))),
            _ => Err(TranslateError::unsupported("model", format!("Claude on {} has no {} API", provider.name(), endpoint.openai_path().trim_start_matches('/')))),
        };
    }
    if provider.openai_shaped() {
        return Ok(Mode::Passthrough);
    }
    let t: Box<dyn Translator> = match (provider, endpoint) {
        (Provider::Anthropic, Endpoint::ChatCompletions) => Box::new(AnthropicChat::new()),
        (Provider::Anthropic, Endpoint::Responses) => Box::new(ResponsesOverChat::new(Box::new(AnthropicChat::new()))),
        (Provider::Gemini | Provider::Vertex, Endpoint::ChatCompletions) => Box::new(GeminiChat::new()),
        (Provider::Gemini | Provider::Vertex, Endpoint::Responses) => Box::new(ResponsesOverChat::new(Box::new(GeminiChat::new()))),
        (Provider::Gemini, Endpoint::Embeddings) => Box::new(GeminiEmbeddings::new()),
        (Provider::Vertex, Endpoint::Embeddings) => Box::new(VertexEmbeddings::new()),
        (p, e) => {
            return Err(TranslateError::unsupported("model", format!("{} has no {} API", p.name(), e.openai_path().trim_start_matches('/'))));
        }
    };
    Ok(Mode::Translated(t))
}

