"""The API's verification: full passes over the log, in steps of bounded work.

One request verifies at most ``max_entries`` entries: it continues the pass the previous step
left off, from the signed checkpoint where that step stopped (its stored compact range must
reproduce the signed root), and stops at a later checkpoint; the step that reaches the head
also runs the cross-checks and completes the pass, and the next request starts a new pass at
seq 0. So every entry is verified again pass after pass (an edit behind an earlier step is
found by the next pass), and no request holds a connection for the whole log. Progress is kept
in ``audit_verify_progress`` (migration 0010), shared by every API process. ``audit-tool
verify`` is the auditors' reference: it verifies everything at once and trusts no progress row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from audit import store
from audit.crosscheck import CrossCheck, cross_check
from audit.errors import TamperingDetected
from audit.integrity import Trust, VerifyResult, open_checkpoint, verify_log
from audit.types import Checkpoint, StoredCheckpoint, TamperKind


@dataclass(frozen=True)
class Step:
    """What one step verified: seq ``start`` up to ``result.size``, in the pass begun at
    ``pass_started_at``; ``complete`` when it reached the head (then ``cross_check`` ran)."""

    result: VerifyResult
    pass_started_at: dt.datetime
    start: int
    complete: bool
    remaining: int
    cross_check: CrossCheck | None

    def summary(self) -> dict[str, Any]:
        return {
            "pass_started_at": self.pass_started_at.isoformat(timespec="seconds"),
            "verified_from": self.start,
            "verified_to": self.result.size,
            "complete": self.complete,
            "remaining": self.remaining,
        }


def step(conn: psycopg.Connection[Any], trust: Trust, max_entries: int) -> Step:
    """Verify the next part of the current pass; raise ``TamperingDetected`` (the progress is
    then not advanced: the next request checks the same part again)."""
    pass_started_at, start = _resume(conn)
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        head, _ = store.chain_head(conn)
        cps = store.checkpoints(conn)
        stop = _stop(cps, start, head + 1, max_entries)
        trusted = _trusted(cps, start, trust)
        within = [cp for cp in cps if stop is None or cp.size <= stop]
        with contextlib.closing(store.stream_entries(conn, start, stop)) as rows:
            result = verify_log(rows, within, trust, head if stop is None else None, trusted)
    checked = cross_check(conn) if stop is None else None
    with conn.transaction():
        conn.execute(
            "INSERT INTO audit_verify_progress (pass_started_at, verified_size, complete)"
            " VALUES (%s, %s, %s)",
            [pass_started_at, result.size, stop is None],
        )
    remaining = max(head + 1 - result.size, 0)
    return Step(result, pass_started_at, start, stop is None, remaining, checked)


def _resume(conn: psycopg.Connection[Any]) -> tuple[dt.datetime, int]:
    """(when the current pass began, where it stands): a new pass when none is under way."""
    row = conn.execute(
        "SELECT pass_started_at, verified_size, complete FROM audit_verify_progress"
        " ORDER BY id DESC LIMIT 1"
    ).fetchone()
    conn.rollback()
    if row is None or row[2]:
        return dt.datetime.now(dt.UTC), 0
    return row[0], int(row[1])


def _stop(cps: list[StoredCheckpoint], start: int, end: int, max_entries: int) -> int | None:
    """Where this step stops: None (the head) when the rest fits, else the last checkpoint
    within ``max_entries`` (or the first after ``start``, whatever its distance)."""
    if end - start <= max_entries:
        return None
    later = [cp.size for cp in cps if cp.size > start]
    within = [size for size in later if size <= start + max_entries]
    stop = max(within) if within else min(later, default=end)
    return None if stop >= end else stop


def _trusted(cps: list[StoredCheckpoint], start: int, trust: Trust) -> Checkpoint | None:
    """The signed checkpoint the pass resumes from (its signature checked here)."""
    if start == 0:
        return None
    stored = next((cp for cp in cps if cp.size == start), None)
    if stored is None:
        detail = f"the checkpoint of size {start} where the last step stopped is gone"
        raise TamperingDetected(TamperKind.DELETED, start - 1, detail)
    return open_checkpoint(stored, trust.following(cps)).checkpoint
