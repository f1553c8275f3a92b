"""Time to receipt: from a classification's answer to its receipt being available (its audit
event sealed and covered by a signed checkpoint), at a steady load.

    python -m benchmarks.bench_receipts [--rate 100] [--seconds 30] [--json out.json]

The appliance as operators run it (``appliance serve``, mutual TLS, the app's login) against
the instant upstream, and the sealer as its own process (``audit-tool seal``, its login, the
default checkpoint interval). A load generator sends ``--rate`` classifications a second
(open loop: each at its scheduled time) and notes when each answer arrived; a monitor polls
the newest checkpoint's size every 10 ms (as the auditor's login) and notes when each size
first became visible. A classification's receipt is available once a checkpoint larger than
its event's seq is; the time from its answer to then is its time to receipt. A sample of
receipts is then fetched over mTLS and verified as ``audit-tool verify-receipt`` does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import receipt
from audit.integrity import Trust
from benchmarks import report
from benchmarks.bench_audit import ORIGIN
from benchmarks.bench_classify import document, instant_upstream
from harness import postgres
from harness.stack import Stack, appliance_stack
from harness.upstream import VllmEndpoint

POLL_S = 0.01


class CheckpointMonitor(threading.Thread):
    """Notes when each newest checkpoint size first became visible (monotonic time)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                row = conn.execute("SELECT max(size) FROM audit_checkpoints").fetchone()
                size = int(row[0]) if row and row[0] is not None else 0
                if not self.seen or size > self.seen[-1][0]:
                    self.seen.append((size, time.monotonic()))
                self.stop.wait(POLL_S)

    def visible(self, seq: int) -> float | None:
        """When a checkpoint covering entry ``seq`` was first seen."""
        return next((moment for size, moment in self.seen if size > seq), None)


def load(stack: Stack, rate: float, seconds: float) -> list[tuple[str, str, float]]:
    """(result id, audit event id, answer time) of each classification sent at ``rate``/s."""
    answers: list[tuple[str, str, float]] = []
    lock = threading.Lock()
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=stack.url, timeout=30, **stack.client_options())  # type: ignore[arg-type]
        return local.client  # type: ignore[no-any-return]

    def send(n: int, at: float) -> None:
        time.sleep(max(at - time.monotonic(), 0))
        answer = client().post("/api/v1/classify-document", json=document(n, "receipt"))
        answered = time.monotonic()
        answer.raise_for_status()
        body = answer.json()
        with lock:
            answers.append((body["result_id"], body["audit_event_id"], answered))

    start = time.monotonic() + 0.5
    count = int(rate * seconds)
    with ThreadPoolExecutor(32) as pool:
        for future in [pool.submit(send, n, start + n / rate) for n in range(count)]:
            future.result()
    return answers


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    trust = Trust(ORIGIN, key.public_key(), ORIGIN)
    folder = Path(tempfile.mkdtemp(prefix="bench-receipts-"))
    pem = folder / "signing.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    with postgres.databases_with_logins() as (databases, logins):
        admin = databases.create("bench_receipts")
        with (
            instant_upstream() as upstream,
            appliance_stack(admin, VllmEndpoint(upstream), logins) as stack,
        ):
            stack.wait_started()
            sealer = subprocess.Popen(
                [sys.executable, "-m", "audit", "seal",
                 "--database-url", logins.url(admin, logins.sealer), "--signing-key", str(pem),
                 "--origin", ORIGIN, "--state-file", str(folder / "sealer.state")],
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            monitor = CheckpointMonitor(logins.url(admin, logins.auditor))
            try:
                time.sleep(2)  # the sealer's first checkpoint (of the start-up events)
                monitor.start()
                began = time.monotonic()
                answers = load(stack, args.rate, args.seconds)
                elapsed = time.monotonic() - began
                time.sleep(3)
            finally:
                monitor.stop.set()
                sealer.terminate()
                sealer.wait(30)
            monitor.join()
            with psycopg.connect(admin) as conn:
                seqs: dict[str, int] = dict(
                    conn.execute(
                        "SELECT event_id::text, seq FROM audit_entries WHERE event_id = ANY(%s)",
                        [[event for _, event, _ in answers]],
                    ).fetchall()
                )
            latencies = []
            for _, event, answered in answers:
                visible = monitor.visible(seqs[event])
                assert visible is not None, f"event {event} was never covered by a checkpoint"
                latencies.append(visible - answered)
            checked = 0
            with httpx.Client(base_url=stack.url, timeout=30, **stack.client_options()) as api:  # type: ignore[arg-type]
                for result_id, _, _ in answers[:: max(len(answers) // 20, 1)]:
                    text = api.get(f"/api/v1/classifications/{result_id}/receipt").text
                    receipt.verify(receipt.parse(text), trust)
                    checked += 1
        during = [size for size, moment in monitor.seen if began <= moment <= began + elapsed]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "classifications": len(answers),
        "rate_per_s": round(len(answers) / elapsed, 1),
        "time_to_receipt_s": {
            "p50": round(statistics.median(latencies), 3),
            "p95": round(percentile(latencies, 0.95), 3),
            "p99": round(percentile(latencies, 0.99), 3),
            "max": round(max(latencies), 3),
        },
        "checkpoints_per_s": round(len(during) / elapsed, 2),
        "receipts_fetched_and_verified": checked,
        "load_average_after": os.getloadavg()[0],
    }


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)


def main() -> None:
    report.run_script(__doc__ or "", arguments, run)


if __name__ == "__main__":
    main()
