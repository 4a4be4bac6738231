"""Prompt caching through `/openai` with the official OpenAI SDK (issue 31):
`cache_control` on content parts, system parts and tool definitions reaches
the Anthropic mock on the matching blocks (the mock enforces Anthropic's
limit of 4 breakpoints and its marker shape), and the record carries the
cache reads and writes the provider reported."""

import openai
import pytest

from test_openai_route import oa, oa_records

pytestmark = [pytest.mark.timeout(60), pytest.mark.openai_route]

EPH = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}, "cache_control": HOUR}


def test_breakpoints_reach_anthropic(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    r = c.chat.completions.create(
        model="anthropic/claude-cache-test",
        tools=[TOOL],
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "a long shared system prompt", "cache_control": HOUR}]},
            {"role": "user", "content": [{"type": "text", "text": "question", "cache_control": EPH}]},
        ],
    )
    assert r.choices[0].message is not None
    sent = oa_mocks["anthropic"].last().json()
    assert sent["system"] == [{"type": "text", "text": "a long shared system prompt", "cache_control": HOUR}]
    assert sent["tools"][0]["cache_control"] == HOUR
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "question", "cache_control": EPH}]
    # The mock reported 4 tokens written and 2 read for claude-cache-*.
    assert r.usage.prompt_tokens_details.cached_tokens == 2
    assert r.usage.prompt_tokens_details.cache_write_tokens == 4  # the SDK names the field too
    rec = oa_records(oa_gateway, oa_fresh)[0]
    assert (rec["cache_read_tokens"], rec["cache_write_tokens"], rec["input_tokens"]) == (2, 4, 19), rec


def test_streamed_request_keeps_markers(oa_gateway, oa_mocks, oa_fresh):
    c = oa(oa_gateway)
    text = ""
    for chunk in c.chat.completions.create(
        model="anthropic/claude-cache-test", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "shared", "cache_control": EPH}, {"role": "user", "content": "q"}],
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text
    sent = oa_mocks["anthropic"].last().json()
    assert sent["system"] == [{"type": "text", "text": "shared", "cache_control": EPH}]
    rec = oa_records(oa_gateway, oa_fresh)[0]
    assert rec["cache_write_tokens"] == 4 and rec["stream"] is True, rec


def test_a_fifth_breakpoint_is_refused_before_sending(oa_gateway, oa_mocks, oa_fresh):
    parts = [{"type": "text", "text": t, "cache_control": EPH} for t in "abcde"]
    with pytest.raises(openai.BadRequestError) as e:
        oa(oa_gateway).chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": parts}])
    assert e.value.body["param"] == "messages[0].content[4].cache_control"
    assert oa_mocks["anthropic"].take() == []
