"""HTTP client for vLLM's OpenAI-compatible server: pooled connections, timeouts, bounded retries.

Connection failures, 429 and 5xx answers are retried with exponential backoff; a read timeout is
not (the server is slow, asking again makes it slower). What is left after the retries becomes
one of the appliance's error types: down -> 503, timeout -> 504, garbage -> 502.

It is built on urllib3's connection pool: every classification makes one upstream call, and
urllib3 spends half the CPU per call that httpx did (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from urllib3.exceptions import (
    ConnectTimeoutError,
    EmptyPoolError,
    HTTPError,
    ReadTimeoutError,
    SSLError,
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
    ca_file: Path | None = None
    """Verifies an ``https://`` server (always verified; None: the system's CAs)."""
    cert_file: Path | None = None
    key_file: Path | None = None
    """Client certificate for a server that verifies its clients."""


class _RetryableStatus(Exception):
    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        super().__init__(f"upstream answered HTTP {response.status}")
        self.response = response


def _is_retryable(exc: BaseException) -> bool:
    """Answers worth asking again for; ``ConnectTimeoutError`` covers refused connections too."""
    return isinstance(exc, _RetryableStatus | ConnectTimeoutError)


class VllmClient:
    """Thread-safe; one per worker process, shared by all its threads."""

    def __init__(self, config: VllmConfig) -> None:
        self.config = config
        self._headers = {"Content-Type": "application/json"}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        self._prefix = urlsplit(config.base_url).path.rstrip("/")
        self._http = urllib3.connection_from_url(
            config.base_url,
            timeout=urllib3.Timeout(connect=config.connect_timeout_s, read=config.read_timeout_s),
            maxsize=config.max_connections,
            block=True,
            retries=False,  # tenacity decides what is retried
            **_tls_options(config),
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
            response = self._http.request(
                "GET",
                self._prefix + "/health",
                headers=self._headers,
                timeout=self.config.connect_timeout_s,
            )
        except HTTPError:
            return False
        return 200 <= response.status < 300

    def _post_json(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        outcome = "error"
        try:
            response = self._post_with_retries(path, payload)
            body = _decode(response)
            outcome = "ok"
            return body
        except ReadTimeoutError as exc:
            outcome = "timeout"
            raise UpstreamTimeout("the model server did not answer in time") from exc
        except EmptyPoolError as exc:
            raise UpstreamUnavailable("too many calls to the model server are in flight") from exc
        except SSLError as exc:
            outcome = "tls"
            raise UpstreamUnavailable(
                "the model server's TLS handshake failed (certificate not trusted or refused)"
            ) from exc
        except HTTPError as exc:
            raise UpstreamInvalidResponse("the model server broke off the answer") from exc
        finally:
            metrics.UPSTREAM_LATENCY.labels(path, outcome).observe(time.perf_counter() - started)

    def _post_with_retries(self, path: str, payload: dict[str, Any]) -> urllib3.BaseHTTPResponse:
        response: urllib3.BaseHTTPResponse = self._retrying(self._post_once, path, payload)
        return response

    def _post_once(self, path: str, payload: dict[str, Any]) -> urllib3.BaseHTTPResponse:
        response = self._http.request(
            "POST",
            self._prefix + path,
            body=json.dumps(payload).encode(),
            headers=self._headers,
            pool_timeout=self.config.read_timeout_s,
        )
        if response.status in RETRYABLE_STATUS:
            raise _RetryableStatus(response)
        return response


def _tls_options(config: VllmConfig) -> dict[str, Any]:
    """Pool options for ``https://``: the server's certificate and host name always verified."""
    if urlsplit(config.base_url).scheme != "https":
        return {}
    options: dict[str, Any] = {
        "cert_reqs": "CERT_REQUIRED",
        "ssl_minimum_version": ssl.TLSVersion.TLSv1_2,
    }
    if config.ca_file is not None:
        options["ca_certs"] = str(config.ca_file)
    if config.cert_file is not None and config.key_file is not None:
        options["cert_file"] = str(config.cert_file)
        options["key_file"] = str(config.key_file)
    return options


def _give_up(state: RetryCallState) -> urllib3.BaseHTTPResponse:
    """After the last attempt: translate what went wrong into the appliance's error types."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _RetryableStatus):
        status = exc.response.status
        if status in (429, 503):
            raise UpstreamUnavailable(f"the model server is overloaded (HTTP {status})") from exc
        if status == 504:
            raise UpstreamTimeout("the model server timed out (HTTP 504)") from exc
        raise UpstreamInvalidResponse(f"the model server failed (HTTP {status})") from exc
    if isinstance(exc, ConnectTimeoutError):
        raise UpstreamUnavailable("the model server cannot be reached") from exc
    raise UpstreamUnavailable("the model server cannot be reached")


def _decode(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    if response.status in (401, 403):
        raise UpstreamUnavailable(
            f"the model server refused the appliance's API key (HTTP {response.status})"
        )
    if not 200 <= response.status < 300:
        raise UpstreamInvalidResponse(
            f"the model server refused the request (HTTP {response.status})"
        )
    try:
        body = json.loads(response.data)
    except ValueError as exc:
        raise UpstreamInvalidResponse("the model server answered with malformed JSON") from exc
    if not isinstance(body, dict):
        raise UpstreamInvalidResponse("the model server answered JSON that is not an object")
    return body
