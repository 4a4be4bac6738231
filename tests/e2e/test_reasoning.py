"""Reasoning models through /openai (SPEC 8, "Reasoning models"), end to end
with the real openai SDK: the agent loop's second turn, after a tool call,
against mocks that enforce the providers' own replay rules (Anthropic's
thinking blocks before the tool use, Gemini 3's thought signatures).

Four client behaviours for each model: the SDK's message object sent back;
a message rebuilt from id, name and arguments only (as agent frameworks
do); a streamed first turn assembled from deltas; the async path. Then the
gateway's memory: private to its owner, shared through Redis, surviving a
restart, and holding nothing else of the conversation."""

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import openai
import pytest

from conftest import Gateway, redis_server

VK = {"a": "vk-reason-a-7c1d", "b": "vk-reason-b-2e9f"}
EXTRA = """  virtual_keys:
    - { name: team-a, secret: env.T_VK_A }
    - { name: team-b, secret: env.T_VK_B }
  openai_compat: { reasoning_ttl_s: 600 }
"""
ENV = {"T_VK_A": VK["a"], "T_VK_B": VK["b"]}
QUESTION = "What is the weather in Paris, in zanzibar-units?"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}]
TOOLS2 = TOOLS + [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]

CLAUDE = ["anthropic/claude-sonnet-4-5", "vertex/claude-sonnet-4-5", "anthropic/claude-opus-4-7"]
GEMINI3 = ["gemini/gemini-3-pro-preview", "vertex/gemini-3-pro-preview"]
MODELS = CLAUDE + GEMINI3


def start(mocks, tmp, extra=""):
    return Gateway(mocks, tmp, extra=EXTRA + extra, env=ENV)


@pytest.fixture(scope="module")
def rg(mocks):
    with tempfile.TemporaryDirectory(prefix="tollgate-e2e-reasoning-") as tmp:
        gw = start(mocks, tmp)
        gw.tmp = tmp
        yield gw
        gw.stop()


def client(gw, vk="a"):
    return openai.OpenAI(base_url=gw.url + "/openai/v1", api_key=VK[vk], max_retries=0)


def first_turn(c, model, tools=TOOLS, **kw):
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": QUESTION}], tools=tools, reasoning_effort="low", **kw)


def rebuilt(msg):
    """The assistant turn as agent frameworks rebuild it: ids, names and
    arguments only."""
    return {"role": "assistant", "content": msg.content,
            "tool_calls": [{"id": tc.id, "type": "function", "function": {"name": tc.function.name, "arguments": tc.function.arguments}} for tc in msg.tool_calls]}


def second_turn(c, model, assistant, tool_calls, tools=TOOLS, **kw):
    msgs = [{"role": "user", "content": QUESTION}, assistant] + [{"role": "tool", "tool_call_id": tc["id"] if isinstance(tc, dict) else tc.id, "content": "22C"} for tc in tool_calls]
    return c.chat.completions.create(model=model, messages=msgs, tools=tools, reasoning_effort="low", **kw)


def mock_for(mocks, model):
    return mocks["vertex"] if model.startswith("vertex/") else mocks["anthropic" if "claude" in model else "gemini"]


def check_replayed(mocks, model):
    """What the provider got on the second turn carries what it issued."""
    body = mock_for(mocks, model).last().json()
    if "claude" in model:
        assistant = body["messages"][1]
        assert assistant["role"] == "assistant" and assistant["content"][0]["type"] == "thinking", assistant
    else:
        model_turn = next(c for c in body["contents"] if c.get("role") == "model")
        first_call = next(p for p in model_turn["parts"] if "functionCall" in p)
        assert first_call.get("thoughtSignature"), model_turn


def assert_final(answer):
    assert answer.choices[0].finish_reason == "stop"
    assert "22C" in answer.choices[0].message.content


@pytest.mark.parametrize("model", MODELS)
def test_the_sdk_message_object_sent_back(rg, mocks, model):
    c = client(rg)
    first = first_turn(c, model)
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    extra = msg.model_dump(exclude_none=True)
    assert extra.get("reasoning_content"), "the reasoning text comes back"
    if "claude" in model:
        assert extra["thinking_blocks"][0]["type"] == "thinking" and extra["thinking_blocks"][0]["signature"]
    else:
        assert extra["tool_calls"][0]["extra_content"]["google"]["thought_signature"]
    assert_final(second_turn(c, model, extra, msg.tool_calls))
    check_replayed(mocks, model)


@pytest.mark.parametrize("model", MODELS)
def test_a_rebuilt_message_is_completed_from_the_gateways_memory(rg, mocks, model):
    c = client(rg)
    msg = first_turn(c, model).choices[0].message
    assert_final(second_turn(c, model, rebuilt(msg), msg.tool_calls))
    check_replayed(mocks, model)


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_first_turn_assembled_from_deltas(rg, mocks, model):
    c = client(rg)
    content, reasoning, calls = "", "", {}
    for chunk in first_turn(c, model, stream=True):
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        content += d.content or ""
        reasoning += (d.model_extra or {}).get("reasoning_content") or ""
        for tc in d.tool_calls or []:
            cur = calls.setdefault(tc.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            cur["id"] = tc.id or cur["id"]
            cur["function"]["name"] += (tc.function.name or "") if tc.function else ""
            cur["function"]["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert reasoning, "delta.reasoning_content streamed"
    assistant = {"role": "assistant", "content": content or None, "tool_calls": [calls[k] for k in sorted(calls)]}
    assert_final(second_turn(c, model, assistant, assistant["tool_calls"]))
    check_replayed(mocks, model)


def run_async(c, model, messages):
    job = c.chat.completions.create(model=model, messages=messages, tools=TOOLS, reasoning_effort="low", extra_headers={"x-bf-async": "true"})
    for _ in range(200):
        done = c.chat.completions.create(model=model, messages=messages, tools=TOOLS, reasoning_effort="low", extra_headers={"x-bf-async-id": job.id})
        if done.choices:
            return done
        time.sleep(0.05)
    pytest.fail("the job never finished")


@pytest.mark.parametrize("model", [CLAUDE[0], GEMINI3[0]])
def test_the_async_path(rg, mocks, model):
    c = client(rg)
    msg = run_async(c, model, [{"role": "user", "content": QUESTION}]).choices[0].message
    assert msg.tool_calls
    msgs = [{"role": "user", "content": QUESTION}, rebuilt(msg), {"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "22C"}]
    assert_final(run_async(c, model, msgs))
    check_replayed(mocks, model)


def test_redacted_and_several_thinking_blocks_with_parallel_tool_calls(rg, mocks):
    c = client(rg)
    model = "anthropic/claude-redacted-multi"
    msg = first_turn(c, model, tools=TOOLS2).choices[0].message
    blocks = msg.model_dump()["thinking_blocks"]
    assert [b["type"] for b in blocks] == ["thinking", "thinking", "redacted_thinking"]
    assert len(msg.tool_calls) == 2
    assert_final(second_turn(c, model, rebuilt(msg), msg.tool_calls, tools=TOOLS2))
    sent = mocks["anthropic"].last().json()["messages"][1]["content"]
    assert sent[:3] == blocks, "every block, in order, unmodified"
    assert [b["type"] for b in sent[3:]] == ["text", "tool_use", "tool_use"]


def test_parallel_gemini_calls_keep_the_first_calls_signature(rg, mocks):
    c = client(rg)
    model = "gemini/gemini-3-pro-preview"
    msg = first_turn(c, model, tools=TOOLS2).choices[0].message
    assert len(msg.tool_calls) == 2
    assert_final(second_turn(c, model, rebuilt(msg), msg.tool_calls, tools=TOOLS2))


@pytest.mark.parametrize("model", [CLAUDE[0], GEMINI3[0]])
def test_the_memory_is_private_to_its_owner(rg, mocks, model):
    """Another virtual key reusing the tool-call ids gets nothing: its turn is
    sent as written, and the provider's own 400 comes back."""
    msg = first_turn(client(rg, "a"), model).choices[0].message
    with pytest.raises(openai.BadRequestError) as e:
        second_turn(client(rg, "b"), model, rebuilt(msg), msg.tool_calls)
    text = str(e.value)
    assert ("must start with a thinking block" in text) if "claude" in model else ("missing a thought_signature" in text)


def test_a_turn_the_gateway_never_saw_is_sent_as_written(rg, mocks):
    c = client(rg)
    forged = {"role": "assistant", "content": None, "tool_calls": [{"id": "toolu_never_seen", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}
    with pytest.raises(openai.BadRequestError) as e:
        second_turn(c, CLAUDE[0], forged, forged["tool_calls"])
    assert "Expected `thinking` or `redacted_thinking`, but found `tool_use`" in str(e.value)
    sent = mocks["anthropic"].last().json()["messages"][1]["content"]
    assert [b["type"] for b in sent] == ["tool_use"]
    # A modified thinking block is refused by the provider, not repaired.
    msg = first_turn(c, CLAUDE[0]).choices[0].message
    tampered = msg.model_dump(exclude_none=True)
    tampered["thinking_blocks"][0]["thinking"] += " (edited)"
    with pytest.raises(openai.BadRequestError) as e:
        second_turn(c, CLAUDE[0], tampered, msg.tool_calls)
    assert "Invalid `signature`" in str(e.value)


def test_a_budget_above_the_maximum_is_refused_naming_both(rg, mocks):
    with pytest.raises(openai.BadRequestError) as e:
        client(rg).chat.completions.create(model=CLAUDE[0], messages=[{"role": "user", "content": "hi"}], reasoning_effort="medium", max_completion_tokens=1000)
    assert "1000" in str(e.value) and "8192" in str(e.value)


def test_the_memory_survives_a_restart_and_keeps_nothing_else(mocks):
    with tempfile.TemporaryDirectory(prefix="tollgate-e2e-reasoning-restart-") as tmp:
        gw = start(mocks, tmp)
        try:
            msg = first_turn(client(gw), CLAUDE[0]).choices[0].message
            gmsg = first_turn(client(gw), GEMINI3[0]).choices[0].message
        finally:
            gw.stop()
        db = Path(tmp) / "tollgate-reasoning.db"
        assert db.exists() and oct(db.stat().st_mode & 0o777) == "0o600"
        rows = sqlite3.connect(db).execute("SELECT owner, call_id, memo FROM memos").fetchall()
        assert {r[1] for r in rows} >= {tc.id for tc in msg.tool_calls} | {tc.id for tc in gmsg.tool_calls}
        for owner, _, memo in rows:
            assert owner == "vk:team-a"
            assert set(json.loads(memo)) <= {"thinking_blocks", "thought_signature"}
        everything = b"".join(p.read_bytes() for p in Path(tmp).glob("tollgate-reasoning.db*"))
        assert b"zanzibar" not in everything and b"Paris" not in everything, "no question, no arguments: only the providers' replay data"
        gw = start(mocks, tmp)
        try:
            assert_final(second_turn(client(gw), CLAUDE[0], rebuilt(msg), msg.tool_calls))
            assert_final(second_turn(client(gw), GEMINI3[0], rebuilt(gmsg), gmsg.tool_calls))
        finally:
            gw.stop()


@pytest.mark.skipif(__import__("shutil").which("redis-server") is None, reason="redis-server is not installed")
def test_a_turn_on_one_instance_and_the_next_on_another_through_redis(mocks, tmp_path):
    gws = []
    with redis_server() as (port, redis):
        try:
            extra = f"  redis: {{ url: 'redis://127.0.0.1:{port}', timeout_ms: 300 }}\n"
            for name in ("a", "b"):
                d = tmp_path / name
                d.mkdir()
                gws.append(start(mocks, str(d), extra))
            a, b = gws
            for model in (CLAUDE[0], GEMINI3[0]):
                msg = first_turn(client(a), model).choices[0].message
                assert_final(second_turn(client(b), model, rebuilt(msg), msg.tool_calls))
                with pytest.raises(openai.BadRequestError):
                    second_turn(client(b, "b"), model, rebuilt(msg), msg.tool_calls)
            ttl = subprocess.run(["redis-cli", "-p", str(port), "--scan", "--pattern", "*:rz:*"], capture_output=True, text=True).stdout.split()
            assert ttl, "the memos are in Redis"
            left = int(subprocess.run(["redis-cli", "-p", str(port), "TTL", ttl[0]], capture_output=True, text=True).stdout)
            assert 0 < left <= 600, "kept reasoning_ttl_s"
            # Redis gone: the turn is sent as written (the provider's 400), never a hang.
            redis.kill()
            redis.wait()
            msg = first_turn(client(a), CLAUDE[0]).choices[0].message
            with pytest.raises(openai.BadRequestError):
                second_turn(client(b), CLAUDE[0], rebuilt(msg), msg.tool_calls)
        finally:
            for g in gws:
                g.stop()


RESP_TOOLS = [{"type": "function", "name": "get_weather", "parameters": TOOLS[0]["function"]["parameters"]}]


def responses_turn(c, model, input, **kw):
    return c.responses.create(model=model, input=input, tools=RESP_TOOLS, reasoning={"effort": "low"}, **kw)


@pytest.mark.parametrize("model", [CLAUDE[0], GEMINI3[0]])
@pytest.mark.parametrize("how", ["output items sent back", "rebuilt calls only"])
def test_the_responses_api_carries_reasoning_items(rg, mocks, model, how):
    c = client(rg)
    first = responses_turn(c, model, QUESTION)
    kinds = [i.type for i in first.output]
    assert kinds[0] == "reasoning" and "function_call" in kinds, kinds
    assert first.output[0].summary and first.output[0].summary[0].text, "the reasoning text as the item's summary"
    calls = [i for i in first.output if i.type == "function_call"]
    if how == "output items sent back":
        items = [i.model_dump(exclude_none=True) for i in first.output]
    else:
        items = [{"type": "function_call", "call_id": i.call_id, "name": i.name, "arguments": i.arguments} for i in calls]
    items = [{"role": "user", "content": QUESTION}] + items + [{"type": "function_call_output", "call_id": i.call_id, "output": "22C"} for i in calls]
    second = responses_turn(c, model, items)
    assert second.status == "completed" and "22C" in second.output_text
    check_replayed(mocks, model)


@pytest.mark.parametrize("model", [CLAUDE[0], GEMINI3[0]])
def test_a_streamed_responses_turn_has_its_reasoning_item_first(rg, mocks, model):
    c = client(rg)
    done = [e.item for e in responses_turn(c, model, QUESTION, stream=True) if e.type == "response.output_item.done"]
    assert done[0].type == "reasoning" and done[0].summary
    calls = [i for i in done if i.type == "function_call"]
    items = [{"role": "user", "content": QUESTION}] + [{"type": "function_call", "call_id": i.call_id, "name": i.name, "arguments": i.arguments} for i in calls]
    items += [{"type": "function_call_output", "call_id": i.call_id, "output": "22C"} for i in calls]
    assert "22C" in responses_turn(c, model, items).output_text
    check_replayed(mocks, model)


def test_an_adaptive_only_claude_gets_adaptive_thinking(rg, mocks):
    """claude-opus-4-7 refuses a thinking budget: effort is mapped to
    output_config.effort (xhigh is max)."""
    c = client(rg)
    c.chat.completions.create(model="anthropic/claude-opus-4-7", messages=[{"role": "user", "content": "hi"}], reasoning_effort="xhigh")
    body = mocks["anthropic"].last().json()
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "max"}
    c.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}], reasoning_effort="low")
    assert mocks["anthropic"].last().json()["thinking"] == {"type": "enabled", "budget_tokens": 2048}


NODE_DIR = Path(__file__).parent / "node"


def test_the_node_sdk_runs_the_agent_loop(rg, mocks):
    """The README's loop, driven by the openai Node SDK (`make test` installs
    it in tests/e2e/node): a rebuilt turn, from a whole answer and from a
    stream assembled from its deltas, for Claude and Gemini 3."""
    assert shutil.which("node") and (NODE_DIR / "node_modules" / "openai").is_dir(), "make test installs node and the SDK (make node)"
    env = dict(os.environ, TOLLGATE_URL=rg.url, TOLLGATE_KEY=VK["a"])
    run = subprocess.run(["node", str(NODE_DIR / "reasoning_loop.mjs"), CLAUDE[0], GEMINI3[0]], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert [s["model"] for s in seen] == [CLAUDE[0], GEMINI3[0]]
    for s in seen:
        assert s["reasoning_content"] and s["streamed_reasoning"], s
        assert "22C" in s["whole"] and "22C" in s["streamed"], s
