"""What the result-id trigger of migration 0009 costs the sealer: sealing rate with the trigger,
and with it set aside, in alternating rounds on one database.

    python benchmarks/bench_seal_trigger.py [--events 100000] [--rounds 3] [--json out.json]

Each round loads ``--events`` classification events (as ``bench_audit_verify`` writes them,
each naming a result) into the pending table and seals them as the sealer's login, once with
``tr_audit_entries_result_id`` enabled and once disabled (by the owner); medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    signer = Signer(ORIGIN, ORIGIN, Ed25519PrivateKey.generate())
    rates: dict[str, list[float]] = {"with_trigger": [], "without_trigger": []}
    with (
        postgres.databases_with_logins() as (databases, logins),
        tempfile.TemporaryDirectory() as folder,
    ):
        admin = databases.create("bench_trigger")
        owner, sealer_url = logins.url(admin, logins.owner), logins.url(admin, logins.sealer)
        migrate.upgrade(postgres.sqlalchemy_url(owner))
        state = SealerState(Path(folder) / "sealer.state")
        for round_number in range(args.rounds):
            for name, switch in (("with_trigger", "ENABLE"), ("without_trigger", "DISABLE")):
                load(owner, args.events)
                with psycopg.connect(owner, autocommit=True) as conn:
                    conn.execute(f"ALTER TABLE audit_entries {switch} TRIGGER {TRIGGER}")
                    conn.execute("VACUUM ANALYZE audit_pending")
                sealer = Sealer(sealer_url, signer, state, batch_size=5000)
                started = time.perf_counter()
                sealed = sealer.run_once()
                elapsed = time.perf_counter() - started
                sealer.close()
                rates[name].append(sealed / elapsed)
                print(round_number, name, f"{sealed / elapsed:.0f} events/s", flush=True)
        with psycopg.connect(owner, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE audit_entries ENABLE TRIGGER {TRIGGER}")
        server = server_description(admin)
    medians = {name: round(statistics.median(values)) for name, values in rates.items()}
    return {
        "machine": report.machine(),
        "server": server,
        "events_per_round": args.events,
        "events_per_s_median": medians,
        "events_per_s_all": {name: [round(v) for v in values] for name, values in rates.items()},
        "ratio_with_to_without": round(medians["with_trigger"] / medians["without_trigger"], 3),
    }


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)


def main() -> None:
    report.run_script(__doc__ or "", arguments, run)


if __name__ == "__main__":
    main()
