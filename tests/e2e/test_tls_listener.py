"""HTTPS and HTTP/2 (issue 16) beyond the SDK suite: the gateway serves TLS
from `tollgate.tls` with a certificate of a CA made here (`tls_gateway` in
conftest.py) and negotiates h2 by ALPN. test_sdk_conformance.py runs every
SDK case over https with HTTP/1.1 and HTTP/2; here: the /openai route over
h2, plain HTTP refused on the TLS port, and an h2 stream reset."""

import json
import socket
import time

import h2.config
import h2.connection
import h2.errors
import h2.events

import httpx
import openai
import pytest

from conftest import Transport, openai_chat_stream
from mockprovider import EVENT_DELAY

pytestmark = pytest.mark.timeout(60)


def test_openai_route_over_h2(tls_gateway, mocks):
    """/openai writes its answers itself (translated from Anthropic here)."""
    mocks["anthropic"].clear()
    t = Transport("https-h2", tls_gateway)
    oai = openai.OpenAI(base_url=tls_gateway.url + "/openai/v1", api_key="dummy-key", http_client=t.client(), max_retries=0)
    r = oai.chat.completions.create(model="anthropic/claude-3-5-haiku-latest", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert r.object == "chat.completion" and r.choices[0].message.content
    text, _, usage = openai_chat_stream(oai, "anthropic/claude-3-5-haiku-latest")
    assert text and usage.completion_tokens > 0
    assert t.versions == ["HTTP/2", "HTTP/2"], t.versions
    assert len(mocks["anthropic"].take()) == 2


def test_plain_http_is_not_served_on_the_tls_port(tls_gateway):
    with pytest.raises(httpx.HTTPError):
        httpx.get(tls_gateway.url.replace("https://", "http://") + "/healthz", timeout=5)
    r = httpx.get(tls_gateway.url + "/healthz", verify=tls_gateway.pki.client_context())
    assert r.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(tls_gateway.url + "/healthz")  # the test CA is not in the system's roots


class H2Client:
    """A bare HTTP/2 client (the `h2` library over an ssl socket), for what
    httpx does not do: reset one stream (RST_STREAM) and go on using the
    connection."""

    def __init__(self, gw):
        ctx = gw.pki.client_context()
        ctx.set_alpn_protocols(["h2"])
        self.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", gw.port), timeout=20), server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        self.sock.sendall(self.conn.data_to_send())

    def request(self, method, path, body=b""):
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "https"), (":authority", "localhost"),
                   ("authorization", "Bearer dummy-key"), ("content-type", "application/json")]
        self.conn.send_headers(sid, headers, end_stream=not body)
        if body:
            self.conn.send_data(sid, body, end_stream=True)
        self.flush()
        return sid

    def events(self):
        """Events of the connection, as they come."""
        while True:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            events = self.conn.receive_data(data)
            self.flush()
            for e in events:
                if isinstance(e, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                yield e


@pytest.mark.parametrize("route", ["/openai_passthrough/v1", "/openai/v1"])
def test_h2_stream_reset_ends_the_provider_stream_and_keeps_the_connection(tls_gateway, mocks, route):
    """A client that resets one HTTP/2 stream (RST_STREAM, CANCEL) mid-answer:
    the gateway ends that provider request, records it, and the connection
    serves the next request."""
    gw, mock = tls_gateway, mocks["openai"]
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    c = H2Client(gw)
    mock.clear()
    sid = c.request("POST", route + "/chat/completions", body)
    for e in c.events():
        if isinstance(e, h2.events.StreamEnded) and e.stream_id == sid:
            break
    total = len(mock.sent_events)
    assert total >= 3
    mock.clear()
    after = gw.settled_count()
    sid = c.request("POST", route + "/chat/completions", body)
    for e in c.events():
        if isinstance(e, h2.events.DataReceived) and e.stream_id == sid and b"data: " in e.data:
            break
    c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    c.flush()
    # Long enough for the whole stream had it gone on: the provider saw its
    # connection end and sent fewer events than a full stream.
    time.sleep(EVENT_DELAY * (total + 2))
    assert len(mock.sent_events) < total, f"{len(mock.sent_events)} of {total} events sent after the reset"
    rec = gw.records_after(after, 1)[0]
    assert rec["stream"] is True and rec["path"].endswith("/chat/completions"), rec
    sid = c.request("GET", "/openai_passthrough/v1/models")
    status = None
    for e in c.events():
        if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
            status = dict(e.headers)[b":status"]
        if isinstance(e, h2.events.StreamEnded) and e.stream_id == sid:
            break
    assert status == b"200"
