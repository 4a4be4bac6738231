"""The SDKs over HTTPS and HTTP/2 (issue 16): the gateway serves TLS from
`tollgate.tls` with a certificate of a CA made here, and negotiates h2 by
ALPN. The OpenAI SDK (over httpx) talks HTTP/1.1 and then HTTP/2 to it,
streaming included; httpx reports the version it used."""

import tempfile
import time

import httpx
import openai
import pytest

from conftest import KEYS, Gateway, check_hygiene
from pki import Pki

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def tls_gateway(mocks):
    with tempfile.TemporaryDirectory(prefix="tollgate-e2e-tls-") as tmp:
        pki = Pki(tmp)
        gw = Gateway(mocks, tmp, tls=pki)
        gw.pki = pki
        yield gw
        check_hygiene(gw, KEYS)


def sdk(gw, http2, route="/openai_passthrough/v1"):
    versions = []
    client = httpx.Client(http2=http2, verify=gw.pki.client_context(), event_hooks={"response": [lambda r: versions.append(r.http_version)]})
    return openai.OpenAI(base_url=gw.url + route, api_key="dummy-key", http_client=client, max_retries=0), versions


def chat_stream(oai, model):
    stream = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True})
    text, first_at, usage = "", None, None
    for chunk in stream:
        first_at = first_at or time.monotonic()
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        usage = chunk.usage or usage
    return text, first_at, usage


@pytest.mark.parametrize("http2", [False, True], ids=["https-h1", "https-h2"])
def test_openai_sdk_over_tls(tls_gateway, mocks, http2):
    gw, mock = tls_gateway, mocks["openai"]
    mock.clear()
    after = gw.settled_count()
    oai, versions = sdk(gw, http2)
    r = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello from the mock"
    text, first_at, usage = chat_stream(oai, "gpt-4o-mini")
    assert text == "Hello from the mock" and usage.completion_tokens == 5
    sent = [t for _, t in mock.sent_events]
    assert len(sent) >= 3 and first_at < sent[-1], "the first event reached the SDK only after the mock sent the last one"
    assert versions == ["HTTP/2" if http2 else "HTTP/1.1"] * 2, versions
    ups = mock.take()
    assert [u.headers.get("authorization") for u in ups] == [f"Bearer {KEYS['openai']}"] * 2
    recs = gw.records_after(after, 2)
    assert [(r["status"], r["stream"], r["output_tokens"]) for r in recs] == [(200, False, 5), (200, True, 5)], recs


def test_openai_route_over_h2(tls_gateway, mocks):
    """/openai writes its answers itself (translated from Anthropic here)."""
    gw = tls_gateway
    mocks["anthropic"].clear()
    oai, versions = sdk(gw, True, route="/openai/v1")
    r = oai.chat.completions.create(model="anthropic/claude-3-5-haiku-latest", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert r.object == "chat.completion" and r.choices[0].message.content
    text, _, usage = chat_stream(oai, "anthropic/claude-3-5-haiku-latest")
    assert text and usage.completion_tokens > 0
    assert versions == ["HTTP/2", "HTTP/2"], versions
    assert len(mocks["anthropic"].take()) == 2


def test_plain_http_is_not_served_on_the_tls_port(tls_gateway):
    with pytest.raises(httpx.HTTPError):
        httpx.get(tls_gateway.url.replace("https://", "http://") + "/healthz", timeout=5)
    r = httpx.get(tls_gateway.url + "/healthz", verify=tls_gateway.pki.client_context())
    assert r.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(tls_gateway.url + "/healthz")  # the test CA is not in the system's roots
