"""``audit-tool verify`` on 1,000,000 classification entries, with and without the cross-checks.

    python benchmarks/bench_audit_verify.py [--entries 1000000] [--repeat 3] [--json out.json]

Makes a scratch database on the harness's server (a private throwaway cluster, or
``APPLIANCE_TEST_DATABASE_URL``), migrates it as the owner login, stores ``--entries`` results
and as many version-2 classification events naming them (loaded server-side: the canonical
bytes of a real event with its ids, times and decision substituted), seals them as the sealer
login, vacuums and analyzes the tables (as autovacuum does for tables that are only inserted
into, since PostgreSQL 13: it also marks their pages all-visible for index-only scans), then,
as the auditor's login, in rounds side by side:
1. the log's verification alone (``verify_parallel``, 2 workers: what ``verify`` did before);
2. the cross-checks alone (search columns, results, reviews: ``audit.crosscheck``);
3. both, as ``audit-tool verify`` runs them now (its ``_run_verify``).
Medians of ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from audit import cli
from audit.chain import encode_event
from audit.crosscheck import cross_check
from audit.integrity import Trust
from audit.parallel import verify_parallel
from audit.signer import Signer
from audit.types import Event
from benchmarks import report
from benchmarks.bench_audit import ORIGIN, format_template, load_and_seal, server_description
from harness import postgres

TEMPLATE = Event(
    event_id="00000000-0000-4000-8000-00000000e001",
    occurred_at="2026-12-02T10:00:00.000001Z",
    action="classify_document",
    outcome_status=200,
    request_id="0000000000000000000000000000r001",
    actor_subject="spiffe://hospital/svc/intake-1",
    actor_fingerprint="ab" * 32,
    source_address="10.0.0.7",
    resource="hmac-sha256:" + "cd" * 32,
    result_id="00000000-0000-4000-8000-00000000d001",
    content_sha256="hmac-sha256:" + "ef" * 32,
    label="BILLING",
    confidence="0.8731",
    scores_sha256="12" * 32,
    model="llama-2-7b-chat",
    model_digest="sha256:" + "34" * 32,
    prompt_version="56" * 32,
    taxonomy_version="default-2026-11",
    truncated=False,
    cached=False,
)
"""A classification event as the sink writes it (sizes as in production: pseudonymised ids)."""


def load(url: str, count: int) -> None:
    """``count`` results and, in the pending table, the event of each (ids and times fresh)."""
    template = format_template(
        TEMPLATE,
        [TEMPLATE.event_id, TEMPLATE.request_id, TEMPLATE.occurred_at, str(TEMPLATE.result_id)],
    )
    with psycopg.connect(url) as conn:
        conn.execute(
            "WITH made AS (INSERT INTO classification_results (id, document_id, content_sha256,"
            " content_length, model, model_digest, prompt_version, taxonomy_version, label,"
            " confidence, scores, needs_review, truncated)"
            " SELECT gen_random_uuid(), 'doc-' || g, md5(g::text) || md5(g::text), 900, %s, %s,"
            " %s, %s, %s, %s, '{}', false, false FROM generate_series(1, %s) AS g"
            " RETURNING id, created_at)"
            " INSERT INTO audit_pending (event_id, event, occurred_at, actor, action, resource,"
            " outcome_status)"
            " SELECT u, convert_to(format(%s, u, md5(r.id::text), to_char(r.created_at AT TIME"
            "   ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), r.id), 'UTF8'),"
            " r.created_at, %s, 'classify_document', %s, 200"
            " FROM (SELECT gen_random_uuid() AS u, id, created_at FROM made"
            "       ORDER BY created_at, id) AS r",
            [TEMPLATE.model, TEMPLATE.model_digest, TEMPLATE.prompt_version,
             TEMPLATE.taxonomy_version, TEMPLATE.label, float(TEMPLATE.confidence or 0), count,
             template, TEMPLATE.actor_subject, TEMPLATE.resource],
        )  # fmt: skip


def timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    signer, trust = Signer(ORIGIN, ORIGIN, key), Trust(ORIGIN, key.public_key(), ORIGIN)
    with postgres.databases_with_logins() as (databases, logins):
        admin = databases.create("bench_verify")
        owner, auditor = logins.url(admin, logins.owner), logins.url(admin, logins.auditor)
        sealed, _ = load_and_seal(admin, logins, signer, load, args.entries)
        with psycopg.connect(owner, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # as autovacuum would have, on a live system

        def checks() -> None:
            with psycopg.connect(auditor) as conn:
                counts = cross_check(conn)
            assert counts.results == args.entries, counts

        def both() -> None:
            result, problem, extra = cli._run_verify(auditor, None, trust, None, 2)
            assert problem is None and result is not None and result.size == sealed, problem
            assert extra["cross_check"]["results"] == args.entries

        ways: dict[str, Callable[[], Any]] = {
            "verify_only": lambda: verify_parallel(auditor, trust, workers=2),
            "cross_checks_only": checks,
            "verify_with_cross_checks": both,
        }
        timings: dict[str, list[float]] = {name: [] for name in ways}
        for round_number in range(args.repeat):
            for name, work in ways.items():
                timings[name].append(timed(work))
                print(round_number, name, f"{timings[name][-1]:.2f}s", flush=True)
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": report.machine(),
            "server": server_description(admin),
            "entries": sealed,
            "results": args.entries,
            "seconds_median": {n: round(statistics.median(t), 2) for n, t in timings.items()},
            "seconds_all": {n: [round(x, 2) for x in t] for n, t in timings.items()},
            "load_average_after": os.getloadavg()[0],
            "event_bytes": len(encode_event(TEMPLATE)),
        }


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)


def main() -> None:
    report.run_script(__doc__ or "", arguments, run)


if __name__ == "__main__":
    main()
