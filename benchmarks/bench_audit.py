"""Audit log benchmarks on a real PostgreSQL: writers, sealing, verification.

    python benchmarks/bench_audit.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Creates a scratch database (dropped afterwards), migrates it to head and measures:
1. events committed per second with 16 and 64 concurrent writers (one connection and one
   transaction per event, the way requests write), while the sealer runs as its own process;
2. the sealing rate (pending -> sealed, hashed, Merkle-committed, checkpointed);
3. the verification rate of the whole log streamed from PostgreSQL (default 1,000,000 entries).
Each figure is the median of ``--repeat`` runs. Needs a superuser URL (it creates a database).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import migrate
from audit import service, store
from audit.chain import format_time
from audit.integrity import Trust
from audit.sealer import Sealer, Signer
from audit.types import Event

ORIGIN = "bench.appliance/audit"


def event(i: int) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        occurred_at=format_time(datetime.now(UTC)),
        action="classify_document",
        outcome_status=200,
        request_id=uuid.uuid4().hex,
        actor_subject=f"spiffe://hospital/svc/intake-{i % 8}",
        actor_fingerprint="ab" * 32,
        source_address="10.0.0.7",
        resource="hmac-sha256:" + uuid.uuid4().hex * 2,
        result_id=str(uuid.uuid4()),
        content_sha256=uuid.uuid4().hex * 2,
    )


def writers(url: str, count: int, seconds: float) -> float:
    """Events committed per second by ``count`` writer threads, each on its own connection."""
    done = [0] * count
    stop = threading.Event()
    ready = threading.Barrier(count + 1)

    def write(n: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            ready.wait()
            while not stop.is_set():
                store.append_pending(conn, event(n))
                done[n] += 1

    threads = [threading.Thread(target=write, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def bulk_pending(url: str, count: int) -> None:
    """Fill the pending table fast (COPY) with ``count`` events."""
    with (
        psycopg.connect(url) as conn,
        conn.cursor().copy(
            "COPY audit_pending (event_id, event, occurred_at, actor, action, resource,"
            " outcome_status) FROM STDIN"
        ) as copy,
    ):
        for i in range(count):
            params = store.pending_params(event(i))
            copy.write_row([params[k] for k in (
                "event_id", "event", "occurred_at", "actor", "action", "resource", "outcome_status"
            )])  # fmt: skip


def seal_all(url: str, signer: Signer, batch: int = 5000) -> tuple[int, float]:
    sealer = Sealer(url, signer, batch_size=batch, checkpoint_interval_s=1.0)
    started = time.perf_counter()
    sealed = sealer.run_once()
    elapsed = time.perf_counter() - started
    sealer.close()
    return sealed, elapsed


def verify(url: str, trust: Trust) -> tuple[int, float]:
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        result = service.verify_database(conn, trust)
        return result.size, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True, help="superuser URL")
    parser.add_argument("--writers", default="16,64")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    key = Ed25519PrivateKey.generate()
    signer, trust = Signer(ORIGIN, ORIGIN, key), Trust(ORIGIN, key.public_key(), ORIGIN)
    name = f"bench_audit_{uuid.uuid4().hex[:8]}"
    base = args.database_url.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    with psycopg.connect(args.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    figures: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()},"
        f" {__import__('os').cpu_count()} CPUs, Python {platform.python_version()}",
    }
    try:
        migrate.upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with tempfile.TemporaryDirectory() as folder:
            pem = Path(folder) / "k.pem"
            pem.write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ))  # fmt: skip
            for count in (int(c) for c in args.writers.split(",")):
                rates = []
                for _ in range(args.repeat):
                    sealer = subprocess.Popen(
                        [sys.executable, "-m", "audit", "seal", "--database-url", url,
                         "--signing-key", str(pem), "--origin", ORIGIN],
                        stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    try:
                        rates.append(writers(url, count, args.seconds))
                    finally:
                        sealer.terminate()
                        sealer.wait(30)
                figures[f"writers_{count}_events_per_s"] = round(statistics.median(rates))
                print(f"{count} writers: {rates} events/s", flush=True)
        seal_all(url, signer)
        with psycopg.connect(url) as conn:
            have = int(conn.execute("SELECT count(*) FROM audit_entries").fetchone()[0])  # type: ignore[index]
        missing = max(args.entries - have, 0)
        started = time.perf_counter()
        bulk_pending(url, missing)
        print(
            f"loaded {missing} pending events in {time.perf_counter() - started:.1f}s", flush=True
        )
        sealed, elapsed = seal_all(url, signer)
        figures["sealing_events_per_s"] = round(sealed / elapsed) if elapsed else None
        print(f"sealed {sealed} in {elapsed:.1f}s", flush=True)
        timings = []
        for _ in range(args.repeat):
            size, elapsed = verify(url, trust)
            timings.append(elapsed)
            print(f"verified {size} entries in {elapsed:.2f}s", flush=True)
        figures["verify_entries"] = size
        figures["verify_seconds_median"] = round(statistics.median(timings), 2)
        figures["verify_entries_per_s"] = round(size / statistics.median(timings))
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
