"""The response cache on /openai (SPEC 11), end to end: the real openai SDK
(sync, async, streaming, Responses) against the real binary and mock
providers whose embeddings reflect the text (a hashed bag of content words),
so a reworded question is close and an unrelated one far."""

import asyncio
import json
import subprocess
import tempfile
import time
import urllib.request

import httpx2
import openai
import pytest

from conftest import BIN, Gateway, redis_server

MSG = [{"role": "user", "content": "What is the capital of France?"}]
VK = {"team-a": "vk-cache-team-a-1f2e", "team-b": "vk-cache-team-b-3d4c", "small": "vk-cache-small-5b6a"}
EXTRA = """  virtual_keys:
    - { name: team-a, secret: env.T_VK_A }
    - { name: team-b, secret: env.T_VK_B }
    - { name: small, secret: env.T_VK_SMALL, requests_per_minute: 8, tokens_per_minute: 20 }
  cache:
    ttl_s: 60
    max_entries: 1000
    semantic: { model: openai/embed-words, threshold: 0.8, max_messages: 3 }
"""
ENV = {"T_VK_A": VK["team-a"], "T_VK_B": VK["team-b"], "T_VK_SMALL": VK["small"]}


def start(mocks, tmp):
    return Gateway(mocks, tmp, extra=EXTRA, env=ENV)


@pytest.fixture(scope="module")
def cg(mocks):
    with tempfile.TemporaryDirectory(prefix="tollgate-e2e-cache-") as tmp:
        gw = start(mocks, tmp)
        gw.tmp = tmp
        yield gw
        gw.stop()


@pytest.fixture
def m(cg, mocks):
    for mock in mocks.values():
        mock.clear()
    cg.mark = cg.settled_count()
    return mocks


NS = iter(range(10_000))


def ns():
    """A fresh cache key per test: entries of one test never serve another."""
    return f"t{next(NS)}-{time.time_ns()}"


def client(gw, vk="team-a", key=None, **headers):
    h = {"x-bf-cache-key": key or "default"} | headers
    return openai.OpenAI(base_url=gw.url + "/openai/v1", api_key=VK[vk], max_retries=0, default_headers=h)


def chat_calls(mock):
    return [r for r in mock.requests if r.path.endswith("/chat/completions")]


def raw(c, **kw):
    r = c.chat.completions.with_raw_response.create(**kw)
    return r.headers, r.parse()


def test_an_identical_request_is_an_exact_hit_that_costs_nothing(cg, m):
    c = client(cg, key=ns())
    h1, a = raw(c, model="openai/gpt-4o-mini", messages=MSG)
    h2, b = raw(c, model="openai/gpt-4o-mini", messages=MSG)
    assert (h1["x-tollgate-cache"], h2["x-tollgate-cache"]) == ("miss", "hit")
    assert int(h2["age"]) >= 0 and a.model_dump() == b.model_dump()
    assert len(chat_calls(m["openai"])) == 1
    deadline = time.time() + 5
    while True:
        recs = [r for r in cg.records()[cg.mark:] if r["path"].startswith("/openai/v1/chat")]
        if len(recs) >= 2 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert recs[-1]["cache"] == "hit" and recs[-1]["cache_saved_tokens"] == 16 and recs[-1]["input_tokens"] is None
    assert recs[0]["cache"] == "miss" and recs[0]["input_tokens"] == 11
    assert "tollgate_cache_lookups_total{result=\"hit\"}" in cg.metrics()


def test_key_order_and_whitespace_do_not_matter(cg, m):
    key = ns()
    h = {"authorization": f"Bearer {VK['team-a']}", "x-bf-cache-key": key, "content-type": "application/json"}
    first = '{"model":"openai/gpt-4o-mini","temperature":1,"messages":[{"role":"user","content":"Order?"}]}'
    second = '{ "messages" : [ { "content" : "Order?" , "role" : "user" } ],\n  "temperature": 1.0, "model": "openai/gpt-4o-mini" }'
    r1 = httpx2.post(cg.url + "/openai/v1/chat/completions", content=first, headers=h)
    r2 = httpx2.post(cg.url + "/openai/v1/chat/completions", content=second, headers=h)
    assert (r1.headers["x-tollgate-cache"], r2.headers["x-tollgate-cache"]) == ("miss", "hit")
    r3 = httpx2.post(cg.url + "/openai/v1/chat/completions", content=second.replace("1.0", "0.5"), headers=h)
    assert r3.headers["x-tollgate-cache"] == "miss", "another parameter, another entry"


def test_a_stored_answer_replays_as_real_stream_events(cg, m):
    c = client(cg, key=ns())
    _, whole = raw(c, model="openai/gpt-4o-mini", messages=MSG)
    r = httpx2.post(cg.url + "/openai/v1/chat/completions", headers={"authorization": f"Bearer {VK['team-a']}", "x-bf-cache-key": c.default_headers["x-bf-cache-key"]},
                    json={"model": "openai/gpt-4o-mini", "messages": MSG, "stream": True, "stream_options": {"include_usage": True}})
    assert r.headers["x-tollgate-cache"] == "hit" and r.headers["content-type"].startswith("text/event-stream")
    events = [l[6:] for l in r.text.splitlines() if l.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
    assert text == whole.choices[0].message.content
    assert sum(1 for ch in chunks if ch["choices"] and ch["choices"][0]["delta"].get("content")) >= 1
    assert [ch["choices"][0]["finish_reason"] for ch in chunks if ch["choices"] and ch["choices"][0]["finish_reason"]] == ["stop"]
    assert chunks[-1]["usage"]["total_tokens"] == 16
    # The SDK streams it like any other answer.
    s = c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, stream=True)
    assert "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices) == whole.choices[0].message.content
    assert len(chat_calls(m["openai"])) == 1


def test_a_streamed_answer_is_stored_and_serves_a_whole_object(cg, m):
    c = client(cg, key=ns())
    s = c.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=MSG, stream=True, max_tokens=50)
    streamed = "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
    h, whole = raw(c, model="anthropic/claude-sonnet-4-5", messages=MSG, max_tokens=50)
    assert h["x-tollgate-cache"] == "hit"
    assert whole.choices[0].message.content == streamed == "Hello from Claude mock"
    assert whole.choices[0].finish_reason == "stop"
    assert len([r for r in m["anthropic"].requests if r.path.endswith("/messages")]) == 1


def test_the_responses_api_is_cached_both_ways(cg, m):
    c = client(cg, key=ns())
    first = c.responses.with_raw_response.create(model="openai/gpt-4.1-mini", input="Say hello")
    assert first.headers["x-tollgate-cache"] == "miss"
    events = list(c.responses.create(model="openai/gpt-4.1-mini", input="Say hello", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert sum(1 for e in events if e.type == "response.output_text.delta") >= 2, "in pieces, not one chunk"
    assert events[-1].response.output_text == first.parse().output_text
    assert len([r for r in m["openai"].requests if r.path.endswith("/responses")]) == 1


def test_a_reworded_question_is_a_semantic_hit_and_an_unrelated_one_is_not(cg, m):
    c = client(cg, key=ns())
    raw(c, model="openai/gpt-4o-mini", messages=MSG)
    h, _ = raw(c, model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "what's the capital of France, roughly?"}])
    assert h["x-tollgate-cache"] == "semantic-hit"
    assert 0.8 <= float(h["x-tollgate-cache-similarity"]) < 1
    h, _ = raw(c, model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "How do I bake sourdough bread?"}])
    assert h["x-tollgate-cache"] == "miss"
    # The threshold may be raised per request, never lowered.
    h, _ = raw(c, model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "what's the capital of France, roughly?"}], extra_headers={"x-bf-cache-threshold": "0.9"})
    assert h["x-tollgate-cache"] == "miss"
    # Another model: another partition.
    h, _ = raw(c, model="openai/gpt-4o", messages=[{"role": "user", "content": "the capital of France?"}])
    assert h["x-tollgate-cache"] == "miss"
    # The embedding calls went through the gateway's own key and are recorded.
    emb = [r for r in m["openai"].requests if r.path.endswith("/embeddings")]
    assert emb and all(r.json()["model"] == "embed-words" for r in emb)
    recs = [r for r in cg.records_after(cg.mark, 6) if r["path"] == "/openai/embeddings"]
    assert recs and recs[0]["user_agent"] == "tollgate-cache" and recs[0]["input_tokens"] == 4


def test_entries_are_private_to_their_owner_whatever_the_headers(cg, m):
    key = ns()
    raw(client(cg, "team-a", key), model="openai/gpt-4o-mini", messages=MSG)
    # Each trick may be served but stores nothing, so that only team-a's
    # entry could ever answer it.
    ns_ = {"x-bf-cache-no-store": "true"}
    tricks = [
        client(cg, "team-b", key, **ns_),
        client(cg, "team-b", key, **ns_, **{"x-tollgate-vk": VK["team-b"]}),
        client(cg, "team-b", key, **ns_, **{"x-bf-cache-owner": "vk:team-a"}),
        client(cg, "team-b", f"vk:team-a/{key}", **ns_),
        client(cg, "team-b", key, **ns_, **{"x-bf-vk": VK["team-b"], "x-bf-cache-type": "semantic"}),
        client(cg, "team-b", key, **ns_, **{"x-bf-cache-threshold": "0"}),
    ]
    for c in tricks:
        h, _ = raw(c, model="openai/gpt-4o-mini", messages=MSG)
        assert h["x-tollgate-cache"] in ("miss",), dict(h)
    # Without a virtual key (the gateway's own keys): another owner again.
    anon = openai.OpenAI(base_url=cg.url + "/openai/v1", api_key="sk-none", max_retries=0, default_headers={"x-bf-cache-key": key, **ns_})
    assert raw(anon, model="openai/gpt-4o-mini", messages=MSG)[0]["x-tollgate-cache"] == "miss"
    assert raw(client(cg, "team-a", key), model="openai/gpt-4o-mini", messages=MSG)[0]["x-tollgate-cache"] == "hit"


def test_cache_control_and_no_store(cg, m):
    c = client(cg, key=ns())
    raw(c, model="openai/gpt-4o-mini", messages=MSG)
    h, _ = raw(c, model="openai/gpt-4o-mini", messages=MSG, extra_headers={"cache-control": "no-cache"})
    assert h["x-tollgate-cache"] == "refresh"
    h, _ = raw(c, model="openai/gpt-4o-mini", messages=MSG, extra_headers={"cache-control": "no-store"})
    assert "x-tollgate-cache" not in h
    assert len(chat_calls(m["openai"])) == 3
    c2 = client(cg, key=ns(), **{"x-bf-cache-no-store": "true"})
    raw(c2, model="openai/gpt-4o-mini", messages=MSG)
    assert raw(c2, model="openai/gpt-4o-mini", messages=MSG)[0]["x-tollgate-cache"] == "miss", "not stored"


@pytest.mark.parametrize("header,value", [("x-bf-cache-ttl", "soon"), ("x-bf-cache-threshold", "2"), ("x-bf-cache-type", "fuzzy"), ("x-bf-cache-no-store", "maybe")])
def test_a_malformed_cache_header_is_a_400_naming_it(cg, m, header, value):
    with pytest.raises(openai.BadRequestError) as e:
        client(cg, key=ns(), **{header: value}).chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)
    assert e.value.body["param"] == header
    assert not chat_calls(m["openai"])


def test_errors_and_cut_streams_are_never_stored(cg, m):
    c = client(cg, key=ns(), **{"x-bf-cache-type": "direct"})
    m["openai"].script = [500]
    with pytest.raises(openai.InternalServerError):
        c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)
    assert raw(c, model="openai/gpt-4o-mini", messages=MSG)[0]["x-tollgate-cache"] == "miss"
    with pytest.raises(openai.APIError):
        for _ in c.chat.completions.create(model="openai/gpt-cut-3", messages=MSG, stream=True):
            pass
    with pytest.raises(openai.APIError):
        for _ in c.chat.completions.create(model="openai/gpt-cut-3", messages=MSG, stream=True):
            pass
    assert len([r for r in chat_calls(m["openai"]) if r.json()["model"] == "gpt-cut-3"]) == 2


def test_fifty_identical_concurrent_misses_make_one_provider_call(cg, m):
    m["openai"].delay = 0.5
    key = ns()

    async def run():
        async with openai.AsyncOpenAI(base_url=cg.url + "/openai/v1", api_key=VK["team-a"], max_retries=0, default_headers={"x-bf-cache-key": key}) as c:
            rs = await asyncio.gather(*[c.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MSG) for _ in range(50)])
            return [r.headers["x-tollgate-cache"] for r in rs]

    marks = asyncio.run(run())
    assert len(chat_calls(m["openai"])) == 1, marks
    assert marks.count("miss") == 1 and marks.count("hit") == 49


def test_expired_entries_are_never_served_and_an_operator_can_clear(cg, m):
    c = client(cg, key=ns(), **{"x-bf-cache-ttl": "1"})
    raw(c, model="openai/gpt-4o-mini", messages=MSG)
    assert raw(c, model="openai/gpt-4o-mini", messages=MSG)[0]["x-tollgate-cache"] == "hit"
    time.sleep(1.2)
    assert raw(c, model="openai/gpt-4o-mini", messages=MSG)[0]["x-tollgate-cache"] == "miss"
    key = ns()
    c = client(cg, key=key)
    raw(c, model="openai/gpt-4o-mini", messages=MSG)
    req = urllib.request.Request(f"http://127.0.0.1:{cg.metrics_port}/admin/cache?key={key}", method="DELETE")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert json.loads(r.read())["deleted"] == 1
    assert raw(c, model="openai/gpt-4o-mini", messages=MSG)[0]["x-tollgate-cache"] == "miss"
    # The command line does the same through the admin listener.
    out = subprocess.run([str(BIN), "cache", "clear", "--key", key, "-c", str(cg.cfg)], capture_output=True, text=True, timeout=30, env=cg.env)
    assert out.returncode == 0 and json.loads(out.stdout)["deleted"] == 1, out
    assert raw(c, model="openai/gpt-4o-mini", messages=MSG)[0]["x-tollgate-cache"] == "miss"


def test_a_hit_counts_toward_rpm_but_not_tpm(cg, m):
    # small: 8 requests and 20 tokens a minute; an answer is 16 tokens, so
    # a third request would be refused if hits spent tokens.
    c = client(cg, "small", key=ns())
    raw(c, model="openai/gpt-4o-mini", messages=MSG)
    for _ in range(7):
        assert raw(c, model="openai/gpt-4o-mini", messages=MSG)[0]["x-tollgate-cache"] == "hit"
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)  # the 9th request
    assert "requests per minute" in e.value.message, e.value.message
    assert len(chat_calls(m["openai"])) == 1


def test_entries_survive_a_restart(mocks):
    with tempfile.TemporaryDirectory(prefix="tollgate-e2e-cache-restart-") as tmp:
        key = ns()
        gw = start(mocks, tmp)
        try:
            raw(client(gw, key=key), model="openai/gpt-4o-mini", messages=MSG)
        finally:
            gw.stop()
        gw = start(mocks, tmp)
        try:
            h, _ = raw(client(gw, key=key), model="openai/gpt-4o-mini", messages=MSG)
            assert h["x-tollgate-cache"] == "hit"
            h, _ = raw(client(gw, key=key), model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "capital of France, roughly"}])
            assert h["x-tollgate-cache"] == "semantic-hit", "the semantic index is rebuilt from the store"
        finally:
            gw.stop()


@pytest.mark.skipif(__import__("shutil").which("redis-server") is None, reason="redis-server is not installed")
def test_two_instances_share_entries_through_redis_and_go_on_without_it(mocks, tmp_path):
    with redis_server() as (port, redis):
        gws = []
        try:
            extra = EXTRA + f"  redis: {{ url: 'redis://127.0.0.1:{port}', timeout_ms: 300 }}\n"
            for name in ("a", "b"):
                d = tmp_path / name
                d.mkdir()
                gws.append(Gateway(mocks, str(d), extra=extra, env=ENV))
            a, b = gws
            for mock in mocks.values():
                mock.clear()
            key = ns()
            assert raw(client(a, key=key), model="openai/gpt-4o-mini", messages=MSG)[0]["x-tollgate-cache"] == "miss"
            h, _ = raw(client(b, key=key), model="openai/gpt-4o-mini", messages=MSG)
            assert h["x-tollgate-cache"] == "hit", "written through A, an exact hit on B"
            h, _ = raw(client(b, key=key), model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "capital of France, roughly"}])
            assert h["x-tollgate-cache"] == "semantic-hit", "and a semantic hit on B"
            assert raw(client(b, "team-b", key), model="openai/gpt-4o-mini", messages=MSG)[0]["x-tollgate-cache"] == "miss", "still private"
            assert len(chat_calls(mocks["openai"])) == 2
            # Cleared through A's admin listener: gone for B too.
            req = urllib.request.Request(f"http://127.0.0.1:{a.metrics_port}/admin/cache?key={key}", method="DELETE")
            with urllib.request.urlopen(req, timeout=5) as r:
                assert json.loads(r.read())["deleted"] >= 1
            assert raw(client(b, key=key), model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-cache-type": "direct"})[0]["x-tollgate-cache"] == "miss"
            # Redis killed mid-run: the cache is skipped, requests go on.
            redis.kill()
            redis.wait()
            for g in (a, b):
                h, c = raw(client(g, key=key), model="openai/gpt-4o-mini", messages=MSG)
                assert h["x-tollgate-cache"] == "bypass" and c.choices[0].message.content == "Hello from the mock"
            assert 'tollgate_cache_lookups_total{result="bypass"}' in a.metrics()
        finally:
            for g in gws:
                g.stop()


def test_a_stored_tool_call_replays_as_stream_deltas(cg, m):
    # Tools: the exact layer only; the stored answer's tool call comes back
    # to a streamed request as tool-call deltas the SDK assembles.
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    c = client(cg, key=ns())
    ask = dict(model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools, max_tokens=100)
    h, whole = raw(c, **ask)
    assert h["x-tollgate-cache"] == "miss" and whole.choices[0].finish_reason == "tool_calls"
    call = whole.choices[0].message.tool_calls[0]
    s = c.chat.completions.with_raw_response.create(stream=True, **ask)
    assert s.headers["x-tollgate-cache"] == "hit"
    chunks = [ch for ch in s.parse() if ch.choices]
    deltas = [tc for ch in chunks for tc in (ch.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].id == call.id and deltas[0].function.name == call.function.name
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not any(r.path.endswith("/embeddings") for r in m["openai"].requests), "tools: no semantic lookup"
    assert len([r for r in m["anthropic"].requests if r.path.endswith("/messages")]) == 1
