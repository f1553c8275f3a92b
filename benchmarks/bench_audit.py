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
import multiprocessing
import platform
import shutil
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from appliance import migrate
from audit import service, store
from audit.chain import decode_event, encode_event, format_time
from audit.integrity import Trust
from audit.parallel import verify_parallel
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
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


def _writer_process(url: str, threads: int, seconds: float, go: Any, out: Any) -> None:
    done = [0] * threads
    stop = threading.Event()
    ready = threading.Barrier(threads + 1)

    def write(n: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            ready.wait()
            while not stop.is_set():
                store.append_pending(conn, event(n))  # one transaction per event
                done[n] += 1

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    go.wait()
    before = sum(done)
    time.sleep(seconds)
    after = sum(done)
    stop.set()
    for worker in workers:
        worker.join()
    out.put(after - before)


def writers(url: str, count: int, seconds: float, processes: int) -> float:
    """Events committed per second by ``count`` writers (threads spread over ``processes``
    processes, like gunicorn workers with threads), each writer on its own connection."""
    ctx = multiprocessing.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    spread = [count // processes + (1 if p < count % processes else 0) for p in range(processes)]
    procs = [
        ctx.Process(target=_writer_process, args=(url, n, seconds, go, out)) for n in spread if n
    ]
    for proc in procs:
        proc.start()
    time.sleep(2.0)  # connections up
    go.set()
    total = sum(int(out.get(timeout=seconds + 60)) for _ in procs)
    for proc in procs:
        proc.join()
    return total / seconds


def format_template(example: Event, values: list[str]) -> str:
    """The canonical bytes of ``example`` as a template for SQL's ``format``: each of
    ``values`` (field values of the example) replaced by its slot ``%1$s``, ``%2$s``, ..."""
    template = encode_event(example).decode()
    for number, value in enumerate(values, start=1):
        template = template.replace(value, f"%{number}$s")
    return template


def bulk_pending(url: str, count: int) -> None:
    """Fill the pending table fast, server-side, with ``count`` events of the real shape.

    The bytes are the canonical encoding of a template event (``encode_event``) with fresh ids
    and times substituted by SQL: same fields, same sizes as what the sink writes.
    """
    marker = event(0)
    template = format_template(marker, [marker.event_id, marker.request_id, marker.occurred_at])
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO audit_pending (event_id, event, occurred_at, actor, action, resource,"
            " outcome_status)"
            " SELECT u, convert_to(format(%s, u, md5(g::text),"
            "   to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')), 'UTF8'),"
            " now(), %s, 'classify_document', %s, 200"
            " FROM (SELECT gen_random_uuid() AS u, g FROM generate_series(1, %s) AS g) AS s",
            [template, marker.actor_subject, marker.resource, count],
        )
        sample = conn.execute("SELECT event FROM audit_pending LIMIT 1").fetchone()
    if sample is not None:
        decode_event(bytes(sample[0]))  # the loaded bytes are real canonical events


def seal_all(url: str, signer: Signer, state: Path, batch: int = 5000) -> tuple[int, float]:
    sealer = Sealer(url, signer, SealerState(state), batch_size=batch, checkpoint_interval_s=1.0)
    started = time.perf_counter()
    sealed = sealer.run_once()
    elapsed = time.perf_counter() - started
    sealer.close()
    return sealed, elapsed


def load_and_seal(
    admin: str, logins: Any, signer: Signer, fill: Any, count: int, batch: int = 5000
) -> tuple[int, float]:
    """Migrate the database ``admin`` as the owner, ``fill(owner_url, count)`` its pending
    events, seal them as the sealer's login; (entries sealed, seconds the sealing took)."""
    owner = logins.url(admin, logins.owner)
    migrate.upgrade(owner.replace("postgresql://", "postgresql+psycopg://", 1))
    started = time.perf_counter()
    fill(owner, count)
    print(f"loaded {count} in {time.perf_counter() - started:.1f}s", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder) / "sealer.state"
        sealed, elapsed = seal_all(logins.url(admin, logins.sealer), signer, state, batch)
    print(f"sealed {sealed} in {elapsed:.1f}s", flush=True)
    return sealed, elapsed


def verify(url: str, trust: Trust, workers: int) -> tuple[int, float]:
    """Full verification from PostgreSQL (``workers`` = 1: the sequential verifier)."""
    started = time.perf_counter()
    if workers == 1:
        with psycopg.connect(url) as conn:
            result = service.verify_database(conn, trust)
    else:
        result = verify_parallel(url, trust, workers=workers)
    return result.size, time.perf_counter() - started


def server_description(url: str) -> str:
    with psycopg.connect(url) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        }
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database-url", help="superuser URL (default: a private throwaway cluster, as in tests)"
    )
    parser.add_argument("--writers", default="16,64", help="comma-separated; empty to skip")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=2, help="writer processes")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--verify-workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.database_url is None:
        from harness.postgres import throwaway_cluster

        with throwaway_cluster() as admin_url:
            args.database_url = admin_url
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:

    key = Ed25519PrivateKey.generate()
    signer, trust = Signer(ORIGIN, ORIGIN, key), Trust(ORIGIN, key.public_key(), ORIGIN)
    name = f"bench_audit_{uuid.uuid4().hex[:8]}"
    base = args.database_url.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    with psycopg.connect(args.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    figures: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "server": server_description(args.database_url),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()},"
        f" {__import__('os').cpu_count()} CPUs, Python {platform.python_version()}",
    }
    folder = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    state = folder / "sealer.state"
    try:
        migrate.upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
        pem = folder / "k.pem"
        pem.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))  # fmt: skip
        for count in (int(c) for c in args.writers.split(",") if c):
            rates = []
            for _ in range(args.repeat):
                sealer = subprocess.Popen(
                    [sys.executable, "-m", "audit", "seal", "--database-url", url,
                     "--signing-key", str(pem), "--origin", ORIGIN,
                     "--state-file", str(state)],
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                try:
                    rates.append(writers(url, count, args.seconds, args.processes))
                finally:
                    sealer.terminate()
                    sealer.wait(30)
            figures[f"writers_{count}_events_per_s"] = round(statistics.median(rates))
            figures["writer_processes"] = args.processes
            print(f"{count} writers: {rates} events/s", flush=True)
        seal_all(url, signer, state)
        with psycopg.connect(url) as conn:
            have = int(conn.execute("SELECT count(*) FROM audit_entries").fetchone()[0])  # type: ignore[index]
        missing = max(args.entries - have, 0)
        started = time.perf_counter()
        bulk_pending(url, missing)
        print(
            f"loaded {missing} pending events in {time.perf_counter() - started:.1f}s", flush=True
        )
        sealed, elapsed = seal_all(url, signer, state)
        figures["sealing_events_per_s"] = round(sealed / elapsed) if elapsed else None
        print(f"sealed {sealed} in {elapsed:.1f}s", flush=True)
        for workers, label in ((args.verify_workers, "verify"), (1, "verify_sequential")):
            timings = []
            for _ in range(args.repeat):
                size, elapsed = verify(url, trust, workers)
                timings.append(elapsed)
                print(f"{label}: {size} entries in {elapsed:.2f}s", flush=True)
            figures["verify_entries"] = size
            figures[f"{label}_seconds_median"] = round(statistics.median(timings), 2)
            figures[f"{label}_entries_per_s"] = round(size / statistics.median(timings))
        figures["verify_workers"] = args.verify_workers
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with psycopg.connect(args.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
