"""Fixtures: mock providers and the real tollgate binary configured to use
them. The binary is `target/release/tollgate` (TOLLGATE_BIN overrides); `make
test` builds it before running this suite."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from mockprovider import MockProvider

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


class Gateway:
    def __init__(self, mocks, tmp):
        if not BIN.exists():
            pytest.fail(f"{BIN} does not exist: build it first (make build)")
        self.port, self.metrics_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
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
  timeouts: {{ connect_ms: 2000, read_ms: 20000 }}
  providers:
    openai: {{ base_url: "{m['openai'].url}", keys: [{{ name: main, value: env.T_OPENAI_KEY }}] }}
    anthropic: {{ base_url: "{m['anthropic'].url}", keys: [{{ name: main, value: env.T_ANTHROPIC_KEY }}] }}
    azure: {{ keys: [{{ name: eastus, value: env.T_AZURE_KEY, endpoint: "{m['azure'].url}" }}] }}
    gemini: {{ base_url: "{m['gemini'].url}", keys: [{{ name: main, value: env.T_GEMINI_KEY }}] }}
    vertex: {{ base_url: "{m['vertex'].url}", keys: [{{ name: express, value: env.T_VERTEX_KEY }}] }}
"""
        cfg = Path(tmp) / "tollgate.yaml"
        cfg.write_text(conf)
        env = dict(os.environ, RUST_LOG="warn", T_OPENAI_KEY=KEYS["openai"], T_ANTHROPIC_KEY=KEYS["anthropic"],
                   T_AZURE_KEY=KEYS["azure"], T_GEMINI_KEY=KEYS["gemini"], T_VERTEX_KEY=KEYS["vertex"])
        self.stderr = open(Path(tmp) / "stderr.log", "w+")
        self.proc = subprocess.Popen([str(BIN), "-c", str(cfg)], env=env, stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.stderr.seek(0)
                pytest.fail(f"tollgate exited: {self.stderr.read()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
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
        outputs = {"metrics": gw.metrics()}
        gw.stop()
        outputs["access log"] = gw.log.read_text() if gw.log.exists() else ""
        gw.stderr.seek(0)
        outputs["stderr"] = gw.stderr.read()
        leaks = [f"{what} contains the {p} key" for what, text in outputs.items() for p, k in KEYS.items() if k in text]
        assert not leaks, leaks
        assert gw.records(), "the session produced records to check"


@pytest.fixture
def fresh(mocks, gateway):
    """Clear what the mocks recorded; return the record index to look after."""
    for m in mocks.values():
        m.take()
        m.sent_events.clear()
    return gateway.settled_count()
