"""What the sealer pays for what migrations add to each sealed entry, in alternating rounds:
the result-id trigger of migration 0009 (enabled, then set aside, on one database), and the
columns PostgreSQL derives from each entry in migration 0015 (a database at the head, and one
migrated only up to 0014).

    python benchmarks/bench_seal_cost.py [--events 100000] [--rounds 3] [--json out.json]

Each round loads ``--events`` classification events (as ``bench_audit_verify`` writes them,
each naming a result) into the pending table and seals them as the sealer's login; medians of
events per second and their ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from appliance import migrate
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from benchmarks import report
from benchmarks.bench_audit import ORIGIN, server_description
from benchmarks.bench_audit_verify import load
from harness import postgres

TRIGGER = "tr_audit_entries_result_id"
BEFORE_DERIVED = "0014_cascade_stages"


def _trigger(owner: str, switch: str) -> Callable[[], None]:
    def set_trigger() -> None:
        with psycopg.connect(owner, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE audit_entries {switch} TRIGGER {TRIGGER}")
    return set_trigger


def run(args: argparse.Namespace) -> dict[str, Any]:
    signer = Signer(ORIGIN, ORIGIN, Ed25519PrivateKey.generate())
    with (
        postgres.databases_with_logins() as (databases, logins),
        tempfile.TemporaryDirectory() as folder,
    ):
        head, older = databases.create("bench_seal_head"), databases.create("bench_seal_0014")
        owner = logins.url(head, logins.owner)
        migrate.upgrade(postgres.sqlalchemy_url(owner))
        migrate.upgrade(postgres.sqlalchemy_url(logins.url(older, logins.owner)), BEFORE_DERIVED)
        variants = {  # name: (database, what to do before its round)
            "head": (head, _trigger(owner, "ENABLE")),
            "without_trigger": (head, _trigger(owner, "DISABLE")),
            "before_derived": (older, lambda: None),
        }
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for round_number in range(args.rounds):
            for name, (database, prepare) in variants.items():
                database_owner = logins.url(database, logins.owner)
                load(database_owner, args.events)
                prepare()
                with psycopg.connect(database_owner, autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE audit_pending")
                state = SealerState(Path(folder) / f"{database.rsplit('/', 1)[1]}.state")
                sealer = Sealer(logins.url(database, logins.sealer), signer, state, batch_size=5000)
                started = time.perf_counter()
                sealed = sealer.run_once()
                elapsed = time.perf_counter() - started
                sealer.close()
                rates[name].append(sealed / elapsed)
                print(round_number, name, f"{sealed / elapsed:.0f} events/s", flush=True)
        _trigger(owner, "ENABLE")()
        server = server_description(head)
    medians = {name: round(statistics.median(values)) for name, values in rates.items()}
    return {
        "machine": report.machine(),
        "server": server,
        "events_per_round": args.events,
        "events_per_s_median": medians,
        "events_per_s_all": {name: [round(v) for v in values] for name, values in rates.items()},
        "trigger_ratio_with_to_without": round(medians["head"] / medians["without_trigger"], 3),
        "derived_ratio_with_to_without": round(medians["head"] / medians["before_derived"], 3),
    }


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)


def main() -> None:
    report.run_script(__doc__ or "", arguments, run)


if __name__ == "__main__":
    main()
