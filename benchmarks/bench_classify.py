"""Benchmark of the classification path, written to docs/benchmarks.md.

1. Overhead: ``classify-document`` through gunicorn (mutual TLS, PostgreSQL write, audit event)
   against an instant upstream, next to the same load sent straight to that upstream.
   Targets: at most +5 ms at p50, at least 300 classifications/s on 2 cores.
2. Batch efficiency: documents/s through ``classify-batch`` against the real CPU vLLM, next to the
   same prompts sent straight to vLLM at the same concurrency. Target ratio >= 0.95.

Run: ``.venv/bin/python -m benchmarks.bench_classify [--requests N] [--skip-vllm]``.
Everything runs on this machine; figures are medians of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from appliance.backends.vllm import VllmBackend, chat_request
from appliance.backends.vllm_client import VllmClient, VllmConfig
from appliance.classification.labeller import Labeller
from appliance.classification.taxonomy import load_taxonomy
from benchmarks import cpu
from benchmarks.loadgen import ClientTls, LoadResult, run_load
from benchmarks.report import machine_line, write_section
from harness import postgres, vllm_cpu
from harness.stack import Stack, appliance_stack
from harness.tls import free_port
from harness.upstream import VllmEndpoint

DOCUMENT = (
    "Laboratory report for outpatient visit {n}. Potassium 4.{k} mmol/L, sodium 13{k} mmol/L, "
    "creatinine 0.9 mg/dL, haemoglobin 13.{k} g/dL. Reference ranges attached; reviewed by the "
    "duty pathologist. Please file with the patient's chart and notify the ordering clinician."
)


def document(n: int, run: str) -> dict[str, str]:
    return {"document_id": f"BENCH-{run}-{n}", "text": DOCUMENT.format(n=f"{run}-{n}", k=n % 10)}


def chat_payload(model: str, text: str) -> dict[str, Any]:
    """Exactly what the appliance sends upstream for ``text``."""
    backend = VllmBackend(VllmClient(VllmConfig("http://unused", model)))
    labeller = Labeller(backend, load_taxonomy(None), 1500)
    return {"model": model, **chat_request(labeller.prompt(text))}


@contextlib.contextmanager
def instant_upstream(tls_files: tuple[str, str, str] | None = None) -> Iterator[str]:
    """The instant upstream in a process of its own, so it does not share a GIL with the load;
    with ``tls_files`` (cert, key, CA) over TLS requiring a client certificate."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.instant_upstream", str(port), *(tls_files or ())]
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        yield f"{'https' if tls_files else 'http'}://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


def median_round(runs: list[LoadResult]) -> LoadResult:
    """The round with the median throughput (its latencies come from the same round)."""
    return sorted(runs, key=lambda run: run.per_second)[len(runs) // 2]


def overhead(
    stack: Stack, upstream: str, requests: int, concurrency: int, rounds: int
) -> list[str]:
    """Latency one request at a time (what the appliance adds), then throughput with
    ``concurrency`` in flight; each as the median of ``rounds`` rounds alternating with the
    upstream (this VM's speed drifts from minute to minute)."""
    payload = chat_payload("bench", document(0, "direct")["text"])
    tls = ClientTls(stack.pki.ca_path, *stack.client_cert.pair)

    def direct(n: int) -> tuple[str, dict[str, Any]]:
        return "/v1/chat/completions", payload

    def classify(run: str) -> Callable[[int], tuple[str, dict[str, Any]]]:
        return lambda n: ("/api/v1/classify-document", document(n, run))

    run_load(stack.url, classify("warm"), 300, concurrency, tls)
    workers = cpu.children(stack.server.process.pid)
    rows = []
    worker_cpu_ms: list[float] = []
    for in_flight, count in ((1, max(requests // 5, 100)), (concurrency, requests)):
        runs: dict[str, list[LoadResult]] = {"direct": [], "appliance": []}
        for round_number in range(rounds):
            runs["direct"].append(run_load(upstream, direct, count, in_flight))
            run = f"c{in_flight}r{round_number}"
            before = cpu.cpu_seconds(workers)
            runs["appliance"].append(run_load(stack.url, classify(run), count, in_flight, tls))
            worker_cpu_ms.append((cpu.cpu_seconds(workers) - before) * 1000 / count)
        rows.append(
            (in_flight, count, median_round(runs["direct"]), median_round(runs["appliance"]))
        )
    (_, _, idle_base, idle), (_, _, _, busy) = rows
    return [
        f"### Overhead against an instant upstream (median round of {rounds}, rounds alternating)",
        "",
        "| in flight | requests | path | requests/s | p50 ms | p95 ms | errors |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {in_flight} | {count} | {name} | {run.per_second:.0f} | {run.p50:.1f} | "
            f"{run.p95:.1f} | {run.errors} |"
            for in_flight, count, base, through in rows
            for name, run in (("upstream directly", base), ("through the appliance", through))
        ),
        "",
        f"Added at p50, one request at a time: **{idle.p50 - idle_base.p50:.1f} ms** "
        f"(target <= 5 ms). Throughput through the appliance with {concurrency} in flight: "
        f"**{busy.per_second:.0f} classifications/s** (target >= 300/s). CPU time of the "
        f"gunicorn workers per classification, median over all rounds: "
        f"{statistics.median(worker_cpu_ms):.1f} ms.",
        "",
    ]


def batch_efficiency(stack: Stack, vllm: VllmEndpoint, batch: int, rounds: int) -> list[str]:
    """Documents/s of one batch call against the same number of concurrent direct requests.

    Each path gets its own documents of the same length (the same text would be answered from
    vLLM's prefix cache the second time), and the order alternates between rounds."""
    rates: dict[str, list[float]] = {"direct": [], "batch": []}
    with httpx.Client(base_url=stack.url, timeout=600, **stack.client_options()) as api:  # type: ignore[arg-type]

        def via_direct(run: str) -> float:
            payloads = [
                chat_payload(vllm_cpu.MODEL_NAME, document(n, run)["text"]) for n in range(batch)
            ]
            result = run_load(
                vllm.url, lambda n: ("/v1/chat/completions", payloads[n]), batch, batch,
                *direct_access(vllm),
            )
            assert result.errors == 0
            return result.per_second

        def via_batch(run: str) -> float:
            docs = [document(n, run) for n in range(batch)]
            started = time.perf_counter()
            response = api.post("/api/v1/classify-batch", json={"documents": docs})
            elapsed = time.perf_counter() - started
            assert response.status_code == 200
            assert all("classification" in item for item in response.json()["results"])
            return batch / elapsed

        via_direct("warm-d")
        via_batch("warm-b")
        for round_number in range(rounds):
            order = [("direct", via_direct), ("batch", via_batch)]
            for name, measure in order if round_number % 2 == 0 else order[::-1]:
                rates[name].append(measure(f"{name[0]}{round_number}"))
    direct_rates, batch_rates = rates["direct"], rates["batch"]
    direct, through = statistics.median(direct_rates), statistics.median(batch_rates)
    return [
        f"### Batch endpoint against the real CPU vLLM (SmolLM2-135M, batch of {batch}, "
        f"median of {rounds} rounds)",
        "",
        "| path | documents/s |",
        "|---|---|",
        f"| {batch} concurrent requests straight to vLLM | {direct:.2f} |",
        f"| one `classify-batch` of {batch} documents | {through:.2f} |",
        "",
        f"Ratio: **{through / direct:.2f}** (target >= 0.95).",
        "",
    ]


def direct_access(vllm: VllmEndpoint) -> tuple[ClientTls | None, list[str]]:
    """The client certificate and API key header a direct request to ``vllm`` needs."""
    tls = None
    if vllm.pki is not None and vllm.client is not None:
        tls = ClientTls(vllm.pki.ca_path, *vllm.client.pair)
    headers = []
    if vllm.api_key_file is not None:
        headers.append(f"Authorization: Bearer {vllm.api_key_file.read_text().strip()}")
    return tls, headers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="batch rounds against vLLM")
    parser.add_argument("--overhead-rounds", type=int, default=5)
    parser.add_argument("--skip-vllm", action="store_true")
    args = parser.parse_args()

    lines = [
        "## Classification path (`benchmarks/bench_classify.py`)",
        "",
        machine_line(),
        "Load generator (curl --parallel), gunicorn (2 gthread workers, mutual TLS), PostgreSQL "
        "and the upstream all share the machine.",
        "",
    ]
    with postgres.databases_with_logins() as (databases, logins):
        with (
            instant_upstream() as upstream,
            appliance_stack(databases.create(), VllmEndpoint(upstream), logins) as stack,
        ):
            stack.wait_started()
            lines += overhead(
                stack, upstream, args.requests, args.concurrency, args.overhead_rounds
            )
        print("\n".join(lines), flush=True)
        if not args.skip_vllm:
            with (
                vllm_cpu.running_vllm() as vllm,
                appliance_stack(databases.create(), vllm, logins) as stack,
            ):
                stack.wait_started()
                lines += batch_efficiency(stack, vllm, args.batch, args.rounds)
    write_section("bench_classify", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
