"""Benchmark of the classification path, written to docs/benchmarks.md.

1. Overhead: ``classify-document`` through gunicorn (mutual TLS, PostgreSQL write, audit event)
   against an instant scripted upstream, next to the same load sent straight to that upstream.
   Targets: at most +5 ms at p50, at least 300 classifications/s on 2 cores.
2. Batch efficiency: documents/s through ``classify-batch`` against the real CPU vLLM, next to the
   same prompts sent straight to vLLM at the same concurrency. Target ratio >= 0.95.

Run: ``.venv/bin/python -m benchmarks.bench_classify [--requests N] [--skip-vllm]``.
Everything runs on this machine; figures are medians of one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import subprocess
import time
from pathlib import Path

import httpx

from appliance.classification.labeller import Labeller
from appliance.classification.taxonomy import load_taxonomy
from appliance.vllm.client import VllmClient, VllmConfig
from benchmarks.loadgen import LoadResult, run_load
from tests.common import postgres, vllm_cpu
from tests.common.fake_vllm import running_fake_vllm
from tests.common.stack import Stack, appliance_stack

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SECTION_START = "<!-- bench_classify:start -->"
SECTION_END = "<!-- bench_classify:end -->"
DOCUMENT = (
    "Laboratory report for outpatient visit {n}. Potassium 4.{k} mmol/L, sodium 13{k} mmol/L, "
    "creatinine 0.9 mg/dL, haemoglobin 13.{k} g/dL. Reference ranges attached; reviewed by the "
    "duty pathologist. Please file with the patient's chart and notify the ordering clinician."
)


def document(n: int, run: str) -> dict[str, str]:
    return {"document_id": f"BENCH-{run}-{n}", "text": DOCUMENT.format(n=f"{run}-{n}", k=n % 10)}


def overhead(stack: Stack, fake_url: str, requests: int, concurrency: int) -> dict[str, LoadResult]:
    labeller = Labeller(VllmClient(VllmConfig(fake_url, "bench")), load_taxonomy(None), 1500)

    def direct(n: int) -> tuple[str, dict]:
        return "/v1/chat/completions", {"model": "bench", **labeller.chat_request(document(n, "d")["text"])}

    def through(run: str):  # type: ignore[no-untyped-def]
        return lambda n: ("/api/v1/classify-document", document(n, run))

    options = stack.client_options()
    run_load(stack.url, through("warm"), 200, concurrency, **options)
    run_load(fake_url, direct, 200, concurrency)
    results = {"direct": [], "appliance": []}  # type: ignore[var-annotated]
    for round_number in range(3):  # alternate to spread the machine's noise over both
        results["direct"].append(run_load(fake_url, direct, requests, concurrency))
        results["appliance"].append(
            run_load(stack.url, through(f"r{round_number}"), requests, concurrency, **options)
        )
    return {name: _median_run(runs) for name, runs in results.items()}


def batch_efficiency(stack: Stack, vllm_url: str, batch: int, rounds: int) -> dict[str, float]:
    labeller = Labeller(VllmClient(VllmConfig(vllm_url, "smollm2-135m")), load_taxonomy(None), 1500)
    options = stack.client_options()
    direct_rates, batch_rates = [], []
    with httpx.Client(base_url=stack.url, timeout=600, **options) as api:  # type: ignore[arg-type]
        for round_number in range(rounds):
            docs = [document(n, f"vb{round_number}") for n in range(batch)]
            payloads = [
                {"model": "smollm2-135m", **labeller.chat_request(doc["text"])} for doc in docs
            ]
            started = time.perf_counter()
            result = run_load(vllm_url, lambda n: ("/v1/chat/completions", payloads[n]), batch, batch)
            assert result.errors == 0
            direct_rates.append(batch / (time.perf_counter() - started))
            started = time.perf_counter()
            response = api.post("/api/v1/classify-batch", json={"documents": docs})
            elapsed = time.perf_counter() - started
            assert response.status_code == 200
            assert all("classification" in item for item in response.json()["results"])
            batch_rates.append(batch / elapsed)
    direct, through = statistics.median(direct_rates), statistics.median(batch_rates)
    return {"direct": direct, "batch": through, "ratio": through / direct}


def _median_run(runs: list[LoadResult]) -> LoadResult:
    return sorted(runs, key=lambda run: run.per_second)[len(runs) // 2]


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    return f"{cores} cores, {cpu}, Python {platform.python_version()}"


def write_report(lines: list[str]) -> None:
    REPORT.parent.mkdir(exist_ok=True)
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    section = "\n".join([SECTION_START, *lines, SECTION_END])
    if SECTION_START in text:
        head, rest = text.split(SECTION_START, 1)
        text = head + section + rest.split(SECTION_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    REPORT.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-vllm", action="store_true")
    args = parser.parse_args()

    lines = [
        "## Classification path (`benchmarks/bench_classify.py`)",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {machine()}. "
        "Load generator, gunicorn (2 gthread workers, mutual TLS), PostgreSQL and the upstream "
        "share the machine.",
        "",
    ]
    with postgres.admin_server() as admin:
        databases = postgres.DatabaseFactory(admin)
        try:
            with running_fake_vllm() as fake, appliance_stack(databases.create(), fake.url) as stack:
                stack.wait_started()
                result = overhead(stack, fake.url, args.requests, args.concurrency)
            direct, through = result["direct"], result["appliance"]
            lines += [
                f"### Overhead against an instant scripted upstream ({args.requests} requests, "
                f"{args.concurrency} in flight, median of 3 alternating rounds)",
                "",
                "| path | requests/s | p50 ms | p95 ms | errors |",
                "|---|---|---|---|---|",
                *(
                    f"| {name} | {run.per_second:.0f} | {run.p50:.1f} | {run.p95:.1f} | {run.errors} |"
                    for name, run in (("upstream directly", direct), ("through the appliance", through))
                ),
                "",
                f"Added at p50: **{through.p50 - direct.p50:.1f} ms** (target <= 5 ms); "
                f"throughput through the appliance: **{through.per_second:.0f}/s** (target >= 300/s), "
                f"{through.per_second / direct.per_second:.2f} of the upstream's own rate.",
                "",
            ]
            print("\n".join(lines))
            if not args.skip_vllm:
                with vllm_cpu.running_vllm() as vllm_url, appliance_stack(
                    databases.create(), vllm_url
                ) as stack:
                    stack.wait_started()
                    rates = batch_efficiency(stack, vllm_url, args.batch, args.rounds)
                lines += [
                    f"### Batch endpoint against the real CPU vLLM (SmolLM2-135M, batch of "
                    f"{args.batch}, median of {args.rounds} rounds)",
                    "",
                    "| path | documents/s |",
                    "|---|---|",
                    f"| {args.batch} concurrent requests straight to vLLM | {rates['direct']:.2f} |",
                    f"| one `classify-batch` of {args.batch} | {rates['batch']:.2f} |",
                    "",
                    f"Ratio: **{rates['ratio']:.2f}** (target >= 0.95).",
                    "",
                ]
        finally:
            databases.close()
    write_report(lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
