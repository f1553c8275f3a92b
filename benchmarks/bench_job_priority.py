"""Benchmark: interactive calls while a bulk job runs, written to docs/benchmarks.md (issue 15,
done-when 3: ``classify-document`` p95 with a large job running within 2x of its idle p95).

The real CPU vLLM (SmolLM2-135M) started as the deployments start it, with
``--scheduling-policy priority``. Single ``classify-document`` calls, one at a time, are timed
in one run: idle; while a job is being worked by one worker (priority 10, 8 chunks in flight)
that yields to interactive calls as deployed (``APPLIANCE_WORKER_IN_FLIGHT_WHEN_INTERACTIVE``
0); by the same worker allowed 1 call while the API is busy; and by one that does not yield
(its 8 in flight), for contrast. Each call has a text of its own (no dedupe hit, no
prefix-cache hit on the document).

Run: ``.venv/bin/python -m benchmarks.bench_job_priority [--calls N] [--items N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from benchmarks.bench_classify import DOCUMENT
from benchmarks.report import machine_line, write_section
from harness import postgres, vllm_cpu
from harness.stack import Stack, appliance_stack

YIELDING = {"APPLIANCE_VLLM_REQUEST_PRIORITY": "10", "APPLIANCE_WORKER_CONCURRENCY": "8"}
WORKERS = [
    ("job running: worker yields (deployed default)", YIELDING),
    ("job running: worker keeps 1 call while the API is busy",
     YIELDING | {"APPLIANCE_WORKER_IN_FLIGHT_WHEN_INTERACTIVE": "1"}),
    ("job running: worker does not yield, 8 in flight (contrast)",
     YIELDING | {"APPLIANCE_WORKER_IN_FLIGHT_WHEN_INTERACTIVE": "8"}),
]  # fmt: skip
"""(row, the worker's settings)."""


def _text(tag: str, n: int) -> str:
    return f"{tag} {n}: " + DOCUMENT.format(n=n, k=n % 10)


def single_calls(api: httpx.Client, calls: int) -> list[float]:
    tag = uuid.uuid4().hex[:8]
    latencies = []
    for n in range(calls):
        started = time.perf_counter()
        answer = api.post(
            "/api/v1/classify-document", json={"document_id": f"i-{tag}-{n}", "text": _text(tag, n)}
        )
        latencies.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
    return latencies


def p95(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=20)[-1]


def under_job(
    stack: Stack,
    api: httpx.Client,
    calls: int,
    items: int,
    worker: dict[str, str],
    workdir: Path,
) -> tuple[list[float], int]:
    """Single calls while one worker works a job of ``items``; and the items it did meanwhile."""
    tag = uuid.uuid4().hex[:8]
    body = "".join(
        json.dumps({"document_id": f"j-{tag}-{n}", "text": _text(tag, n)}) + "\n"
        for n in range(items)
    )
    process = stack.worker(workdir / f"worker-{tag}.log", **worker)
    try:
        job = api.post("/api/v1/jobs", content=body.encode(),
                       headers={"Content-Type": "application/x-ndjson"}).json()  # fmt: skip
        while api.get(f"/api/v1/jobs/{job['job_id']}").json()["counts"]["done"] < 8:
            time.sleep(0.5)  # the worker is busy
        before = api.get(f"/api/v1/jobs/{job['job_id']}").json()["counts"]["done"]
        latencies = single_calls(api, calls)
        done = api.get(f"/api/v1/jobs/{job['job_id']}").json()["counts"]["done"]
        assert done < items, "the job ended before the calls did: submit more items"
        api.post(f"/api/v1/jobs/{job['job_id']}/cancel")
    finally:
        process.stop()
    return latencies, done - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--items", type=int, default=3000)
    args = parser.parse_args()
    with (
        postgres.databases_with_logins() as (databases, logins),
        vllm_cpu.running_vllm() as vllm,
        appliance_stack(databases.create(), vllm, logins) as stack,
        tempfile.TemporaryDirectory(prefix="bench-priority-") as workdir,
        httpx.Client(base_url=stack.url, timeout=600, **stack.client_options()) as api,  # type: ignore[arg-type]
    ):
        stack.wait_started()
        single_calls(api, 5)  # warm-up
        idle = single_calls(api, args.calls)
        rows: list[tuple[str, list[float], int | str]] = [("idle", idle, "-")]
        for name, worker in WORKERS:
            latencies, done = under_job(stack, api, args.calls, args.items, worker, Path(workdir))
            rows.append((name, latencies, done))
    prioritised = rows[1][1]
    lines = [
        "## Interactive calls during a bulk job (`benchmarks/bench_job_priority.py`)",
        "",
        machine_line(),
        f"The real CPU vLLM (SmolLM2-135M, `--scheduling-policy priority`); {args.calls}"
        " sequential `classify-document` calls per row through gunicorn with mutual TLS; one"
        f" worker process on a job of {args.items:,} items.",
        "",
        "| while | p50 ms | p95 ms | p95 / idle p95 | job items done meanwhile |",
        "|---|---|---|---|---|",
    ]
    for name, latencies, items_done in rows:
        lines.append(
            f"| {name} | {statistics.median(latencies) * 1000:.0f} | {p95(latencies) * 1000:.0f}"
            f" | {p95(latencies) / p95(idle):.2f} | {items_done} |"
        )
    lines += ["", f"Target: p95 with a job running at most 2x idle p95 (measured:"
              f" **{p95(prioritised) / p95(idle):.2f}x**).", ""]  # fmt: skip
    write_section("bench_job_priority", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
