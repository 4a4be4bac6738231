"""Mock LLM providers on 127.0.0.1 for the end-to-end suite.

One `MockProvider` per provider, each on its own port, so a test can tell
where a request went. Each checks what the real API checks (the auth header
in the provider's own form with the gateway's configured key, Azure's
`api-version`) and answers in the API's real JSON and SSE shapes, with usage.
SSE events are sent with a delay and their send times recorded, so tests can
check that streaming is not buffered. Every request is recorded.

Failure modes: a model name containing `-fail-NNN` (`claude-fail-429`,
`gemini-fail-429`, `gpt-fail-500`; for Gemini the model is the one in the
path) makes the mock answer status NNN with the provider's own error body
(`retry-after: 7` on 429). Other behaviour the /openai route tests use:
Anthropic and Gemini answer a tool call when the request declares tools and
its last turn is not a tool result; a small max_tokens / maxOutputTokens (< 5)
ends with the provider's length reason; Gemini answers finishReason SAFETY to a
prompt containing `[[blocked]]`; `claude-cache*` reports cache tokens and
`gemini-thinking*` thought and cached tokens in its usage.

Reasoning models (SPEC 8), with the providers' own replay rules:
- Anthropic with `thinking` enabled answers with a signed `thinking` block
  first (`*redacted*` models add a `redacted_thinking` block, `*multi*`
  models a second thinking block), and unique tool-use ids. It answers 400
  unless the assistant turn before a tool result starts with the thinking
  blocks it issued, unmodified (the signature covers the text). Adaptive
  thinking (`output_config.effort`) only on Claude 4.6 and later, and only
  it on `claude-opus-4-7` and `claude-opus-5`.
- `gemini-3*` models (Gemini and Vertex) sign the first function call of
  each step with a `thoughtSignature` and answer 400 unless every model turn
  of the current turn gives it back on that call; `includeThoughts` adds a
  thought part. Their `responseId`s are unique, as the real API's.
"""

import base64
import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

EVENT_DELAY = 0.15  # seconds between SSE events

# Reasoning replay (SPEC 8): what the mocks issued, to check it comes back unmodified.
TURNS = itertools.count(1)
ISSUED_REDACTED = set()
ISSUED_SIGNATURES = {}  # thoughtSignature -> (function name, args JSON)


def thinking_signature(text):
    """Anthropic's signature over a thinking block's text (here a keyed hash)."""
    return base64.b64encode(hashlib.sha256(b"mock-anthropic-thinking:" + text.encode()).digest()).decode()


def thinking_replay_problem(msgs):
    """Anthropic's rule with thinking on: the assistant turn answered by tool
    results starts with the thinking blocks it was given, unmodified."""
    for i, m in enumerate(msgs):
        if m.get("role") != "assistant" or not isinstance(m.get("content"), list):
            continue
        blocks = m["content"]
        for j, b in enumerate(blocks):
            if b.get("type") == "thinking" and b.get("signature") != thinking_signature(b.get("thinking", "")):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
            if b.get("type") == "redacted_thinking" and b.get("data") not in ISSUED_REDACTED:
                return f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block"
        uses_tools = any(b.get("type") == "tool_use" for b in blocks)
        nxt = msgs[i + 1] if i + 1 < len(msgs) else {}
        answered = isinstance(nxt.get("content"), list) and any(b.get("type") == "tool_result" for b in nxt["content"])
        if uses_tools and answered and (not blocks or blocks[0].get("type") not in ("thinking", "redacted_thinking")):
            found = blocks[0].get("type") if blocks else "nothing"
            return (f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. When `thinking` is enabled, "
                    "a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). "
                    "We recommend you include thinking blocks from previous turns.")
    return None


def thought_signature_problem(contents):
    """Gemini 3's rule: in the current turn (after the last user text), the
    first function call of every model step carries the signature it was
    given."""
    start = 0
    for i, c in enumerate(contents):
        if c.get("role") in (None, "user") and any("text" in p for p in c.get("parts") or []):
            start = i + 1
    for i, c in enumerate(contents[start:], start):
        if c.get("role") != "model":
            continue
        calls = [(k, p) for k, p in enumerate(c.get("parts") or []) if "functionCall" in p]
        if not calls:
            continue
        k, first = calls[0]
        fc = first["functionCall"]
        sig = first.get("thoughtSignature")
        if not sig:
            return (f"Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, "
                    f"and missing thought_signature may lead to degraded model performance. Additional data, function call "
                    f"`default_api:{fc.get('name')}` , position {k + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")
        if ISSUED_SIGNATURES.get(sig) != (fc.get("name"), json.dumps(fc.get("args") or {}, sort_keys=True)):
            return f"Corrupted thought signature in contents[{i}].parts[{k}]."
    return None


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict
    body: bytes
    at: float

    def json(self):
        return json.loads(self.body or b"null")


@dataclass
class MockProvider:
    provider: str
    key: str
    requests: list = field(default_factory=list)
    sent_events: list = field(default_factory=list)  # (request path, monotonic time) per SSE event
    port: int = 0
    name: str = ""  # defaults to the provider (two mocks of one provider differ by name)
    sent_log: list = field(default_factory=list)  # (request path, monotonic time, event name, data) per SSE event
    # Failures on demand (routing tests): `script` answers the next requests
    # in turn (a status, or "silent": nothing until the client gives up),
    # then normal answers resume; `down` answers every request so.
    script: list = field(default_factory=list)
    down: object = None
    delay: float = 0.0  # seconds before every answer (latency-based routing)

    def start(self):
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    body = self._read_chunked()
                rec = Recorded(self.command, url.path, url.query, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                mock.requests.append(rec)
                problem = mock.auth_problem(rec)
                if problem:
                    return self._json(401, problem)
                if mock.delay:
                    time.sleep(mock.delay)
                failure = mock.down if mock.down is not None else (mock.script.pop(0) if mock.script else None)
                if failure == "silent":
                    time.sleep(30)
                    self.close_connection = True
                    return
                if failure is not None:
                    return mock.fail(self, failure)
                return mock.route(self, rec)

            def _read_chunked(self):
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()

            def _json(self, status, obj, extra=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, events, path, cut_after=None):
                """events: list of (event name or None, data object or raw string).
                `cut_after`: close the connection after that many events, with
                no terminal chunk (a provider stream cut midway)."""
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for n, (name, data) in enumerate(events):
                    if cut_after is not None and n == cut_after:
                        self.close_connection = True
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    time.sleep(EVENT_DELAY)
                    payload = data if isinstance(data, str) else json.dumps(data)
                    text = (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"
                    raw = text.encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
                    self.wfile.flush()
                    now = time.monotonic()
                    mock.sent_events.append((path, now))
                    mock.sent_log.append((path, now, name, data))
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()

    def clear(self):
        self.take()
        self.script.clear()
        self.down = None
        self.delay = 0.0
        self.sent_events.clear()
        self.sent_log.clear()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def take(self):
        out, self.requests[:] = list(self.requests), []
        return out

    def last(self):
        assert self.requests, f"{self.provider} mock received nothing"
        return self.requests[-1]

    # -- what the real APIs check ---------------------------------------------

    def auth_problem(self, r):
        h = r.headers
        if self.provider == "ollama":  # a local Ollama takes no key
            return None
        want = {
            "openai": ("authorization", f"Bearer {self.key}"),
            "mistral": ("authorization", f"Bearer {self.key}"),
            "anthropic": ("x-api-key", self.key),
            "azure": ("api-key", self.key),
            "gemini": ("x-goog-api-key", self.key),
            "vertex": ("x-goog-api-key", self.key),
        }[self.provider]
        if h.get(want[0]) != want[1]:
            if self.provider == "anthropic":
                return {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
            return {"error": {"message": f"invalid credentials: {want[0]}", "type": "authentication_error", "code": 401}}
        if self.provider == "azure" and r.path.startswith("/openai/deployments/") and "api-version=" not in r.query:
            return {"error": {"code": "404", "message": "Resource not found (api-version missing)"}}
        return None

    # -- answers --------------------------------------------------------------

    def fail(self, h, status):
        """The provider's own error answer with `status` (`retry-after` on 429)."""
        if self.provider == "anthropic":
            kind = ANTHROPIC_ERROR.get(status, "api_error")
            return h._json(status, {"type": "error", "error": {"type": kind, "message": f"{self.name or self.provider} failure {status}"}}, retry_headers(status))
        if self.provider in ("gemini", "vertex"):
            return h._json(status, {"error": {"code": status, "message": f"{self.name or self.provider} failure {status}", "status": "UNAVAILABLE"}}, retry_headers(status))
        kind = "rate_limit_exceeded" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
        return h._json(status, openai_error(f"{self.name or self.provider} failure {status}", kind, None, str(status)), retry_headers(status))

    def route(self, h, r):
        p, body = r.path, (r.json() if r.body and r.headers.get("content-type", "").startswith("application/json") else {})
        stream = isinstance(body, dict) and body.get("stream") is True or "alt=sse" in r.query
        if self.provider == "vertex" and re.search(r"/publishers/anthropic/models/[^/:]+:(stream)?[rR]awPredict$", p):
            # Claude on Vertex: the Messages API, the model in the path and
            # the version in the body.
            if body.get("anthropic_version") != "vertex-2023-10-16" or "model" in body:
                return h._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic_version: vertex-2023-10-16 is required; model: not allowed in the body"}})
            model = re.search(r"/models/([^/:]+):", p).group(1)
            shim = Recorded(r.method, p, r.query, {**r.headers, "anthropic-version": "2023-06-01"}, r.body, r.at)
            body = {k: v for k, v in body.items() if k != "anthropic_version"} | {"model": model}
            return self.anthropic(h, shim, body, p.endswith(":streamRawPredict"))
        if self.provider in ("gemini", "vertex"):
            return self.google(h, r, body)
        if p.endswith("/messages/count_tokens"):
            return h._json(200, {"input_tokens": 14})
        if p.endswith("/messages"):
            return self.anthropic(h, r, body, stream)
        if p.endswith("/chat/completions"):
            return self.chat(h, r, body, stream)
        if p.endswith("/responses"):
            return self.responses(h, r, body, stream)
        if p.endswith("/embeddings"):
            return self.embeddings(h, r, body)
        if p.endswith("/models") and r.method == "GET":
            return h._json(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "openai"}]})
        if p.endswith("/files") and r.method == "POST":
            m = re.search(rb'filename="([^"]+)"', r.body)
            return h._json(200, {"id": "file-abc123", "object": "file", "bytes": len(r.body), "created_at": 1700000000, "filename": m.group(1).decode() if m else "x", "purpose": "batch", "status": "processed"})
        if p.endswith("/files") and r.method == "GET":
            return h._json(200, {"object": "list", "data": [{"id": "file-abc123", "object": "file", "bytes": 10, "created_at": 1700000000, "filename": "batch.jsonl", "purpose": "batch", "status": "processed"}], "has_more": False})
        if re.search(r"/files/[^/]+$", p) and r.method == "DELETE":
            return h._json(200, {"id": p.rsplit("/", 1)[1], "object": "file", "deleted": True})
        return h._json(404, {"error": {"message": f"mock has no {r.method} {p}"}})

    CHAT_MODEL = "gpt-4o-mini-2024-07-18"

    def chat_model(self, body):
        """The model the answer names: OpenAI and Azure answer a dated
        snapshot; Ollama and other compatible servers echo the request's."""
        return self.CHAT_MODEL if self.provider in ("openai", "azure") else body.get("model", "?")

    def chat(self, h, r, body, stream):
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) and not r.path.startswith("/openai/deployments/"):
            return h._json(400, openai_error("you must provide a model parameter", "invalid_request_error", None, None))
        if isinstance(model, str) and "/" in model:
            return h._json(404, openai_error(f"The model `{model}` does not exist", "invalid_request_error", None, "model_not_found"))
        if not body.get("messages"):
            return h._json(400, openai_error("Missing required parameter: 'messages'.", "invalid_request_error", "messages", "missing_required_parameter"))
        fail = fail_status(model or r.path)
        if fail:
            return h._json(fail, openai_error(f"mock failure {fail}", "rate_limit_exceeded" if fail == 429 else "server_error" if fail >= 500 else "invalid_request_error", None, str(fail)), retry_headers(fail))
        text = "Hello from the mock"
        usage = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
        if not stream:
            return h._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": self.chat_model(body),
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
                                 "usage": usage, "system_fingerprint": "fp_mock"})
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": self.chat_model(body), "system_fingerprint": "fp_mock"}
        events = [(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}], "usage": None})]
        for word in ["Hello", " from", " the", " mock"]:
            events.append((None, {**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}], "usage": None}))
        events.append((None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append((None, {**base, "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        cut = re.search(r"-cut-(\d+)", model or "")
        return h._sse(events, r.path, cut_after=int(cut.group(1)) if cut else None)

    RESP_MODEL = "gpt-4.1-mini-2025-04-14"

    def _response(self, status, text):
        out = [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}] if text else []
        return {"id": "resp_1", "object": "response", "created_at": 1700000000, "status": status, "model": self.RESP_MODEL,
                "output": out, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "error": None, "incomplete_details": None,
                "instructions": None, "metadata": {}, "temperature": 1.0, "top_p": 1.0,
                "usage": {"input_tokens": 21, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 6,
                          "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 27} if status == "completed" else None}

    def responses(self, h, r, body, stream):
        text = "Responses from the mock"
        if not stream:
            return h._json(200, self._response("completed", text))
        item = {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        done_part = {**part, "text": text}
        done_item = {**item, "status": "completed", "content": [done_part]}
        events = [("response.created", {"type": "response.created", "response": self._response("in_progress", None)}),
                  ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
                  ("response.content_part.added", {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": part})]
        for piece in ["Responses", " from", " the", " mock"]:
            events.append(("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}))
        events += [("response.output_text.done", {"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
                   ("response.content_part.done", {"type": "response.content_part.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": done_part}),
                   ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": done_item}),
                   ("response.completed", {"type": "response.completed", "response": self._response("completed", text)})]
        for seq, (_, data) in enumerate(events):
            data["sequence_number"] = seq
        return h._sse(events, r.path)

    def embeddings(self, h, r, body):
        vec = [0.25, -0.5, 0.125]
        if "words" in str(body.get("model", "")):
            vec = word_vector(body.get("input"))
        if body.get("encoding_format") == "base64":
            emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        else:
            emb = vec
        return h._json(200, {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": emb}], "model": "text-embedding-3-small",
                             "usage": {"prompt_tokens": 4, "total_tokens": 4}})

    ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"

    def anthropic(self, h, r, body, stream):
        problem = anthropic_problem(r, body)
        if problem:
            return h._json(problem[0], {"type": "error", "error": {"type": problem[1], "message": problem[2]}}, problem[3] if len(problem) > 3 else None)
        model = body.get("model", "")
        if model.startswith("claude-slow"):
            time.sleep(3)  # a long generation (async job tests kill the gateway meanwhile)
        # What the API answers: the dated snapshot of the requested alias.
        answer_model = self.ANTHROPIC_MODEL if model == "claude-sonnet-4-5" else model
        usage = {"input_tokens": 13, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 7}
        if model.startswith("claude-cache"):
            usage.update(cache_creation_input_tokens=4, cache_read_input_tokens=2)
        kind = (body.get("thinking") or {}).get("type")
        thinking_on = kind in ("enabled", "adaptive")
        adaptive_only, adaptive_ok = model.startswith(("claude-opus-4-7", "claude-opus-5")), model.startswith(("claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-7", "claude-opus-5"))
        if kind == "enabled" and adaptive_only:
            return h._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": f"thinking.type.enabled is not supported for {model}. Use thinking.type.adaptive and output_config.effort."}})
        if kind == "adaptive" and (not adaptive_ok or (body.get("output_config") or {}).get("effort") not in ("low", "medium", "high", "max")):
            return h._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": f"thinking.type.adaptive needs a model that supports it and output_config.effort (got {model})"}})
        if thinking_on:
            bad = thinking_replay_problem(body["messages"])
            if bad:
                return h._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": bad}})
        turn = next(TURNS)
        blocks, stop = [("text", ["Hello", " from", " Claude", " mock"])], "end_turn"
        last = body["messages"][-1]
        last_is_tool_result = isinstance(last.get("content"), list) and any(b.get("type") == "tool_result" for b in last["content"])
        tool_choice = (body.get("tool_choice") or {}).get("type")
        if body.get("tools") and not last_is_tool_result and tool_choice != "none":
            tools = body["tools"]
            if tool_choice == "tool":
                tools = [t for t in tools if t["name"] == body["tool_choice"]["name"]]
            blocks = [("text", ["Let me", " check."])]
            # Parallel calls: one tool_use per declared tool (at most two).
            for i, t in enumerate(tools[:2]):
                blocks.append(("tool_use", {"id": f"toolu_t{turn}_{i + 1}" if thinking_on else f"toolu_0{i + 1}", "name": t["name"], "pieces": ['{"city"', ': "Pa', 'ris", "unit": ', '"c"}'] if i == 0 else ['{"city": ', '"Rome"}']}))
            stop = "tool_use"
        elif last_is_tool_result:
            results = [b for b in last["content"] if b.get("type") == "tool_result"]
            blocks = [("text", ["Tool said:", " " + text_of(results[0].get("content"))])]
        if body["max_tokens"] < 5:
            blocks, stop = [("text", ["Hello", " from"])], "max_tokens"
        if thinking_on:
            thoughts = [("thinking", [f"Turn {turn}: the user", " wants the weather; I will use the tools."])]
            if "multi" in model:
                thoughts.append(("thinking", [f"Turn {turn}, second thought:", " check both cities."]))
            if "redacted" in model:
                data = f"enc-{turn}-" + thinking_signature(f"redacted {turn}")
                ISSUED_REDACTED.add(data)
                thoughts.append(("redacted", data))
            blocks = thoughts + blocks
        if not stream:
            content = []
            for kind, val in blocks:
                if kind == "text":
                    content.append({"type": "text", "text": "".join(val)})
                elif kind == "thinking":
                    content.append({"type": "thinking", "thinking": "".join(val), "signature": thinking_signature("".join(val))})
                elif kind == "redacted":
                    content.append({"type": "redacted_thinking", "data": val})
                else:
                    content.append({"type": "tool_use", "id": val["id"], "name": val["name"], "input": json.loads("".join(val["pieces"]))})
            return h._json(200, {"id": "msg_1", "type": "message", "role": "assistant", "model": answer_model,
                                 "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage})
        events = [("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": answer_model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}}),
                  ("ping", {"type": "ping"})]
        for i, (kind, val) in enumerate(blocks):
            if kind == "text":
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}))
                for part in val:
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": part}}))
            elif kind == "thinking":
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
                for part in val:
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": part}}))
                sig = thinking_signature("".join(val))
                for piece in (sig[:20], sig[20:]):
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "signature_delta", "signature": piece}}))
            elif kind == "redacted":
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "redacted_thinking", "data": val}}))
            else:
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": val["id"], "name": val["name"], "input": {}}}))
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": ""}}))
                for part in val["pieces"]:
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": part}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": usage["output_tokens"]}}),
                   ("message_stop", {"type": "message_stop"})]
        # `claude-cut*`: the stream stops after "Hello from" (5 events).
        return h._sse(events, r.path, cut_after=5 if model.startswith("claude-cut") else None)

    GEMINI_MODEL = "gemini-2.5-flash"

    def google(self, h, r, body):
        p = r.path
        if ":countTokens" in p:
            return h._json(200, {"totalTokens": 9})
        if ":batchEmbedContents" in p:
            reqs = body.get("requests") or []
            model = re.search(r"/models/([^/:]+):", p).group(1)
            for q in reqs:
                if q.get("model") != f"models/{model}":
                    return h._json(400, {"error": {"code": 400, "message": f"model in request ({q.get('model')}) does not match models/{model}", "status": "INVALID_ARGUMENT"}})
                if not (q.get("content") or {}).get("parts"):
                    return h._json(400, {"error": {"code": 400, "message": "content.parts is required", "status": "INVALID_ARGUMENT"}})
            n = len(reqs) or 1
            return h._json(200, {"embeddings": [{"values": [0.5, 0.25, 0.125 * (i + 1)]} for i in range(n)]})
        if ":embedContent" in p:
            return h._json(200, {"embedding": {"values": [0.5, 0.25, 0.125]}})
        if ":predict" in p:
            n = len(body.get("instances", [])) or 1
            return h._json(200, {"predictions": [{"embeddings": {"values": [0.5, 0.25, 0.125], "statistics": {"token_count": 3, "truncated": False}}} for _ in range(n)]})
        usage = {"promptTokenCount": 8, "candidatesTokenCount": 6, "totalTokenCount": 14}
        who = "Vertex" if self.provider == "vertex" else "Gemini"
        m = re.search(r"/models/([^/:]+):", p)
        model = m.group(1) if m else ""
        if ":generateContent" in p or ":streamGenerateContent" in p:
            problem = gemini_problem(body, model)
            if problem:
                status, message = problem
                return h._json(status, {"error": {"code": status, "message": message, "status": GOOGLE_STATUS.get(status, "UNKNOWN")}}, retry_headers(status))
        gemini3 = model.startswith("gemini-3")
        if gemini3 and (":generateContent" in p or ":streamGenerateContent" in p):
            bad = thought_signature_problem(body.get("contents") or [])
            if bad:
                return h._json(400, {"error": {"code": 400, "message": bad, "status": "INVALID_ARGUMENT"}})
        response_id = f"r{next(TURNS)}" if gemini3 else "r1"
        if model.startswith("gemini-thinking"):
            usage = {"promptTokenCount": 8, "candidatesTokenCount": 6, "thoughtsTokenCount": 10, "cachedContentTokenCount": 3, "totalTokenCount": 24}
        chunks, finish = [[{"text": t}] for t in ["Hello", " from", f" {who}", " mock"]], "STOP"
        contents = body.get("contents") or [{}]
        last_parts = contents[-1].get("parts") or []
        declares = any(t.get("functionDeclarations") for t in body.get("tools") or [])
        if declares and not any("functionResponse" in part for part in last_parts):
            names = [d["name"] for t in body["tools"] for d in t.get("functionDeclarations", [])]
            calls = [{"functionCall": {"name": names[0], "args": {"city": "Paris", "unit": "c"}}}]
            if len(names) > 1:
                calls.append({"functionCall": {"name": names[1], "args": {"city": "Rome"}}})
            if gemini3:
                # The first call of the step is signed (parallel calls after it are not).
                sig = base64.b64encode(hashlib.sha256(f"{response_id}:{time.time_ns()}".encode()).digest()).decode()
                ISSUED_SIGNATURES[sig] = (calls[0]["functionCall"]["name"], json.dumps(calls[0]["functionCall"]["args"], sort_keys=True))
                calls[0]["thoughtSignature"] = sig
            chunks = [[{"text": "Let me check."}], calls]
        elif any("functionResponse" in part for part in last_parts):
            resp = next(part["functionResponse"] for part in last_parts if "functionResponse" in part)
            chunks = [[{"text": "Tool said:"}], [{"text": " " + json.dumps(resp.get("response"), sort_keys=True)}]]
        if ((body.get("generationConfig") or {}).get("thinkingConfig") or {}).get("includeThoughts"):
            chunks = [[{"text": "Thinking about the weather.", "thought": True}]] + chunks
        if "[[blocked]]" in json.dumps(contents):
            chunks, finish = [], "SAFETY"
        elif ((body.get("generationConfig") or {}).get("maxOutputTokens") or 100) < 5:
            chunks, finish = [[{"text": "Hello"}], [{"text": " from"}]], "MAX_TOKENS"
        if ":streamGenerateContent" in p:
            events = []
            for i, parts in enumerate(chunks or [[]]):
                last = i == max(len(chunks), 1) - 1
                cand = {"content": {"parts": parts, "role": "model"}, "index": 0} if parts else {"index": 0}
                if last:
                    cand["finishReason"] = finish
                    if finish == "SAFETY":
                        cand["safetyRatings"] = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]
                events.append((None, {"candidates": [cand], "usageMetadata": {**usage, "candidatesTokenCount": i + 3 if not last else usage["candidatesTokenCount"]}, "modelVersion": self.GEMINI_MODEL, "responseId": response_id}))
            return h._sse(events, r.path)
        if ":generateContent" in p:
            cand = {"content": {"parts": [part for parts in chunks for part in parts], "role": "model"}, "finishReason": finish, "index": 0}
            if not chunks:
                del cand["content"]
            # Consecutive text parts arrive merged, as the real API does.
            if chunks and all("text" in part and not part.get("thought") for part in cand["content"]["parts"]):
                cand["content"]["parts"] = [{"text": "".join(part["text"] for part in cand["content"]["parts"])}]
            return h._json(200, {"candidates": [cand], "usageMetadata": usage, "modelVersion": self.GEMINI_MODEL, "responseId": response_id})
        return h._json(404, {"error": {"code": 404, "message": f"mock has no {p}", "status": "NOT_FOUND"}})


# -- helpers: the checks and error bodies of the real APIs ---------------------

GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
ANTHROPIC_ERROR = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                   413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


STOPWORDS = {"a", "an", "the", "is", "are", "of", "what", "whats", "what's", "which", "to", "in", "on", "for", "me", "tell", "please",
             "do", "does", "i", "you", "user", "system", "assistant", "city", "s"}


def word_vector(text, dims=64):
    """An embedding that reflects the text (the `*-words` embedding models):
    a hashed bag of its content words, so a reworded question lands close to
    the original and an unrelated one far away."""
    if isinstance(text, list):
        text = " ".join(map(str, text))
    words = [w for w in re.findall(r"[a-z]+", str(text).lower()) if w not in STOPWORDS]
    vec = [0.0] * dims
    for w in words:
        vec[sum(ord(c) * 31 ** i for i, c in enumerate(w)) % dims] += 1.0
    return vec if any(vec) else [1.0] + [0.0] * (dims - 1)


def fail_status(name):
    """`claude-fail-429` (any model or path containing `-fail-NNN`) -> 429."""
    m = re.search(r"-fail-(\d{3})", name or "")
    return int(m.group(1)) if m else None


def retry_headers(status):
    return {"retry-after": "7"} if status == 429 else None


def openai_error(message, type_, param, code):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def text_of(content):
    """The text of an Anthropic content (string or blocks)."""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or [] if isinstance(b, dict))


def cache_control_marks(body):
    """Every cache_control in a Messages request: tools, system blocks, message blocks and tool results' blocks."""
    marks = [t["cache_control"] for t in body.get("tools") or [] if "cache_control" in t]
    system = body.get("system")
    blocks = list(system) if isinstance(system, list) else []
    for m in body.get("messages") or []:
        if isinstance(m.get("content"), list):
            blocks += m["content"]
            for b in m["content"]:
                if b.get("type") == "tool_result" and isinstance(b.get("content"), list):
                    blocks += b["content"]
    return marks + [b["cache_control"] for b in blocks if isinstance(b, dict) and "cache_control" in b]


def anthropic_problem(r, body):
    """(status, error type, message[, headers]) where the Messages API refuses the request."""
    if not r.headers.get("anthropic-version"):
        return 400, "invalid_request_error", "anthropic-version: header is required"
    if not isinstance(body, dict) or not body:
        return 400, "invalid_request_error", "request body must be JSON"
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return 400, "invalid_request_error", "model: Field required"
    fail = fail_status(model)
    if fail:
        return fail, ANTHROPIC_ERROR.get(fail, "api_error"), f"mock failure {fail}", retry_headers(fail)
    if "/" in model:
        return 404, "not_found_error", f"model: {model}"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return 400, "invalid_request_error", "max_tokens: Field required"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return 400, "invalid_request_error", "messages: at least one message is required"
    marks = cache_control_marks(body)
    if len(marks) > 4:
        return 400, "invalid_request_error", f"A maximum of 4 blocks with cache_control may be provided. Found {len(marks)}."
    for cc in marks:
        if not isinstance(cc, dict) or cc.get("type") != "ephemeral" or cc.get("ttl", "5m") not in ("5m", "1h"):
            return 400, "invalid_request_error", f"cache_control: invalid value {cc!r}"
    for i, m in enumerate(msgs):
        if m.get("role") not in ("user", "assistant"):
            return 400, "invalid_request_error", f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = m.get("content")
        if isinstance(content, list):
            for j, b in enumerate(content):
                if b.get("type") not in ("text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"):
                    return 400, "invalid_request_error", f"messages.{i}.content.{j}.type: unknown block type {b.get('type')}"
                if b.get("type") == "tool_use" and not (b.get("id") and b.get("name") and isinstance(b.get("input"), dict)):
                    return 400, "invalid_request_error", f"messages.{i}.content.{j}: tool_use needs id, name and an input object"
                if b.get("type") == "tool_result" and not b.get("tool_use_id"):
                    return 400, "invalid_request_error", f"messages.{i}.content.{j}.tool_use_id: Field required"
        elif not isinstance(content, str):
            return 400, "invalid_request_error", f"messages.{i}.content: Input should be a string or a list"
    # Every tool_result answers a tool_use of the assistant turn right before it.
    for i, m in enumerate(msgs):
        if isinstance(m.get("content"), list):
            for b in m["content"]:
                if b.get("type") == "tool_result":
                    prev = msgs[i - 1] if i else {}
                    ids = [x.get("id") for x in prev.get("content") or [] if isinstance(x, dict) and x.get("type") == "tool_use"] if isinstance(prev.get("content"), list) else []
                    if b["tool_use_id"] not in ids:
                        return 400, "invalid_request_error", f"messages.{i}: tool_result {b['tool_use_id']} has no matching tool_use in the previous message"
    sysp = body.get("system")
    if sysp is not None and not isinstance(sysp, (str, list)):
        return 400, "invalid_request_error", "system: Input should be a string or a list of text blocks"
    for t in body.get("tools") or []:
        if not t.get("name") or "input_schema" not in t:
            return 400, "invalid_request_error", "tools: each tool needs name and input_schema"
    thinking = body.get("thinking")
    if thinking and thinking.get("type") == "enabled":
        b = thinking.get("budget_tokens")
        if not isinstance(b, int) or b < 1024 or b >= body["max_tokens"]:
            return 400, "invalid_request_error", "thinking.budget_tokens: must be >= 1024 and less than max_tokens"
    return None


def gemini_problem(body, model):
    """(status, message) where generateContent refuses the request."""
    fail = fail_status(model)
    if fail:
        return fail, f"mock failure {fail}"
    if not isinstance(body, dict) or not body.get("contents"):
        return 400, "contents is not specified"
    for i, c in enumerate(body["contents"]):
        if c.get("role") not in (None, "user", "model", "function"):
            return 400, f"contents[{i}].role: please use a valid role: user, model"
        if not c.get("parts"):
            return 400, f"contents[{i}].parts must not be empty"
    for key in ("messages", "system", "max_tokens"):
        if key in body:
            return 400, f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
    return None
