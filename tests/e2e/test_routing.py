"""Routing across providers on /openai (SPEC 10), end to end: the real
openai SDK (sync, async, streaming) against the real binary and mock
providers that fail on demand (a status, a refused connection, silence until
the read timeout, a stream cut after N events).

The SDK's own retries are off (`max_retries=0`) so that every upstream call
counted here is the gateway's."""

import asyncio
import json
import shutil
import signal
import tempfile
import time
import urllib.request
from collections import Counter

import httpx2
import openai
import pytest

from conftest import KEYS, Gateway, free_port, redis_server
from mockprovider import MockProvider

MSG = [{"role": "user", "content": "hi"}]
COMPAT = {"alpha": "alpha-gw-key-1", "beta": "beta-gw-key-2", "gamma": "gamma-gw-key-3", "dead": "dead-gw-key-4"}
VK_ALPHA = "vk-alpha-only-8c1f"
MAX_ATTEMPTS = 3


def routing_conf(compat, dead_port, extra_models="", cooldown_s=3):
    urls = [(n, compat[n].url) for n in ("alpha", "beta", "gamma")] + [("dead", f"http://127.0.0.1:{dead_port}")]
    providers = "".join(
        f'    {n}: {{ kind: openai_compatible, base_url: "{url}", keys: [{{ name: {n}1, value: env.T_{n.upper()}_KEY }}] }}\n'
        for n, url in urls
    )
    extra = f"""  virtual_keys:
    - {{ name: alpha-only, secret: env.T_VK_ALPHA, providers: [alpha] }}
  routing:
    max_attempts: {MAX_ATTEMPTS}
    retries: 1
    max_retry_after_s: 1
    cooldown: {{ failures: 3, window_s: 60, s: {cooldown_s} }}
    models:
      balanced: {{ strategy: weighted, targets: [{{ model: alpha/bal, weight: 0.75 }}, {{ model: beta/bal, weight: 0.25 }}] }}
      survivor: {{ targets: [{{ model: dead/surv, weight: 1 }}, {{ model: beta/surv, weight: 1 }}] }}
      chain: {{ strategy: ordered, targets: [{{ model: alpha/chain }}, {{ model: beta/chain }}], fallbacks: [anthropic/claude-sonnet-4-5] }}
      doomed: {{ strategy: ordered, targets: [{{ model: alpha/doom }}, {{ model: beta/doom }}, {{ model: gamma/doom }}], fallbacks: [anthropic/claude-sonnet-4-5] }}
      fast: {{ strategy: least_latency, targets: [{{ model: alpha/fast }}, {{ model: beta/fast }}] }}
{extra_models}"""
    return providers, extra


@pytest.fixture(scope="module")
def rt(mocks):
    """A gateway with routing configured, its compat mocks and a dead port."""
    compat = {n: MockProvider("mistral", COMPAT[n], name=n).start() for n in ("alpha", "beta", "gamma")}
    dead_port = free_port()
    providers, extra = routing_conf(compat, dead_port)
    env = {f"T_{n.upper()}_KEY": k for n, k in COMPAT.items()}
    env["T_VK_ALPHA"] = VK_ALPHA
    with tempfile.TemporaryDirectory(prefix="tollgate-e2e-routing-") as tmp:
        gw = Gateway(mocks, tmp, extra_providers=providers, extra=extra, env=env, read_ms=1500)
        gw.compat, gw.all = compat, {**mocks, **compat}
        gw.dead_port = dead_port
        yield gw
        gw.stop()
    for m in compat.values():
        m.stop()


@pytest.fixture
def m(rt):
    """The mocks, cleared."""
    for mock in rt.all.values():
        mock.clear()
    rt.mark = rt.settled_count()
    return rt.all


def client(gw, **kw):
    return openai.OpenAI(base_url=gw.url + "/openai/v1", api_key="sk-client", max_retries=0, **kw)


def aclient(gw):
    return openai.AsyncOpenAI(base_url=gw.url + "/openai/v1", api_key="sk-client", max_retries=0)


def raw_chat(gw, **kw):
    """A chat completion with its headers: (headers, completion)."""
    r = client(gw).chat.completions.with_raw_response.create(messages=MSG, **kw)
    return r.headers, r.parse()


def who(headers):
    return headers["x-tollgate-provider"], headers["x-tollgate-model"], int(headers["x-tollgate-attempts"]), int(headers["x-tollgate-fallback-index"])


def calls(mock):
    return [r for r in mock.requests if r.path.endswith(("/chat/completions", "/messages", "/embeddings", "/responses")) or "enerateContent" in r.path]


def admin(gw, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}{path}", timeout=5) as r:
        return json.loads(r.read())


def last_record(gw, path_part="/openai"):
    recs = gw.records_after(gw.mark, 1)
    return [r for r in recs if path_part in r["path"]][-1]


# -- fallbacks in the request --------------------------------------------------

def test_a_request_fallback_answers_when_the_primary_fails_and_is_not_sent_on(rt, m):
    m["alpha"].script = [503]
    headers, c = raw_chat(rt, model="alpha/one", extra_body={"fallbacks": ["anthropic/claude-sonnet-4-5"]})
    assert c.choices[0].message.content == "Hello from Claude mock"
    assert who(headers) == ("anthropic", "claude-sonnet-4-5", 2, 1)
    assert len(calls(m["alpha"])) == 1 and len(calls(m["anthropic"])) == 1
    for mock in ("alpha", "anthropic"):
        assert "fallbacks" not in m[mock].last().json(), "removed before the request leaves"
    rec = last_record(rt)
    assert rec["provider"] == "anthropic" and rec["fallback_index"] == 1 and rec["status"] == 200
    assert [(a["provider"], a["model"], a["status"], a["error"]) for a in rec["attempts"]] == [("alpha", "one", 503, "status_503"), ("anthropic", "claude-sonnet-4-5", 200, None)]
    assert rec["attempts"][0]["key"] == "alpha1" and rec["attempts"][0]["latency_ms"] >= 0


def test_the_first_choice_answering_says_so(rt, m):
    headers, c = raw_chat(rt, model="alpha/two", extra_body={"fallbacks": ["beta/two"]})
    assert who(headers) == ("alpha", "two", 1, 0)
    assert not calls(m["beta"])
    rec = last_record(rt)
    assert rec["fallback_index"] == 0 and len(rec["attempts"]) == 1


@pytest.mark.parametrize("status", [401, 403, 408, 429, 500, 502, 503, 504, 529])
def test_statuses_that_may_succeed_elsewhere_move_on(rt, m, status):
    m["alpha"].script = [status]
    headers, c = raw_chat(rt, model=f"alpha/moves-{status}", extra_body={"fallbacks": [f"beta/moves-{status}"]})
    assert c.choices[0].message.content == "Hello from the mock"
    assert who(headers)[0] == "beta" and who(headers)[3] == 1
    assert len(calls(m["alpha"])) == 1 and len(calls(m["beta"])) == 1


@pytest.mark.parametrize("status,exc", [(400, openai.BadRequestError), (404, openai.NotFoundError), (413, openai.APIStatusError), (422, openai.UnprocessableEntityError)])
def test_client_errors_are_returned_at_once(rt, m, status, exc):
    m["alpha"].script = [status]
    with pytest.raises(exc) as e:
        client(rt).chat.completions.create(model=f"alpha/client-{status}", messages=MSG, extra_body={"fallbacks": [f"beta/client-{status}"]})
    assert e.value.status_code == status
    assert e.value.response.headers["x-tollgate-attempts"] == "1" and e.value.response.headers["x-tollgate-provider"] == "alpha"
    assert not calls(m["beta"]), "a client error is never retried elsewhere"


def test_a_refused_connection_moves_on(rt, m):
    headers, c = raw_chat(rt, model="dead/x1", extra_body={"fallbacks": ["beta/x1"]})
    assert who(headers)[0] == "beta" and who(headers)[3] == 1
    rec = last_record(rt)
    assert rec["attempts"][0]["provider"] == "dead" and rec["attempts"][0]["error"] == "connect" and rec["attempts"][0]["status"] is None


def test_silence_until_the_read_timeout_moves_on(rt, m):
    m["alpha"].script = ["silent"]
    t0 = time.monotonic()
    headers, c = raw_chat(rt, model="alpha/quiet", extra_body={"fallbacks": ["beta/quiet"]})
    took = time.monotonic() - t0
    assert who(headers)[0] == "beta"
    assert 1.4 <= took < 5, took
    assert last_record(rt)["attempts"][0]["error"] == "timeout"


@pytest.mark.parametrize("body", [{"fallbacks": "beta/x"}, {"fallbacks": [1]}, {"fallbacks": ["nope/x"]}, {"fallbacks": ["gpt-4o"]}, {"fallbacks": [f"beta/m{i}" for i in range(5)]}])
def test_malformed_fallbacks_are_a_400_naming_them(rt, m, body):
    with pytest.raises(openai.BadRequestError) as e:
        client(rt).chat.completions.create(model="alpha/x", messages=MSG, extra_body=body)
    assert e.value.body["param"] == "fallbacks", e.value.body
    assert not any(calls(mock) for mock in m.values()), "nothing was sent"


# -- aliases ----------------------------------------------------------------------

def test_an_ordered_alias_tries_its_targets_then_its_fallbacks(rt, m):
    m["alpha"].script = [500]
    m["beta"].script = [502]
    headers, c = raw_chat(rt, model="chain")
    assert who(headers) == ("anthropic", "claude-sonnet-4-5", 3, 2)
    assert [len(calls(m[p])) for p in ("alpha", "beta", "anthropic")] == [1, 1, 1]
    assert m["alpha"].last().json()["model"] == "chain", "the provider's own model name"
    headers, _ = raw_chat(rt, model="chain")
    assert who(headers) == ("alpha", "chain", 1, 0), "ordered: the first target first"


def test_weights_hold_within_a_statistical_bound_and_nothing_is_lost(rt, m):
    n = 400

    async def run():
        sem = asyncio.Semaphore(16)
        async with aclient(rt) as c:
            async def one():
                async with sem:
                    r = await c.chat.completions.with_raw_response.create(model="balanced", messages=MSG)
                    return r.headers["x-tollgate-provider"]
            return await asyncio.gather(*[one() for _ in range(n)])

    got = Counter(asyncio.run(run()))
    assert sum(got.values()) == n
    # 0.75 of n with sd sqrt(n * 0.75 * 0.25) = 8.7: five of them either way.
    assert abs(got["alpha"] - 0.75 * n) <= 45, got
    assert len(calls(m["alpha"])) == got["alpha"] and len(calls(m["beta"])) == got["beta"]


def test_least_latency_prefers_the_faster_target(rt, m):
    m["alpha"].delay = 0.3
    seen = [who(raw_chat(rt, model="fast")[0])[0] for _ in range(12)]
    # Both are measured first; then the faster one takes every request.
    assert set(seen[:4]) == {"alpha", "beta"}, seen
    assert seen[4:] == ["beta"] * 8, seen


# -- bounds ----------------------------------------------------------------------

def test_attempts_are_bounded_and_the_last_providers_error_is_returned(rt, m):
    for p in ("alpha", "beta", "gamma"):
        m[p].down = 503
    for _ in range(2):
        for mock in m.values():
            mock.take()
        with pytest.raises(openai.InternalServerError) as e:
            client(rt).chat.completions.create(model="doomed", messages=MSG)
        h = e.value.response.headers
        assert (h["x-tollgate-provider"], h["x-tollgate-attempts"], h["x-tollgate-fallback-index"]) == ("gamma", str(MAX_ATTEMPTS), "2")
        assert "gamma failure 503" in e.value.message, "the last provider's error"
        per = {p: len(calls(mock)) for p, mock in m.items()}
        assert sum(per.values()) == MAX_ATTEMPTS and max(per.values()) <= MAX_ATTEMPTS, per
        assert per["anthropic"] == 0, "the budget was spent before the alias's fallback"


def test_a_single_target_is_retried_after_a_backoff_honouring_retry_after(rt, m):
    # 429 with retry-after: 7, capped at max_retry_after_s (1 s); retries: 1.
    m["alpha"].script = [429]
    headers, c = raw_chat(rt, model="alpha/again")
    assert who(headers) == ("alpha", "again", 2, 0)
    first, second = calls(m["alpha"])
    assert 0.9 <= second.at - first.at < 3, second.at - first.at


def test_no_provider_is_called_more_than_max_attempts_times(rt, m):
    m["alpha"].down = 503
    with pytest.raises(openai.InternalServerError) as e:
        client(rt).chat.completions.create(model="alpha/always", messages=MSG, extra_body={"fallbacks": ["alpha/always2"]})
    # alpha/always, alpha/always2, then a retry pass: three in all.
    assert len(calls(m["alpha"])) == MAX_ATTEMPTS
    assert e.value.response.headers["x-tollgate-attempts"] == str(MAX_ATTEMPTS)


# -- streaming -----------------------------------------------------------------

def test_a_stream_is_replaced_before_its_first_byte(rt, m):
    m["alpha"].script = [503]
    r = client(rt).chat.completions.with_raw_response.create(model="alpha/s1", messages=MSG, stream=True, extra_body={"fallbacks": ["beta/s1"]})
    text = "".join(ch.choices[0].delta.content or "" for ch in r.parse() if ch.choices)
    assert text == "Hello from the mock"
    assert who(r.headers)[0] == "beta"


def test_a_stream_cut_before_any_event_is_replaced(rt, m):
    r = client(rt).chat.completions.with_raw_response.create(model="alpha/s-cut-0", messages=MSG, stream=True, extra_body={"fallbacks": ["beta/s2"]})
    text = "".join(ch.choices[0].delta.content or "" for ch in r.parse() if ch.choices)
    assert text == "Hello from the mock" and who(r.headers)[0] == "beta"
    assert len(calls(m["alpha"])) == 1


def test_a_stream_cut_after_its_first_byte_ends_with_an_error_and_nothing_else_is_tried(rt, m):
    body = {"model": "alpha/s-cut-3", "messages": MSG, "stream": True, "fallbacks": ["beta/s3"]}
    r = httpx2.post(rt.url + "/openai/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200 and r.headers["x-tollgate-provider"] == "alpha"
    assert '"content":"Hello"' in r.text.replace(" ", "")
    assert '"stream_cut"' in r.text and "[DONE]" not in r.text
    assert not calls(m["beta"]), "after the first byte nothing else is tried"
    # The SDK sees the error event.
    with pytest.raises(openai.APIError):
        for _ in client(rt).chat.completions.create(model="alpha/s-cut-3", messages=MSG, stream=True):
            pass


def test_the_async_client_streams_through_an_alias(rt, m):
    m["alpha"].script = [529]

    async def run():
        async with aclient(rt) as c:
            s = await c.chat.completions.create(model="chain", messages=MSG, stream=True)
            return "".join([ch.choices[0].delta.content or "" async for ch in s if ch.choices])

    assert asyncio.run(run()) == "Hello from the mock"
    assert len(calls(m["alpha"])) == 1 and len(calls(m["beta"])) == 1


# -- health ------------------------------------------------------------------------

def test_a_dead_target_loses_no_request_and_cools_down_visibly(rt, m):
    n = 200

    async def run():
        sem = asyncio.Semaphore(10)
        async with aclient(rt) as c:
            async def one():
                async with sem:
                    r = await c.chat.completions.create(model="survivor", messages=MSG)
                    return r.choices[0].message.content
            return await asyncio.gather(*[one() for _ in range(n)])

    answers = asyncio.run(run())
    assert answers == ["Hello from the mock"] * n
    assert len(calls(m["beta"])) == n
    recs = [r for r in rt.records_after(rt.mark, n) if r["path"].startswith("/openai")]
    dead_tries = sum(1 for r in recs for a in r.get("attempts", []) if a["provider"] == "dead")
    assert 3 <= dead_tries <= 30, f"the cooldown kept the dead target out: {dead_tries} tries"
    view = admin(rt, "/admin/routes")
    surv = next(a for a in view["aliases"] if a["alias"] == "survivor")
    dead = next(t for t in surv["targets"] if t["provider"] == "dead")
    assert dead["cooldowns"] >= 1
    assert dead["cooling_down"] is True and 0 < dead["cooldown_remaining_s"] <= 3
    assert 'tollgate_route_target_cooldown{alias="survivor",model="surv",provider="dead"} 1' in rt.metrics()
    assert 'tollgate_route_attempts_total{model="surv",outcome="connect",provider="dead"}' in rt.metrics()


def test_when_every_target_cools_the_earliest_ending_is_tried(rt, m):
    for p in ("alpha", "beta"):
        m[p].down = 503
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client(rt).chat.completions.create(model="alpha/cool-a", messages=MSG, extra_body={"fallbacks": ["beta/cool-b"]})
    for p in ("alpha", "beta"):
        m[p].down = None
        m[p].take()
    # Both cool now; alpha/cool-a started first, so it ends first.
    headers, c = raw_chat(rt, model="alpha/cool-a", extra_body={"fallbacks": ["beta/cool-b"]})
    assert who(headers)[:3] == ("alpha", "cool-a", 1)
    assert not calls(m["beta"])


def test_a_virtual_keys_disallowed_targets_are_never_contacted(rt, m):
    c = client(rt, default_headers={"x-tollgate-vk": VK_ALPHA})
    r = c.chat.completions.with_raw_response.create(model="anthropic/claude-sonnet-4-5", messages=MSG, extra_body={"fallbacks": ["alpha/vk"]})
    assert who(r.headers) == ("alpha", "vk", 1, 0)
    assert not calls(m["anthropic"])
    # An alias: its beta target and anthropic fallback are skipped even
    # when alpha fails (the same-target retry answers).
    m["alpha"].script = [503]
    r = c.chat.completions.with_raw_response.create(model="chain", messages=MSG)
    assert who(r.headers) == ("alpha", "chain", 2, 0)
    assert not calls(m["beta"]) and not calls(m["anthropic"])
    for mock in m.values():
        mock.take()
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.chat.completions.create(model="beta/x", messages=MSG, extra_body={"fallbacks": ["anthropic/claude-sonnet-4-5"]})
    assert e.value.body["type"] == "forbidden" or "forbidden" in json.dumps(e.value.body)
    assert not any(calls(mock) for mock in m.values())


# -- async jobs, embeddings, the Responses API -----------------------------------------

def test_async_jobs_go_through_the_same_routing(rt, m):
    m["alpha"].script = [503]
    c = client(rt)
    job = c.chat.completions.create(model="alpha/job", messages=MSG, extra_body={"fallbacks": ["beta/job"]}, extra_headers={"x-bf-async": "true"})
    for _ in range(100):
        done = c.chat.completions.create(model="alpha/job", messages=MSG, extra_headers={"x-bf-async-id": job.id})
        if done.choices:
            break
        time.sleep(0.05)
    assert done.choices[0].message.content == "Hello from the mock"
    assert len(calls(m["alpha"])) == 1 and len(calls(m["beta"])) == 1
    assert "fallbacks" not in m["beta"].last().json()


def test_embeddings_take_explicit_fallbacks(rt, m):
    m["alpha"].script = [502]
    r = client(rt).embeddings.with_raw_response.create(model="alpha/emb", input="hi", extra_body={"fallbacks": ["beta/emb"]})
    assert r.parse().data[0].embedding == [0.25, -0.5, 0.125]
    assert who(r.headers)[0] == "beta"


def test_the_responses_api_falls_back_across_providers(rt, m):
    m["alpha"].script = [503]
    r = client(rt).responses.with_raw_response.create(model="alpha/resp", input="hi", extra_body={"fallbacks": ["anthropic/claude-sonnet-4-5"]})
    assert r.parse().output_text == "Hello from Claude mock"
    assert who(r.headers)[:2] == ("anthropic", "claude-sonnet-4-5")


def test_admission_errors_carry_the_headers_too(rt, m):
    with pytest.raises(openai.BadRequestError) as e:
        client(rt).chat.completions.create(model="alpha/x", messages=MSG, extra_body={"fallbacks": "nope"})
    assert e.value.response.headers["x-tollgate-attempts"] == "0"
    assert e.value.response.headers["x-tollgate-provider"] == "alpha"


# -- reload and Redis ---------------------------------------------------------------

def test_a_reload_replaces_aliases_and_keeps_cooldowns(mocks, tmp_path):
    compat = {n: MockProvider("mistral", COMPAT[n], name=n).start() for n in ("alpha", "beta", "gamma")}
    dead_port = free_port()
    providers, extra = routing_conf(compat, dead_port, cooldown_s=60)
    env = {f"T_{n.upper()}_KEY": k for n, k in COMPAT.items()} | {"T_VK_ALPHA": VK_ALPHA}
    gw = Gateway(mocks, str(tmp_path), extra_providers=providers, extra=extra, env=env, read_ms=1500)
    try:
        compat["alpha"].down = compat["gamma"].down = 503
        # alpha, gamma, alpha again (the retry pass): two requests fail
        # alpha/reload four times, past cooldown.failures (3).
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                client(gw).chat.completions.create(model="alpha/reload", messages=MSG, extra_body={"fallbacks": ["gamma/reload"]})
        assert admin(gw, "/admin/routes")["aliases"], "aliases before"
        # A new alias naming the cooling target; the reload keeps its state.
        _, extra2 = routing_conf(compat, dead_port, extra_models="      fresh: { targets: [{ model: alpha/reload }] }\n", cooldown_s=60)
        text = gw.cfg.read_text().replace(extra, extra2)
        gw.cfg.write_text(text)
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline:
            view = admin(gw, "/admin/routes")
            fresh = [a for a in view["aliases"] if a["alias"] == "fresh"]
            if fresh:
                break
            time.sleep(0.1)
        assert fresh, "the reload added the alias"
        assert fresh[0]["targets"][0]["cooling_down"] is True, fresh
    finally:
        gw.stop()
        for mk in compat.values():
            mk.stop()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_cooldowns_are_shared_through_redis(mocks, tmp_path):
    with redis_server() as (port, redis):
        compat = {n: MockProvider("mistral", COMPAT[n], name=n).start() for n in ("alpha", "beta", "gamma")}
        gws = []
        try:
            providers, extra = routing_conf(compat, free_port())
            extra += f"  redis: {{ url: 'redis://127.0.0.1:{port}' }}\n"
            env = {f"T_{n.upper()}_KEY": k for n, k in COMPAT.items()} | {"T_VK_ALPHA": VK_ALPHA}
            for name in ("a", "b"):
                d = tmp_path / name
                d.mkdir()
                gws.append(Gateway(mocks, str(d), extra_providers=providers, extra=extra, env=env, read_ms=1500))
            a, b = gws
            compat["alpha"].down = 503
            # Instance A sees alpha/shared fail three times: it cools down.
            for _ in range(3):
                r = client(a).chat.completions.with_raw_response.create(model="alpha/shared", messages=MSG, extra_body={"fallbacks": ["beta/shared"]})
                assert who(r.headers)[0] == "beta"
            assert len(calls(compat["alpha"])) == 3
            # Instance B skips it without trying.
            for _ in range(5):
                r = client(b).chat.completions.with_raw_response.create(model="alpha/shared", messages=MSG, extra_body={"fallbacks": ["beta/shared"]})
                assert who(r.headers) == ("beta", "shared", 1, 0)
            assert len(calls(compat["alpha"])) == 3, "instance B never called the cooling target"
        finally:
            for g in gws:
                g.stop()
            for mk in compat.values():
                mk.stop()


def test_a_translated_primary_falls_back_to_another_translated_provider(rt, m):
    # Anthropic's 529 (overloaded), then Gemini: each attempt translates the
    # same request for its own provider.
    r = client(rt).chat.completions.with_raw_response.create(model="anthropic/claude-fail-529", messages=MSG, max_tokens=50, extra_body={"fallbacks": ["gemini/gemini-2.5-flash"]})
    assert who(r.headers) == ("gemini", "gemini-2.5-flash", 2, 1)
    assert r.parse().choices[0].message.content
    sent = m["gemini"].last().json()
    assert sent["contents"][0]["parts"][0]["text"] == "hi" and sent["generationConfig"]["maxOutputTokens"] == 50
    assert len(calls(m["anthropic"])) == 1
