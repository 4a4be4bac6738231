"""Mock LLM providers on 127.0.0.1 for the end-to-end suite.

One `MockProvider` per provider, each on its own port, so a test can tell
where a request went. Each checks what the real API checks (the auth header
in the provider's own form with the gateway's configured key, Azure's
`api-version`) and answers in the API's real JSON and SSE shapes, with usage.
SSE events are sent with a delay and their send times recorded, so tests can
check that streaming is not buffered. Every request is recorded.
"""

import base64
import json
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

EVENT_DELAY = 0.15  # seconds between SSE events


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

            def _sse(self, events, path):
                """events: list of (event name or None, data object or raw string)."""
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for name, data in events:
                    time.sleep(EVENT_DELAY)
                    payload = data if isinstance(data, str) else json.dumps(data)
                    text = (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"
                    raw = text.encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
                    self.wfile.flush()
                    mock.sent_events.append((path, time.monotonic()))
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
        want = {
            "openai": ("authorization", f"Bearer {self.key}"),
            "anthropic": ("x-api-key", self.key),
            "azure": ("api-key", self.key),
            "gemini": ("x-goog-api-key", self.key),
            "vertex": ("x-goog-api-key", self.key),
        }[self.provider]
        if h.get(want[0]) != want[1]:
            return {"error": {"message": f"invalid credentials: {want[0]}", "type": "authentication_error", "code": 401}}
        if self.provider == "azure" and r.path.startswith("/openai/deployments/") and "api-version=" not in r.query:
            return {"error": {"code": "404", "message": "Resource not found (api-version missing)"}}
        return None

    # -- answers --------------------------------------------------------------

    def route(self, h, r):
        p, body = r.path, (r.json() if r.body and r.headers.get("content-type", "").startswith("application/json") else {})
        stream = isinstance(body, dict) and body.get("stream") is True or "alt=sse" in r.query
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
        if re.search(r"/files/[^/]+$", p) and r.method == "DELETE":
            return h._json(200, {"id": p.rsplit("/", 1)[1], "object": "file", "deleted": True})
        return h._json(404, {"error": {"message": f"mock has no {r.method} {p}"}})

    CHAT_MODEL = "gpt-4o-mini-2024-07-18"

    def chat(self, h, r, body, stream):
        text = "Hello from the mock"
        usage = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
        if not stream:
            return h._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": self.CHAT_MODEL,
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
                                 "usage": usage, "system_fingerprint": "fp_mock"})
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": self.CHAT_MODEL, "system_fingerprint": "fp_mock"}
        events = [(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}], "usage": None})]
        for word in ["Hello", " from", " the", " mock"]:
            events.append((None, {**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}], "usage": None}))
        events.append((None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append((None, {**base, "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        return h._sse(events, r.path)

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
        if body.get("encoding_format") == "base64":
            emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        else:
            emb = vec
        return h._json(200, {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": emb}], "model": "text-embedding-3-small",
                             "usage": {"prompt_tokens": 4, "total_tokens": 4}})

    ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"

    def anthropic(self, h, r, body, stream):
        usage = {"input_tokens": 13, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 7}
        if not stream:
            return h._json(200, {"id": "msg_1", "type": "message", "role": "assistant", "model": self.ANTHROPIC_MODEL,
                                 "content": [{"type": "text", "text": "Hello from Claude mock"}], "stop_reason": "end_turn", "stop_sequence": None, "usage": usage})
        events = [("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": self.ANTHROPIC_MODEL, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}}),
                  ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                  ("ping", {"type": "ping"})]
        for part in ["Hello", " from", " Claude", " mock"]:
            events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}}))
        events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                   ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 7}}),
                   ("message_stop", {"type": "message_stop"})]
        return h._sse(events, r.path)

    GEMINI_MODEL = "gemini-2.5-flash"

    def google(self, h, r, body):
        p = r.path
        if ":countTokens" in p:
            return h._json(200, {"totalTokens": 9})
        if ":batchEmbedContents" in p:
            n = len(body.get("requests", [])) or 1
            return h._json(200, {"embeddings": [{"values": [0.5, 0.25, 0.125]} for _ in range(n)]})
        if ":embedContent" in p:
            return h._json(200, {"embedding": {"values": [0.5, 0.25, 0.125]}})
        if ":predict" in p:
            n = len(body.get("instances", [])) or 1
            return h._json(200, {"predictions": [{"embeddings": {"values": [0.5, 0.25, 0.125], "statistics": {"token_count": 3, "truncated": False}}} for _ in range(n)]})
        usage = {"promptTokenCount": 8, "candidatesTokenCount": 6, "totalTokenCount": 14}
        who = "Vertex" if self.provider == "vertex" else "Gemini"
        if ":streamGenerateContent" in p:
            parts = ["Hello", " from", f" {who}", " mock"]
            events = []
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                cand = {"content": {"parts": [{"text": part}], "role": "model"}, "index": 0}
                if last:
                    cand["finishReason"] = "STOP"
                events.append((None, {"candidates": [cand], "usageMetadata": {**usage, "candidatesTokenCount": i + 3 if not last else 6}, "modelVersion": self.GEMINI_MODEL, "responseId": "r1"}))
            return h._sse(events, r.path)
        if ":generateContent" in p:
            return h._json(200, {"candidates": [{"content": {"parts": [{"text": f"Hello from {who} mock"}], "role": "model"}, "finishReason": "STOP", "index": 0}],
                                 "usageMetadata": usage, "modelVersion": self.GEMINI_MODEL, "responseId": "r1"})
        return h._json(404, {"error": {"code": 404, "message": f"mock has no {p}", "status": "NOT_FOUND"}})
