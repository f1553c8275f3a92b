"""What the CLI and the auditor endpoints both do: proofs, verification, reports, search.

Functions take an open psycopg connection (any role with SELECT on the audit tables) and return
plain JSON-ready dicts.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import uuid
from typing import Any

import psycopg

from audit import checkpoint as notes
from audit import receipt, store, stored_proofs
from audit.chain import OMITTED_WHEN_NONE, decode_event, event_bytes
from audit.errors import (
    AuditError,
    NotSealedYet,
    ProofError,
    RecordsTampered,
    TamperingDetected,
)
from audit.integrity import Trust, VerifyResult, verify_log
from audit.rfc6962 import hash_leaf
from audit.types import Checkpoint, Event, Hash, StoredCheckpoint

LEAVES = "SELECT entry_hash FROM audit_entries WHERE seq < %s ORDER BY seq"
"""Stored entry hashes are the RFC 6962 leaf hashes: a proof built from an altered one fails to
verify against the signed root, so serving them needs no re-hashing."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def leaves(conn: psycopg.Connection[Any], size: int) -> list[Hash]:
    found = [Hash(bytes(row[0])) for row in conn.execute(LEAVES, [size])]
    if len(found) != size:
        raise ProofError(f"leaves: got {len(found)} sealed entries, want {size}")
    return found


def _checkpoint(conn: psycopg.Connection[Any], size: int | None, above: int) -> StoredCheckpoint:
    if size is None:
        row = conn.execute(
            "SELECT size, note, compact_range FROM audit_checkpoints WHERE size > %s"
            " ORDER BY size DESC LIMIT 1",
            [above],
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT size, note, compact_range FROM audit_checkpoints WHERE size = %s", [size]
        ).fetchone()
    if row is None or row[0] <= above:
        wanted = f"of size {size}" if size is not None else f"covering seq {above}"
        raise ProofError(f"no signed checkpoint {wanted}")
    return StoredCheckpoint(int(row[0]), row[1], bytes(row[2]))


def inclusion(
    conn: psycopg.Connection[Any], seq: int, tree_size: int | None = None
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of entry ``seq`` against a signed checkpoint (default: latest)."""
    cp = _checkpoint(conn, tree_size, seq)
    entry = store.entry_at(conn, seq)
    if entry is None:
        raise ProofError(f"no sealed entry with seq {seq}")
    return {
        "seq": seq,
        "tree_size": cp.size,
        "leaf_hash": b64(hash_leaf(entry)),
        "entry": b64(entry),
        "hashes": [b64(h) for h in stored_proofs.inclusion(conn, seq, cp.size)],
        "checkpoint": cp.note,
    }


def consistency(conn: psycopg.Connection[Any], size1: int, size2: int) -> dict[str, Any]:
    """RFC 9162 consistency proof between two signed checkpoints."""
    if not 0 < size1 <= size2:
        raise ProofError(f"consistency: got sizes {size1}, {size2}, want 0 < from <= to")
    first, second = _checkpoint(conn, size1, -1), _checkpoint(conn, size2, -1)
    return {
        "from": size1,
        "to": size2,
        "hashes": [b64(h) for h in stored_proofs.consistency(conn, size1, size2)],
        "checkpoint_from": first.note,
        "checkpoint_to": second.note,
    }


def verify_database(
    conn: psycopg.Connection[Any],
    trust: Trust,
    trusted: Checkpoint | None = None,
    allow_pruned: bool = False,
) -> VerifyResult:
    """Verify the sealed log in one consistent snapshot; raise ``TamperingDetected``."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        head, _ = store.chain_head(conn)
        cps = store.checkpoints(conn)
        start = trusted.size if trusted is not None else 0
        # Stop the row stream (and its prefetch thread) before the transaction ends, even when
        # verification raises.
        with contextlib.closing(store.stream_entries(conn, start)) as rows:
            return verify_log(rows, cps, trust, head, trusted, allow_pruned)


def report(result: VerifyResult | None, problem: AuditError | None, **extra: Any) -> dict[str, Any]:
    """The integrity report as a JSON-ready dict (``status``: ok, tampered or error)."""
    body: dict[str, Any] = {
        "status": "ok"
        if problem is None
        else "tampered"
        if isinstance(problem, TamperingDetected)
        else "error",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }
    if result is not None:
        latest = result.latest
        body.update(
            {
                "start_seq": result.start,
                "entries": result.size,
                "root": b64(result.root),
                "checkpoints_verified": result.checkpoints_verified,
                "latest_checkpoint": None
                if latest is None
                else {"size": latest.size, "root": b64(latest.root), "note": notes.body(latest)},
                "unsigned_entries": result.unsigned_entries,
            }
        )
    if isinstance(problem, TamperingDetected):
        body["tampering"] = {
            "kind": problem.kind.value,
            "seq": problem.seq,
            "detail": problem.detail,
        }
        if isinstance(problem, RecordsTampered):
            body["tampering"]["findings"] = [
                {"kind": f.kind.value, "seq": f.seq, "id": f.record_id, "detail": f.detail}
                for f in problem.findings
            ]
    elif problem is not None:
        body["error"] = str(problem)
    return body


def entry_json(seq: int, entry: bytes) -> dict[str, Any]:
    """A sealed entry for people: its seq and decoded event fields."""
    return {"seq": seq, **event_json(decode_event(event_bytes(entry)))}


def event_json(event: Event) -> dict[str, Any]:
    """An event's fields; the later optional ones only when it carries them (older versions,
    other actions do not), as in its canonical bytes."""
    return {k: v for k, v in vars(event).items() if v is not None or k not in OMITTED_WHEN_NONE}


def receipt_for(conn: psycopg.Connection[Any], result_id: uuid.UUID) -> receipt.Receipt:
    """The receipt of the event that recorded result ``result_id`` (its first classification
    event), under the newest checkpoint. ``NotSealedYet`` while that event is pending or
    unsigned; ``ProofError`` when no event names the result."""
    row = conn.execute(
        "SELECT seq FROM audit_entries WHERE result_id = %s AND action = ANY(%s)"
        " ORDER BY seq LIMIT 1",
        [result_id, store.CLASSIFYING_ACTIONS],
    ).fetchone()
    if row is None:
        if _pending_event_names(conn, result_id):
            raise NotSealedYet("the classification's audit event is not sealed yet")
        raise ProofError("no classification event names this result")
    seq = int(row[0])
    latest = store.latest_checkpoint(conn)
    if latest is None or latest.size <= seq:
        raise NotSealedYet("the classification's audit event is not signed yet")
    proof = inclusion(conn, seq, latest.size)
    note = latest.note + "".join(store.cosignatures(conn, latest.size))  # lines end with \n
    hashes = tuple(base64.b64decode(node) for node in proof["hashes"])
    return receipt.Receipt(base64.b64decode(proof["entry"]), seq, hashes, note)


def _pending_event_names(conn: psycopg.Connection[Any], result_id: uuid.UUID) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM audit_pending WHERE action = ANY(%s)"
        " AND convert_from(event, 'UTF8')::jsonb ->> 'result_id' = %s)",
        [store.CLASSIFYING_ACTIONS, str(result_id)],
    ).fetchone()
    return bool(row and row[0])
