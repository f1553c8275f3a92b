"""The sealer's side of witnessing: submit the newest checkpoint to each witness with a
consistency proof from the one the witness cosigned last, and store the cosignatures it returns.

It runs in a thread of its own with its own database connection, so a witness that is down or
slow delays nothing else: classification and sealing go on, and the lag shows in
``audit_witness_cosigned_size`` and ``audit_witness_failures_total``.
"""

from __future__ import annotations

import base64
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import urllib3

from audit import metrics, store
from audit.cosignature import WitnessKey, cosigners
from audit.errors import AuditError
from audit.proof import consistency_from_compact
from audit.rfc6962 import CompactRange
from audit.types import StoredCheckpoint
from audit.witness import SIZE_TYPE

RETRY_S = 10.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness: its submission prefix (``https://host:port``) and its public key."""

    url: str
    key: WitnessKey


class Submitter:
    """Not thread-safe itself: ``wake`` may be called from any thread, the rest runs in one."""

    def __init__(
        self,
        database_url: str,
        witnesses: list[WitnessEndpoint],
        tls: ssl.SSLContext | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.database_url = database_url
        self.witnesses = witnesses
        self._http = urllib3.PoolManager(
            ssl_context=tls, timeout=urllib3.Timeout(total=timeout_s), retries=False
        )
        self._known: dict[str, int] = {}  # a witness's latest cosigned size, as far as we know
        self._wake = threading.Event()

    def wake(self) -> None:
        """A new checkpoint was signed: submit it soon."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Submit whenever woken, and every ``RETRY_S`` (a witness that was down catches up)."""
        while not stop.is_set():
            self._wake.wait(RETRY_S)
            self._wake.clear()
            if not stop.is_set():
                self.submit_latest()

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="witness", daemon=True)
        thread.start()
        return thread

    def submit_latest(self) -> None:
        """Submit the newest stored checkpoint to every witness that has not cosigned it."""
        try:
            with store.connect(self.database_url, autocommit=True) as conn:
                latest = store.latest_checkpoint(conn)
                if latest is None:
                    return
                for witness in self.witnesses:
                    self._submit(conn, witness, latest)
        except (AuditError, psycopg.Error) as exc:
            log.warning("witness submission: %s", exc)

    def _submit(
        self, conn: psycopg.Connection[Any], witness: WitnessEndpoint, latest: StoredCheckpoint
    ) -> None:
        name = witness.key.name
        if self._known.get(name) == latest.size:
            return
        old = self._known.get(name, 0)
        for _ in range(2):  # a 409 tells us the size the witness has: try once more from it
            if old > latest.size:
                self._fail(name, "witness_ahead", f"it cosigned {old} entries, the log has fewer")
                return
            try:
                proof = self._proof(conn, old, latest)
            except AuditError as exc:
                self._fail(name, "no_base_checkpoint", str(exc))
                return
            body = f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof)
            try:
                response = self._http.request(
                    "POST",
                    witness.url.rstrip("/") + "/add-checkpoint",
                    body=body + "\n" + latest.note,
                )
            except urllib3.exceptions.HTTPError as exc:
                self._fail(name, "unreachable", str(exc))
                return
            text = response.data.decode("utf-8", "replace")
            if response.status == 409 and response.headers.get("Content-Type") == SIZE_TYPE:
                old = self._known[name] = int(text.strip())
                continue
            if response.status != 200:
                self._fail(name, f"http_{response.status}", text.strip()[:200])
                return
            self._store(conn, witness, latest, text)
            return

    def _proof(
        self, conn: psycopg.Connection[Any], old: int, latest: StoredCheckpoint
    ) -> list[bytes]:
        if old in (0, latest.size):
            return []
        base = store.checkpoint_at(conn, old)
        if base is None:  # the witness saw a checkpoint this database does not hold
            raise AuditError(f"no checkpoint of size {old} to prove consistency from")
        leaves = store.entry_hashes(conn, old, latest.size)
        return list(
            consistency_from_compact(CompactRange.from_bytes(old, base.compact_range), leaves)
        )

    def _store(
        self,
        conn: psycopg.Connection[Any],
        witness: WitnessEndpoint,
        latest: StoredCheckpoint,
        text: str,
    ) -> None:
        name = witness.key.name
        lines = [line + "\n" for line in text.splitlines() if line]
        valid = [line for line in lines if cosigners(latest.note, [line], [witness.key])]
        if not valid:
            self._fail(name, "bad_cosignature", "the answer holds no valid cosignature of its key")
            return
        store.add_cosignature(conn, latest.size, name, valid[0])
        self._known[name] = latest.size
        metrics.WITNESS_SIZE.labels(name).set(latest.size)
        metrics.WITNESS_TIME.labels(name).set(time.time())

    def _fail(self, name: str, reason: str, detail: str) -> None:
        log.error("witness %s: %s (%s)", name, reason, detail)
        metrics.WITNESS_FAILURES.labels(name, reason).inc()


def fetch_latest(url: str, origin: str, tls: ssl.SSLContext, timeout_s: float = 10.0) -> str:
    """A witness's newest cosigned checkpoint of ``origin`` (its ``/latest``), as a note."""
    http = urllib3.PoolManager(ssl_context=tls, timeout=timeout_s, retries=False)
    try:
        response = http.request("GET", url.rstrip("/") + "/latest", fields={"origin": origin})
    except urllib3.exceptions.HTTPError as exc:
        raise AuditError(f"witness {url}: {exc}") from exc
    if response.status != 200:
        raise AuditError(f"witness {url}: HTTP {response.status}")
    return response.data.decode("utf-8")
