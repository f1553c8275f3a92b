"""What the HTML report plots: SQL aggregates over the searchable columns of the audit tables.

The searchable columns (``occurred_at``, ``actor``, ``action``, ``outcome_status``) are copies
the sealer writes beside each entry's canonical bytes; verification covers the bytes, not these
copies, so the figures describe activity while only the integrity status is proven.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from audit import store
from audit.errors import StoreError

DENIED = (401, 403)
"""Outcome statuses that are denials: no identity, or an identity without the role."""
MAX_ACTORS = 50
"""Actors listed in the denials table; more would hide the few that matter."""

CHECKPOINTS = "SELECT size, created_at FROM audit_checkpoints ORDER BY size"
DAILY = (
    "SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, action, outcome_status, count(*)"
    " FROM audit_entries GROUP BY day, action, outcome_status"
    " ORDER BY day, action, outcome_status"
)
DENIALS = (
    "SELECT actor, count(*) FILTER (WHERE outcome_status = 401),"
    " count(*) FILTER (WHERE outcome_status = 403), min(occurred_at), max(occurred_at)"
    " FROM audit_entries WHERE outcome_status = ANY(%s)"
    " GROUP BY actor ORDER BY count(*) DESC, actor NULLS FIRST LIMIT %s"
)


@dataclass(frozen=True)
class CheckpointPoint:
    """One signed checkpoint: the tree size it covers and when the sealer stored it."""

    size: int
    created_at: dt.datetime


@dataclass(frozen=True)
class DailyCount:
    """Sealed events of one UTC day with one action and one outcome status."""

    day: dt.date
    action: str
    outcome_status: int
    count: int


@dataclass(frozen=True)
class ActorDenials:
    """Denials of one actor (``None``: requests that presented no identity)."""

    actor: str | None
    unauthenticated: int
    """Outcome 401."""
    forbidden: int
    """Outcome 403."""
    first: dt.datetime
    last: dt.datetime

    @property
    def total(self) -> int:
        return self.unauthenticated + self.forbidden


@dataclass(frozen=True)
class ReportData:
    """Everything the HTML report plots, read in one snapshot."""

    checkpoints: list[CheckpointPoint]
    daily: list[DailyCount]
    denials: list[ActorDenials]
    more_actors: bool
    """More actors were denied than ``denials`` lists (it holds the ``MAX_ACTORS`` busiest)."""
    pending: int
    """Events committed but not sealed yet (known even when verification stopped early)."""


def checkpoint_series(conn: psycopg.Connection[Any]) -> list[CheckpointPoint]:
    """Tree size against time: a flat stretch is a sealer that stopped signing."""
    return [CheckpointPoint(int(size), at) for size, at in conn.execute(CHECKPOINTS)]


def daily_activity(conn: psycopg.Connection[Any]) -> list[DailyCount]:
    """Events per UTC day, action and outcome, so a day's spike shows what it was made of."""
    return [DailyCount(d, a, int(s), int(n)) for d, a, s, n in conn.execute(DAILY)]


def denials_by_actor(conn: psycopg.Connection[Any], limit: int = MAX_ACTORS) -> list[ActorDenials]:
    """The actors refused most often (401 and 403), busiest first: probing shows up here."""
    rows = conn.execute(DENIALS, [list(DENIED), limit])
    return [ActorDenials(a, int(u), int(f), first, last) for a, u, f, first, last in rows]


def gather(conn: psycopg.Connection[Any]) -> ReportData:
    """All the aggregates in one read-only REPEATABLE READ snapshot, so they agree."""
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            denials = denials_by_actor(conn, MAX_ACTORS + 1)
            return ReportData(
                checkpoint_series(conn),
                daily_activity(conn),
                denials[:MAX_ACTORS],
                len(denials) > MAX_ACTORS,
                store.pending_count(conn),
            )
    except psycopg.Error as exc:
        raise StoreError(f"cannot read the report's figures: {exc}") from exc


def collect(database_url: str) -> ReportData:
    """``gather`` over a connection of its own (the CLI's entry point)."""
    with store.connect(database_url) as conn:
        return gather(conn)
