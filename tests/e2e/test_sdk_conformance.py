"""The official SDKs, unchanged, through tollgate (issue 4), each over plain
HTTP, HTTPS with HTTP/1.1 and HTTPS with HTTP/2 (issue 16: the `transport`
fixture gives each SDK an httpx client trusting the test CA, `http2=True`
for h2, and checks the HTTP version of every response).

Each case asserts what the SDK returned, what the provider mock received
(path, query, the provider's auth header with the gateway's key, never the
client's `dummy-key`), and the gateway's record (provider, model, tokens).
Streaming cases assert that the first event reached the SDK before the mock
sent the last one.
"""

import asyncio
import json
import re
import shlex
import subprocess
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types
from google.oauth2.credentials import Credentials

from conftest import AZURE_API_VERSION, KEYS, ROOT, openai_chat_stream

pytestmark = pytest.mark.timeout(60)

AUTH_HEADER = {"openai": "authorization", "anthropic": "x-api-key", "azure": "api-key", "gemini": "x-goog-api-key", "vertex": "x-goog-api-key"}
AUTH_VALUE = {p: (f"Bearer {k}" if p == "openai" else k) for p, k in KEYS.items()}


def upstream(mock, path, method="POST"):
    """The one request the mock received; credentials checked."""
    reqs = [r for r in mock.take() if r.path == path]
    assert len(reqs) == 1, f"{mock.provider}: expected one {method} {path}, got {[(r.method, r.path) for r in mock.requests]}"
    r = reqs[0]
    assert r.method == method
    assert r.headers.get(AUTH_HEADER[mock.provider]) == AUTH_VALUE[mock.provider]
    blob = json.dumps(r.headers)
    assert "dummy-key" not in blob and "ya29." not in blob, f"client credential reached {mock.provider}: {r.headers}"
    for h in ("authorization", "x-api-key", "api-key", "x-goog-api-key"):
        if h != AUTH_HEADER[mock.provider]:
            assert h not in r.headers, f"{h} reached {mock.provider}"
    return r


def record(gw, after, path_part, provider, model=None, tokens=None, stream=None):
    rec = gw.wait_record(path_part, after)
    assert rec["provider"] == provider, rec
    assert rec["status"] == 200, rec
    if model is not None:
        assert rec["model"] == model, rec
    if tokens is not None:
        assert (rec["input_tokens"], rec["output_tokens"]) == tokens, rec
    if stream is not None:
        assert rec["stream"] is stream, rec
    assert rec["provider_key"] is not None
    return rec


def first_before_last(mock, first_at):
    sent = [t for _, t in mock.sent_events]
    assert len(sent) >= 3, f"mock sent {len(sent)} events"
    assert first_at < sent[-1], "the first event reached the SDK only after the mock sent the last one"


# --------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------

@pytest.fixture
def oai(transport):
    return openai.OpenAI(base_url=f"{transport.gw.url}/openai_passthrough/v1", api_key="dummy-key", max_retries=0, http_client=transport.client())


def test_openai_chat(oai, mocks, gw, fresh):
    r = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello from the mock"
    assert r.usage.total_tokens == 16
    up = upstream(mocks["openai"], "/v1/chat/completions")
    assert up.json()["model"] == "gpt-4o-mini"
    record(gw, fresh, "/chat/completions", "openai", "gpt-4o-mini-2024-07-18", (11, 5), stream=False)


def test_openai_chat_stream(oai, mocks, gw, fresh):
    text, first_at, usage = openai_chat_stream(oai, "gpt-4o-mini")
    assert text == "Hello from the mock" and usage.completion_tokens == 5
    first_before_last(mocks["openai"], first_at)
    upstream(mocks["openai"], "/v1/chat/completions")
    record(gw, fresh, "/chat/completions", "openai", "gpt-4o-mini-2024-07-18", (11, 5), stream=True)


def test_openai_responses(oai, mocks, gw, fresh):
    r = oai.responses.create(model="gpt-4.1-mini", input="hi")
    assert r.output_text == "Responses from the mock"
    upstream(mocks["openai"], "/v1/responses")
    record(gw, fresh, "/v1/responses", "openai", "gpt-4.1-mini-2025-04-14", (21, 6))


def test_openai_responses_stream(oai, mocks, gw, fresh):
    text, first_at, done = "", None, None
    with oai.responses.stream(model="gpt-4.1-mini", input="hi") as stream:
        for ev in stream:
            first_at = first_at or time.monotonic()
            if ev.type == "response.output_text.delta":
                text += ev.delta
        done = stream.get_final_response()
    assert text == "Responses from the mock" and done.usage.output_tokens == 6
    first_before_last(mocks["openai"], first_at)
    upstream(mocks["openai"], "/v1/responses")
    record(gw, fresh, "/v1/responses", "openai", "gpt-4.1-mini-2025-04-14", (21, 6), stream=True)


def test_openai_embeddings(oai, mocks, gw, fresh):
    r = oai.embeddings.create(model="text-embedding-3-small", input="hello")
    assert r.data[0].embedding == [0.25, -0.5, 0.125]
    upstream(mocks["openai"], "/v1/embeddings")
    record(gw, fresh, "/v1/embeddings", "openai", "text-embedding-3-small", (4, 0))


def test_openai_models_list(oai, mocks, gw, fresh):
    ids = [m.id for m in oai.models.list()]
    assert ids == ["gpt-4o-mini"]
    upstream(mocks["openai"], "/v1/models", "GET")
    rec = record(gw, fresh, "/v1/models", "openai")
    assert rec["method"] == "GET" and rec["input_tokens"] is None


def test_openai_file_upload_and_delete(oai, mocks, gw, fresh, tmp_path):
    data = b'{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{}}\n' * 200
    f = tmp_path / "batch.jsonl"
    f.write_bytes(data)
    created = oai.files.create(file=f.open("rb"), purpose="batch")
    assert created.id == "file-abc123" and created.filename == "batch.jsonl"
    up = upstream(mocks["openai"], "/v1/files")
    assert up.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert data in up.body, "the multipart upload was altered"
    deleted = oai.files.delete("file-abc123")
    assert deleted.deleted is True
    upstream(mocks["openai"], "/v1/files/file-abc123", "DELETE")
    rec = gw.wait_record("/v1/files/file-abc123", fresh)
    assert rec["method"] == "DELETE" and rec["status"] == 200


# --------------------------------------------------------------------------
# Anthropic
# --------------------------------------------------------------------------

@pytest.fixture
def claude(transport):
    return anthropic.Anthropic(base_url=f"{transport.gw.url}/anthropic_passthrough", api_key="dummy-key", max_retries=0, http_client=transport.client())


def test_anthropic_messages(claude, mocks, gw, fresh):
    m = claude.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == "Hello from Claude mock"
    up = upstream(mocks["anthropic"], "/v1/messages")
    assert up.headers["anthropic-version"]
    record(gw, fresh, "/v1/messages", "anthropic", "claude-sonnet-4-5-20250929", (13, 7), stream=False)


def test_anthropic_messages_stream(claude, mocks, gw, fresh):
    text, first_at = "", None
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
        for t in s.text_stream:
            first_at = first_at or time.monotonic()
            text += t
        final = s.get_final_message()
    assert text == "Hello from Claude mock" and final.usage.output_tokens == 7
    first_before_last(mocks["anthropic"], first_at)
    upstream(mocks["anthropic"], "/v1/messages")
    record(gw, fresh, "/v1/messages", "anthropic", "claude-sonnet-4-5-20250929", (13, 7), stream=True)


def test_anthropic_count_tokens(claude, mocks, gw, fresh):
    r = claude.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    assert r.input_tokens == 14
    upstream(mocks["anthropic"], "/v1/messages/count_tokens")
    rec = record(gw, fresh, "/count_tokens", "anthropic")
    assert rec["input_tokens"] is None, "count_tokens is not usage"


# --------------------------------------------------------------------------
# Azure
# --------------------------------------------------------------------------

def test_azure_openai_chat_on_a_deployment(transport, gw, mocks, fresh):
    az = openai.AzureOpenAI(azure_endpoint=f"{gw.url}/azure_passthrough", api_version=AZURE_API_VERSION, api_key="dummy-key", max_retries=0, http_client=transport.client())
    r = az.chat.completions.create(model="gpt4o-prod", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello from the mock"
    up = upstream(mocks["azure"], "/openai/deployments/gpt4o-prod/chat/completions")
    assert f"api-version={AZURE_API_VERSION}" in up.query
    record(gw, fresh, "/openai/deployments/gpt4o-prod/chat/completions", "azure", "gpt-4o-mini-2024-07-18", (11, 5))

    text, first_at = "", None
    for chunk in az.chat.completions.create(model="gpt4o-prod", messages=[{"role": "user", "content": "hi"}], stream=True):
        first_at = first_at or time.monotonic()
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text == "Hello from the mock"
    first_before_last(mocks["azure"], first_at)
    upstream(mocks["azure"], "/openai/deployments/gpt4o-prod/chat/completions")


def test_azure_v1_responses_with_the_openai_sdk(transport, gw, mocks, fresh):
    c = openai.OpenAI(base_url=f"{gw.url}/azure_passthrough/openai/v1/", api_key="dummy-key", max_retries=0, http_client=transport.client())
    r = c.responses.create(model="gpt-4.1-mini", input="hi")
    assert r.output_text == "Responses from the mock"
    up = upstream(mocks["azure"], "/openai/v1/responses")
    assert "api-version" not in up.query
    record(gw, fresh, "/openai/v1/responses", "azure", "gpt-4.1-mini-2025-04-14", (21, 6))
    text = ""
    with c.responses.stream(model="gpt-4.1-mini", input="hi") as s:
        for ev in s:
            if ev.type == "response.output_text.delta":
                text += ev.delta
    assert text == "Responses from the mock"
    upstream(mocks["azure"], "/openai/v1/responses")


def test_azure_foundry_anthropic_messages(transport, gw, mocks, fresh):
    c = anthropic.Anthropic(base_url=f"{gw.url}/azure_passthrough", api_key="dummy-key", max_retries=0, http_client=transport.client())
    m = c.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == "Hello from Claude mock"
    upstream(mocks["azure"], "/v1/messages")
    record(gw, fresh, "/azure_passthrough/v1/messages", "azure", "claude-sonnet-4-5-20250929", (13, 7))
    with c.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
        assert "".join(s.text_stream) == "Hello from Claude mock"
    upstream(mocks["azure"], "/v1/messages")


# --------------------------------------------------------------------------
# Google GenAI: Gemini, Vertex express, Vertex with OAuth credentials
# --------------------------------------------------------------------------

def genai_options(transport):
    return types.HttpOptions(base_url=f"{transport.gw.url}/genai_passthrough", httpx_client=transport.client(), httpx_async_client=transport.async_client())


def genai_clients(transport):
    opts = genai_options(transport)
    return {
        "gemini": genai.Client(api_key="dummy-key", http_options=opts),
        "vertex-express": genai.Client(vertexai=True, api_key="dummy-key", http_options=opts),
        "vertex-oauth": genai.Client(vertexai=True, project="client-project", location="us-central1",
                                     credentials=Credentials(token="ya29.client-access-token"), http_options=opts),
    }


def model_path(kind, model, method):
    if kind == "gemini":
        return f"/v1/models/{model}:{method}"
    if kind == "vertex-express":
        return f"/v1beta1/publishers/google/models/{model}:{method}"
    return f"/v1beta1/projects/client-project/locations/us-central1/publishers/google/models/{model}:{method}"


@pytest.mark.parametrize("kind", ["gemini", "vertex-express", "vertex-oauth"])
def test_genai(kind, transport, gw, mocks, fresh):
    client = genai_clients(transport)[kind]
    mock = mocks["gemini" if kind == "gemini" else "vertex"]
    other = mocks["vertex" if kind == "gemini" else "gemini"]
    who = "Gemini" if kind == "gemini" else "Vertex"
    provider = "gemini" if kind == "gemini" else "vertex"

    r = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert r.text == f"Hello from {who} mock"
    upstream(mock, model_path(kind, "gemini-2.5-flash", "generateContent"))
    record(gw, fresh, ":generateContent", provider, "gemini-2.5-flash", (8, 6), stream=False)

    n = gw.settled_count()
    text, first_at = "", None
    for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"):
        first_at = first_at or time.monotonic()
        text += chunk.text or ""
    assert text == f"Hello from {who} mock"
    first_before_last(mock, first_at)
    up = upstream(mock, model_path(kind, "gemini-2.5-flash", "streamGenerateContent"))
    assert "alt=sse" in up.query
    record(gw, n, ":streamGenerateContent", provider, "gemini-2.5-flash", (8, 6), stream=True)

    emb_model = "gemini-embedding-001" if kind == "gemini" else "text-embedding-004"
    e = client.models.embed_content(model=emb_model, contents="hello")
    assert e.embeddings[0].values == [0.5, 0.25, 0.125]
    reqs = mock.take()
    assert len(reqs) == 1 and re.search(r":(batchEmbedContents|embedContent|predict)$", reqs[0].path), reqs
    assert reqs[0].path.startswith(model_path(kind, emb_model, "").rstrip(":"))
    assert reqs[0].headers[AUTH_HEADER[provider]] == AUTH_VALUE[provider]

    c = client.models.count_tokens(model="gemini-2.5-flash", contents="hi")
    assert c.total_tokens == 9
    upstream(mock, model_path(kind, "gemini-2.5-flash", "countTokens"))
    assert other.take() == [], f"a {kind} request reached the other Google provider"


# --------------------------------------------------------------------------
# Async clients
# --------------------------------------------------------------------------

def test_async_clients_stream(transport, gw, mocks, fresh):
    async def run():
        oai = openai.AsyncOpenAI(base_url=f"{gw.url}/openai_passthrough/v1", api_key="dummy-key", max_retries=0, http_client=transport.async_client())
        text, first = "", None
        async for chunk in await oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}):
            first = first or time.monotonic()
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
        assert text == "Hello from the mock"
        first_before_last(mocks["openai"], first)

        cl = anthropic.AsyncAnthropic(base_url=f"{gw.url}/anthropic_passthrough", api_key="dummy-key", max_retries=0, http_client=transport.async_client())
        text, first = "", None
        async with cl.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
            async for t in s.text_stream:
                first = first or time.monotonic()
                text += t
        assert text == "Hello from Claude mock"
        first_before_last(mocks["anthropic"], first)

        g = genai.Client(api_key="dummy-key", http_options=genai_options(transport))
        text, first = "", None
        async for chunk in await g.aio.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"):
            first = first or time.monotonic()
            text += chunk.text or ""
        assert text == "Hello from Gemini mock"
        first_before_last(mocks["gemini"], first)

    asyncio.run(run())
    upstream(mocks["openai"], "/v1/chat/completions")
    upstream(mocks["anthropic"], "/v1/messages")
    upstream(mocks["gemini"], "/v1/models/gemini-2.5-flash:streamGenerateContent")
    recs = gw.records_after(fresh, 3)
    assert sorted(r["provider"] for r in recs) == ["anthropic", "gemini", "openai"]
    assert all(r["stream"] and r["output_tokens"] for r in recs), [(r["provider"], r["stream"], r["output_tokens"], r["error"]) for r in recs]


# --------------------------------------------------------------------------
# The README's curl examples, run as written
# --------------------------------------------------------------------------

def readme_curls():
    text = (ROOT / "README.md").read_text()
    section = text.split("### curl, one per route", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [c.strip() for c in re.split(r"\n\s*\n", section) if c.strip().startswith("curl")]


def test_readme_curl_examples(transport, gw, mocks, fresh):
    cmds = readme_curls()
    assert len(cmds) >= 5, cmds
    # Over TLS the certificate names localhost.
    base = gw.url.replace("127.0.0.1", "localhost")
    for cmd in cmds:
        cmd = re.sub(r"(?:http://)?localhost:8080", base, cmd).replace("\\\n", " ")
        out = subprocess.run(shlex.split(cmd) + transport.curl_args() + ["-w", "\n%{http_code} %{http_version}"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, (cmd, out.stderr)
        body, status = out.stdout.rsplit("\n", 1)
        assert status == "200 " + ("2" if transport.http2 else "1.1"), (cmd, body, status)
        assert "Hello" in body and "mock" in body, (cmd, body)
    for m in mocks.values():
        for r in m.take():
            assert "dummy-key" not in json.dumps(r.headers)
