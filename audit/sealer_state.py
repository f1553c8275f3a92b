"""What the sealer remembers outside the database: the last tree it signed.

A database superuser can delete the newest entries and checkpoints and move the chain head
back. A sealer that trusted the database would then sign a shorter log, and the signed
checkpoints would agree with the rollback. So the sealer keeps its last signed checkpoint, with
the compact range of that tree, in a file beside its key (``SignedTree``), and only ever signs
trees built by extending that compact range with the entries after it; before each signature it
also checks a consistency proof from it (``Sealer._check_extends_signed``). ``extend_signed``
compares the database with that tree and raises ``SealingRefused`` when they disagree.
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from audit import store
from audit.chain import links
from audit.errors import AuditError, SealingRefused
from audit.files import write_atomically
from audit.rfc6962 import CompactRange
from audit.signer import Verifier
from audit.types import GENESIS_CHAIN, ChainHash, StoredCheckpoint

FORMAT = "audit-sealer-state/1"

REFUSAL_REASONS = (
    "no_state",  # the log has entries but this sealer has no record of signing any
    "bad_state",  # the state file is unreadable or not signed by this sealer's key
    "head_moved_back",  # fewer entries than the last signed tree holds
    "checkpoint_missing",  # the last signed checkpoint is gone from the database
    "checkpoint_changed",  # a stored checkpoint differs from what this sealer signed
    "entries_rewritten",  # entries no longer chain onto the last signed tree
    "inconsistent_tree",  # the tree about to be signed has no consistency proof from the last
)


@dataclass(frozen=True)
class SignedTree:
    """The last tree the sealer signed: its compact range, the chain hash of its last entry,
    and the signed note (None only for the empty tree before the first checkpoint)."""

    compact: CompactRange
    chain: ChainHash
    note: str | None

    @property
    def size(self) -> int:
        return self.compact.size


GENESIS = SignedTree(CompactRange(), GENESIS_CHAIN, None)


class SealerState:
    """The state file: JSON, written atomically (``files.write_atomically``), mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, verifier: Verifier) -> SignedTree | None:
        """The last signed tree, or None when there is no state file yet."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SealingRefused("bad_state", f"cannot read {self.path}: {exc}") from exc
        try:
            data: dict[str, Any] = json.loads(raw)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, want {FORMAT!r}")
            compact = CompactRange.from_bytes(
                int(data["size"]), base64.b64decode(data["compact_range"])
            )
            tree = SignedTree(compact, ChainHash(base64.b64decode(data["chain"])), data["note"])
        except (AuditError, KeyError, TypeError, ValueError) as exc:
            raise SealingRefused("bad_state", f"{self.path} is malformed: {exc}") from exc
        check_signed(tree, verifier, f"state file {self.path}")
        return tree

    def save(self, tree: SignedTree) -> None:
        data = {
            "format": FORMAT,
            "size": tree.size,
            "compact_range": base64.b64encode(tree.compact.to_bytes()).decode(),
            "chain": base64.b64encode(tree.chain).decode(),
            "note": tree.note,
        }
        write_atomically(self.path, json.dumps(data, indent=1) + "\n")


def check_signed(tree: SignedTree, verifier: Verifier, what: str) -> None:
    """Raise ``SealingRefused`` unless ``tree`` is the tree its note, signed by us, describes."""
    if tree.note is None:
        if tree.size != 0:
            raise SealingRefused("bad_state", f"{what}: a tree of {tree.size} with no checkpoint")
        return
    try:
        signed = verifier.open(tree.note)
    except AuditError as exc:
        raise SealingRefused("bad_state", f"{what}: {exc}") from exc
    if (signed.size, signed.root, signed.chain) != (tree.size, tree.compact.root(), tree.chain):
        raise SealingRefused("bad_state", f"{what}: the checkpoint does not describe the tree")


def check_stored(tree: SignedTree, stored: list[StoredCheckpoint]) -> None:
    """The database must still hold the last checkpoint this sealer signed, unchanged."""
    if tree.note is None:
        return
    same_size = [cp for cp in stored if cp.size == tree.size]
    if not same_size:
        raise SealingRefused(
            "checkpoint_missing",
            f"the database has no checkpoint of size {tree.size}, the last one this sealer signed",
        )
    if same_size[0].note != tree.note:
        raise SealingRefused(
            "checkpoint_changed", f"the stored checkpoint of size {tree.size} was changed"
        )


@dataclass(frozen=True)
class Extension:
    """The sealed log as the sealer may go on from it: the head, the compact range of every
    sealed entry, and the newest checkpoint of its own that the log extends."""

    head_seq: int
    head_chain: ChainHash
    compact: CompactRange
    latest: SignedTree
    unsigned: list[bytes]
    """The leaf hashes after ``latest``, in order (what a consistency proof from it needs)."""


def extend_signed(
    conn: psycopg.Connection[Any], signed: SignedTree | None, verifier: Verifier, where: Path
) -> Extension:
    """Check the database extends ``signed`` (None: no state file at ``where``) and rebuild the
    compact range from it plus the entries after it, adopting later checkpoints of our own key
    that extend it (a standby's, or one committed just before a crash); raise
    ``SealingRefused`` otherwise."""
    head_seq, head_chain = store.chain_head(conn)
    stored = store.checkpoints(conn)
    if signed is None:
        if head_seq >= 0 or stored:
            raise SealingRefused(
                "no_state",
                f"the log holds {head_seq + 1} entries but {where} does not exist; after a"
                " restore (or the first start of a sealer that keeps state), accept a checkpoint"
                " with: audit-tool seal --accept-restore CHECKPOINT",
            )
        signed = GENESIS
    if head_seq + 1 < signed.size:
        raise SealingRefused(
            "head_moved_back",
            f"the log holds {head_seq + 1} entries; this sealer signed {signed.size}",
        )
    check_stored(signed, stored)
    later = {cp.size: cp for cp in stored if cp.size > signed.size}
    compact = CompactRange(signed.size, signed.compact.nodes)
    chain, latest = signed.chain, signed
    unsigned: list[bytes] = []
    with contextlib.closing(store.stream_entries(conn, signed.size, head_seq + 1)) as rows:
        for row in rows:
            adopted = _adopt(later.pop(compact.size, None), compact, chain, latest, verifier)
            if adopted is not latest:
                latest, unsigned = adopted, []
            if not links(row, compact.size, chain):
                raise SealingRefused(
                    "entries_rewritten",
                    f"entry {compact.size} does not chain onto the tree this sealer signed"
                    f" (size {signed.size})",
                )
            compact.append(row[2])
            unsigned.append(row[2])
            chain = ChainHash(row[3])
    adopted = _adopt(later.pop(compact.size, None), compact, chain, latest, verifier)
    if adopted is not latest:
        latest, unsigned = adopted, []
    if later:
        raise SealingRefused(
            "head_moved_back", f"checkpoints of sizes {sorted(later)} are beyond the head"
        )
    if (head_seq, head_chain) != (compact.size - 1, chain):
        raise SealingRefused(
            "entries_rewritten", "the chain head does not match the sealed entries"
        )
    return Extension(head_seq, head_chain, compact, latest, unsigned)


def _adopt(
    stored: StoredCheckpoint | None,
    compact: CompactRange,
    chain: ChainHash,
    latest: SignedTree,
    verifier: Verifier,
) -> SignedTree:
    """A stored checkpoint at ``compact.size`` must be ours and describe this very tree."""
    if stored is None:
        return latest
    try:
        opened = verifier.open(stored.note)
    except AuditError as exc:
        raise SealingRefused("checkpoint_changed", f"size {stored.size}: {exc}") from exc
    if (opened.root, opened.chain) != (compact.root(), chain):
        raise SealingRefused(
            "checkpoint_changed",
            f"the stored checkpoint of size {stored.size} does not extend the signed tree",
        )
    return SignedTree(CompactRange(compact.size, compact.nodes), chain, stored.note)
