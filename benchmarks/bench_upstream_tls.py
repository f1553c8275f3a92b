"""What TLS to vLLM costs the classification path, written to docs/benchmarks.md.

The same ``classify-document`` load through two appliances side by side, rounds alternating:
one calling an instant upstream over plain HTTP, one calling it over TLS with a client
certificate and an API key, as the Ansible install calls vLLM. The upstream answers at once, so
the difference is the appliance's TLS cost per call (connections are pooled: the handshake is
paid once per connection, not per call).

Run: ``.venv/bin/python -m benchmarks.bench_upstream_tls [--requests N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
from pathlib import Path

from benchmarks import cpu
from benchmarks.bench_classify import document, instant_upstream, median_round
from benchmarks.loadgen import ClientTls, LoadResult, RequestFactory, run_load
from benchmarks.report import machine_line, write_section
from harness import postgres
from harness.stack import Stack, appliance_stack
from harness.tls import DevPki
from harness.upstream import VllmEndpoint


def classify(run: str) -> RequestFactory:
    """Requests of fresh documents (the same text twice would be answered from the database)."""
    return lambda n: ("/api/v1/classify-document", document(n, run))


def measure(stacks: dict[str, Stack], requests: int, in_flight: int, rounds: int) -> dict[
    str, tuple[LoadResult, float]
]:
    """Median round per path, and the gunicorn workers' CPU ms per classification (median)."""
    runs: dict[str, list[LoadResult]] = {name: [] for name in stacks}
    cpu_ms: dict[str, list[float]] = {name: [] for name in stacks}
    for round_number in range(rounds):
        order = list(stacks.items())
        for name, stack in order if round_number % 2 == 0 else order[::-1]:
            tls = ClientTls(stack.pki.ca_path, *stack.client_cert.pair)
            workers = cpu.children(stack.server.process.pid)
            before = cpu.cpu_seconds(workers)
            runs[name].append(run_load(
                stack.url, classify(f"{name[:3]}{in_flight}r{round_number}"), requests,
                in_flight, tls,
            ))
            cpu_ms[name].append((cpu.cpu_seconds(workers) - before) * 1000 / requests)
    return {name: (median_round(runs[name]), statistics.median(cpu_ms[name])) for name in stacks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-upstream-tls-"))
    pki = DevPki.create(work / "pki", common_name="Bench vLLM CA")
    client = pki.client("appliance-to-vllm", "URI:spiffe://hospital/svc/appliance")
    key_file = work / "vllm-api-key"
    key_file.write_text(secrets.token_urlsafe(32))
    files = (str(pki.server.cert_path), str(pki.server.key_path), pki.ca_path)
    with (
        postgres.databases_with_logins() as (databases, logins),
        instant_upstream() as plain_url,
        instant_upstream(files) as tls_url,
        appliance_stack(databases.create(), VllmEndpoint(plain_url), logins) as plain,
        appliance_stack(
            databases.create(), VllmEndpoint(tls_url, pki, client, key_file), logins
        ) as secured,
    ):
        stacks = {"plain HTTP": plain, "TLS + client certificate + API key": secured}
        for stack in stacks.values():
            stack.wait_started()
            run_load(stack.url, classify("warm"), 200, args.concurrency,
                     ClientTls(stack.pki.ca_path, *stack.client_cert.pair))
        idle = measure(stacks, max(args.requests // 5, 100), 1, args.rounds)
        busy = measure(stacks, args.requests, args.concurrency, args.rounds)
    (plain_idle, _), (tls_idle, _) = idle.values()
    (plain_busy, plain_cpu), (tls_busy, tls_cpu) = busy.values()
    lines = [
        "## TLS to vLLM (`benchmarks/bench_upstream_tls.py`)",
        "",
        machine_line(),
        f"Two appliances side by side against an instant upstream, median round of {args.rounds}, "
        "rounds alternating; load generator, gunicorn (2 workers each), PostgreSQL and the "
        "upstreams share the machine.",
        "",
        "| appliance to upstream | p50 ms, 1 in flight | requests/s, "
        f"{args.concurrency} in flight | worker CPU ms per classification |",
        "|---|---|---|---|",
        *(
            f"| {name} | {idle[name][0].p50:.1f} | {busy[name][0].per_second:.0f} | "
            f"{busy[name][1]:.1f} |"
            for name in idle
        ),
        "",
        f"TLS adds **{tls_idle.p50 - plain_idle.p50:+.1f} ms** at p50 and changes throughput by "
        f"a ratio of **{tls_busy.per_second / plain_busy.per_second:.2f}** "
        f"({tls_cpu - plain_cpu:+.1f} ms of worker CPU per classification).",
        "",
    ]
    write_section("bench_upstream_tls", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
