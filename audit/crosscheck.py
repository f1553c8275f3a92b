"""What the database repeats of the signed log, checked against it: the search columns of
``audit_entries`` and the results and reviews tables.

The hash chain and the checkpoints prove the entry bytes; but ``search`` reads the columns
beside them, and people read results from their own tables. An insider who edits a column hides
an event from a search; one who edits a stored label changes "what the system decided". Each
check here is one SQL statement over one snapshot (REPEATABLE READ), so PostgreSQL parses the
entries' JSON next to the rows it compares them with; it runs after the bytes have been
verified, so what it compares with are the sealed bytes. Events still pending (committed with
their result, not sealed yet) count as the log's too.

Version 1 events (written before the decision fields) carry no decision: their results are
checked for existence only. Reviews from then are matched by count per result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from audit import store
from audit.chain import format_time
from audit.errors import RecordsTampered, StoreError
from audit.types import Finding, TamperKind

LIMIT = 100
"""Findings reported per kind (the first ones by seq): enough to act on, bounded output."""
CLASSIFIED = ["classify_document", "classify_file"]
REVIEWED = ["review_classification"]
CASTS = {"outcome_status": "integer", "occurred_at": "timestamptz", "result_id": "uuid"}
"""How a search column's event field is read from the JSON (text otherwise)."""


@dataclass(frozen=True)
class CrossCheck:
    """What was compared: sealed rows' columns, results, reviews (None: not readable)."""

    rows: int
    results: int | None
    reviews: int | None


def _column_check() -> str:
    field = "e -> 'event' ->> '{}'"
    differs = " OR ".join(
        f"{column} IS DISTINCT FROM ({field.format(name)})::{CASTS.get(column, 'text')}"
        for column, name in store.SEARCH_COLUMNS.items()
    )
    columns = ", ".join(store.SEARCH_COLUMNS)
    return (
        f"SELECT seq, {columns}, e -> 'event' FROM ("
        f" SELECT seq, {columns}, convert_from(entry, 'UTF8')::jsonb AS e FROM audit_entries"
        f") sealed WHERE {differs} ORDER BY seq LIMIT {LIMIT}"
    )


COLUMN_CHECK = _column_check()

LOGGED = """
logged AS MATERIALIZED (
    SELECT seq, result_id FROM audit_entries
     WHERE result_id IS NOT NULL AND action = ANY(%(actions)s)
    UNION ALL
    SELECT NULL, (convert_from(event, 'UTF8')::jsonb ->> 'result_id')::uuid FROM audit_pending
     WHERE action = ANY(%(actions)s)
       AND convert_from(event, 'UTF8')::jsonb ->> 'result_id' IS NOT NULL
)
"""
"""The result ids the log's events of ``actions`` name, sealed (with their seq: the column is
checked against the bytes first) or pending."""
EVENTS = """
events AS MATERIALIZED (
    SELECT seq, e FROM (
        SELECT seq, convert_from(entry, 'UTF8')::jsonb -> 'event' AS e
          FROM audit_entries WHERE result_id IS NOT NULL AND action = ANY(%(actions)s)
        UNION ALL
        SELECT NULL, convert_from(event, 'UTF8')::jsonb FROM audit_pending
         WHERE action = ANY(%(actions)s)
    ) decoded WHERE e ->> 'result_id' IS NOT NULL
)
"""
"""The same events decoded, for what only their bytes say (label, versions, review id)."""

RESULT_DIFFERS = " OR ".join(
    f"e ->> '{name}' IS DISTINCT FROM r.{name}"
    for name in ("label", "model", "model_digest", "prompt_version", "taxonomy_version")
) + (
    " OR (e ->> 'confidence')::float8 IS DISTINCT FROM r.confidence"
    " OR (e ->> 'truncated')::boolean IS DISTINCT FROM r.truncated"
)

RESULT_CHECKS = {
    TamperKind.RESULT_MODIFIED: f"""
        WITH {EVENTS} SELECT seq, r.id FROM events JOIN classification_results r
          ON r.id = (e ->> 'result_id')::uuid
         WHERE e ? 'label' AND ({RESULT_DIFFERS}) ORDER BY seq LIMIT {LIMIT}""",
    TamperKind.RESULT_INSERTED: f"""
        WITH {LOGGED} SELECT NULL, r.id FROM classification_results r
         WHERE NOT EXISTS (SELECT FROM logged WHERE logged.result_id = r.id)
         ORDER BY r.created_at LIMIT {LIMIT}""",
    TamperKind.RESULT_DELETED: f"""
        WITH {LOGGED} SELECT seq, result_id FROM logged
         WHERE NOT EXISTS (SELECT FROM classification_results r WHERE r.id = logged.result_id)
         ORDER BY seq LIMIT {LIMIT}""",
}
REVIEW_CHECKS = {
    TamperKind.REVIEW_MODIFIED: f"""
        WITH {EVENTS} SELECT seq, v.id FROM events JOIN classification_reviews v
          ON v.id = (e ->> 'review_id')::uuid
         WHERE e ->> 'review_label' IS DISTINCT FROM v.label
            OR (e ->> 'result_id')::uuid IS DISTINCT FROM v.result_id
         ORDER BY seq LIMIT {LIMIT}""",
    TamperKind.REVIEW_INSERTED: f"""
        WITH {EVENTS},
        unnamed AS (
            SELECT v.id, v.result_id, v.created_at FROM classification_reviews v
             WHERE NOT EXISTS (SELECT FROM events WHERE (e ->> 'review_id')::uuid = v.id)),
        legacy AS (
            SELECT (e ->> 'result_id')::uuid AS result_id, count(*) AS events FROM events
             WHERE NOT e ? 'review_id' GROUP BY 1)
        SELECT NULL, u.id FROM unnamed u LEFT JOIN legacy l USING (result_id)
         WHERE (SELECT count(*) FROM unnamed w WHERE w.result_id = u.result_id)
               > coalesce(l.events, 0)
         ORDER BY u.created_at LIMIT {LIMIT}""",
    TamperKind.REVIEW_DELETED: f"""
        WITH {EVENTS} SELECT seq, e ->> 'review_id' FROM events WHERE e ? 'review_id'
           AND NOT EXISTS (
               SELECT FROM classification_reviews v WHERE v.id = (e ->> 'review_id')::uuid)
         ORDER BY seq LIMIT {LIMIT}""",
}
DETAILS = {
    TamperKind.RESULT_MODIFIED: "result {id} differs from its event (label, confidence,"
    " model or versions)",
    TamperKind.RESULT_INSERTED: "result {id} is in no event",
    TamperKind.RESULT_DELETED: "the event's result {id} is not stored",
    TamperKind.REVIEW_MODIFIED: "review {id} differs from its event (label or result)",
    TamperKind.REVIEW_INSERTED: "review {id} is in no event",
    TamperKind.REVIEW_DELETED: "the event's review {id} is not stored",
}


def cross_check(conn: psycopg.Connection[Any], records: bool = True) -> CrossCheck:
    """Run the checks in one read-only snapshot; raise ``RecordsTampered`` naming every
    disagreement found. ``records``: also the results and reviews (each skipped, as None,
    when this role cannot read it)."""
    findings: list[Finding] = []
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        rows = _count(conn, "audit_entries")
        findings += _columns(conn)
        results = reviews = None
        if records and _readable(conn, "classification_results", "id, label, model_digest"):
            results = _count(conn, "classification_results")
            findings += _records(conn, RESULT_CHECKS, CLASSIFIED)
        if records and _readable(conn, "classification_reviews", "id, label, result_id"):
            reviews = _count(conn, "classification_reviews")
            findings += _records(conn, REVIEW_CHECKS, REVIEWED)
    if findings:
        raise RecordsTampered(findings)
    return CrossCheck(rows, results, reviews)


def _columns(conn: psycopg.Connection[Any]) -> list[Finding]:
    found = []
    names = list(store.SEARCH_COLUMNS)
    for seq, *values, event in _run(conn, COLUMN_CHECK, {}):
        stored = dict(zip(names, values, strict=True))
        field = next(
            (c for c in names if _text(stored[c]) != _text(event.get(store.SEARCH_COLUMNS[c]))),
            "a column",
        )
        detail = f"seq {seq}: column {field} does not say what the hashed entry says"
        found.append(Finding(TamperKind.COLUMNS_MODIFIED, seq, None, detail))
    return found


def _text(value: Any) -> str | None:
    """A column or event value in comparable form (times as the event writes them)."""
    if value is None:
        return None
    return format_time(value) if isinstance(value, datetime) else str(value)


def _records(
    conn: psycopg.Connection[Any], checks: dict[TamperKind, str], actions: list[str]
) -> list[Finding]:
    return [
        Finding(kind, seq, str(record), DETAILS[kind].format(id=record))
        for kind, query in checks.items()
        for seq, record in _run(conn, query, {"actions": actions})
    ]


def _run(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> list[Any]:
    try:
        return conn.execute(query, params).fetchall()
    except psycopg.errors.InvalidTextRepresentation as exc:  # a value no event could hold
        raise StoreError(f"cross-check: a stored value does not parse: {exc}") from exc


def _readable(conn: psycopg.Connection[Any], table: str, columns: str) -> bool:
    row = conn.execute(
        "SELECT bool_and(has_column_privilege(%s, c, 'SELECT'))"
        " FROM unnest(string_to_array(%s, ', ')) c",
        [table, columns],
    ).fetchone()
    return bool(row and row[0])


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    column = "seq" if table == "audit_entries" else "id"
    row = conn.execute(f"SELECT count({column}) FROM {table}").fetchone()
    return int(row[0]) if row else 0
