"""Pending rows the sealer cannot seal, set aside instead of stopping the log.

A row whose event is already sealed, or whose bytes are not a readable event, would fail every
batch (a crash loop). ``screen`` moves such rows to ``audit_quarantine`` (append-only) and puts
in their place an entry of the sealer's own that records the quarantine: the row's event id and
the reason, so auditors see it in the signed log.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from audit import metrics, store
from audit.chain import KNOWN_FIELDS, REQUIRED_FIELDS, encode_event
from audit.signer import Signer
from audit.types import Event

QUARANTINED = "audit_row_quarantined"
"""Action of the entry the sealer writes for each pending row it set aside."""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """A row of ``audit_pending`` as the sealer reads it."""

    id: int
    event_id: uuid.UUID
    event: bytes
    already_sealed: bool = False
    """An entry with this event id is in the log already."""


@dataclass(frozen=True)
class Sealable:
    """An event to seal (a pending row's or the sealer's own), with its search columns
    (``store.SEARCH_COLUMNS``) taken from its own bytes, so a sealed row's columns say what its
    hashed bytes say."""

    event_id: uuid.UUID
    event: bytes
    columns: tuple[Any, ...]


def fetch(conn: psycopg.Connection[Any], limit: int) -> list[Pending]:
    """The oldest pending rows, each marked if its event id is sealed already (one query: the
    index answers that per row, no list of ids is sent)."""
    rows = conn.execute(
        "SELECT p.id, p.event_id, p.event,"
        " EXISTS (SELECT 1 FROM audit_entries e WHERE e.event_id = p.event_id)"
        " FROM audit_pending p ORDER BY p.id LIMIT %s",
        [limit],
    ).fetchall()
    return [Pending(r[0], r[1], bytes(r[2]), r[3]) for r in rows]


def own_row(event: Event) -> Sealable:
    """A sealer's event as a row to seal."""
    encoded = encode_event(event)
    return Sealable(uuid.UUID(event.event_id), encoded, store.search_values(json.loads(encoded)))


def screen(conn: psycopg.Connection[Any], rows: list[Pending], signer: Signer) -> list[Sealable]:
    """The rows to seal, in order, with each unsealable row quarantined and replaced by the
    sealer's entry about it. Runs in the sealer's batch transaction."""
    sealable = []
    for row in rows:
        readable = _readable(row)
        reason = "already_sealed" if row.already_sealed else readable
        if isinstance(reason, tuple):
            sealable.append(Sealable(row.event_id, row.event, reason))
            continue
        conn.execute(
            "INSERT INTO audit_quarantine (pending_id, event_id, event, reason)"
            " VALUES (%s, %s, %s, %s)",
            [row.id, row.event_id, row.event, reason],
        )
        log.error(
            "audit sealer: pending row quarantined",
            extra={"pending_id": row.id, "event_id": str(row.event_id), "reason": reason},
        )
        metrics.QUARANTINED.labels(reason).inc()
        record = signer.event(QUARANTINED, 422, resource=str(row.event_id), error_code=reason)
        sealable.append(own_row(record))
    return sealable


def _readable(row: Pending) -> tuple[Any, ...] | str:
    """The event's search columns, or why it cannot go into the log as it is. On every row
    sealed: a JSON parse and key checks, which is what ``decode_event`` needs, without
    building it; and what PostgreSQL's own parse of each entry (the derived columns of
    migration 0015) would refuse, which would fail every batch: bytes that are not ASCII, floats
    (``NaN``, ``1e999``), ``\\u0000`` and unpaired surrogates. Canonical events have none,
    and only flat values."""
    try:
        fields = json.loads(row.event, parse_float=_no_float, parse_constant=_no_float)
        if not isinstance(fields, dict) or not REQUIRED_FIELDS <= fields.keys() <= KNOWN_FIELDS:
            return "unreadable_event"
        if not all(value is None or isinstance(value, str | int) for value in fields.values()):
            return "unreadable_event"
        if not row.event.isascii() or (b"\\u" in row.event and not _unicode(fields)):
            return "unreadable_event"
        if fields["event_id"] != str(row.event_id):
            return "event_id_mismatch"
        return store.search_values(fields)
    except (ValueError, TypeError, RecursionError):
        return "unreadable_event"


def _no_float(text: str) -> Any:
    raise ValueError(f"a float in an event: {text[:20]}")


def _unicode(fields: dict[str, Any]) -> bool:
    """Whether every string of a (flat) event is Unicode text PostgreSQL stores: UTF-8
    encodable (no unpaired surrogate) and without NUL."""
    strings = [value for value in (*fields, *fields.values()) if isinstance(value, str)]
    try:
        for value in strings:
            value.encode("utf-8")  # raises for an unpaired surrogate
    except UnicodeEncodeError:
        return False
    return not any("\x00" in value for value in strings)
