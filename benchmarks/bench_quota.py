"""What quota checks add to a classification: the overhead benchmark's path (``appliance serve``,
mutual TLS, the instant upstream) for a caller under a quota and one without, rounds alternating
in one run. The quota is large enough never to refuse, so every request pays the full price:
one reservation in four windows (documents and tokens per minute and per day) before the model
call and one settlement after it.

Run: ``.venv/bin/python -m benchmarks.bench_quota [--requests N] [--rounds N]``; it rewrites its
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

from benchmarks.bench_classify import document, instant_upstream
from benchmarks.loadgen import ClientTls, LoadResult, run_load
from benchmarks.report import machine_line, write_section
from harness import postgres
from harness.stack import CLIENT_URI, Stack, appliance_stack
from harness.upstream import VllmEndpoint

QUOTA_URI = "spiffe://hospital/svc/quota"
ROLES = f"""\
version: 1
rules:
  - uri: "{CLIENT_URI}"
    roles: [classifier]
  - uri: "{QUOTA_URI}"
    roles: [classifier]
    quota: {{documents_per_minute: 1000000000, documents_per_day: 1000000000000,
             tokens_per_minute: 1000000000000, tokens_per_day: 1000000000000000}}
"""


def rounds_of(
    stack: Stack, callers: dict[str, ClientTls], count: int, in_flight: int, rounds: int
) -> dict[str, list[LoadResult]]:
    """``rounds`` rounds of ``count`` classifications per caller, the callers alternating."""

    def classify(run: str) -> Callable[[int], tuple[str, dict[str, Any]]]:
        return lambda n: ("/api/v1/classify-document", document(n, run))

    runs: dict[str, list[LoadResult]] = {name: [] for name in callers}
    for round_number in range(rounds):
        for name, tls in callers.items():
            run = f"{name}-c{in_flight}-r{round_number}"
            runs[name].append(run_load(stack.url, classify(run), count, in_flight, tls))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="per round, one in flight")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with (
        postgres.databases_with_logins() as (databases, logins),
        instant_upstream() as upstream,
        appliance_stack(databases.create(), VllmEndpoint(upstream), logins, roles=ROLES) as stack,
    ):
        stack.wait_started()
        quota_cert = stack.pki.client("quota", f"URI:{QUOTA_URI}")
        callers = {
            "no quota": ClientTls(stack.pki.ca_path, *stack.client_cert.pair),
            "under a quota": ClientTls(stack.pki.ca_path, *quota_cert.pair),
        }
        rounds_of(stack, callers, 100, 1, 1)  # warm both paths up
        idle = rounds_of(stack, callers, args.requests, 1, args.rounds)
        busy = rounds_of(stack, callers, args.requests * 3, args.concurrency, 3)
    p50 = {name: statistics.median(run.p50 for run in runs) for name, runs in idle.items()}
    rate = {name: statistics.median(r.per_second for r in runs) for name, runs in busy.items()}
    errors = sum(run.errors for runs in (*idle.values(), *busy.values()) for run in runs)
    lines = [
        "## Quota checks (`benchmarks/bench_quota.py`)",
        "",
        machine_line(),
        f"The overhead benchmark's path (gunicorn, mutual TLS, instant upstream), {args.rounds} "
        f"rounds of {args.requests} classifications one at a time per caller, callers "
        "alternating; then 3 rounds with "
        f"{args.concurrency} in flight. The quota has four windows and never refuses.",
        "",
        "| caller | p50 ms, one in flight (median of rounds) | classifications/s, "
        f"{args.concurrency} in flight | errors |",
        "|---|---|---|---|",
        *(
            f"| {name} | {p50[name]:.2f} | {rate[name]:.0f} | "
            f"{sum(r.errors for r in idle[name] + busy[name])} |"
            for name in callers
        ),
        "",
        f"Added by the quota at p50: **{p50['under a quota'] - p50['no quota']:.2f} ms** "
        f"(target <= 1 ms); errors: {errors}.",
        "",
    ]
    write_section("bench_quota", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
