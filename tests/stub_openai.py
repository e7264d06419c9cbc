"""A fault-injecting, OpenAI-compatible chat-completions server for tests and benchmarks.

`StubServer(reply)` answers POST /v1/chat/completions with `reply(call_number, body, authorization)`,
counts calls and the most requests in flight at once; 127.0.0.1 only, TCP_NODELAY, one write per
response (so Nagle and delayed ACKs add no latency of their own). `rate_limited(reply, TokenBucket(R))`
admits R requests a second and answers the rest 429 with Retry-After.
"""
from __future__ import annotations

import json
import math
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Reply = tuple[int, dict[str, str], Any, float]
"""(status, extra headers, JSON payload, seconds to wait before answering)"""


def completion(content: str, prompt_tokens: int = 5, completion_tokens: int = 3) -> dict[str, Any]:
    return {"id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return " ".join(p["text"] for p in content if p["type"] == "text") if isinstance(content, list) else content


def echo(delay: float = 0.0) -> Callable[[int, dict[str, Any], str], Reply]:
    return lambda call, body, auth: (200, {}, completion("echo: " + user_text(body)), delay)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops bursts of new connections for a second

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-keep-alive (cancelled requests, closed models) are expected


class StubServer:
    """POST /v1/chat/completions answered by `reply(call_number, body, authorization)`; counts calls and
    the most requests in flight at once. One write per response, TCP_NODELAY, 127.0.0.1 only."""

    def __init__(self, reply: Callable[[int, dict[str, Any], str], Reply]) -> None:
        self.reply = reply
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json",
                         f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in headers.items())]
                self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)  # one write

            def do_GET(self) -> None:
                self._send(200, {"status": "ok"}, {})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                auth = self.headers.get("Authorization", "")
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                with stub.lock:
                    stub.calls += 1
                    call = stub.calls
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                    stub.bodies.append(body)
                    stub.authorizations.append(auth)
                status, headers, payload, delay = stub.reply(call, body, auth)
                time.sleep(delay)
                with stub.lock:  # before answering, so a follow-up request never overlaps this one
                    stub.in_flight -= 1
                self._send(status, payload, headers)

        return Handler

    def __enter__(self) -> "StubServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class TokenBucket:
    """Admits `rate` requests a second, at most `burst` at once (it starts full); thread-safe."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()
        self.admitted = self.refused = 0
        self.lock = threading.Lock()

    def take(self) -> float | None:
        """None when a request is admitted, else the seconds until the next token."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                self.admitted += 1
                return None
            self.refused += 1
            return (1 - self.tokens) / self.rate


def too_many_requests(wait: float) -> Reply:
    """A 429 at once, with the wait as OpenAI sends it: retry-after-ms, and Retry-After in whole seconds."""
    headers = {"retry-after-ms": str(math.ceil(wait * 1000)), "Retry-After": str(math.ceil(wait))}
    error = {"error": {"message": "Rate limit reached for requests", "type": "requests",
                       "code": "rate_limit_exceeded"}}
    return 429, headers, error, 0.0


def rate_limited(reply: Callable[[int, dict[str, Any], str], Reply], bucket: TokenBucket
                 ) -> Callable[[int, dict[str, Any], str], Reply]:
    """`reply` for the requests `bucket` admits; the rest get `too_many_requests`."""
    def answer(call: int, body: dict[str, Any], auth: str) -> Reply:
        wait = bucket.take()
        return reply(call, body, auth) if wait is None else too_many_requests(wait)

    return answer
