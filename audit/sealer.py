"""The one sealer: moves pending events into the sealed, hash-chained, Merkle-committed log.

Leadership: a session advisory lock (``pg_try_advisory_lock``) on the sealer's own connection; a
sealer that dies loses it with its connection. Fencing: every batch starts with
``SELECT ... FROM audit_chain_head FOR UPDATE`` and compares the head with the sealer's memory;
if it moved, the sealer re-checks the database against the last tree it signed (kept outside
the database, see ``sealer_state``) and refuses to sign a log that does not extend that tree.
Each batch is one transaction (insert entries with search columns taken from their own bytes,
store the tree nodes they complete, delete their pending rows, move the head, maybe add a
checkpoint), so a killed sealer leaves either all of a batch or none of it: every committed
event is sealed exactly once. A pending row that cannot be sealed (already sealed,
unreadable) is moved to ``audit_quarantine`` and the quarantine itself is sealed as an entry.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from audit import checkpoint as notes
from audit import metrics, quarantine, store, tree_nodes
from audit.chain import chain_hash, entry_hash, wrap
from audit.errors import (
    AuditError,
    LeadershipLost,
    ProofError,
    RootMismatchError,
    SealingRefused,
    StoreError,
)
from audit.integrity import Trust
from audit.proof import consistency_from_compact
from audit.rfc6962 import CompactRange
from audit.sealer_state import GENESIS, SealerState, SignedTree, check_signed, extend_signed
from audit.service import verify_database
from audit.signer import Signer
from audit.types import ChainHash, Checkpoint, Event
from audit.verify import verify_consistency
from audit.witness_client import Submitter

LOCK_KEY = 0x6175646974  # "audit"
REFUSAL_RETRY_S = 30.0
log = logging.getLogger(__name__)

KEY_ROTATED = "audit_key_rotated"
"""Action of the entry recording a hand-over of checkpoint signing to a new key."""
RESTORE_ACCEPTED = "audit_restore_accepted"
"""Action of the entry recording an operator's ``seal --accept-restore``."""
COPY_ENTRIES = sql.SQL(
    "COPY audit_entries (seq, event_id, entry, entry_hash, chain_hash, {}) FROM STDIN"
).format(sql.SQL(", ").join(map(sql.Identifier, store.SEARCH_COLUMNS)))


class Sealer:
    """Seal pending events in batches while holding leadership. Not thread-safe: one per thread."""

    def __init__(
        self,
        url: str,
        signer: Signer,
        state: SealerState,
        batch_size: int = 2000,
        checkpoint_interval_s: float = 0.5,
        witnesses: Submitter | None = None,
    ) -> None:
        """``witnesses``: where each new checkpoint is submitted for cosigning (or nowhere)."""
        self.url = url
        self.witnesses = witnesses
        self.signer = signer
        self.state = state
        self.batch_size = batch_size
        self.checkpoint_interval_s = checkpoint_interval_s
        self._conn: psycopg.Connection[Any] | None = None
        self._head_seq = -1
        self._head_chain = GENESIS.chain
        self._compact = CompactRange()
        self._signed = GENESIS
        self._unsigned: list[bytes] = []  # leaf hashes after the last signed tree
        self._last_checkpoint: float | None = None  # None: the first checkpoint is due at once
        self._successor: Signer | None = None  # during rotate_key only

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def acquire(self) -> bool:
        """Try to become the leader; True if this sealer holds the lock now. Raises
        ``SealingRefused`` (and lets the lock go) when the log does not extend the last tree
        this sealer signed."""
        if self._conn is not None and not self._conn.closed:
            return True
        if not self._lock():
            return False
        try:
            self._load_state()
        except SealingRefused:
            self.close()
            raise
        return True

    def _lock(self) -> bool:
        conn = store.connect(self.url, autocommit=True, application_name="audit-sealer")
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()
        if not row or not row[0]:
            conn.close()
            return False
        self._conn = conn
        return True

    def rotate_key(self, successor: Signer) -> int:
        """Hand checkpoint signing over to ``successor``: seal an entry naming its verifier key
        and sign a checkpoint over it that announces the key (a ``key`` line) with both keys.
        Verifiers pinned to the first key follow the rotation; from now on run the sealer with
        the new key. Returns the size of that checkpoint."""
        if not self.acquire():
            raise LeadershipLost("another sealer holds the sealing lock; stop it first")
        record = self.signer.event(
            KEY_ROTATED, 200, detail=f"later checkpoints are signed by {successor.verifier.vkey}"
        )
        self._successor = successor
        try:
            self.seal_batch(force_checkpoint=True, own=[record])
        finally:
            self._successor = None
            self.close()
        return self._signed.size

    def accept_restore(self, note: str) -> int:
        """After a real restore: take the signed checkpoint ``note`` (one this key signed, held
        by the restored database) as the tree every later one must extend, and seal an entry
        recording the gap between it and what this sealer had signed. The whole restored log
        is verified first. Returns the size of the checkpoint signed over that entry."""
        if not self._lock():
            raise LeadershipLost("another sealer holds the sealing lock; stop it first")
        try:
            return self._accept(note)
        finally:
            self.close()

    def _accept(self, note: str) -> int:
        conn = self._require()
        verifier = self.signer.verifier
        try:
            accepted = verifier.open(note)
        except AuditError as exc:
            raise SealingRefused("bad_state", f"the checkpoint to accept: {exc}") from exc
        stored = next((cp for cp in store.checkpoints(conn) if cp.size == accepted.size), None)
        if stored is None or stored.note != note:
            raise SealingRefused(
                "checkpoint_missing",
                f"the database does not hold this checkpoint of size {accepted.size}",
            )
        trust = Trust(verifier.name, verifier.public, verifier.origin)
        verify_database(conn, trust)  # raises TamperingDetected on a damaged restore
        try:
            previous = self.state.load(verifier)
            had = f"{previous.size} entries" if previous else "nothing (no state file)"
        except SealingRefused as exc:
            had = f"an unreadable state ({exc.detail})"
        tree = SignedTree(
            CompactRange.from_bytes(stored.size, stored.compact_range),
            accepted.chain or GENESIS.chain,
            note,
        )
        check_signed(tree, verifier, "the checkpoint to accept")
        self.state.save(tree)
        self._load_state()
        record = self.signer.event(
            RESTORE_ACCEPTED,
            200,
            detail=f"accepted the checkpoint of size {accepted.size}"
            f" (root {accepted.root.hex()}); this sealer had signed {had}",
        )
        self.seal_batch(force_checkpoint=True, own=[record])
        log.warning("audit sealer: restore accepted", extra={"size": accepted.size})
        return self._signed.size

    def _load_state(self) -> None:
        """Check the database against the last signed tree and go on from it (see
        ``sealer_state.extend_signed``)."""
        signed = self.state.load(self.signer.verifier)
        extension = extend_signed(self._require(), signed, self.signer.verifier, self.state.path)
        if extension.latest is not signed:
            self.state.save(extension.latest)
        self._head_seq, self._head_chain = extension.head_seq, extension.head_chain
        self._compact, self._signed = extension.compact, extension.latest
        self._unsigned = extension.unsigned
        metrics.refusing(None)
        metrics.checkpoint_signed(self._signed.size)
        metrics.LOG_SIZE.set(self._head_seq + 1)

    def _require(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            raise LeadershipLost("this sealer does not hold the sealing lock")
        return self._conn

    def seal_batch(self, force_checkpoint: bool = False, own: Sequence[Event] = ()) -> int:
        """Seal up to ``batch_size`` pending events in one transaction, after the sealer's
        ``own`` events; return how many pending events were sealed."""
        conn = self._require()
        signed = None
        try:
            with conn.transaction():
                head = store.chain_head(conn, lock=True)
                if head != (self._head_seq, self._head_chain):
                    log.warning("chain head moved under this sealer; checking it again")
                    self._load_state()
                sealed, seq, chain, leaves = self._seal_rows(
                    conn, [quarantine.own_row(event) for event in own]
                )
                tree_nodes.write(conn, self._compact, leaves)
                compact = CompactRange(self._compact.size, self._compact.nodes)
                compact.extend(leaves)
                unsigned = self._unsigned + leaves
                last = self._last_checkpoint
                due = last is None or time.monotonic() - last >= self.checkpoint_interval_s
                if compact.size > self._signed.size and (force_checkpoint or due):
                    self._check_extends_signed(compact, unsigned)
                    signed = self._write_checkpoint(conn, compact, chain)
        except psycopg.OperationalError as exc:
            self.close()
            raise LeadershipLost(f"lost the sealer's connection: {exc}") from exc
        self._head_seq, self._head_chain, self._compact = seq, chain, compact
        self._unsigned = unsigned
        metrics.LOG_SIZE.set(seq + 1)
        if signed is not None:  # committed: from now on every tree must extend this one
            self.state.save(signed)
            self._signed, self._unsigned = signed, []
            self._last_checkpoint = time.monotonic()
            metrics.checkpoint_signed(signed.size)
            if self.witnesses is not None:
                self.witnesses.wake()
        metrics.SEALED.inc(sealed)
        return sealed

    def _seal_rows(
        self, conn: psycopg.Connection[Any], own: list[quarantine.Sealable]
    ) -> tuple[int, int, ChainHash, list[bytes]]:
        """Seal a batch; (pending rows sealed, new head seq, its chain hash, new leaf hashes)."""
        rows = quarantine.fetch(conn, self.batch_size)
        leaves: list[bytes] = []
        if not rows and not own:
            return 0, self._head_seq, self._head_chain, leaves
        sealable = own + quarantine.screen(conn, rows, self.signer)
        seq, chain = self._head_seq, self._head_chain
        with conn.cursor().copy(COPY_ENTRIES) as copy:
            for row in sealable:
                seq += 1
                entry = wrap(seq, row.event)
                digest = entry_hash(entry)
                chain = chain_hash(chain, digest)
                leaves.append(digest)
                copy.write_row((seq, row.event_id, entry, digest, chain, *row.columns))
        conn.execute("DELETE FROM audit_pending WHERE id = ANY(%s)", [[r.id for r in rows]])
        conn.execute(
            "UPDATE audit_chain_head SET seq = %s, chain_hash = %s, updated_at = now()"
            " WHERE id = 1",
            [seq, chain],
        )
        return len(rows), seq, chain, leaves

    def _check_extends_signed(self, compact: CompactRange, unsigned: list[bytes]) -> None:
        """Before signing: a consistency proof from the last signed tree to ``compact`` must
        verify (the witnesses will ask for the same proof)."""
        old = self._signed.compact
        proof = consistency_from_compact(old, unsigned)
        try:
            verify_consistency(old.size, compact.size, proof, old.root(), compact.root())
        except (ProofError, RootMismatchError) as exc:
            raise SealingRefused(
                "inconsistent_tree",
                f"the tree of size {compact.size} does not extend the signed one of {old.size}:"
                f" {exc}",
            ) from exc

    def _write_checkpoint(
        self, conn: psycopg.Connection[Any], compact: CompactRange, chain: ChainHash
    ) -> SignedTree:
        """The checkpoint of ``compact``; during a rotation it announces the next key and is
        signed by both keys (the old one vouches for the new one)."""
        successor = self._successor
        next_key = None if successor is None else successor.verifier.vkey
        body = Checkpoint(self.signer.origin, compact.size, compact.root(), chain, next_key)
        signed = notes.sign(body, self.signer.name, self.signer.key)
        if successor is not None:
            signed = notes.add_signature(signed, successor.name, successor.key)
        conn.execute(
            "INSERT INTO audit_checkpoints (size, root, note, compact_range)"
            " VALUES (%s, %s, %s, %s)",
            [compact.size, body.root, signed.note, compact.to_bytes()],
        )
        return SignedTree(CompactRange(compact.size, compact.nodes), chain, signed.note)

    def run_once(self) -> int:
        """Seal everything pending now and checkpoint it; 0 if another sealer leads."""
        if not self.acquire():
            return 0
        total = 0
        while sealed := self.seal_batch():
            total += sealed
        self.seal_batch(force_checkpoint=True)
        if self.witnesses is not None:
            self.witnesses.submit_latest()
        return total

    def run(self, stop: threading.Event, poll_interval_s: float = 0.2) -> None:
        """Seal until ``stop`` is set; stand by while another sealer leads; survive DB restarts;
        while the log does not extend the last signed tree, refuse (and say so) without end."""
        if self.witnesses is not None:
            self.witnesses.start(stop)
        while not stop.is_set():
            try:
                if not self.acquire():
                    stop.wait(poll_interval_s * 5)
                    continue
                if self.seal_batch() == 0:  # idle: a checkpoint is still signed once due
                    metrics.PENDING.set(store.pending_count(self._require()))
                    stop.wait(poll_interval_s)
            except SealingRefused as exc:
                log.error("audit sealer: %s", exc, extra={"reason": exc.reason})
                metrics.refusing(exc.reason)
                self.close()
                stop.wait(REFUSAL_RETRY_S)
            except (LeadershipLost, StoreError) as exc:
                log.warning("sealer: %s; retrying", exc)
                self.close()
                stop.wait(poll_interval_s * 5)
        if self._conn is not None:  # a graceful stop signs the tail
            with contextlib.suppress(AuditError):
                self.seal_batch(force_checkpoint=True)
        self.close()
