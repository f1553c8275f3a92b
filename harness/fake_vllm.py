"""A scripted stand-in for vLLM's OpenAI-compatible server, for fault injection and benchmarks.

It speaks real HTTP on a loopback port. By default it answers like vLLM does under a
``structured_outputs`` choice constraint: one code token with renormalised top log-probabilities.
Tests queue faults (``script``) that are served, one per request, before the default resumes.
The real vLLM server is exercised by the end-to-end tests; this one never replaces it there.
"""

from __future__ import annotations

import hashlib
import json
import math
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.upstream import VllmEndpoint

Fault = Callable[["_Handler"], bool]
"""Handles the request itself and returns True, or returns False to fall through to the default."""


@dataclass
class FakeVllm:
    url: str = ""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    vocabulary: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    max_in_flight: int = 0
    rules: dict[str, str] = field(default_factory=dict)
    """Words (case-folded) whose presence in a document makes the answer the given code."""

    def script(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def answer_when(self, word: str, code: str) -> None:
        """From now on, a document holding ``word`` is answered ``code`` (probability 0.9)."""
        self.rules[word.casefold()] = code

    @property
    def endpoint(self) -> VllmEndpoint:
        return VllmEndpoint(self.url)

    def count(self, path: str) -> int:
        return sum(1 for seen, _ in self.requests if seen == path)

    def token_id(self, word: str) -> int:
        with self.lock:
            return self.vocabulary.setdefault(word, len(self.vocabulary))


# Faults -------------------------------------------------------------------------------------


def status(code: int, body: bytes = b'{"error": "scripted"}') -> Fault:
    def fault(handler: _Handler) -> bool:
        handler.send(code, body)
        return True

    return fault


def delay(seconds: float) -> Fault:
    def fault(handler: _Handler) -> bool:
        time.sleep(seconds)
        return False

    return fault


def garbage(body: bytes = b"<html>not json") -> Fault:
    return status(200, body)


def answer(code: str) -> Fault:
    """Answer ``code`` whatever the constraint says (a model or server that ignores it)."""

    def fault(handler: _Handler) -> bool:
        handler.send(200, json.dumps(chat_body({code: 1.0}, code)).encode())
        return True

    return fault


def drop_connection() -> Fault:
    def fault(handler: _Handler) -> bool:
        handler.close_connection = True
        handler.connection.close()
        return True

    return fault


# Default behaviour --------------------------------------------------------------------------


CHAT_TEMPLATE_TOKENS = 8
"""What the fake counts for a chat template's markup around the messages."""


def chat_body(
    probabilities: dict[str, float], chosen: str, prompt_tokens: int = 0
) -> dict[str, Any]:
    top = [
        {"token": code, "logprob": math.log(p) if p > 0 else -9999.0}
        for code, p in sorted(probabilities.items(), key=lambda item: -item[1])
    ]
    return {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": chosen},
                "logprobs": {
                    "content": [
                        {"token": chosen, "logprob": top[0]["logprob"], "top_logprobs": top}
                    ]
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": 1,
            "total_tokens": prompt_tokens + 1,
        },
    }


def prompt_tokens(messages: list[dict[str, str]]) -> int:
    """The fake's token count of a chat prompt: one per whitespace-separated word, as its
    tokenizer counts, plus the template's markup."""
    words = sum(len(message["content"].split()) for message in messages)
    return words + CHAT_TEMPLATE_TOKENS


def default_distribution(codes: list[str], document: str) -> dict[str, float]:
    """A deterministic, document-dependent distribution over the allowed codes."""
    digest = hashlib.sha256(document.encode()).digest()
    weights = [1 + digest[i % len(digest)] for i in range(len(codes))]
    favourite = digest[0] % len(codes)
    weights[favourite] += 400
    total = sum(weights)
    return {code: weight / total for code, weight in zip(codes, weights, strict=True)}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read ``FakeVllm.requests`` instead."""

    def send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.send(200 if self.path in ("/health", "/v1/models") else 404, b"{}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        payload = json.loads(self.rfile.read(length) or b"{}")
        fake = self.server.fake
        with fake.lock:
            fake.requests.append((self.path, payload))
            fault = fake.faults.popleft() if fake.faults else None
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            self._respond(fault, payload)
        finally:
            with fake.lock:
                fake.in_flight -= 1

    def _respond(self, fault: Fault | None, payload: dict[str, Any]) -> None:
        if fault is not None and fault(self):
            return
        key = self.server.api_key
        if key and self.path.startswith("/v1") and self.headers.get("Authorization") != (
            f"Bearer {key}"
        ):  # as vLLM's --api-key: only /v1 paths are guarded
            self.send(401, b'{"error": "Unauthorized"}')
            return
        routes = {
            "/v1/chat/completions": self._chat,
            "/tokenize": self._tokenize,
            "/detokenize": self._detokenize,
        }
        route = routes.get(self.path)
        if route is None:
            self.send(404, b"{}")
        else:
            self.send(200, json.dumps(route(payload)).encode())

    def _chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        codes = payload["structured_outputs"]["choice"]
        document = payload["messages"][-1]["content"]
        probabilities = default_distribution(codes, document)
        rules = self.server.fake.rules.items()
        ruled = [code for word, code in rules if word in document.casefold()]
        if ruled:
            rest = 0.1 / (len(codes) - 1)
            probabilities = {code: 0.9 if code == ruled[0] else rest for code in codes}
        chosen = max(probabilities, key=lambda code: probabilities[code])
        return chat_body(probabilities, chosen, prompt_tokens(payload["messages"]))

    def _tokenize(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One token per whitespace-separated word: enough to test token budgets."""
        tokens = [self.server.fake.token_id(word) for word in payload["prompt"].split()]
        return {"count": len(tokens), "max_model_len": 4096, "tokens": tokens}

    def _detokenize(self, payload: dict[str, Any]) -> dict[str, Any]:
        words = {index: word for word, index in self.server.fake.vocabulary.items()}
        return {"prompt": " ".join(words[token] for token in payload["tokens"])}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeVllm
    api_key: str | None = None


@contextmanager
def running_fake_vllm(
    tls: ssl.SSLContext | None = None, api_key: str | None = None
) -> Iterator[FakeVllm]:
    """Serve on a loopback port; with ``tls`` (a server context) over HTTPS, with ``api_key``
    requiring it on /v1 paths, as vLLM does."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.api_key = api_key
    scheme = "http"
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    server.fake = FakeVllm(url=f"{scheme}://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.fake
    finally:
        server.shutdown()
        server.server_close()
