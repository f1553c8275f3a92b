"""Receipts: one classification's audit event, provable offline, in the C2SP tlog-proof format.

A receipt is a ``c2sp.org/tlog-proof@v1`` document (https://c2sp.org/tlog-proof): the entry's
index, its RFC 6962 inclusion proof and the signed checkpoint verbatim (with any witness
cosignatures). Its ``extra`` line carries the entry bytes themselves (base64): the format leaves
``extra`` unauthenticated, and here it needs no trust, because the verifier hashes those bytes
into the leaf the proof starts from. So one file answers "what did the system decide for this
document on that day": the event (label, confidence, model, versions), proven to be entry
``index`` of the tree the log's key signed. Offline: no database driver (``audit.service``
builds receipts from the database).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from audit.chain import claimed_seq, decode_event, event_bytes
from audit.checkpoint import b64decode, open_note
from audit.errors import (
    CheckpointError,
    EventError,
    ProofError,
    RootMismatchError,
    TamperingDetected,
)
from audit.integrity import Trust
from audit.rfc6962 import hash_leaf
from audit.types import Event, TamperKind
from audit.verify import verify_inclusion

HEADER = "c2sp.org/tlog-proof@v1"


@dataclass(frozen=True)
class Receipt:
    entry: bytes
    """The sealed entry's bytes (``{"seq":<index>,"event":...}``)."""
    index: int
    proof: tuple[bytes, ...]
    note: str
    """The signed checkpoint the proof leads to, verbatim."""

    def render(self) -> str:
        lines = [HEADER, "extra " + _b64(self.entry), f"index {self.index}"]
        lines += [_b64(node) for node in self.proof]
        return "\n".join(lines) + "\n\n" + self.note


@dataclass(frozen=True)
class Verified:
    """A receipt that checked out: the event it proves, where, and under which checkpoint."""

    event: Event
    index: int
    tree_size: int


def parse(text: str) -> Receipt:
    """The receipt in ``text``; ``ProofError`` if it is not a well-formed one."""
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or len(lines) < 3 or lines[0] != HEADER:
        raise ProofError(f"receipt: want {HEADER!r}, extra, index, proof lines, the checkpoint")
    extra, index = lines[1], lines[2]
    if not extra.startswith("extra ") or not index.startswith("index "):
        raise ProofError("receipt: want an 'extra' line (the entry) and an 'index' line")
    number = index.removeprefix("index ")
    if not number.isdigit() or (number.startswith("0") and number != "0"):
        raise ProofError(f"receipt index: got {number!r}, want a decimal without leading zeros")
    try:
        entry = b64decode(extra.removeprefix("extra "))
        proof = tuple(b64decode(line) for line in lines[3:])
    except binascii.Error as exc:
        raise ProofError(f"receipt: not canonical base64: {exc}") from exc
    return Receipt(entry, int(number), proof, note)


def verify(receipt: Receipt, trust: Trust) -> Verified:
    """Check the checkpoint's signature, the inclusion of the entry bytes at ``index`` and the
    seq inside them; raise ``TamperingDetected`` when any fails."""
    try:
        checkpoint = open_note(receipt.note, trust.name, trust.public, trust.origin).checkpoint
        leaf = hash_leaf(receipt.entry)
        verify_inclusion(receipt.index, checkpoint.size, leaf, receipt.proof, checkpoint.root)
        if claimed_seq(receipt.entry) != receipt.index:
            raise EventError(f"the entry says seq {claimed_seq(receipt.entry)}")
        event = decode_event(event_bytes(receipt.entry))
    except (CheckpointError, ProofError, RootMismatchError, EventError) as exc:
        raise TamperingDetected(TamperKind.MODIFIED, receipt.index, f"receipt: {exc}") from exc
    return Verified(event, receipt.index, checkpoint.size)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
