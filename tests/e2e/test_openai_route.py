"""The OpenAI-compatible route `/openai` (SPEC 8), driven by the official
OpenAI SDK (sync and async), against the mock providers.

Each case asserts what the provider mock received (path, query, the
provider's own auth header with the gateway's key, the translated body),
what the SDK returned, and, where it matters, the gateway's record. Streams
are checked event by event: every translated piece must reach the SDK within
STREAM_SLACK of the moment the mock sent the provider event carrying it.

Select with `-k openai_route` (module name and the `openai_route` mark).
"""

import asyncio
import base64
import json
import socket
import threading
import time

import httpx
import openai
import pytest

from conftest import AZURE_API_VERSION, KEYS, OA_DEFAULT_MAX_TOKENS, OA_KEYS, OA_MAX_BODY, VK_SECRETS

pytestmark = [pytest.mark.timeout(60), pytest.mark.openai_route]

STREAM_SLACK = 0.1  # seconds between the mock sending an event and the SDK seeing its translation
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 24).decode()
USER = [{"role": "user", "content": "hi"}]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]}}}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
                                              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CLIENT_CREDS = ("dummy-key", "client-azure-key", *VK_SECRETS.values())


def oa(gw, v1=False, **kw):
    return openai.OpenAI(base_url=f"{gw.url}/openai{'/v1' if v1 else ''}", api_key=kw.pop("api_key", "dummy-key"), max_retries=0, **kw)


def aoa(gw, **kw):
    return openai.AsyncOpenAI(base_url=f"{gw.url}/openai", api_key="dummy-key", max_retries=0, **kw)


# -- what reached the providers ----------------------------------------------

def only(mocks, name, path, method="POST", count=1):
    """The `count` requests mock `name` received (all at `path`); no other
    mock received anything; no client credential reached a provider."""
    got = {n: m.take() for n, m in mocks.items()}
    others = {n: [(r.method, r.path) for r in rs] for n, rs in got.items() if rs and n != name}
    assert not others, f"requests reached other mocks: {others}"
    reqs = got[name]
    assert [(r.method, r.path) for r in reqs] == [(method, path)] * count, f"{name} received {[(r.method, r.path, r.query) for r in reqs]}"
    for r in reqs:
        blob = json.dumps(r.headers)
        for c in CLIENT_CREDS:
            if not (name == "azure-direct" and c == "client-azure-key"):
                assert c not in blob, f"client credential {c} reached {name}: {r.headers}"
    return reqs if count > 1 else reqs[0]


def nothing_sent(mocks):
    got = {n: [(r.method, r.path) for r in m.take()] for n, m in mocks.items()}
    assert not any(got.values()), f"nothing should have been sent upstream: {got}"


def no_foreign_headers(r):
    """SPEC 3: on translated requests, OpenAI client headers stay home."""
    bad = [h for h in r.headers if h.startswith(("openai-", "x-stainless-", "x-bf-", "x-tollgate-"))]
    assert not bad, f"client headers meant for OpenAI reached another provider: {bad}"


def anthropic_req(mocks, count=1):
    reqs = only(mocks, "anthropic", "/v1/messages", count=count)
    for r in reqs if count > 1 else [reqs]:
        assert r.headers.get("x-api-key") == KEYS["anthropic"]
        assert r.headers.get("anthropic-version") == "2023-06-01"
        assert "authorization" not in r.headers and "api-key" not in r.headers
        assert r.headers.get("content-type", "").startswith("application/json")
        no_foreign_headers(r)
    return reqs


def gemini_req(mocks, model, stream=False, provider="gemini"):
    base = "/v1beta/models" if provider == "gemini" else "/v1/publishers/google/models"
    path = f"{base}/{model}:{'streamGenerateContent' if stream else 'generateContent'}"
    r = only(mocks, provider, path)
    if stream:
        assert "alt=sse" in r.query.split("&"), r.query
    assert r.headers.get("x-goog-api-key") == KEYS[provider]
    assert "authorization" not in r.headers and "key=" not in r.query
    no_foreign_headers(r)
    return r


def text_of(content):
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if b.get("type") == "text")


def gemini_text(content):
    return "".join(p.get("text", "") for p in content["parts"])


# -- records ------------------------------------------------------------------

def oa_records(gw, after, count=1):
    """The first `count` records with route /openai after index `after`."""
    deadline = time.time() + 5
    while time.time() < deadline:
        recs = [r for r in gw.records()[after:] if r.get("route") == "/openai"]
        if len(recs) >= count:
            return recs[:count]
        time.sleep(0.02)
    raise AssertionError(f"expected {count} /openai records, got {gw.records()[after:]}")


def check_record(rec, provider, model=None, tokens=None, stream=None, status=200):
    assert rec["route"] == "/openai", rec
    assert rec["provider"] == provider, rec
    assert rec["status"] == status, rec
    if model is not None:
        assert rec["model"] == model, rec
    if tokens is not None:
        assert (rec["input_tokens"], rec["output_tokens"]) == tokens, rec
    if stream is not None:
        assert rec["stream"] is stream, rec
    return rec


# -- streaming: event by event -------------------------------------------------

def sent_pieces(mock):
    """(text or argument piece, send time) for each provider event that carries one."""
    out = []
    for _, t, _, data in mock.sent_log:
        if not isinstance(data, dict):
            continue
        if data.get("type") == "content_block_delta":
            d = data["delta"]
            piece = d.get("text") if d.get("type") == "text_delta" else d.get("partial_json")
            if piece:
                out.append((piece, t))
        elif "candidates" in data:
            for part in (data["candidates"][0].get("content") or {}).get("parts", []):
                if part.get("text"):
                    out.append((part["text"], t))
        elif data.get("object") == "chat.completion.chunk":
            for c in data["choices"]:
                if c["delta"].get("content"):
                    out.append((c["delta"]["content"], t))
    return out


def assert_event_by_event(mock, received):
    """`received`: (piece, time the SDK yielded it), in order. Each must be
    the piece of the matching provider event, seen within STREAM_SLACK of
    its send time: not batched, not held to the end."""
    sent = sent_pieces(mock)
    assert len(sent) >= 3, f"mock sent {sent}"
    assert [p for p, _ in received] == [p for p, _ in sent], f"pieces differ: got {[p for p, _ in received]}, sent {[p for p, _ in sent]}"
    late = [(p, round(rt - st, 3)) for (p, rt), (_, st) in zip(received, sent) if rt - st > STREAM_SLACK]
    assert not late, f"pieces reached the SDK late (seconds after the mock sent them): {late}"


def chat_pieces(chunk, now, text, args):
    for c in chunk.choices:
        if c.delta.content:
            text.append((c.delta.content, now))
        for tc in c.delta.tool_calls or []:
            if tc.function and tc.function.arguments:
                args.append((tc.function.arguments, now))


# ============================================================================
# Chat completions
# ============================================================================

@pytest.mark.parametrize("model", ["gpt-4o-mini", "openai/gpt-4o-mini"])
@pytest.mark.parametrize("v1", [False, True], ids=["openai", "openai-v1"])
def test_chat_to_openai(model, v1, oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway, v1=v1)
    r = c.chat.completions.create(model=model, messages=USER, temperature=0.2, seed=7, user="u-1", metadata={"k": "v"})
    assert r.object == "chat.completion" and r.choices[0].message.content == "Hello from the mock"
    assert r.usage.prompt_tokens == 11 and r.usage.completion_tokens == 5
    up = only(oa_mocks, "openai", "/v1/chat/completions")
    assert up.headers["authorization"] == f"Bearer {KEYS['openai']}"
    assert up.json() == {"model": "gpt-4o-mini", "messages": USER, "temperature": 0.2, "seed": 7, "user": "u-1", "metadata": {"k": "v"}}
    check_record(oa_records(oa_gateway, oa_fresh)[0], "openai", "gpt-4o-mini-2024-07-18", (11, 5), stream=False)


def test_chat_unknown_prefix_goes_to_openai_as_written(oa_gateway, oa_mocks, oa_fresh):
    # "acme" names no provider: OpenAI gets the model as written (the mock,
    # like OpenAI, has no such model: its 404 comes back as NotFoundError).
    with pytest.raises(openai.NotFoundError) as e:
        oa(oa_gateway).chat.completions.create(model="acme/gpt-x", messages=USER)
    assert only(oa_mocks, "openai", "/v1/chat/completions").json()["model"] == "acme/gpt-x"
    assert e.value.response.json()["error"]["code"] == "model_not_found"


def test_chat_stream_to_openai(oa_gateway, oa_mocks, oa_fresh):
    text, args, usage = [], [], None
    for chunk in oa(oa_gateway).chat.completions.create(model="openai/gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}):
        chat_pieces(chunk, time.monotonic(), text, args)
        usage = chunk.usage or usage
    assert "".join(p for p, _ in text) == "Hello from the mock" and usage.completion_tokens == 5
    assert_event_by_event(oa_mocks["openai"], text)
    up = only(oa_mocks, "openai", "/v1/chat/completions")
    assert up.json()["model"] == "gpt-4o-mini" and up.json()["stream"] is True
    check_record(oa_records(oa_gateway, oa_fresh)[0], "openai", "gpt-4o-mini-2024-07-18", (11, 5), stream=True)


def test_chat_to_anthropic(oa_gateway, oa_mocks, oa_fresh):
    msgs = [{"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "again"}]}]
    r = oa(oa_gateway).chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=msgs, temperature=0.3, top_p=0.9, stop=["END"])
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content == "Hello from Claude mock"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (13, 7, 20)
    up = anthropic_req(oa_mocks)
    # The client's user-agent is the one client header a translated request carries.
    assert up.headers.get("user-agent", "").startswith("OpenAI/Python"), up.headers
    body = up.json()
    assert body["model"] == "claude-3-sonnet-20240229"
    assert body["max_tokens"] == OA_DEFAULT_MAX_TOKENS
    system = text_of(body["system"])
    assert "You are terse." in system and "Answer in English." in system
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [text_of(m["content"]) for m in body["messages"]] == ["hi", "Hello.", "again"]
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and body["stop_sequences"] == ["END"]
    assert not body.get("stream")
    check_record(oa_records(oa_gateway, oa_fresh)[0], "anthropic", "claude-3-sonnet-20240229", (13, 7), stream=False)


def test_chat_to_anthropic_max_tokens_and_length(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    c.chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=USER, max_tokens=50)
    assert anthropic_req(oa_mocks).json()["max_tokens"] == 50
    c.chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=USER, max_completion_tokens=60)
    assert anthropic_req(oa_mocks).json()["max_tokens"] == 60
    r = c.chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=USER, max_tokens=3)
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content == "Hello from"
    assert anthropic_req(oa_mocks).json()["max_tokens"] == 3


def test_chat_stream_to_anthropic(oa_gateway, oa_mocks, oa_fresh):
    text, args, finish, objects = [], [], None, set()
    stream = oa(oa_gateway).chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=USER, stream=True, stream_options={"include_usage": True})
    chunks = []
    for chunk in stream:
        chat_pieces(chunk, time.monotonic(), text, args)
        chunks.append(chunk)
        objects.add(chunk.object)
        finish = next((c.finish_reason for c in chunk.choices if c.finish_reason), finish)
    assert "".join(p for p, _ in text) == "Hello from Claude mock" and finish == "stop"
    assert objects == {"chat.completion.chunk"}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None, "include_usage: the last chunk has no choices and the usage"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (13, 7)
    assert all(ch.usage is None for ch in chunks[:-1]), "usage only on the last chunk"
    assert_event_by_event(oa_mocks["anthropic"], text)
    body = anthropic_req(oa_mocks).json()
    assert body["stream"] is True and body["max_tokens"] == OA_DEFAULT_MAX_TOKENS
    check_record(oa_records(oa_gateway, oa_fresh)[0], "anthropic", "claude-3-sonnet-20240229", (13, 7), stream=True)


def test_chat_stream_raw_sse_ends_with_done(oa_gateway, oa_mocks, oa_fresh):
    with httpx.stream("POST", f"{oa_gateway.url}/openai/v1/chat/completions", headers={"authorization": "Bearer dummy-key"},
                      json={"model": "anthropic/claude-3-sonnet-20240229", "messages": USER, "stream": True}, timeout=20) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        datas = [line[5:].strip() for line in r.iter_lines() if line.startswith("data:")]
    assert datas[-1] == "[DONE]", datas[-3:]
    chunks = [json.loads(d) for d in datas[:-1]]
    assert chunks and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1, "one id for the whole stream"
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    anthropic_req(oa_mocks)


def test_chat_stream_usage_counts_anthropic_cache_tokens(oa_gateway, oa_mocks, oa_fresh):
    usage = None
    for chunk in oa(oa_gateway).chat.completions.create(model="anthropic/claude-cache-1", messages=USER, stream=True, stream_options={"include_usage": True}):
        usage = chunk.usage or usage
    # input 13 + cache creation 4 + cache read 2
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (19, 7, 26)
    assert usage.prompt_tokens_details.cached_tokens == 2
    anthropic_req(oa_mocks)
    r = oa(oa_gateway).chat.completions.create(model="anthropic/claude-cache-1", messages=USER)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (19, 7) and r.usage.prompt_tokens_details.cached_tokens == 2
    anthropic_req(oa_mocks)


def test_chat_tools_to_anthropic(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    first = [{"role": "user", "content": "Weather in Paris?"}]
    r = c.chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=first, tools=[WEATHER_TOOL],
                                  tool_choice={"type": "function", "function": {"name": "get_weather"}})
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert msg.content == "Let me check."
    assert len(msg.tool_calls) == 1
    tc = msg.tool_calls[0]
    assert tc.id == "toolu_01" and tc.type == "function" and tc.function.name == "get_weather"
    assert json.loads(tc.function.arguments) == {"city": "Paris", "unit": "c"}
    body = anthropic_req(oa_mocks).json()
    assert body["tools"] == [{"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER_TOOL["function"]["parameters"]}]
    assert body["tool_choice"]["type"] == "tool" and body["tool_choice"]["name"] == "get_weather"

    second = first + [msg.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": "toolu_01", "content": "22C and sunny"}]
    r2 = c.chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=second, tools=[WEATHER_TOOL])
    assert r2.choices[0].message.content == "Tool said: 22C and sunny" and r2.choices[0].finish_reason == "stop"
    msgs = anthropic_req(oa_mocks).json()["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    uses = [b for b in msgs[1]["content"] if b["type"] == "tool_use"]
    assert uses == [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris", "unit": "c"}}]
    results = [b for b in msgs[2]["content"] if b["type"] == "tool_result"]
    assert len(results) == 1 and results[0]["tool_use_id"] == "toolu_01" and text_of(results[0]["content"]) == "22C and sunny"


def test_chat_parallel_tools_to_anthropic(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    first = [{"role": "user", "content": "Weather in Paris and time in Rome?"}]
    r = c.chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=first, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="required")
    calls = r.choices[0].message.tool_calls
    assert [(t.id, t.function.name, json.loads(t.function.arguments)) for t in calls] == [
        ("toolu_01", "get_weather", {"city": "Paris", "unit": "c"}), ("toolu_02", "get_time", {"city": "Rome"})]
    body = anthropic_req(oa_mocks).json()
    assert body["tool_choice"]["type"] == "any"
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]

    second = first + [r.choices[0].message.model_dump(exclude_none=True),
                      {"role": "tool", "tool_call_id": "toolu_01", "content": "22C"},
                      {"role": "tool", "tool_call_id": "toolu_02", "content": "14:00"}]
    r2 = c.chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=second, tools=[WEATHER_TOOL, TIME_TOOL])
    assert r2.choices[0].message.content == "Tool said: 22C"
    msgs = anthropic_req(oa_mocks).json()["messages"]
    # Both results in the one user turn right after the assistant's tool_use turn.
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert [b["id"] for b in msgs[1]["content"] if b["type"] == "tool_use"] == ["toolu_01", "toolu_02"]
    assert [(b["tool_use_id"], text_of(b["content"])) for b in msgs[2]["content"] if b["type"] == "tool_result"] == [("toolu_01", "22C"), ("toolu_02", "14:00")]


def test_chat_stream_tool_call_arguments_from_anthropic(oa_gateway, oa_mocks, oa_fresh):
    text, args = [], []
    with oa(oa_gateway).chat.completions.stream(model="anthropic/claude-3-sonnet-20240229", messages=[{"role": "user", "content": "Weather?"}],
                                                tools=[WEATHER_TOOL], tool_choice="auto") as s:
        for ev in s:
            if ev.type == "chunk":
                chat_pieces(ev.chunk, time.monotonic(), text, args)
        final = s.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    (tc,) = choice.message.tool_calls
    assert tc.id == "toolu_01" and tc.function.name == "get_weather"
    assert tc.function.arguments == '{"city": "Paris", "unit": "c"}'
    # Every text and input_json_delta piece arrived as its own delta, as sent.
    mock = oa_mocks["anthropic"]
    assert "".join(p for p, _ in args) == '{"city": "Paris", "unit": "c"}'
    assert_event_by_event(mock, text + args)
    body = anthropic_req(oa_mocks).json()
    assert body["stream"] is True and body["tool_choice"]["type"] == "auto"


def test_chat_images_to_anthropic(oa_gateway, oa_mocks, oa_fresh):
    content = [{"type": "text", "text": "What is this?"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]
    r = oa(oa_gateway).chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=[{"role": "user", "content": content}])
    assert r.choices[0].message.content == "Hello from Claude mock"
    blocks = anthropic_req(oa_mocks).json()["messages"][0]["content"]
    assert blocks[0] == {"type": "text", "text": "What is this?"}
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}
    assert blocks[2]["type"] == "image" and blocks[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}


def test_chat_reasoning_effort_to_anthropic_thinking(oa_gateway, oa_mocks, oa_fresh):
    r = oa(oa_gateway).chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=USER, max_tokens=4000, reasoning_effort="low")
    assert r.choices[0].message.content == "Hello from Claude mock"
    body = anthropic_req(oa_mocks).json()
    # The mock refuses what the API refuses: budget >= 1024 and < max_tokens.
    assert body["thinking"]["type"] == "enabled" and 1024 <= body["thinking"]["budget_tokens"] < 4000
    assert "reasoning_effort" not in body


def test_chat_to_gemini(oa_gateway, oa_mocks, oa_fresh):
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "again"}]
    r = oa(oa_gateway).chat.completions.create(model="gemini/gemini-2.5-flash", messages=msgs, temperature=0.4, top_p=0.8, stop=["END"], max_tokens=100)
    assert r.object == "chat.completion" and r.choices[0].message.content == "Hello from Gemini mock"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (8, 6, 14)
    body = gemini_req(oa_mocks, "gemini-2.5-flash").json()
    assert gemini_text(body["systemInstruction"]) == "You are terse."
    assert [(c["role"], gemini_text(c)) for c in body["contents"]] == [("user", "hi"), ("model", "Hello."), ("user", "again")]
    gc = body["generationConfig"]
    assert (gc["temperature"], gc["topP"], gc["stopSequences"], gc["maxOutputTokens"]) == (0.4, 0.8, ["END"], 100)
    check_record(oa_records(oa_gateway, oa_fresh)[0], "gemini", "gemini-2.5-flash", (8, 6), stream=False)


def test_chat_stream_to_gemini(oa_gateway, oa_mocks, oa_fresh):
    text, args, chunks = [], [], []
    for chunk in oa(oa_gateway).chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER, stream=True, stream_options={"include_usage": True}):
        chat_pieces(chunk, time.monotonic(), text, args)
        chunks.append(chunk)
    assert "".join(p for p, _ in text) == "Hello from Gemini mock"
    assert any(c.finish_reason == "stop" for ch in chunks for c in ch.choices)
    assert chunks[-1].choices == [] and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (8, 6)
    assert_event_by_event(oa_mocks["gemini"], text)
    gemini_req(oa_mocks, "gemini-2.5-flash", stream=True)
    check_record(oa_records(oa_gateway, oa_fresh)[0], "gemini", "gemini-2.5-flash", (8, 6), stream=True)


def test_chat_tools_to_gemini(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    first = [{"role": "user", "content": "Weather in Paris?"}]
    r = c.chat.completions.create(model="gemini/gemini-2.5-flash", messages=first, tools=[WEATHER_TOOL], tool_choice="required")
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (tc,) = choice.message.tool_calls
    assert tc.id and tc.function.name == "get_weather" and json.loads(tc.function.arguments) == {"city": "Paris", "unit": "c"}
    body = gemini_req(oa_mocks, "gemini-2.5-flash").json()
    decls = [d for t in body["tools"] for d in t.get("functionDeclarations", [])]
    assert [(d["name"], d["description"]) for d in decls] == [("get_weather", "Weather for a city")]
    assert set((decls[0].get("parameters") or decls[0].get("parametersJsonSchema"))["properties"]) == {"city", "unit"}
    assert body["toolConfig"]["functionCallingConfig"]["mode"] == "ANY"

    # The second turn names the call by an id of the client's choosing; the
    # gateway finds its function name for functionResponse.
    second = first + [{"role": "assistant", "content": None, "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                      {"role": "tool", "tool_call_id": "call_abc", "content": '{"temp": 22}'}]
    r2 = c.chat.completions.create(model="gemini/gemini-2.5-flash", messages=second, tools=[WEATHER_TOOL])
    assert r2.choices[0].message.content.startswith("Tool said:") and "22" in r2.choices[0].message.content
    contents = gemini_req(oa_mocks, "gemini-2.5-flash").json()["contents"]
    assert [c["role"] for c in contents][:2] == ["user", "model"]
    calls = [p["functionCall"] for p in contents[1]["parts"] if "functionCall" in p]
    assert len(calls) == 1 and calls[0]["name"] == "get_weather" and calls[0]["args"] == {"city": "Paris"}
    responses = [p["functionResponse"] for c in contents[2:] for p in c["parts"] if "functionResponse" in p]
    assert len(responses) == 1 and responses[0]["name"] == "get_weather" and "22" in json.dumps(responses[0]["response"])

    # Streamed: the call arrives as tool_call deltas the SDK accumulates.
    with c.chat.completions.stream(model="gemini/gemini-2.5-flash", messages=first, tools=[WEATHER_TOOL, TIME_TOOL]) as s:
        final = s.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(t.function.name, json.loads(t.function.arguments)) for t in calls] == [("get_weather", {"city": "Paris", "unit": "c"}), ("get_time", {"city": "Rome"})]
    assert len({t.id for t in calls}) == 2, "distinct tool call ids"
    assert final.choices[0].finish_reason == "tool_calls"
    gemini_req(oa_mocks, "gemini-2.5-flash", stream=True)


def test_chat_images_to_gemini(oa_gateway, oa_mocks, oa_fresh):
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]
    r = oa(oa_gateway).chat.completions.create(model="gemini/gemini-2.5-flash", messages=[{"role": "user", "content": content}])
    assert r.choices[0].message.content == "Hello from Gemini mock"
    parts = gemini_req(oa_mocks, "gemini-2.5-flash").json()["contents"][0]["parts"]
    assert parts[0] == {"text": "What is this?"}
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}


def test_chat_response_format_to_gemini(oa_gateway, oa_mocks, oa_fresh):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    c = oa(oa_gateway)
    c.chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER,
                              response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}})
    gc = gemini_req(oa_mocks, "gemini-2.5-flash").json()["generationConfig"]
    assert gc["responseMimeType"] == "application/json" and gc["responseJsonSchema"] == schema
    c.chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER, response_format={"type": "json_object"})
    gc = gemini_req(oa_mocks, "gemini-2.5-flash").json()["generationConfig"]
    assert gc["responseMimeType"] == "application/json"


def test_chat_finish_reasons_from_gemini(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    r = c.chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER, max_tokens=3)
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content == "Hello from"
    assert gemini_req(oa_mocks, "gemini-2.5-flash").json()["generationConfig"]["maxOutputTokens"] == 3
    r = c.chat.completions.create(model="gemini/gemini-2.5-flash", messages=[{"role": "user", "content": "[[blocked]]"}])
    assert r.choices[0].finish_reason == "content_filter" and not r.choices[0].message.content
    gemini_req(oa_mocks, "gemini-2.5-flash")


def test_chat_gemini_reasoning_and_cached_usage(oa_gateway, oa_mocks, oa_fresh):
    r = oa(oa_gateway).chat.completions.create(model="gemini/gemini-thinking-1", messages=USER)
    u = r.usage
    # candidates 6 + thoughts 10 (OpenAI counts reasoning in completion tokens); cached 3 of the 8 prompt tokens.
    assert (u.prompt_tokens, u.completion_tokens) == (8, 16)
    assert u.completion_tokens_details.reasoning_tokens == 10 and u.prompt_tokens_details.cached_tokens == 3
    gemini_req(oa_mocks, "gemini-thinking-1")


def test_chat_to_vertex(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    r = c.chat.completions.create(model="vertex/gemini-pro", messages=USER)
    assert r.choices[0].message.content == "Hello from Vertex mock"
    assert gemini_text(gemini_req(oa_mocks, "gemini-pro", provider="vertex").json()["contents"][0]) == "hi"
    # The record names the model the provider says answered (as on the passthrough routes).
    assert r.model == oa_mocks["vertex"].GEMINI_MODEL
    check_record(oa_records(oa_gateway, oa_fresh)[0], "vertex", r.model, (8, 6), stream=False)
    n = oa_gateway.settled_count()
    text, args = [], []
    for chunk in c.chat.completions.create(model="vertex/gemini-pro", messages=USER, stream=True):
        chat_pieces(chunk, time.monotonic(), text, args)
    assert "".join(p for p, _ in text) == "Hello from Vertex mock"
    assert_event_by_event(oa_mocks["vertex"], text)
    gemini_req(oa_mocks, "gemini-pro", stream=True, provider="vertex")
    check_record(oa_records(oa_gateway, n)[0], "vertex", oa_mocks["vertex"].GEMINI_MODEL, (8, 6), stream=True)


def test_chat_to_azure(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    r = c.chat.completions.create(model="azure/gpt-4o", messages=USER)
    assert r.choices[0].message.content == "Hello from the mock"
    up = only(oa_mocks, "azure", "/openai/deployments/gpt-4o/chat/completions")
    assert up.query == f"api-version={AZURE_API_VERSION}"
    assert up.headers["api-key"] == KEYS["azure"] and "authorization" not in up.headers
    assert up.json()["messages"] == USER and up.json().get("model", "gpt-4o") == "gpt-4o"
    check_record(oa_records(oa_gateway, oa_fresh)[0], "azure", tokens=(11, 5))
    text, args = [], []
    for chunk in c.chat.completions.create(model="azure/gpt-4o", messages=USER, stream=True):
        chat_pieces(chunk, time.monotonic(), text, args)
    assert "".join(p for p, _ in text) == "Hello from the mock"
    assert_event_by_event(oa_mocks["azure"], text)
    only(oa_mocks, "azure", "/openai/deployments/gpt-4o/chat/completions")


def test_chat_to_ollama(oa_gateway, oa_mocks, oa_fresh):
    r = oa(oa_gateway).chat.completions.create(model="ollama/llama3.1:8b", messages=USER)
    assert r.choices[0].message.content == "Hello from the mock"
    up = only(oa_mocks, "ollama", "/v1/chat/completions")
    assert up.json() == {"model": "llama3.1:8b", "messages": USER}
    assert not any(h in up.headers for h in ("authorization", "api-key", "x-api-key", "x-goog-api-key"))
    check_record(oa_records(oa_gateway, oa_fresh)[0], "ollama", "llama3.1:8b", (11, 5))


def test_chat_to_openai_compatible_provider(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    r = c.chat.completions.create(model="mistral/mistral-small-latest", messages=USER, temperature=0.1)
    assert r.choices[0].message.content == "Hello from the mock" and r.model == "mistral-small-latest"
    up = only(oa_mocks, "mistral", "/v1/chat/completions")
    assert up.headers["authorization"] == f"Bearer {OA_KEYS['mistral']}"
    assert up.json() == {"model": "mistral-small-latest", "messages": USER, "temperature": 0.1}
    check_record(oa_records(oa_gateway, oa_fresh)[0], "mistral", "mistral-small-latest", (11, 5))
    text, args = [], []
    for chunk in c.chat.completions.create(model="mistral/mistral-small-latest", messages=USER, stream=True):
        chat_pieces(chunk, time.monotonic(), text, args)
    assert "".join(p for p, _ in text) == "Hello from the mock"
    assert_event_by_event(oa_mocks["mistral"], text)
    only(oa_mocks, "mistral", "/v1/chat/completions")


# ============================================================================
# AzureOpenAI client pointed at /openai, x-bf-azure-endpoint
# ============================================================================

def azure_client(gw, endpoint=None):
    headers = {"x-bf-azure-endpoint": endpoint} if endpoint else None
    return openai.AzureOpenAI(api_key="client-azure-key", api_version="2024-02-01", azure_endpoint=f"{gw.url}/openai",
                              default_headers=headers, max_retries=0)


def configured_azure_key_stays_home(mocks):
    for name, m in mocks.items():
        if name != "azure":
            for r in m.requests:
                assert KEYS["azure"] not in json.dumps(r.headers) + r.query + r.body.decode("utf-8", "replace"), f"the configured Azure key reached {name}"


def test_azure_client_without_endpoint_header_uses_configured_azure(oa_gateway, oa_mocks, oa_fresh):
    r = azure_client(oa_gateway).chat.completions.create(model="gpt-4o", messages=USER)
    assert r.choices[0].message.content == "Hello from the mock"
    up = only(oa_mocks, "azure", "/openai/deployments/gpt-4o/chat/completions")
    assert up.headers["api-key"] == KEYS["azure"]
    assert f"api-version={AZURE_API_VERSION}" in up.query.split("&"), up.query  # the key's api_version replaces the client's
    check_record(oa_records(oa_gateway, oa_fresh)[0], "azure")


def test_azure_client_endpoint_refused_without_direct_keys(oa_gateway, oa_mocks, oa_fresh):
    with pytest.raises(openai.BadRequestError) as e:
        azure_client(oa_gateway, oa_mocks["azure-direct"].url).chat.completions.create(model="gpt-4o", messages=USER)
    assert e.value.response.json()["error"]["type"] == "invalid_azure_endpoint"
    assert e.value.response.headers["content-type"].startswith("application/json")
    nothing_sent(oa_mocks)


def test_azure_client_endpoint_with_direct_keys(oa_direct_gateway, oa_mocks, oa_fresh):
    gw = oa_direct_gateway
    n = gw.settled_count()
    r = azure_client(gw, oa_mocks["azure-direct"].url).chat.completions.create(model="gpt-4o", messages=USER)
    assert r.choices[0].message.content == "Hello from the mock"
    configured_azure_key_stays_home(oa_mocks)
    up = only(oa_mocks, "azure-direct", "/openai/deployments/gpt-4o/chat/completions")
    assert up.headers["api-key"] == "client-azure-key" and "authorization" not in up.headers
    assert "api-version=" in up.query, up.query
    check_record(oa_records(gw, n)[0], "azure")
    # Streaming too, to the same client-named endpoint.
    text = "".join(ch.choices[0].delta.content or "" for ch in
                   azure_client(gw, oa_mocks["azure-direct"].url).chat.completions.create(model="gpt-4o", messages=USER, stream=True) if ch.choices)
    assert text == "Hello from the mock"
    configured_azure_key_stays_home(oa_mocks)
    only(oa_mocks, "azure-direct", "/openai/deployments/gpt-4o/chat/completions")


@pytest.mark.parametrize("endpoint", ["http://10.0.0.1:1", "https://evil.example", "http://127.0.0.1.evil.example:80", "http://localhost:1"])
def test_azure_client_endpoint_not_in_allowlist(endpoint, oa_direct_gateway, oa_mocks, oa_fresh):
    t0 = time.monotonic()
    with pytest.raises(openai.BadRequestError) as e:
        azure_client(oa_direct_gateway, endpoint).chat.completions.create(model="gpt-4o", messages=USER)
    assert e.value.response.json()["error"]["type"] == "invalid_azure_endpoint"
    assert time.monotonic() - t0 < 1.5, "the gateway tried to reach the endpoint"
    nothing_sent(oa_mocks)


# ============================================================================
# Responses
# ============================================================================

def test_responses_to_anthropic(oa_gateway, oa_mocks, oa_fresh):
    r = oa(oa_gateway).responses.create(model="anthropic/claude-sonnet-4-5", input="Say hi", instructions="Be brief.")
    assert r.object == "response" and r.status == "completed"
    assert r.output_text == "Hello from Claude mock"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (13, 7)
    body = anthropic_req(oa_mocks).json()
    assert body["model"] == "claude-sonnet-4-5" and body["max_tokens"] == OA_DEFAULT_MAX_TOKENS
    assert text_of(body["system"]) == "Be brief."
    assert [(m["role"], text_of(m["content"])) for m in body["messages"]] == [("user", "Say hi")]
    check_record(oa_records(oa_gateway, oa_fresh)[0], "anthropic", "claude-sonnet-4-5-20250929", (13, 7), stream=False)
    oa(oa_gateway).responses.create(model="anthropic/claude-sonnet-4-5", input=[{"role": "user", "content": "hello"}], max_output_tokens=77)
    body = anthropic_req(oa_mocks).json()
    assert body["max_tokens"] == 77 and text_of(body["messages"][0]["content"]) == "hello"


def test_responses_stream_to_anthropic(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    types, text = [], []
    for ev in c.responses.create(model="anthropic/claude-sonnet-4-5", input="Say hi", stream=True):
        types.append(ev.type)
        if ev.type == "response.output_text.delta":
            text.append((ev.delta, time.monotonic()))
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    assert "".join(p for p, _ in text) == "Hello from Claude mock"
    assert_event_by_event(oa_mocks["anthropic"], text)
    assert anthropic_req(oa_mocks).json()["stream"] is True
    check_record(oa_records(oa_gateway, oa_fresh)[0], "anthropic", "claude-sonnet-4-5-20250929", (13, 7), stream=True)

    with c.responses.stream(model="anthropic/claude-sonnet-4-5", input="Say hi") as s:
        streamed = "".join(ev.delta for ev in s if ev.type == "response.output_text.delta")
        final = s.get_final_response()
    assert streamed == "Hello from Claude mock" and final.output_text == "Hello from Claude mock"
    assert final.status == "completed" and final.usage.output_tokens == 7
    anthropic_req(oa_mocks)


def test_responses_to_openai_as_is(oa_gateway, oa_mocks, oa_fresh):
    r = oa(oa_gateway).responses.create(model="openai/gpt-4.1-mini", input="hi", instructions="Be brief.", store=False)
    assert r.output_text == "Responses from the mock"
    up = only(oa_mocks, "openai", "/v1/responses")
    assert up.headers["authorization"] == f"Bearer {KEYS['openai']}"
    assert up.json() == {"model": "gpt-4.1-mini", "input": "hi", "instructions": "Be brief.", "store": False}
    check_record(oa_records(oa_gateway, oa_fresh)[0], "openai", "gpt-4.1-mini-2025-04-14", (21, 6))
    with oa(oa_gateway, v1=True).responses.stream(model="openai/gpt-4.1-mini", input="hi") as s:
        assert s.get_final_response().output_text == "Responses from the mock"
    assert only(oa_mocks, "openai", "/v1/responses").json()["model"] == "gpt-4.1-mini"


# ============================================================================
# Embeddings, models, other paths
# ============================================================================

def test_embeddings_to_gemini(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    r = c.embeddings.create(model="gemini/text-embedding-004", input=["a", "b"])  # the SDK asks for base64
    assert [d.embedding for d in r.data] == [[0.5, 0.25, 0.125], [0.5, 0.25, 0.25]]
    assert [d.index for d in r.data] == [0, 1] and r.object == "list"
    up = only(oa_mocks, "gemini", "/v1beta/models/text-embedding-004:batchEmbedContents")
    assert up.headers["x-goog-api-key"] == KEYS["gemini"]
    assert up.json() == {"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
                                      {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}}]}
    check_record(oa_records(oa_gateway, oa_fresh)[0], "gemini", "text-embedding-004")
    r = c.embeddings.create(model="gemini/text-embedding-004", input="single", encoding_format="float")
    assert [d.embedding for d in r.data] == [[0.5, 0.25, 0.125]]
    up = only(oa_mocks, "gemini", "/v1beta/models/text-embedding-004:batchEmbedContents")
    assert [q["content"]["parts"][0]["text"] for q in up.json()["requests"]] == ["single"]


def test_embeddings_to_openai(oa_gateway, oa_mocks, oa_fresh):
    r = oa(oa_gateway).embeddings.create(model="openai/text-embedding-3-small", input="hello")
    assert r.data[0].embedding == [0.25, -0.5, 0.125]
    up = only(oa_mocks, "openai", "/v1/embeddings")
    assert up.json()["model"] == "text-embedding-3-small" and up.json()["input"] == "hello"
    check_record(oa_records(oa_gateway, oa_fresh)[0], "openai", "text-embedding-3-small", (4, 0))


@pytest.mark.parametrize("v1", [False, True], ids=["openai", "openai-v1"])
def test_models_list(v1, oa_gateway, oa_mocks, oa_fresh):
    page = oa(oa_gateway, v1=v1).models.list()
    ids = [m.id for m in page]
    for p in ("openai", "anthropic", "azure", "gemini", "vertex", "ollama", "mistral"):
        assert any(i.startswith(f"{p}/") for i in ids), f"no {p}/ model in {ids}"
    assert all("/" in i for i in ids), ids
    assert all(m.object == "model" for m in page)
    for m in oa_mocks.values():
        assert all(r.method == "GET" for r in m.take()), "listing models sends nothing but GETs"


def test_other_paths_forward_to_openai(oa_gateway, oa_mocks, oa_fresh, tmp_path):
    data = b'{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{}}\n' * 50
    f = tmp_path / "batch.jsonl"
    f.write_bytes(data)
    created = oa(oa_gateway, v1=True).files.create(file=f.open("rb"), purpose="batch")
    assert created.id == "file-abc123" and created.filename == "batch.jsonl"
    up = only(oa_mocks, "openai", "/v1/files")
    assert up.headers["authorization"] == f"Bearer {KEYS['openai']}"
    assert up.headers["content-type"].startswith("multipart/form-data; boundary=") and data in up.body
    r = httpx.get(f"{oa_gateway.url}/openai/v1/files", headers={"authorization": "Bearer dummy-key"}, timeout=10)
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "file-abc123"
    only(oa_mocks, "openai", "/v1/files", method="GET")


def test_other_paths_without_v1_forward_to_openai_v1(oa_gateway, oa_mocks, oa_fresh):
    # base_url .../openai (no /v1): the SDK sends /openai/files; OpenAI's path is /v1/files.
    listed = oa(oa_gateway).files.list()
    assert [f.id for f in listed] == ["file-abc123"]
    only(oa_mocks, "openai", "/v1/files", method="GET")


# ============================================================================
# Errors
# ============================================================================

@pytest.mark.parametrize("status,exc,client_status", [
    (429, openai.RateLimitError, 429), (401, openai.AuthenticationError, 401), (400, openai.BadRequestError, 400),
    (404, openai.NotFoundError, 404), (529, openai.InternalServerError, 503)])
def test_anthropic_errors_in_openai_shape(status, exc, client_status, oa_gateway, oa_mocks, oa_fresh):
    with pytest.raises(exc) as e:
        oa(oa_gateway).chat.completions.create(model=f"anthropic/claude-fail-{status}", messages=USER)
    err = e.value
    assert err.status_code == client_status
    assert set(err.response.json()["error"]) >= {"message", "type", "param", "code"}, err.response.text
    assert f"mock failure {status}" in err.response.json()["error"]["message"]
    if status == 429:
        assert err.response.headers.get("retry-after") == "7"
    anthropic_req(oa_mocks)
    check_record(oa_records(oa_gateway, oa_fresh)[0], "anthropic", status=client_status)


def test_anthropic_error_on_a_stream(oa_gateway, oa_mocks, oa_fresh):
    with pytest.raises(openai.RateLimitError) as e:
        oa(oa_gateway).chat.completions.create(model="anthropic/claude-fail-429", messages=USER, stream=True)
    assert e.value.response.headers.get("retry-after") == "7"
    anthropic_req(oa_mocks)


def test_gemini_rate_limit_error(oa_gateway, oa_mocks, oa_fresh):
    with pytest.raises(openai.RateLimitError) as e:
        oa(oa_gateway).chat.completions.create(model="gemini/gemini-fail-429", messages=USER)
    assert set(e.value.response.json()["error"]) >= {"message", "type", "param", "code"}
    assert e.value.response.headers.get("retry-after") == "7"
    gemini_req(oa_mocks, "gemini-fail-429")


def test_openai_errors_pass_through(oa_gateway, oa_mocks, oa_fresh):
    with pytest.raises(openai.RateLimitError) as e:
        oa(oa_gateway).chat.completions.create(model="gpt-fail-429", messages=USER)
    assert "mock failure 429" in e.value.response.json()["error"]["message"] and e.value.response.headers.get("retry-after") == "7"
    only(oa_mocks, "openai", "/v1/chat/completions")


BAD_INPUTS = {
    "not-json": (b'{"model": "anthropic/claude-3-sonnet-20240229", "messages": [', None),
    "no-model": (json.dumps({"messages": USER}).encode(), "model"),
    "anthropic-n": (json.dumps({"model": "anthropic/claude-3-sonnet-20240229", "messages": USER, "n": 2}).encode(), "n"),
    "anthropic-logprobs": (json.dumps({"model": "anthropic/claude-3-sonnet-20240229", "messages": USER, "logprobs": True}).encode(), "logprobs"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_400_and_sends_nothing(case, oa_gateway, oa_mocks, oa_fresh):
    body, param = BAD_INPUTS[case]
    r = httpx.post(f"{oa_gateway.url}/openai/v1/chat/completions", content=body,
                   headers={"content-type": "application/json", "authorization": "Bearer dummy-key"}, timeout=10)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["message"], err
    if param:
        assert err["param"] == param, err
    nothing_sent(oa_mocks)
    if case == "anthropic-n":
        with pytest.raises(openai.BadRequestError) as e:
            oa(oa_gateway).chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=USER, n=2)
        assert e.value.param == "n"
        nothing_sent(oa_mocks)


def test_body_over_the_limit_is_413(oa_gateway, oa_mocks, oa_fresh):
    size = OA_MAX_BODY + 1024 * 1024  # 26 MiB against a 25 MiB limit
    head = json.dumps({"model": "anthropic/claude-3-sonnet-20240229", "messages": [{"role": "user", "content": "X"}]})[:-4].encode()
    tail = b'"}]}'
    pad = size - len(head) - len(tail)
    s = socket.create_connection(("127.0.0.1", oa_gateway.port), timeout=20)
    s.sendall(b"POST /openai/v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              b"authorization: Bearer dummy-key\r\ncontent-length: %d\r\n\r\n" % size)

    def send_body():  # the gateway may answer and close before taking it all
        try:
            s.sendall(head)
            chunk = b"X" * (1024 * 1024)
            left = pad
            while left > 0:
                s.sendall(chunk[:left])
                left -= min(left, len(chunk))
            s.sendall(tail)
        except OSError:
            pass

    t = threading.Thread(target=send_body, daemon=True)
    t.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            got = s.recv(65536)
            if not got:
                break
            answer += got
    finally:
        t.join(20)
        s.close()
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"413", answer[:300]
    nothing_sent(oa_mocks)


@pytest.mark.parametrize("size", [100 * 1024, 20 * 1000 * 1000], ids=["100KiB", "20MB"])
def test_large_request_arrives_whole(size, oa_gateway, oa_mocks, oa_fresh):
    text = ("lorem ipsum " * (size // 12 + 1))[:size]
    r = oa(oa_gateway, timeout=60).chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=[{"role": "user", "content": text}])
    assert r.choices[0].message.content == "Hello from Claude mock"
    body = anthropic_req(oa_mocks).json()
    assert len(body["messages"]) == 1 and text_of(body["messages"][0]["content"]) == text


# ============================================================================
# Virtual keys
# ============================================================================

def test_virtual_key_limits_providers(oa_vk_gateway, oa_mocks, oa_fresh):
    gw = oa_vk_gateway
    n = gw.settled_count()
    c = oa(gw, default_headers={"x-bf-vk": VK_SECRETS["openai-only"]})
    assert c.chat.completions.create(model="openai/gpt-4o-mini", messages=USER).choices[0].message.content == "Hello from the mock"
    up = only(oa_mocks, "openai", "/v1/chat/completions")
    assert up.headers["authorization"] == f"Bearer {KEYS['openai']}" and "x-bf-vk" not in up.headers
    rec = check_record(oa_records(gw, n)[0], "openai")
    assert rec["virtual_key"] == "openai-only"
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=USER)
    assert e.value.status_code == 403 and e.value.response.json()["error"]["type"] == "forbidden" and "request_id" in e.value.response.json()["error"]
    nothing_sent(oa_mocks)
    # The same key as the SDK's api key, and in x-tollgate-vk.
    for client in (oa(gw, api_key=VK_SECRETS["openai-only"]), oa(gw, default_headers={"x-tollgate-vk": VK_SECRETS["openai-only"]})):
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER)
        nothing_sent(oa_mocks)
        assert client.chat.completions.create(model="gpt-4o-mini", messages=USER).choices[0].message.content == "Hello from the mock"
        only(oa_mocks, "openai", "/v1/chat/completions")


def test_virtual_key_model_globs_match_the_native_model(oa_vk_gateway, oa_mocks, oa_fresh):
    c = oa(oa_vk_gateway, default_headers={"x-bf-vk": VK_SECRETS["haiku-only"]})
    r = c.chat.completions.create(model="anthropic/claude-3-haiku-20240307", messages=USER)
    assert r.choices[0].message.content == "Hello from Claude mock"
    assert anthropic_req(oa_mocks).json()["model"] == "claude-3-haiku-20240307"
    for model in ("anthropic/claude-3-sonnet-20240229", "openai/gpt-4o-mini"):
        with pytest.raises(openai.PermissionDeniedError) as e:
            c.chat.completions.create(model=model, messages=USER)
        assert e.value.response.json()["error"]["type"] == "forbidden"
        nothing_sent(oa_mocks)
    with pytest.raises(openai.AuthenticationError) as e:
        oa(oa_vk_gateway, default_headers={"x-bf-vk": "vk-unknown"}).chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert e.value.response.json()["error"]["type"] == "virtual_key_invalid"
    nothing_sent(oa_mocks)


# ============================================================================
# Async client
# ============================================================================

def test_async_client_chat_and_stream(oa_gateway, oa_mocks, oa_fresh):
    async def run():
        c = aoa(oa_gateway)
        r = await c.chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=USER)
        assert r.choices[0].message.content == "Hello from Claude mock"
        anthropic_req(oa_mocks)
        text, args, usage = [], [], None
        async for chunk in await c.chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER, stream=True, stream_options={"include_usage": True}):
            chat_pieces(chunk, time.monotonic(), text, args)
            usage = chunk.usage or usage
        assert "".join(p for p, _ in text) == "Hello from Gemini mock" and usage.completion_tokens == 6
        assert_event_by_event(oa_mocks["gemini"], text)
        gemini_req(oa_mocks, "gemini-2.5-flash", stream=True)
        oa_mocks["anthropic"].clear()
        text = []
        async for chunk in await c.chat.completions.create(model="anthropic/claude-3-sonnet-20240229", messages=USER, stream=True):
            chat_pieces(chunk, time.monotonic(), text, args)
        assert "".join(p for p, _ in text) == "Hello from Claude mock"
        assert_event_by_event(oa_mocks["anthropic"], text)
        anthropic_req(oa_mocks)
        await c.close()

    asyncio.run(run())
    recs = oa_records(oa_gateway, oa_fresh, 3)
    assert [(r["provider"], r["stream"]) for r in recs] == [("anthropic", False), ("gemini", True), ("anthropic", True)]


def test_cut_anthropic_stream_ends_cleanly_with_an_error_and_keeps_usage(oa_gateway, oa_mocks, oa_fresh):
    """A provider stream cut midway: the client gets what arrived, then an
    error event (the SDK raises) and a cleanly ended body; the record keeps
    the usage seen (message_start's input tokens)."""
    c = oa(oa_gateway)
    text = []
    with pytest.raises(openai.APIError) as e:
        for chunk in c.chat.completions.create(model="anthropic/claude-cut-1", messages=USER, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
    assert "".join(text) == "Hello from"
    assert "before completion" in str(e.value)
    # The raw stream: no [DONE], an error object last, the body properly ended.
    r = httpx.post(f"{oa_gateway.url}/openai/v1/chat/completions", json={"model": "anthropic/claude-cut-2", "messages": USER, "stream": True}, timeout=10)
    events = [l[6:] for l in r.text.splitlines() if l.startswith("data: ")]
    assert events and "[DONE]" not in events
    assert "error" in json.loads(events[-1])
    recs = oa_records(oa_gateway, oa_fresh, count=2)
    for rec in recs:
        assert rec["route"] == "/openai" and rec["provider"] == "anthropic" and rec["stream"] is True, rec
        assert rec["input_tokens"] == 13 and rec["error"] == "upstream_error", rec


def test_client_gone_mid_stream_ends_the_provider_request(oa_gateway, oa_mocks, oa_fresh):
    """The client closes after the first translated event: the gateway drops
    the provider connection at once (the mock stops being able to send) and
    records client_disconnected with the usage seen."""
    body = json.dumps({"model": "anthropic/claude-sonnet-4-5", "messages": USER, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", oa_gateway.port), timeout=10)
    s.sendall(b"POST /openai/v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
              b"content-length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while b"data: " not in got:
        got += s.recv(65536)
    s.close()
    rec = oa_records(oa_gateway, oa_fresh)[0]
    assert rec["error"] == "client_disconnected", rec
    assert rec["input_tokens"] == 13, rec
    time.sleep(1.0)
    # Fewer events left the mock than the stream has (10): it was cut off.
    sent = [e for e in oa_mocks["anthropic"].sent_log if e[0] == "/v1/messages"]
    assert 1 <= len(sent) < 8, len(sent)
