"""A small closed-loop load generator: N concurrent clients, each sending its next request as soon
as the previous one answers. Reports throughput and latency percentiles of one run."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

RequestFactory = Callable[[int], tuple[str, dict[str, Any]]]
"""Request number -> (path, JSON body)."""


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

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p95(self) -> float:
        return self.percentile(0.95)


async def _run(
    client: httpx.AsyncClient, make: RequestFactory, total: int, concurrency: int
) -> LoadResult:
    counter = iter(range(total))
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for number in counter:
            path, body = make(number)
            started = time.perf_counter()
            response = await client.post(path, json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(total, concurrency, time.perf_counter() - started, latencies, errors)


def run_load(
    base_url: str,
    make: RequestFactory,
    total: int,
    concurrency: int,
    **client_options: Any,
) -> LoadResult:
    """Send ``total`` requests with ``concurrency`` in flight; one connection per client."""

    async def main() -> LoadResult:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=base_url, limits=limits, timeout=120, **client_options
        ) as client:
            return await _run(client, make, total, concurrency)

    return asyncio.run(main())
