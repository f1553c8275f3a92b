"""What an auditor checks with witnesses: that the log's newest checkpoint carries enough
cosignatures, and that the log contains the newest tree each witness has cosigned.

A superuser who also holds the log's signing key can roll the database back and sign a shorter
or different log that verifies on its own. It cannot get a witness to cosign it (there is no
consistency proof from what the witness saw), so its newest checkpoints lack cosignatures, and
the witness's own newest checkpoint is not in the log: ``TamperingDetected`` (``unwitnessed``,
``forked``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from audit import checkpoint as notes
from audit import store
from audit.cosignature import WitnessKey, body_of, cosigners
from audit.errors import AuditError, TamperingDetected
from audit.types import TamperKind


def check_quorum(
    conn: psycopg.Connection[Any], witnesses: list[WitnessKey], quorum: int, grace_s: float
) -> int:
    """Raise unless the newest checkpoint stored more than ``grace_s`` ago (witnessing follows
    signing by moments) has cosignatures of ``quorum`` distinct ``witnesses``; return its
    size (0 for an empty log)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
    row = conn.execute(
        "SELECT size, note FROM audit_checkpoints WHERE created_at <= %s"
        " ORDER BY size DESC LIMIT 1",
        [cutoff],
    ).fetchone()
    if row is None:
        return 0
    size, note = int(row[0]), str(row[1])
    have = cosigners(note, store.cosignatures(conn, size), witnesses)
    if len(have) < quorum:
        raise TamperingDetected(
            TamperKind.UNWITNESSED,
            max(size - 1, 0),
            f"the checkpoint of size {size} has {len(have)} of the {quorum} witness cosignatures"
            f" required ({', '.join(sorted(have)) or 'none'}): forked, or the witnesses are down",
        )
    return size


def check_witness_view(
    conn: psycopg.Connection[Any], witness_note: str, witnesses: list[WitnessKey]
) -> int:
    """``witness_note`` is a witness's newest cosigned checkpoint (from its ``/latest``): it must
    be cosigned by one of ``witnesses``, and the log must hold a checkpoint of that size with
    that root. Return the size."""
    _, _, signatures = witness_note.partition("\n\n")
    lines = [line + "\n" for line in signatures.splitlines() if line]
    if not cosigners(witness_note, lines, witnesses):
        raise AuditError("the witness's answer is not cosigned by a trusted witness key")
    seen = notes.parse_body(body_of(witness_note))
    stored = store.checkpoint_at(conn, seen.size)
    if stored is None or notes.parse_body(body_of(stored.note)).root != seen.root:
        raise TamperingDetected(
            TamperKind.FORKED,
            max(seen.size - 1, 0),
            f"a witness cosigned a tree of size {seen.size} (root {seen.root.hex()}) that this"
            " log does not contain",
        )
    return seen.size
