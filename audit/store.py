"""SQL for the audit tables (psycopg 3): pending inserts, sealed reads, streaming, search.

Table layout: migrations/versions/0002_audit.py (and 0008-0010). The application writes only
``audit_pending`` (and ``audit_verify_progress``, its verification steps); the sealed tables are
written by the sealer alone.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from audit.chain import encode_event
from audit.errors import StoreError
from audit.types import ChainHash, Event, Row, StoredCheckpoint

PENDING_COLUMNS = (
    "event_id",
    "event",
    "occurred_at",
    "actor",
    "action",
    "resource",
    "outcome_status",
)
"""The columns an event fills in ``audit_pending``: the keys of ``pending_params``."""
INSERT_PENDING = (
    sql.SQL("INSERT INTO audit_pending ({}) VALUES ({})")
    .format(
        sql.SQL(", ").join(map(sql.Identifier, PENDING_COLUMNS)),
        sql.SQL(", ").join(map(sql.Placeholder, PENDING_COLUMNS)),
    )
    .as_bytes()
)
"""Rendered once: psycopg would render a composed statement again on every execution."""


SEARCH_COLUMNS = {
    "occurred_at": "occurred_at",
    "actor": "actor_subject",
    "action": "action",
    "resource": "resource",
    "outcome_status": "outcome_status",
    "result_id": "result_id",
}
"""The search columns of ``audit_entries`` and the event field each repeats. The sealer fills
them from the hashed bytes (``search_values``); ``audit.crosscheck`` checks they still agree."""


CLASSIFYING_ACTIONS = ["classify_document", "classify_file"]
"""The actions whose events record a classification result (receipts, the cross-checks)."""
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "occurred_at": datetime.fromisoformat,
    "result_id": uuid.UUID,
}


def search_values(fields: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ``SEARCH_COLUMNS`` values of a decoded event, in order; ValueError or TypeError if
    a field cannot be one (a time that does not parse, a result id that is not a UUID)."""
    values = []
    for column, name in SEARCH_COLUMNS.items():
        value, parse = fields.get(name), _PARSERS.get(column)
        values.append(value if value is None or parse is None else parse(value))
    return tuple(values)


def dsn(url: str) -> str:
    """Accept SQLAlchemy-style URLs too: ``postgresql+psycopg://`` -> ``postgresql://``."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn(url), **kwargs)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to the audit database: {exc}") from exc


def pending_params(event: Event) -> dict[str, Any]:
    """Row values for ``INSERT_PENDING``: the canonical bytes plus the search columns."""
    return {
        "event_id": uuid.UUID(event.event_id),
        "event": encode_event(event),
        "occurred_at": datetime.fromisoformat(event.occurred_at),
        "actor": event.actor_subject,
        "action": event.action,
        "resource": event.resource,
        "outcome_status": event.outcome_status,
    }


def pending_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM audit_pending").fetchone()
    return int(row[0]) if row else 0


def append_pending(conn: psycopg.Connection[Any], event: Event) -> None:
    """Insert one event into the caller's open transaction (lock-free)."""
    conn.execute(INSERT_PENDING, pending_params(event))


_CHUNK = (
    "SELECT seq, entry, entry_hash, chain_hash FROM audit_entries"
    " WHERE seq >= %s AND seq < %s ORDER BY seq LIMIT %s"
)


def _chunks(
    conn: psycopg.Connection[Any], start: int, stop: int | None, chunk: int
) -> Iterator[list[Row]]:
    end = stop if stop is not None else 2**63 - 1
    low = start
    while low < end:
        rows: list[Row] = conn.execute(_CHUNK, [low, end, chunk], binary=True).fetchall()
        if not rows:
            return
        yield rows
        low = rows[-1][0] + 1


def stream_entries(
    conn: psycopg.Connection[Any],
    start: int = 0,
    stop: int | None = None,
    chunk: int = 5000,
    prefetch: bool = True,
) -> Generator[Row, None, None]:
    """Sealed rows with ``start <= seq < stop`` in seq order, in keyset-paginated chunks.

    Binary results, one round trip per chunk (measured here: faster than COPY or a server-side
    cursor). With ``prefetch`` a helper thread fetches the next chunk while the caller works on
    this one; do not use ``conn`` for anything else until the generator is exhausted or closed.
    Run it inside one REPEATABLE READ transaction for a consistent view.
    """
    chunks = _chunks(conn, start, stop, chunk)
    if not prefetch:
        for rows in chunks:
            yield from rows
        return
    handoff: queue.Queue[list[Row] | BaseException | None] = queue.Queue(maxsize=2)
    stopped = threading.Event()

    def put(item: list[Row] | BaseException | None) -> bool:
        while not stopped.is_set():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for rows in chunks:
                if not put(rows):
                    return
            put(None)
        except BaseException as exc:  # handed to the consumer, re-raised there
            put(exc)

    worker = threading.Thread(target=pump, name="audit-stream", daemon=True)
    worker.start()
    try:
        while (item := handoff.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        stopped.set()
        worker.join()


def checkpoints(conn: psycopg.Connection[Any]) -> list[StoredCheckpoint]:
    rows = conn.execute("SELECT size, note, compact_range FROM audit_checkpoints ORDER BY size")
    return [StoredCheckpoint(size, note, bytes(blob)) for size, note, blob in rows]


def latest_checkpoint(conn: psycopg.Connection[Any]) -> StoredCheckpoint | None:
    row = conn.execute(
        "SELECT size, note, compact_range FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
    ).fetchone()
    return None if row is None else StoredCheckpoint(row[0], row[1], bytes(row[2]))


def checkpoint_at(conn: psycopg.Connection[Any], size: int) -> StoredCheckpoint | None:
    row = conn.execute(
        "SELECT size, note, compact_range FROM audit_checkpoints WHERE size = %s", [size]
    ).fetchone()
    return None if row is None else StoredCheckpoint(row[0], row[1], bytes(row[2]))


def entry_hashes(conn: psycopg.Connection[Any], start: int, stop: int) -> list[bytes]:
    """The entry (leaf) hashes of seq ``start`` to ``stop - 1``, in order."""
    rows = conn.execute(
        "SELECT entry_hash FROM audit_entries WHERE seq >= %s AND seq < %s ORDER BY seq",
        [start, stop],
        binary=True,
    )
    return [bytes(row[0]) for row in rows]


def cosignatures(conn: psycopg.Connection[Any], size: int) -> list[str]:
    """The witness cosignature lines stored for the checkpoint of ``size``."""
    rows = conn.execute(
        "SELECT signature FROM audit_cosignatures WHERE size = %s ORDER BY id", [size]
    )
    return [str(row[0]) for row in rows]


def add_cosignature(conn: psycopg.Connection[Any], size: int, witness: str, line: str) -> None:
    conn.execute(
        "INSERT INTO audit_cosignatures (size, witness, signature) VALUES (%s, %s, %s)"
        " ON CONFLICT (size, witness) DO NOTHING",
        [size, witness, line],
    )


def chain_head(conn: psycopg.Connection[Any], lock: bool = False) -> tuple[int, ChainHash]:
    """(seq of the last sealed entry or -1, its chain hash); ``lock`` takes the row lock."""
    query = "SELECT seq, chain_hash FROM audit_chain_head WHERE id = 1"
    row = conn.execute(query + (" FOR UPDATE" if lock else "")).fetchone()
    if row is None:
        raise StoreError("audit_chain_head has no row: is the database migrated?")
    return int(row[0]), ChainHash(bytes(row[1]))


@dataclass(frozen=True)
class SearchFilter:
    actor: str | None = None
    resource: str | None = None
    action: str | None = None
    outcome_status: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_seq: int = -1
    limit: int = 100


def search(conn: psycopg.Connection[Any], where: SearchFilter) -> list[tuple[int, bytes]]:
    """(seq, entry bytes) of matching sealed entries, in seq order, after ``after_seq``."""
    clauses: list[sql.Composable] = [sql.SQL("seq > %s")]
    params: list[Any] = [where.after_seq]
    for column, value, op in (
        ("actor", where.actor, "="),
        ("resource", where.resource, "="),
        ("action", where.action, "="),
        ("outcome_status", where.outcome_status, "="),
        ("occurred_at", where.since, ">="),
        ("occurred_at", where.until, "<"),
    ):
        if value is not None:
            clauses.append(sql.SQL("{} {} %s").format(sql.Identifier(column), sql.SQL(op)))
            params.append(value)
    query = sql.SQL("SELECT seq, entry FROM audit_entries WHERE {} ORDER BY seq LIMIT %s").format(
        sql.SQL(" AND ").join(clauses)
    )
    rows = conn.execute(query, [*params, where.limit]).fetchall()
    return [(int(seq), bytes(entry)) for seq, entry in rows]


def entry_at(conn: psycopg.Connection[Any], seq: int) -> bytes | None:
    row = conn.execute("SELECT entry FROM audit_entries WHERE seq = %s", [seq]).fetchone()
    return None if row is None else bytes(row[0])
