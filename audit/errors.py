"""Every error the audit package raises on purpose derives from ``AuditError``.

Proof checks raise ``ProofError`` for a malformed proof and ``RootMismatchError`` when a well-formed
proof leads to another root; log verification raises ``TamperingDetected`` naming the first bad
sequence number and the kind of tampering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from audit.types import Finding, TamperKind


class AuditError(Exception):
    """Base of the audit package's errors."""


class ProofError(AuditError):
    """A proof or its parameters are malformed (wrong length, index out of range...)."""


class RootMismatchError(AuditError):
    """A well-formed proof, or a recomputed tree, does not lead to the expected root."""

    def __init__(self, got: bytes, want: bytes) -> None:
        super().__init__(f"root mismatch: got {got.hex()}, want {want.hex()}")
        self.got = got
        self.want = want


class EventError(AuditError):
    """An event or its canonical encoding is invalid."""


class CheckpointError(AuditError):
    """A checkpoint note is malformed or names another log."""


class SignatureError(CheckpointError):
    """A checkpoint's signature is missing or does not verify with the trusted key."""


class KeyFileError(AuditError):
    """A signing or verifier key file is missing or malformed."""


class StoreError(AuditError):
    """The audit tables could not be read or written (database unavailable, no permission)."""


class LeadershipLost(AuditError):
    """The sealer is not (or no longer) the leader; another sealer moved the chain head."""


class SealingRefused(AuditError):
    """The sealer will not sign: the database no longer extends the last tree it signed (a
    rolled-back head, a missing or changed checkpoint, rewritten entries) or its state is
    missing. ``reason`` is one of ``audit.sealer_state.REFUSAL_REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"sealing refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class NotSealedYet(AuditError):
    """The event exists but is not yet covered by a signed checkpoint: ask again shortly."""


class ExportError(AuditError):
    """An export file is malformed."""


class TamperingDetected(AuditError):
    """Verification found the log altered: ``seq`` is the first bad sequence number."""

    def __init__(self, kind: TamperKind, seq: int, detail: str) -> None:
        super().__init__(f"{kind.value} at seq {seq}: {detail}")
        self.kind = kind
        self.seq = seq
        self.detail = detail


class RecordsTampered(TamperingDetected):
    """The search columns, or the results and reviews tables, disagree with the signed log:
    every ``finding`` (the first one gives ``kind`` and ``seq``, -1 when it has no event)."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        first = findings[0]
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        super().__init__(first.kind, -1 if first.seq is None else first.seq, first.detail + more)
        self.findings = tuple(findings)
