"""Audit proofs on a real PostgreSQL: from the stored tree nodes, and the old whole-tree way.

    python benchmarks/bench_audit_proofs.py [--entries 1000000] [--requests 50] [--json out.json]

Makes a scratch database on the harness's server (a private throwaway cluster, or
``APPLIANCE_TEST_DATABASE_URL``), migrates it as the owner login, seals ``--entries`` events as
the sealer login (loaded server-side as in ``bench_audit``; a checkpoint about every second),
then, as the application's login and each in a fresh child process:
1. ``--requests`` inclusion proofs (random seq, newest checkpoint) and as many consistency
   proofs (one of the first tenth of the checkpoints to the newest) through ``audit.service``,
   as the API serves them: median and p95 time, peak memory growth of the process (VmHWM)
   and of Python's heap (tracemalloc, a second pass);
2. one of each the old way, every leaf read into a whole ``audit.proof.Tree`` (same answer);
3. the table: rows, size, a backfill as migration 0008 runs it, and what the sealer's node
   writing adds to a batch (both rolled back).
``--stride`` measures another layout than ``tree_nodes.STRIDE`` (same code, patched).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from audit import service, store, tree_nodes
from audit.proof import Tree
from audit.rfc6962 import CompactRange
from audit.signer import Signer
from benchmarks import report
from benchmarks.bench_audit import ORIGIN, bulk_pending, load_and_seal, server_description
from harness import postgres

BATCH = 5000
"""Events per sealed batch, as ``bench_audit.seal_all`` seals them."""
Case = tuple[str, int, int]
"""("inclusion", seq, tree size) or ("consistency", size1, size2)."""


def _hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _from_nodes(conn: psycopg.Connection[Any], case: Case) -> list[str]:
    kind, a, b = case
    if kind == "inclusion":
        return list(service.inclusion(conn, a, b)["hashes"])
    return list(service.consistency(conn, a, b)["hashes"])


def _whole_tree(conn: psycopg.Connection[Any], case: Case) -> list[str]:
    """What ``service`` did before the stored nodes: every leaf, one whole tree."""
    kind, a, b = case
    tree = Tree(service.leaves(conn, b))
    hashes = tree.inclusion(a, b) if kind == "inclusion" else tree.consistency(a, b)
    return [service.b64(h) for h in hashes]


WAYS: dict[str, Callable[[psycopg.Connection[Any], Case], list[str]]] = {
    "nodes": _from_nodes,
    "whole_tree": _whole_tree,
}


def _child(url: str, way: str, stride: int, cases: list[Case], out: Any) -> None:
    """Run ``cases`` in this fresh process: timings and VmHWM growth, then a tracemalloc pass."""
    tree_nodes.STRIDE = stride
    prove = WAYS[way]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        before = _hwm_kib()
        for case in cases[:3]:  # warm: caches, plans
            prove(conn, case)
        timings, answers = [], []
        for case in cases:
            started = time.perf_counter()
            answers.append(prove(conn, case))
            timings.append(time.perf_counter() - started)
        grown = _hwm_kib() - before
        tracemalloc.start()
        peaks = []
        for case in cases:
            tracemalloc.reset_peak()
            prove(conn, case)
            peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    out.put(
        {"timings": timings, "hwm_growth_kib": grown, "peak_bytes": max(peaks), "answers": answers}
    )


def measure(url: str, way: str, stride: int, cases: list[Case]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_child, args=(url, way, stride, cases, out))
    proc.start()
    result: dict[str, Any] = out.get(timeout=3600)
    proc.join()
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    ms = sorted(t * 1000 for t in result["timings"])
    return {
        "requests": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[max(0, round(0.95 * len(ms)) - 1)], 2),
        "max_ms": round(ms[-1], 2),
        "peak_rss_growth_mib": round(result["hwm_growth_kib"] / 1024, 1),
        "python_peak_mib": round(result["peak_bytes"] / 2**20, 2),
    }


def table_figures(url: str, size: int) -> dict[str, Any]:
    """Rows and size of the node table; a backfill as migration 0008 runs it and the sealer's
    part of a batch of ``BATCH`` (both rolled back)."""
    with psycopg.connect(url) as conn:
        rows, nodes_bytes, entries_bytes = conn.execute(
            "SELECT count(*), pg_total_relation_size('audit_tree_nodes'),"
            " pg_total_relation_size('audit_entries') FROM audit_tree_nodes"
        ).fetchone()  # type: ignore[misc]
        with conn.transaction(force_rollback=True):
            started = time.perf_counter()
            written = tree_nodes.fill(conn, size)
            backfill = time.perf_counter() - started
        latest = store.latest_checkpoint(conn)
        assert latest is not None and latest.size == size
        head = CompactRange.from_bytes(size, latest.compact_range)
        batches = []
        for _ in range(5):
            leaves = [os.urandom(32) for _ in range(BATCH)]
            with conn.transaction(force_rollback=True):
                started = time.perf_counter()
                tree_nodes.write(conn, head, leaves)
                batches.append(time.perf_counter() - started)
    assert written == rows, (written, rows)
    return {
        "rows": rows,
        "table_mib": round(nodes_bytes / 2**20, 1),
        "bytes_per_entry": round(nodes_bytes / size, 1),
        "entries_table_mib": round(entries_bytes / 2**20, 1),
        "backfill_seconds": round(backfill, 2),
        "backfill_us_per_entry": round(backfill / size * 1e6, 2),
        "sealer_ms_per_batch": round(statistics.median(batches) * 1000, 1),
        "sealer_batch": BATCH,
    }


def cases(sizes: list[int], requests: int, seed: int = 1) -> tuple[list[Case], list[Case]]:
    pick = random.Random(seed)
    latest, early = sizes[-1], sizes[: max(1, len(sizes) // 10)]
    inclusion = [("inclusion", pick.randrange(latest), latest) for _ in range(requests)]
    consistency = [("consistency", pick.choice(early), latest) for _ in range(requests)]
    return inclusion, consistency


def run(args: argparse.Namespace) -> dict[str, Any]:
    tree_nodes.STRIDE = args.stride
    key = Ed25519PrivateKey.generate()
    signer = Signer(ORIGIN, ORIGIN, key)
    with postgres.databases_with_logins() as (databases, logins):
        admin = databases.create("bench_proofs")
        owner, app = logins.url(admin, logins.owner), logins.url(admin, logins.app)
        sealed, elapsed = load_and_seal(admin, logins, signer, bulk_pending, args.entries, BATCH)
        with psycopg.connect(app) as conn:
            sizes = [cp.size for cp in store.checkpoints(conn)]
        inclusion, consistency = cases(sizes, args.requests)
        figures: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": report.machine(),
            "server": server_description(admin),
            "entries": sealed,
            "stride": args.stride,
            "sealing_events_per_s": round(sealed / elapsed),
            "checkpoints": len(sizes),
            "table": table_figures(owner, sealed),
        }
        print(json.dumps(figures["table"]), flush=True)
        for name, work in (("inclusion", inclusion), ("consistency", consistency)):
            nodes = measure(app, "nodes", args.stride, work)
            figures[f"{name}_nodes"] = summary(nodes)
            print(name, "nodes", figures[f"{name}_nodes"], flush=True)
            whole = measure(app, "whole_tree", args.stride, work[:1])
            assert whole["answers"][0] == nodes["answers"][0], f"{name}: the two ways disagree"
            figures[f"{name}_whole_tree"] = summary(whole)
            print(name, "whole tree", figures[f"{name}_whole_tree"], flush=True)
    return figures


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--stride", type=int, default=tree_nodes.STRIDE)


def main() -> None:
    report.run_script(__doc__ or "", arguments, run)


if __name__ == "__main__":
    main()
