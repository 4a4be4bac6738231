"""Fixtures: mock providers and the real tollgate binary configured to use
them. The binary is `target/release/tollgate` (TOLLGATE_BIN overrides); `make
test` builds it before running this suite."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx2
import pytest

from mockprovider import MockProvider
from pki import Pki

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("TOLLGATE_BIN", ROOT / "target" / "release" / "tollgate"))

KEYS = {
    "openai": "sk-gw-openai-7f3a",
    "anthropic": "sk-ant-gw-51c2",
    "azure": "azure-gw-key-9d0e",
    "gemini": "AIza-gw-gemini-4b8f",
    "vertex": "AIza-gw-vertex-2e6d",
}
AZURE_API_VERSION = "2024-10-21"

# The /openai route fixtures (SPEC 8) add two providers, a second Azure
# resource named by clients (x-bf-azure-endpoint) and virtual keys.
OA_KEYS = {
    "mistral": "mistral-gw-key-63aa",
    "azure-direct": "client-azure-key",  # the AzureOpenAI client's own key, for its own endpoint
}
OA_DEFAULT_MAX_TOKENS = 1234
OA_MAX_BODY = 25 * 1024 * 1024
VK_SECRETS = {"openai-only": "vk-openai-only-5e1d", "haiku-only": "vk-haiku-only-0c47"}


def pytest_configure(config):
    config.addinivalue_line("markers", "openai_route: end-to-end tests of the /openai route (SPEC 8)")


_handed_out = set()


def free_port():
    """A port for the gateway to bind, never handed out twice in this session
    (the kernel may return a just-released port on the next bind to 0)."""
    held = []
    try:
        while True:
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    finally:
        for s in held:
            s.close()


@contextlib.contextmanager
def redis_server():
    """A throwaway redis-server on a free loopback port, without persistence,
    ready to take connections: yields (port, process); a test may kill it
    midway. Killed on exit."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port, proc
    finally:
        proc.kill()
        proc.wait()


class Gateway:
    def __init__(self, mocks, tmp, extra_providers="", extra="", env=None, azure_api_version=None, tls=None, read_ms=20000):
        """`extra_providers`: YAML lines appended under `tollgate.providers`
        (indented by four); `extra`: lines appended under `tollgate:`
        (indented by two); `env`: more environment for the binary;
        `azure_api_version`: set on the configured Azure key; `tls`: a
        `pki.Pki` whose certificate the gateway serves (`tollgate.tls`)."""
        if not BIN.exists():
            pytest.fail(f"{BIN} does not exist: build it first (make build)")
        self.port, self.metrics_port = free_port(), free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ssl_context = tls.client_context() if tls else None
        if tls:
            extra = f'  tls: {{ cert: "{tls.cert}", key: "{tls.key}" }}\n' + extra
        self.log = Path(tmp) / "access.log"
        m = mocks
        conf = f"""version: 1
threads: 2
pid_file: {tmp}/tollgate.pid
upgrade_sock: {tmp}/upgrade.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
tollgate:
  listen: "127.0.0.1:{self.port}"
  metrics_listen: "127.0.0.1:{self.metrics_port}"
  access_log: {self.log}
  timeouts: {{ connect_ms: 2000, read_ms: {read_ms} }}
  providers:
    openai: {{ base_url: "{m['openai'].url}", keys: [{{ name: main, value: env.T_OPENAI_KEY }}] }}
    anthropic: {{ base_url: "{m['anthropic'].url}", keys: [{{ name: main, value: env.T_ANTHROPIC_KEY }}] }}
    azure: {{ keys: [{{ name: eastus, value: env.T_AZURE_KEY, endpoint: "{m['azure'].url}"{f', api_version: "{azure_api_version}"' if azure_api_version else ""} }}] }}
    gemini: {{ base_url: "{m['gemini'].url}", keys: [{{ name: main, value: env.T_GEMINI_KEY }}] }}
    vertex: {{ base_url: "{m['vertex'].url}", keys: [{{ name: express, value: env.T_VERTEX_KEY }}] }}
""" + extra_providers + extra
        cfg = Path(tmp) / "tollgate.yaml"
        cfg.write_text(conf)
        env = dict(os.environ, RUST_LOG="warn", T_OPENAI_KEY=KEYS["openai"], T_ANTHROPIC_KEY=KEYS["anthropic"],
                   T_AZURE_KEY=KEYS["azure"], T_GEMINI_KEY=KEYS["gemini"], T_VERTEX_KEY=KEYS["vertex"], **(env or {}))
        self.cfg, self.env = cfg, env
        self.stderr = open(Path(tmp) / "stderr.log", "w+")
        self.proc = subprocess.Popen([str(BIN), "-c", str(cfg)], env=env, stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.stderr.seek(0)
                pytest.fail(f"tollgate exited: {self.stderr.read()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1, context=self.ssl_context) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("tollgate did not become ready")

    def records(self):
        """Complete lines only: the gateway's writer thread may be mid-write."""
        if not self.log.exists():
            return []
        text = self.log.read_text()
        text = text[: text.rfind("\n") + 1]
        return [json.loads(l) for l in text.splitlines() if l.strip()]

    def settled_count(self):
        """The number of records once earlier requests' records are written
        (the writer thread writes every 20 ms: wait until the count holds)."""
        n = len(self.records())
        while True:
            time.sleep(0.1)
            m = len(self.records())
            if m == n:
                return n
            n = m

    def records_after(self, after, count, timeout=5.0):
        """At least `count` records after index `after`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            recs = self.records()[after:]
            if len(recs) >= count:
                return recs
            time.sleep(0.02)
        raise AssertionError(f"expected {count} records, got {self.records()[after:]}")

    def wait_record(self, path_part, after=0, timeout=5.0):
        """The first record after index `after` whose path contains `path_part`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for rec in self.records()[after:]:
                if path_part in rec["path"]:
                    return rec
            time.sleep(0.02)
        raise AssertionError(f"no record for {path_part}: {self.records()[after:]}")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def check_hygiene(gw, keys):
    """Stop `gw`; no provider key in any record, log line or metric it produced."""
    outputs = {"metrics": gw.metrics()}
    gw.stop()
    outputs["access log"] = gw.log.read_text() if gw.log.exists() else ""
    gw.stderr.seek(0)
    outputs["stderr"] = gw.stderr.read()
    leaks = [f"{what} contains the {p} key" for what, text in outputs.items() for p, k in keys.items() if k in text]
    assert not leaks, leaks


@pytest.fixture(scope="session")
def mocks():
    ms = {p: MockProvider(p, KEYS[p]).start() for p in KEYS}
    yield ms
    for m in ms.values():
        m.stop()


@pytest.fixture(scope="session")
def gateway(mocks):
    with tempfile.TemporaryDirectory(prefix="tollgate-e2e-") as tmp:
        gw = Gateway(mocks, tmp)
        yield gw
        # Secret hygiene over the whole SDK session: no provider key in any
        # record, log line or metric the gateway produced.
        check_hygiene(gw, KEYS)
        assert gw.records(), "the session produced records to check"


@pytest.fixture(scope="session")
def tls_gateway(mocks):
    """The same gateway as `gateway`, serving HTTPS (HTTP/1.1 and HTTP/2 by
    ALPN) with a certificate of a CA made here (`gw.pki`)."""
    with tempfile.TemporaryDirectory(prefix="tollgate-e2e-tls-") as tmp:
        pki = Pki(tmp)
        gw = Gateway(mocks, tmp, tls=pki)
        gw.pki = pki
        yield gw
        check_hygiene(gw, KEYS)


class Transport:
    """How the SDKs reach a gateway: `http` (plain HTTP/1.1, `gateway`),
    `https-h1` or `https-h2` (`tls_gateway`, HTTP/1.1 or HTTP/2 by ALPN).
    Each SDK is given an httpx2 client (the HTTP library of the openai and
    anthropic SDKs; google-genai takes it too) from here (the test CA trusted,
    `http2=True` for h2) that records the HTTP version of every response."""

    def __init__(self, name, gw):
        self.name, self.gw, self.http2 = name, gw, name == "https-h2"
        self.versions, self.used = [], False

    @property
    def version(self):
        return "HTTP/2" if self.http2 else "HTTP/1.1"

    def _args(self):
        return dict(http2=self.http2, verify=self.gw.ssl_context or True, timeout=httpx2.Timeout(60.0))

    def client(self):
        self.used = True
        return httpx2.Client(event_hooks={"response": [lambda r: self.versions.append(r.http_version)]}, **self._args())

    def async_client(self):
        self.used = True

        async def hook(r):
            self.versions.append(r.http_version)

        return httpx2.AsyncClient(event_hooks={"response": [hook]}, **self._args())

    def curl_args(self):
        """curl options for the same transport."""
        if not self.gw.ssl_context:
            return ["--http1.1"]
        return ["--cacert", str(self.gw.pki.ca), "--http2" if self.http2 else "--http1.1"]

    def check(self):
        """Every response the SDKs got came over this transport."""
        assert not self.used or self.versions, f"{self.name}: the SDKs' clients got no response"
        assert set(self.versions) <= {self.version}, f"{self.name}: responses over {sorted(set(self.versions))}"


TRANSPORTS = ["http", "https-h1", "https-h2"]


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    """Each test that takes it runs over plain HTTP, HTTPS with HTTP/1.1 and
    HTTPS with HTTP/2."""
    t = Transport(request.param, request.getfixturevalue("gateway" if request.param == "http" else "tls_gateway"))
    yield t
    t.check()


@pytest.fixture
def gw(transport):
    """The gateway `transport` reaches."""
    return transport.gw


@pytest.fixture
def fresh(mocks, gw):
    """Clear what the mocks recorded; return the record index to look after."""
    for m in mocks.values():
        m.clear()
    return gw.settled_count()


def openai_chat_stream(oai, model):
    """Stream a chat completion with the OpenAI SDK: (text, when the first
    chunk arrived, usage)."""
    stream = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True})
    text, first_at, usage = "", None, None
    for chunk in stream:
        first_at = first_at or time.monotonic()
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        usage = chunk.usage or usage
    return text, first_at, usage


# ---------------------------------------------------------------------------
# The /openai route (SPEC 8): gateways configured with openai_compat, the
# extra providers (ollama, mistral) and, per fixture, direct keys or virtual
# keys. The plain `gateway` above stays as it was, so the passthrough suite
# runs against binaries that do not know these keys.
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def oa_mocks(mocks):
    """Every mock the /openai tests use: the five of `mocks`, an Ollama and a
    Mistral (OpenAI-shaped), and `azure-direct`, a second Azure resource that
    only accepts the client's own key."""
    extra = {
        "ollama": MockProvider("ollama", ""),
        "mistral": MockProvider("mistral", OA_KEYS["mistral"]),
        "azure-direct": MockProvider("azure", OA_KEYS["azure-direct"], name="azure-direct"),
    }
    for m in extra.values():
        m.start()
    yield {**mocks, **extra}
    for m in extra.values():
        m.stop()


def openai_compat_conf(m, allow_direct_keys=False, virtual_keys=False):
    """Lines under `tollgate:` for the /openai fixtures."""
    conf = f"""  allow_direct_keys: {str(allow_direct_keys).lower()}
  limits: {{ max_request_body_bytes: {OA_MAX_BODY} }}
  openai_compat:
    default_max_tokens: {OA_DEFAULT_MAX_TOKENS}
    azure_endpoint_allowlist: ["http://127.0.0.1:*"]
"""
    if virtual_keys:
        conf += """  virtual_keys:
    - { name: openai-only, secret: env.T_VK_OPENAI_ONLY, providers: [openai] }
    - { name: haiku-only, secret: env.T_VK_HAIKU_ONLY, providers: [anthropic], models: ["claude-3-haiku*"] }
"""
    return conf


@pytest.fixture(scope="session")
def oa_gateways(oa_mocks):
    """The three /openai gateways, started lazily, by name: `plain`
    (configured keys only), `direct` (allow_direct_keys: true) and `vk`
    (virtual keys openai-only and haiku-only)."""
    m = oa_mocks
    providers = f"""    ollama: {{ base_url: "{m['ollama'].url}" }}
    mistral: {{ kind: openai_compatible, base_url: "{m['mistral'].url}", keys: [{{ name: main, value: env.T_MISTRAL_KEY }}] }}
"""
    env = {"T_MISTRAL_KEY": OA_KEYS["mistral"], "T_VK_OPENAI_ONLY": VK_SECRETS["openai-only"], "T_VK_HAIKU_ONLY": VK_SECRETS["haiku-only"]}
    started, tmps = {}, []
    kinds = {"plain": {}, "direct": {"allow_direct_keys": True}, "vk": {"virtual_keys": True}}

    def get(kind):
        if kind not in started:
            tmp = tempfile.TemporaryDirectory(prefix=f"tollgate-e2e-oa-{kind}-")
            tmps.append(tmp)
            started[kind] = Gateway(m, tmp.name, extra_providers=providers, extra=openai_compat_conf(m, **kinds[kind]),
                                    env=env, azure_api_version=AZURE_API_VERSION)
        return started[kind]

    yield get
    # Configured keys, virtual-key secrets and the client's own Azure key
    # (a direct key is a secret too) must appear in no log, record or metric.
    secrets = {**KEYS, **{f"oa-{k}": v for k, v in OA_KEYS.items()}, **{f"vk {k}": v for k, v in VK_SECRETS.items()}}
    problems = []
    for kind, gw in started.items():
        try:
            check_hygiene(gw, secrets)
        except AssertionError as e:
            problems.append(f"{kind}: {e}")
    for tmp in tmps:
        tmp.cleanup()
    assert not problems, problems


@pytest.fixture(scope="session")
def oa_gateway(oa_gateways):
    return oa_gateways("plain")


@pytest.fixture(scope="session")
def oa_direct_gateway(oa_gateways):
    return oa_gateways("direct")


@pytest.fixture(scope="session")
def oa_vk_gateway(oa_gateways):
    return oa_gateways("vk")


@pytest.fixture
def oa_fresh(oa_mocks, oa_gateway):
    """Clear what every mock recorded; return oa_gateway's record index to look after."""
    for m in oa_mocks.values():
        m.clear()
    return oa_gateway.settled_count()
