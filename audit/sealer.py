"""The one sealer: moves pending events into the sealed, hash-chained, Merkle-committed log.

Leadership: a session advisory lock (``pg_try_advisory_lock``) on the sealer's own connection; a
sealer that dies loses it with its connection. Fencing: every batch starts with
``SELECT ... FROM audit_chain_head FOR UPDATE`` and compares the head with the sealer's memory;
if another writer moved it, the sealer reloads instead of forking. Each batch is one transaction
(insert entries, delete their pending rows, move the head, maybe add a checkpoint), so a killed
sealer leaves either all of a batch or none of it: every committed event is sealed exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import checkpoint as notes
from audit import store
from audit.chain import chain_hash, entry_hash, wrap
from audit.errors import AuditError, LeadershipLost, StoreError
from audit.rfc6962 import CompactRange, hash_leaf
from audit.types import ChainHash, Checkpoint

LOCK_KEY = 0x6175646974  # "audit"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Signer:
    """Who signs checkpoints: the log's origin line, the key name and the Ed25519 key."""

    origin: str
    name: str
    key: Ed25519PrivateKey


class Sealer:
    """Seal pending events in batches while holding leadership. Not thread-safe: one per thread."""

    def __init__(
        self,
        url: str,
        signer: Signer,
        batch_size: int = 2000,
        checkpoint_interval_s: float = 10.0,
    ) -> None:
        self.url = url
        self.signer = signer
        self.batch_size = batch_size
        self.checkpoint_interval_s = checkpoint_interval_s
        self._conn: psycopg.Connection[Any] | None = None
        self._head_seq = -1
        self._head_chain = ChainHash(bytes(32))
        self._compact = CompactRange()
        self._last_checkpoint: float | None = None  # None: the first checkpoint is due at once

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def acquire(self) -> bool:
        """Try to become the leader; True if this sealer holds the lock now."""
        if self._conn is not None and not self._conn.closed:
            return True
        conn = store.connect(self.url, autocommit=True, application_name="audit-sealer")
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()
        if not row or not row[0]:
            conn.close()
            return False
        self._conn = conn
        self._load_state()
        return True

    def _load_state(self) -> None:
        """Rebuild head and compact range from the latest checkpoint plus the entries after it."""
        conn = self._require()
        self._head_seq, self._head_chain = store.chain_head(conn)
        latest = store.latest_checkpoint(conn)
        compact = (
            CompactRange()
            if latest is None
            else CompactRange.from_bytes(latest.size, latest.compact_range)
        )
        with contextlib.closing(
            store.stream_entries(conn, compact.size, self._head_seq + 1)
        ) as rows:
            for _, entry, _, _ in rows:
                compact.append(hash_leaf(entry))
        if compact.size != self._head_seq + 1:
            raise StoreError(f"sealed entries: got {compact.size}, want {self._head_seq + 1}")
        self._compact = compact

    def _require(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            raise LeadershipLost("this sealer does not hold the sealing lock")
        return self._conn

    def seal_batch(self, force_checkpoint: bool = False) -> int:
        """Seal up to ``batch_size`` pending events in one transaction; return how many."""
        conn = self._require()
        try:
            with conn.transaction():
                head = store.chain_head(conn, lock=True)
                if head != (self._head_seq, self._head_chain):
                    log.warning("chain head moved under this sealer; reloading")
                    self._load_state()
                sealed, seq, chain, compact = self._seal_rows(conn)
                last = self._last_checkpoint
                due = last is None or time.monotonic() - last >= self.checkpoint_interval_s
                if compact.size > 0 and (force_checkpoint or due):
                    self._write_checkpoint(conn, compact, chain)
        except psycopg.OperationalError as exc:
            self.close()
            raise LeadershipLost(f"lost the sealer's connection: {exc}") from exc
        self._head_seq, self._head_chain, self._compact = seq, chain, compact
        return sealed

    def _seal_rows(self, conn: psycopg.Connection[Any]) -> tuple[int, int, ChainHash, CompactRange]:
        rows = conn.execute(
            "SELECT id, event_id, event, occurred_at, actor, action, resource, outcome_status"
            " FROM audit_pending ORDER BY id LIMIT %s",
            [self.batch_size],
        ).fetchall()
        seq, chain = self._head_seq, self._head_chain
        compact = CompactRange(self._compact.size, self._compact.nodes)
        if not rows:
            return 0, seq, chain, compact
        with conn.cursor().copy(
            "COPY audit_entries (seq, event_id, entry, entry_hash, chain_hash, occurred_at,"
            " actor, action, resource, outcome_status) FROM STDIN"
        ) as copy:
            for _, event_id, event, occurred_at, actor, action, resource, status in rows:
                seq += 1
                entry = wrap(seq, bytes(event))
                digest = entry_hash(entry)
                chain = chain_hash(chain, digest)
                compact.append(digest)
                copy.write_row(
                    (
                        seq,
                        event_id,
                        entry,
                        digest,
                        chain,
                        occurred_at,
                        actor,
                        action,
                        resource,
                        status,
                    )
                )
        conn.execute("DELETE FROM audit_pending WHERE id = ANY(%s)", [[r[0] for r in rows]])
        conn.execute(
            "UPDATE audit_chain_head SET seq = %s, chain_hash = %s, updated_at = now()"
            " WHERE id = 1",
            [seq, chain],
        )
        return len(rows), seq, chain, compact

    def _write_checkpoint(
        self, conn: psycopg.Connection[Any], compact: CompactRange, chain: ChainHash
    ) -> None:
        exists = conn.execute(
            "SELECT 1 FROM audit_checkpoints WHERE size = %s", [compact.size]
        ).fetchone()
        if exists:
            return
        body = Checkpoint(self.signer.origin, compact.size, compact.root(), chain)
        signed = notes.sign(body, self.signer.name, self.signer.key)
        conn.execute(
            "INSERT INTO audit_checkpoints (size, root, note, compact_range)"
            " VALUES (%s, %s, %s, %s)",
            [compact.size, body.root, signed.note, compact.to_bytes()],
        )
        self._last_checkpoint = time.monotonic()

    def run_once(self) -> int:
        """Seal everything pending now and checkpoint it; 0 if another sealer leads."""
        if not self.acquire():
            return 0
        total = 0
        while sealed := self.seal_batch():
            total += sealed
        self.seal_batch(force_checkpoint=True)
        return total

    def run(self, stop: threading.Event, poll_interval_s: float = 0.2) -> None:
        """Seal until ``stop`` is set; stand by while another sealer leads; survive DB restarts."""
        while not stop.is_set():
            try:
                if not self.acquire():
                    stop.wait(poll_interval_s * 5)
                    continue
                if self.seal_batch() == 0:  # idle: a checkpoint is still signed once due
                    stop.wait(poll_interval_s)
            except (LeadershipLost, StoreError) as exc:
                log.warning("sealer: %s; retrying", exc)
                self.close()
                stop.wait(poll_interval_s * 5)
        if self._conn is not None:  # a graceful stop signs the tail
            with contextlib.suppress(AuditError):
                self.seal_batch(force_checkpoint=True)
        self.close()
