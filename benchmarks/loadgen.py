"""Closed-loop load from curl: ``--parallel`` keeps N requests in flight over reused connections,
each sent as soon as a slot frees, and ``--write-out`` reports every request's status and time.

curl (C) costs a fraction of the CPU of a Python client, so on this 2-core machine the load
generator takes as little as possible from the server it measures, and it speaks mutual TLS.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RequestFactory = Callable[[int], tuple[str, dict[str, Any]]]
"""Request number -> (path, JSON body)."""


@dataclass(frozen=True)
class ClientTls:
    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class LoadResult:
    requests: int
    concurrency: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _config(
    base_url: str, make: RequestFactory, total: int, tls: ClientTls | None, headers: list[str]
) -> str:
    blocks = []
    for number in range(total):
        path, body = make(number)
        lines = [
            f"url = {_quoted(base_url + path)}",
            'header = "Content-Type: application/json"',
            *(f"header = {_quoted(header)}" for header in headers),
            f"data-binary = {_quoted(json.dumps(body))}",
            'output = "/dev/null"',
            'write-out = "%{http_code} %{time_total}\\n"',
        ]
        if tls is not None:
            lines += [
                f"cacert = {_quoted(tls.ca)}",
                f"cert = {_quoted(tls.cert)}",
                f"key = {_quoted(tls.key)}",
            ]
        blocks.append("\n".join(lines))
    return "\nnext\n".join(blocks) + "\n"


def run_load(
    base_url: str,
    make: RequestFactory,
    total: int,
    concurrency: int,
    tls: ClientTls | None = None,
    headers: list[str] | None = None,
) -> LoadResult:
    """Send ``total`` POSTs with ``concurrency`` in flight; the bodies are built beforehand."""
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "requests.cfg"
        config.write_text(_config(base_url, make, total, tls, headers or []))
        started = time.perf_counter()
        done = subprocess.run(
            [
                "curl",
                "--silent",
                "--parallel",
                "--parallel-max",
                str(concurrency),
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
    lines = [line.split() for line in done.stdout.splitlines() if line.strip()]
    latencies = [float(elapsed) * 1000 for _, elapsed in lines]
    errors = sum(1 for status, _ in lines if status != "200") + total - len(lines)
    return LoadResult(total, concurrency, seconds, latencies, errors)
