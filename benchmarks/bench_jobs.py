"""Benchmark of bulk jobs, written to docs/benchmarks.md (issue 15, done-when 4, first part).

Items/s of a job of N items (default 10,000) against the instant upstream, processed by 1 and
by 2 ``appliance worker`` processes, next to the same number of documents sent through the
synchronous ``classify-batch`` (batches of 64, two in flight) to the same served appliance.
Every path gets documents of its own (no dedupe hits). A job's time runs from its submission's
answer to its last item stored (its workers are started, idle, before it is submitted).

Then, against the real CPU vLLM (done-when 4, second part): documents/s of a job worked by one
worker with C chunks in flight, next to C concurrent ``classify-document`` calls to the API and
the same prompts sent straight to vLLM C at a time (rounds alternate the order; each path has
documents of its own, so no prefix-cache hit).

Run: ``.venv/bin/python -m benchmarks.bench_jobs [--items N] [--vllm-items N] [--skip-vllm]``.
Everything shares this machine: the load, gunicorn, the workers, PostgreSQL and the upstream.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

from benchmarks.bench_classify import DOCUMENT, chat_payload, direct_access, instant_upstream
from benchmarks.loadgen import run_load
from benchmarks.report import machine_line, write_section
from harness import postgres, vllm_cpu
from harness.stack import Stack, appliance_stack
from harness.upstream import VllmEndpoint

BATCH = 64
BATCHES_IN_FLIGHT = 2
WORKER_CONCURRENCY = "8"
INTERACTIVE_GRACE_S = 10.0
"""``APPLIANCE_WORKER_INTERACTIVE_GRACE_S``'s default, which the stack keeps."""


def _documents(items: int, run: str) -> list[dict[str, str]]:
    return [
        {"document_id": f"{run}-{n}", "text": f"{run}: " + DOCUMENT.format(n=n, k=n % 10)}
        for n in range(items)
    ]


def through_batches(stack: Stack, items: int) -> float:
    documents = _documents(items, "batch")
    batches = [documents[i : i + BATCH] for i in range(0, items, BATCH)]
    with httpx.Client(base_url=stack.url, timeout=600, **stack.client_options()) as api:  # type: ignore[arg-type]

        def send(batch: list[dict[str, str]]) -> None:
            answer = api.post("/api/v1/classify-batch", json={"documents": batch})
            assert answer.status_code == 200, answer.text
            assert all("classification" in item for item in answer.json()["results"])

        started = time.perf_counter()
        with ThreadPoolExecutor(BATCHES_IN_FLIGHT) as pool:
            list(pool.map(send, batches))
        return items / (time.perf_counter() - started)


def through_job(
    stack: Stack, items: int, workers: int, workdir: Path, run: str = "", concurrency: str = ""
) -> float:
    body = "".join(json.dumps(doc) + "\n" for doc in _documents(items, f"job{workers}{run}"))
    admin_url = stack.database_url.replace("+psycopg", "")
    with psycopg.connect(admin_url) as admin:
        row = admin.execute("SELECT coalesce(max(id), 0) FROM procrastinate_workers").fetchone()
        registered_before = row[0] if row else 0
    running = [
        stack.worker(workdir / f"worker-{workers}-{run}{n}.log",
                     APPLIANCE_WORKER_CONCURRENCY=concurrency or WORKER_CONCURRENCY)
        for n in range(workers)
    ]  # fmt: skip
    try:
        _wait_registered(admin_url, registered_before, workers)
        with httpx.Client(base_url=stack.url, timeout=600, **stack.client_options()) as api:  # type: ignore[arg-type]
            answer = api.post(
                "/api/v1/jobs", content=body.encode(),
                headers={"Content-Type": "application/x-ndjson"},
            )  # fmt: skip
            assert answer.status_code == 202, answer.text
            started = time.perf_counter()
            job_id = answer.json()["job_id"]
            with psycopg.connect(admin_url) as admin:
                while True:
                    row = admin.execute(
                        "SELECT count(*) FILTER (WHERE state = 'pending'),"
                        " count(*) FILTER (WHERE state = 'done') FROM job_items WHERE job_id = %s",
                        (job_id,),
                    ).fetchone()
                    assert row is not None
                    if row[0] == 0:
                        break
                    time.sleep(0.1)
            elapsed = time.perf_counter() - started
            assert row[1] == items, f"{row[1]} of {items} items done"
    finally:
        for worker in running:
            worker.stop()
    return items / elapsed


def _wait_registered(admin_url: str, after_id: int, workers: int) -> None:
    """Until ``workers`` new queue workers have registered (their processes imported, their
    services built), then a second for their LISTEN: a job's clock then starts with workers
    waiting for it, not with processes still starting (several seconds on a busy machine)."""
    deadline = time.monotonic() + 120
    with psycopg.connect(admin_url) as admin:
        while time.monotonic() < deadline:
            row = admin.execute(
                "SELECT count(*) FROM procrastinate_workers WHERE id > %s", (after_id,)
            ).fetchone()
            if row is not None and row[0] >= workers:
                time.sleep(1)
                return
            time.sleep(0.2)
    raise TimeoutError(f"{workers} job workers did not register within 120 s")


def against_vllm(
    stack: Stack, vllm: VllmEndpoint, items: int, rounds: int, workdir: Path
) -> list[str]:
    """Documents/s of a one-worker job against direct requests at the same concurrency: to the
    API (what a caller would do instead of a job) and straight to vLLM (the ceiling)."""
    concurrency = int(WORKER_CONCURRENCY)
    rates: dict[str, list[float]] = {"direct": [], "api": [], "job": []}

    def direct(run: str) -> float:
        payloads = [
            chat_payload(vllm_cpu.MODEL_NAME, doc["text"]) for doc in _documents(items, run)
        ]
        result = run_load(
            vllm.url, lambda n: ("/v1/chat/completions", payloads[n]), items, concurrency,
            *direct_access(vllm),
        )  # fmt: skip
        assert result.errors == 0
        return result.per_second

    def api(run: str) -> float:
        documents = _documents(items, run)
        with httpx.Client(base_url=stack.url, timeout=600, **stack.client_options()) as client:  # type: ignore[arg-type]

            def send(document: dict[str, str]) -> None:
                answer = client.post("/api/v1/classify-document", json=document)
                assert answer.status_code == 200, answer.text

            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(send, documents))
            elapsed = time.perf_counter() - started
        time.sleep(INTERACTIVE_GRACE_S + 1)  # workers hold back that long after the API's calls
        return items / elapsed

    def job(run: str) -> float:
        return through_job(stack, items, 1, workdir, run)

    direct("warm-d")
    for round_number in range(rounds):
        order = [("direct", direct), ("api", api), ("job", job)]
        for name, measure in order if round_number % 2 == 0 else order[::-1]:
            rates[name].append(measure(f"v{name[0]}{round_number}"))
    straight, called, through = (statistics.median(rates[n]) for n in ("direct", "api", "job"))
    return [
        f"### A job against the real CPU vLLM (SmolLM2-135M, {items} documents, {concurrency} in"
        f" flight, median of {rounds} rounds)",
        "",
        "| path | documents/s |",
        "|---|---|",
        f"| {concurrency} concurrent requests straight to vLLM (the ceiling) | {straight:.2f} |",
        f"| {concurrency} concurrent `classify-document` calls to the API | {called:.2f} |",
        f"| a job, 1 worker with {concurrency} chunks in flight | {through:.2f} |",
        "",
        f"Job / API calls: **{through / called:.2f}** (target >= 0.95); job / straight to vLLM:"
        f" {through / straight:.2f}. The job's time includes the worker picking it up"
        " (LISTEN/NOTIFY) and its last item's commit; the appliance's own work (TLS, database,"
        " audit) shares the two cores with vLLM on both appliance paths.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--vllm-items", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3, help="rounds against vLLM")
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--only-vllm", action="store_true")
    args = parser.parse_args()
    if args.only_vllm:
        write_section("bench_jobs_vllm", vllm_lines(args))
        return
    with (
        postgres.databases_with_logins() as (databases, logins),
        instant_upstream() as upstream,
        appliance_stack(databases.create(), VllmEndpoint(upstream), logins) as stack,
        tempfile.TemporaryDirectory(prefix="bench-jobs-") as workdir,
    ):
        stack.wait_started()
        through_batches(stack, BATCH * 8)  # warm-up
        batch = through_batches(stack, args.items)
        one = through_job(stack, args.items, 1, Path(workdir))
        two = through_job(stack, args.items, 2, Path(workdir))
    lines = [
        "## Bulk jobs (`benchmarks/bench_jobs.py`)",
        "",
        machine_line(),
        f"{args.items:,} documents against the instant upstream; gunicorn (2 gthread workers,"
        " mutual TLS), the job workers, PostgreSQL and the upstream share the machine. One"
        " round each.",
        "",
        "| path | items/s |",
        "|---|---|",
        f"| `classify-batch`, batches of {BATCH}, {BATCHES_IN_FLIGHT} in flight | {batch:.0f} |",
        f"| a job, 1 worker process (concurrency {WORKER_CONCURRENCY}) | {one:.0f} |",
        f"| a job, 2 worker processes | {two:.0f} |",
        "",
        f"2 workers / 1 worker: **{two / one:.2f}**; a job with 2 workers / `classify-batch`:"
        f" **{two / batch:.2f}**.",
        "",
    ]
    write_section("bench_jobs", lines)
    print("\n".join(lines))
    if not args.skip_vllm:
        write_section("bench_jobs_vllm", vllm_lines(args))


def vllm_lines(args: argparse.Namespace) -> list[str]:
    with (
        postgres.databases_with_logins() as (databases, logins),
        vllm_cpu.running_vllm() as vllm,
        appliance_stack(databases.create(), vllm, logins) as stack,
        tempfile.TemporaryDirectory(prefix="bench-jobs-vllm-") as workdir,
    ):
        stack.wait_started()
        lines = [
            "## Bulk jobs against the real CPU vLLM (`benchmarks/bench_jobs.py`)",
            "",
            machine_line(),
            "",
            *against_vllm(stack, vllm, args.vllm_items, args.rounds, Path(workdir)),
        ]
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
