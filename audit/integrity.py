"""Verifying the whole log (or its part after a trusted checkpoint) and naming what was done.

Every sealed row must have the next seq, bytes hashing to its entry hash, the same seq inside its
hashed bytes, and a chain hash continuing the previous one; every checkpoint must carry a valid
signature and the Merkle root of exactly the entries before it. The first failure is classified
(modified, deleted, inserted, reordered, truncated, bad checkpoint signature) and raised as
``TamperingDetected`` with the first bad sequence number.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import checkpoint as notes
from audit.chain import chain_hash, claimed_seq, entry_hash, links
from audit.errors import CheckpointError, EventError, ProofError, TamperingDetected
from audit.rfc6962 import CompactRange
from audit.types import (
    GENESIS_CHAIN,
    Checkpoint,
    Row,
    SignedCheckpoint,
    StoredCheckpoint,
    TamperKind,
)

MERGE_BATCH = 4096


@dataclass(frozen=True)
class Trust:
    """The verifier key (name and Ed25519 public key) and, optionally, the expected origin;
    ``rotations``: the keys later checkpoints are signed with, from the size after which each
    applies (see ``following``)."""

    name: str
    public: Ed25519PublicKey
    origin: str | None = None
    rotations: tuple[tuple[int, Trust], ...] = ()

    def for_checkpoint(self, size: int) -> Trust:
        """The key that signs the checkpoint of ``size``."""
        key = self
        for after, successor in self.rotations:
            if size > after:
                key = successor
        return key

    def following(self, checkpoints: Sequence[StoredCheckpoint]) -> Trust:
        """This pinned key plus each rotation announced (``key`` line) by a checkpoint that the
        key of its time signed. A checkpoint that does not open is passed over here; the
        verification reports it where it stands."""
        rotations: list[tuple[int, Trust]] = []
        current: Trust = self
        for cp in sorted(checkpoints, key=_size):
            try:
                signed = notes.open_note(cp.note, current.name, current.public, self.origin)
            except CheckpointError:
                continue
            if signed.checkpoint.next_key is not None:
                name, public = notes.parse_vkey(signed.checkpoint.next_key)
                current = Trust(name, public, self.origin)
                rotations.append((cp.size, current))
        return Trust(self.name, self.public, self.origin, tuple(rotations))


@dataclass(frozen=True)
class VerifyResult:
    start: int
    """First seq verified (0, or the size of the trusted checkpoint / prune point)."""
    size: int
    """Number of entries in the log (verified through seq ``size - 1``)."""
    root: bytes
    checkpoints_verified: int
    latest: Checkpoint | None
    """The newest checkpoint whose signature and root were checked."""

    @property
    def unsigned_entries(self) -> int:
        """Entries after the newest checkpoint (sealed but not yet signed)."""
        return self.size - (self.latest.size if self.latest else self.start)


def open_checkpoint(cp: StoredCheckpoint, trust: Trust) -> SignedCheckpoint:
    key = trust.for_checkpoint(cp.size)
    try:
        signed = notes.open_note(cp.note, key.name, key.public, trust.origin)
    except CheckpointError as exc:
        raise TamperingDetected(TamperKind.BAD_SIGNATURE, max(cp.size - 1, 0), str(exc)) from exc
    if signed.checkpoint.size != cp.size:
        detail = f"stored size {cp.size}, signed size {signed.checkpoint.size}"
        raise TamperingDetected(TamperKind.BAD_SIGNATURE, max(cp.size - 1, 0), detail)
    return signed


def start_state(
    first: Row | None,
    cps: Sequence[StoredCheckpoint],
    trust: Trust,
    trusted: Checkpoint | None,
    allow_pruned: bool = False,
) -> tuple[CompactRange, bytes]:
    """Compact range and chain hash to resume from: genesis, trusted checkpoint or prune point."""
    if trusted is None and (first is None or first[0] == 0):
        return CompactRange(), GENESIS_CHAIN
    if trusted is None and not allow_pruned and first is not None:
        detail = f"the log starts at seq {first[0]} (pass allow_pruned if it was pruned)"
        raise TamperingDetected(TamperKind.DELETED, 0, detail)
    size = trusted.size if trusted is not None else first[0] if first else 0
    stored = next((cp for cp in cps if cp.size == size), None)
    if stored is None:
        raise TamperingDetected(TamperKind.DELETED, 0, f"entries before {size} are missing")
    signed = open_checkpoint(stored, trust).checkpoint
    want = trusted if trusted is not None else signed
    try:
        compact = CompactRange.from_bytes(size, stored.compact_range)
    except ProofError as exc:
        raise TamperingDetected(TamperKind.MODIFIED, max(size - 1, 0), str(exc)) from exc
    if compact.root() != want.root or signed.root != want.root or want.chain is None:
        detail = f"stored checkpoint of size {size} does not match the trusted one"
        raise TamperingDetected(TamperKind.MODIFIED, max(size - 1, 0), detail)
    return compact, want.chain


def verify_log(
    rows: Iterable[Row],
    checkpoints: Sequence[StoredCheckpoint],
    trust: Trust,
    head_seq: int | None = None,
    trusted: Checkpoint | None = None,
    allow_pruned: bool = False,
) -> VerifyResult:
    """Verify sealed rows (in seq order) against the signed checkpoints; raise on tampering.

    ``allow_pruned``: accept a log whose first row is above 0 if it starts exactly at a signed
    checkpoint (a pruned log); otherwise the missing head is reported as deleted.
    ``trusted``: a checkpoint the auditor kept (already signature-checked); rows before its size
    are then skipped and the stored compact range at that size must reproduce its root.
    ``head_seq``: the chain head the database reports, if any (catches a truncated tail).
    """
    trust = trust.following(checkpoints)
    it = iter(rows)
    if trusted is not None:
        it = (r for r in it if r[0] >= trusted.size)
    first = next(it, None)
    compact, prev = start_state(first, checkpoints, trust, trusted, allow_pruned)
    start = compact.size
    pending = collections.deque(sorted((cp for cp in checkpoints if cp.size > start), key=_size))
    good, verified, latest = start, 0, None
    prev2 = prev
    expected = start
    stream = it if first is None else itertools.chain((first,), it)
    next_size = pending[0].size if pending else -1
    deferred, deferred_size = None, 0
    leaves: list[bytes] = []  # leaf hashes not yet merged into ``compact`` (merged in batches)
    for row in stream:
        while expected == next_size:
            compact.extend(leaves)
            leaves.clear()
            try:
                latest = check_checkpoint(pending.popleft(), trust, compact, prev, good)
                good, verified = expected, verified + 1
                next_size = pending[0].size if pending else -1
            except TamperingDetected as exc:
                if exc.kind is not TamperKind.MODIFIED:
                    raise
                # A signed root disagrees: read on, a bad row may explain it more precisely.
                deferred, deferred_size, next_size = exc, expected, -1
                pending.clear()
        if not links(row, expected, prev):
            try:
                _classify(expected, row, it, prev, prev2)
            except TamperingDetected as found:
                if deferred is not None and found.seq >= deferred_size:
                    raise deferred from found
                raise
        leaves.append(row[2])
        if len(leaves) >= MERGE_BATCH:
            compact.extend(leaves)
            leaves.clear()
        prev2, prev = prev, row[3]
        expected += 1
    compact.extend(leaves)
    if deferred is not None:
        raise deferred
    while pending and pending[0].size == expected:
        latest = check_checkpoint(pending.popleft(), trust, compact, prev, good)
        good, verified = expected, verified + 1
    for cp in pending:
        open_checkpoint(cp, trust)
        raise TamperingDetected(
            TamperKind.TRUNCATED, expected, f"checkpoint of size {cp.size} signed, {expected} found"
        )
    if head_seq is not None and head_seq >= expected:
        detail = f"chain head is at seq {head_seq}, the last entry is {expected - 1}"
        raise TamperingDetected(TamperKind.TRUNCATED, expected, detail)
    return VerifyResult(start, expected, compact.root(), verified, latest)


def _size(cp: StoredCheckpoint) -> int:
    return cp.size


def check_checkpoint(
    cp: StoredCheckpoint, trust: Trust, compact: CompactRange, chain: bytes, good: int
) -> Checkpoint:
    signed = open_checkpoint(cp, trust).checkpoint
    if signed.root != compact.root() or (signed.chain is not None and signed.chain != chain):
        detail = f"entries {good}..{cp.size - 1} do not match the signed root of size {cp.size}"
        raise TamperingDetected(TamperKind.MODIFIED, good, detail)
    return signed


def _classify(e: int, row: Row, rest: Iterator[Row], prev: bytes, prev2: bytes) -> None:
    """Raise the right ``TamperingDetected`` for the first bad row, found at position ``e``."""
    seq, entry, digest, chain = row
    if seq > e:
        raise TamperingDetected(TamperKind.DELETED, e, f"rows {e}..{seq - 1} are missing")
    if entry_hash(entry) != digest:
        raise TamperingDetected(TamperKind.MODIFIED, e, "entry bytes do not match the entry hash")
    try:
        claim = claimed_seq(entry)
    except EventError as exc:
        raise TamperingDetected(TamperKind.MODIFIED, e, str(exc)) from exc
    later = [claimed_seq(r[1]) for r in rest]
    duplicated = claim < e or len(set(later)) < len(later) or any(c < e for c in later)
    if claim == e:
        if duplicated:
            raise TamperingDetected(TamperKind.INSERTED, e, f"a second row claims seq {e}")
        raise TamperingDetected(TamperKind.MODIFIED, e, "chain hash does not continue the chain")
    if claim < e:
        fits_earlier = chain_hash(prev2, digest) == chain
        bad = e - 1 if fits_earlier else e
        raise TamperingDetected(TamperKind.INSERTED, bad, f"row {bad} is not part of the chain")
    if duplicated:
        raise TamperingDetected(TamperKind.INSERTED, e, f"row {e} claims seq {claim}")
    if e in later:
        raise TamperingDetected(TamperKind.REORDERED, e, f"row {e} holds the entry of seq {claim}")
    raise TamperingDetected(TamperKind.DELETED, e, f"no row holds the entry of seq {e}")
