"""Async inference (SPEC 9) through the real binary with the real openai SDK:
x-bf-async submits a job (202 and a pending object), x-bf-async-id polls it
until the answer the synchronous request would have given. Jobs live in the
embedded SQLite store (or Redis) and survive restarts; a job running when the
gateway is killed is failed, never replayed."""

import shutil
import sqlite3
import tempfile
import time

import httpx
import openai
import pytest

from conftest import KEYS, Gateway, free_port, redis_server

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def tmpdir_():
    with tempfile.TemporaryDirectory(prefix="tollgate-e2e-async-") as t:
        yield t


@pytest.fixture
def agw(mocks, tmpdir_):
    gw = Gateway(mocks, tmpdir_, extra="  async: { workers: 2, result_ttl_s: 60, max_result_ttl_s: 120 }\n")
    yield gw
    gw.stop()


def client(gw, key="dummy-key"):
    return openai.OpenAI(base_url=f"{gw.url}/openai", api_key=key, max_retries=0)


def seed_chat_loop(c, model):
    """The seed's own client code, unchanged but for the sleep."""
    initial = c.chat.completions.create(model=model, messages=MSG, extra_headers={"x-bf-async": "true"})
    if initial.choices:
        return initial, initial, 0
    polls = 0
    while True:
        time.sleep(0.2)
        polls += 1
        poll = c.chat.completions.create(model=model, messages=MSG, extra_headers={"x-bf-async-id": initial.id})
        if poll.choices:
            return initial, poll, polls
        assert polls < 100, "the job never finished"


def test_seed_chat_loop_returns_what_sync_returns(agw, mocks):
    c = client(agw)
    initial, done, polls = seed_chat_loop(c, "openai/gpt-4o-mini")
    assert not initial.choices and initial.object == "chat.completion" and len(initial.id) == 32
    sync = c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)
    assert done.choices[0].message.content == sync.choices[0].message.content
    assert done.usage.total_tokens == sync.usage.total_tokens
    # The provider saw the job's request once, with the configured key.
    reqs = [r for r in mocks["openai"].requests if r.path == "/v1/chat/completions"]
    assert len(reqs) >= 2 and all(r.headers["authorization"] == f"Bearer {KEYS['openai']}" for r in reqs)
    # Translated providers work the same.
    _, done, _ = seed_chat_loop(c, "anthropic/claude-sonnet-4-5")
    assert done.choices[0].message.content == "Hello from Claude mock"
    recs = agw.records()
    job_recs = [r for r in recs if r.get("async_job_id") == initial.id]
    assert any(r["status"] == 202 for r in job_recs), job_recs           # submission
    runs = [r for r in job_recs if r["user_agent"] == "tollgate-async-worker"]
    assert len(runs) == 1 and runs[0]["provider"] == "openai" and runs[0]["input_tokens"], job_recs


def test_seed_responses_loop(agw):
    c = client(agw)
    initial = c.responses.create(model="anthropic/claude-sonnet-4-5", input="hi", extra_headers={"x-bf-async": "true"})
    assert initial.status in ("queued", "in_progress")
    for _ in range(100):
        time.sleep(0.2)
        poll = c.responses.create(model="anthropic/claude-sonnet-4-5", input="hi", extra_headers={"x-bf-async-id": initial.id})
        if poll.status == "completed":
            break
    assert poll.status == "completed" and poll.output_text == "Hello from Claude mock"


def test_jobs_are_private_refused_inputs_and_ttl(agw):
    c = client(agw)
    initial = c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async": "true"})
    other = client(agw, key="someone-else")
    with pytest.raises(openai.NotFoundError) as e:
        other.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async-id": initial.id})
    assert e.value.body["type"] == "async_job_not_found"
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async-id": "0" * 32})
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, stream=True, extra_headers={"x-bf-async": "true"})
    for bad in ["abc", "0", "-5", "121"]:
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async": "true", "x-bf-async-job-result-ttl": bad})
    # A two-second result: readable once done (it lives at least its TTL:
    # 2 to 3 s, times being whole seconds), gone after 3 s. The wait for the
    # job is bounded by time, not by a count of polls.
    j = c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async": "true", "x-bf-async-job-result-ttl": "2"})
    deadline = time.time() + 10
    while True:
        r = httpx.post(f"{agw.url}/openai/chat/completions", headers={"authorization": "Bearer dummy-key", "x-bf-async-id": j.id}, json={})
        if r.status_code == 200 or time.time() > deadline:
            break
        assert r.status_code == 202 and r.json()["choices"] == [], (r.status_code, r.text)
        time.sleep(0.05)
    assert r.status_code == 200 and r.json()["choices"], (r.status_code, r.text)
    time.sleep(3.1)
    r = httpx.post(f"{agw.url}/openai/chat/completions", headers={"authorization": "Bearer dummy-key", "x-bf-async-id": j.id}, json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "async_job_not_found"


def test_finished_results_survive_a_restart_and_running_jobs_fail_after_kill_9(mocks, tmpdir_):
    started = []

    def start():
        g = Gateway(mocks, tmpdir_)
        started.append(g)
        return g

    try:
        _restart_and_kill(mocks, start)
    finally:
        for g in started:
            if g.proc.poll() is None:
                g.stop()


def _restart_and_kill(mocks, start):
    gw = start()
    c = client(gw)
    job, done, _ = seed_chat_loop(c, "openai/gpt-4o-mini")
    gw.stop()
    gw = start()
    c = client(gw)
    again = c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async-id": job.id})
    assert again.choices[0].message.content == done.choices[0].message.content
    # kill -9 while the provider is still answering (claude-slow takes 3 s).
    mocks["anthropic"].clear()
    slow = c.chat.completions.create(model="anthropic/claude-slow-1", messages=MSG, extra_headers={"x-bf-async": "true"})
    deadline = time.time() + 5
    while not [r for r in mocks["anthropic"].requests if r.path == "/v1/messages"]:
        assert time.time() < deadline, "the job never reached the provider"
        time.sleep(0.05)
    gw.proc.kill()
    gw.proc.wait()
    gw = start()
    c = client(gw)
    with pytest.raises(openai.InternalServerError) as e:
        c.chat.completions.create(model="anthropic/claude-slow-1", messages=MSG, extra_headers={"x-bf-async-id": slow.id})
    assert e.value.body["type"] == "async_job_interrupted"
    time.sleep(3.5)
    assert len([r for r in mocks["anthropic"].requests if r.path == "/v1/messages"]) == 1, "the job was replayed"
    gw.stop()


def test_an_unwritable_store_is_a_start_error(mocks, tmpdir_):
    blocker = f"{tmpdir_}/not-a-dir"
    open(blocker, "w").close()
    with pytest.raises(pytest.fail.Exception) as e:
        Gateway(mocks, tmpdir_, extra=f"  store: {{ path: {blocker}/tollgate.db }}\n")
    assert "store.path" in str(e.value) and blocker in str(e.value)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_jobs_are_polled_on_another_instance(mocks):
    with redis_server() as (port, _):
        extra = f"  redis: {{ url: 'redis://127.0.0.1:{port}' }}\n"
        with tempfile.TemporaryDirectory() as ta, tempfile.TemporaryDirectory() as tb:
            a, b = Gateway(mocks, ta, extra=extra), Gateway(mocks, tb, extra=extra)
            try:
                time.sleep(0.5)  # the worker services connect to Redis
                j = client(a).chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async": "true"})
                for _ in range(100):
                    poll = client(b).chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async-id": j.id})
                    if poll.choices:
                        break
                    time.sleep(0.1)
                assert poll.choices and poll.choices[0].message.content
            finally:
                a.stop()
                b.stop()


def test_another_virtual_key_gets_404(mocks, tmpdir_):
    extra = """  virtual_keys:
    - { name: team-a, secret: env.T_VK_A }
    - { name: team-b, secret: env.T_VK_B }
"""
    gw = Gateway(mocks, tmpdir_, extra=extra, env={"T_VK_A": "vk-async-a", "T_VK_B": "vk-async-b"})
    try:
        a = openai.OpenAI(base_url=f"{gw.url}/openai", api_key="dummy-key", max_retries=0, default_headers={"x-bf-vk": "vk-async-a"})
        b = openai.OpenAI(base_url=f"{gw.url}/openai", api_key="dummy-key", max_retries=0, default_headers={"x-bf-vk": "vk-async-b"})
        job, done, _ = seed_chat_loop(a, "openai/gpt-4o-mini")
        assert done.choices
        with pytest.raises(openai.NotFoundError) as e:
            b.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async-id": job.id})
        assert e.value.body["type"] == "async_job_not_found"
        # The same key presented as the SDK's api key is the same owner.
        a2 = openai.OpenAI(base_url=f"{gw.url}/openai", api_key="vk-async-a", max_retries=0)
        assert a2.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async-id": job.id}).choices
        recs = [r for r in gw.records() if r.get("async_job_id") == job.id]
        assert recs and all(r["virtual_key"] in ("team-a", "team-b", None) for r in recs)
        assert any(r["virtual_key"] == "team-a" and r["user_agent"] == "tollgate-async-worker" for r in recs), recs
    finally:
        gw.stop()


def test_a_store_error_while_running_loses_no_answer_and_sync_traffic_goes_on(mocks, tmpdir_):
    """Disk full (or any store error) while the gateway runs: a submission is
    refused with a clear 503; a job whose result cannot be written keeps its
    answer in memory and polls get it; sync requests are served throughout;
    the result is written once the store takes writes again. The failures
    are made by SQLite triggers raising the error a full disk gives."""
    gw = Gateway(mocks, tmpdir_)
    db = sqlite3.connect(f"{tmpdir_}/tollgate.db", timeout=5)
    try:
        c = client(gw)
        db.execute("CREATE TRIGGER full_insert BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        db.commit()
        with pytest.raises(openai.InternalServerError) as e:
            c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async": "true"})
        assert e.value.status_code == 503 and e.value.body["type"] == "store_unavailable"
        assert "disk is full" in e.value.body["message"]
        assert c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG).choices[0].message.content
        db.execute("DROP TRIGGER full_insert")
        db.execute("CREATE TRIGGER full_finish BEFORE UPDATE OF state ON jobs WHEN NEW.state = 'done' "
                   "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        db.commit()
        job, done, _ = seed_chat_loop(c, "openai/gpt-4o-mini")
        sync = c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)
        assert done.choices[0].message.content == sync.choices[0].message.content
        assert db.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()[0] == "running"
        runs = [r for r in gw.records() if r.get("async_job_id") == job.id and r["user_agent"] == "tollgate-async-worker"]
        assert len(runs) == 1 and runs[0]["error"] == "async_job_store_error" and runs[0]["input_tokens"], runs
        gw.stderr.seek(0)
        assert "cannot store its result" in gw.stderr.read()
        # The store takes writes again: the held answer is written, and a
        # restarted gateway answers the poll from the store.
        db.execute("DROP TRIGGER full_finish")
        db.commit()
        deadline = time.time() + 10
        while db.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()[0] != "done":
            assert time.time() < deadline, "the held result was never written"
            time.sleep(0.1)
        gw.stop()
        gw = Gateway(mocks, tmpdir_)
        again = client(gw).chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_headers={"x-bf-async-id": job.id})
        assert again.choices[0].message.content == done.choices[0].message.content
    finally:
        db.close()
        gw.stop()
