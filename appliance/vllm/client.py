"""HTTP client for vLLM's OpenAI-compatible server: pooled connections, timeouts, bounded retries.

Connection failures, 429 and 5xx answers are retried with exponential backoff; a read timeout is
not (the server is slow, asking again makes it slower). What is left after the retries becomes
one of the appliance's error types: down -> 503, timeout -> 504, garbage -> 502.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from appliance import metrics
from appliance.errors import UpstreamInvalidResponse, UpstreamTimeout, UpstreamUnavailable

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class VllmConfig:
    base_url: str
    model: str
    api_key: str | None = None
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 60.0
    max_retries: int = 2
    max_connections: int = 64


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"upstream answered HTTP {response.status_code}")
        self.response = response


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableStatus | httpx.ConnectError | httpx.ConnectTimeout)


class VllmClient:
    """Thread-safe; one per worker process, shared by all its threads."""

    def __init__(self, config: VllmConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx.Client(
            base_url=config.base_url,
            headers=headers,
            timeout=httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
            transport=transport,
        )
        self._retrying = Retrying(
            retry=retry_if_exception(_is_retryable),
            stop=stop_after_attempt(config.max_retries + 1),
            wait=wait_exponential_jitter(multiplier=0.1, max=2.0),
            retry_error_callback=_give_up,
        )

    def close(self) -> None:
        self._http.close()

    def chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/chat/completions with ``model`` filled in; return the decoded JSON body."""
        return self._post_json("/v1/chat/completions", {"model": self.config.model, **payload})

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` under the served model's tokenizer, without special tokens."""
        body = self._post_json(
            "/tokenize",
            {"model": self.config.model, "prompt": text, "add_special_tokens": False},
        )
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise UpstreamInvalidResponse("the model server's /tokenize answer has no token list")
        return tokens

    def detokenize(self, tokens: list[int]) -> str:
        body = self._post_json("/detokenize", {"model": self.config.model, "tokens": tokens})
        text = body.get("prompt")
        if not isinstance(text, str):
            raise UpstreamInvalidResponse("the model server's /detokenize answer has no text")
        return text

    def is_healthy(self) -> bool:
        """One quick GET /health, no retries: for readiness probes."""
        try:
            return self._http.get("/health", timeout=self.config.connect_timeout_s).is_success
        except httpx.HTTPError:
            return False

    def _post_json(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        outcome = "error"
        try:
            response = self._post_with_retries(path, payload)
            body = _decode(response)
            outcome = "ok"
            return body
        except httpx.TimeoutException as exc:
            outcome = "timeout"
            raise UpstreamTimeout("the model server did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise UpstreamInvalidResponse("the model server broke off the answer") from exc
        finally:
            metrics.UPSTREAM_LATENCY.labels(path, outcome).observe(time.perf_counter() - started)

    def _post_with_retries(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        response: httpx.Response = self._retrying(self._post_once, path, payload)
        return response

    def _post_once(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        response = self._http.post(path, json=payload)
        if response.status_code in RETRYABLE_STATUS:
            raise _RetryableStatus(response)
        return response


def _give_up(state: RetryCallState) -> httpx.Response:
    """After the last attempt: translate what went wrong into the appliance's error types."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _RetryableStatus):
        status = exc.response.status_code
        if status in (429, 503):
            raise UpstreamUnavailable(f"the model server is overloaded (HTTP {status})") from exc
        if status == 504:
            raise UpstreamTimeout("the model server timed out (HTTP 504)") from exc
        raise UpstreamInvalidResponse(f"the model server failed (HTTP {status})") from exc
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        raise UpstreamUnavailable("the model server cannot be reached") from exc
    raise UpstreamUnavailable("the model server cannot be reached")


def _decode(response: httpx.Response) -> dict[str, Any]:
    if not response.is_success:
        raise UpstreamInvalidResponse(
            f"the model server refused the request (HTTP {response.status_code})"
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise UpstreamInvalidResponse("the model server answered with malformed JSON") from exc
    if not isinstance(body, dict):
        raise UpstreamInvalidResponse("the model server answered JSON that is not an object")
    return body
