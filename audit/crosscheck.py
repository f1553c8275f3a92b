"""What the database repeats of the signed log, checked against it: the search columns of
``audit_entries`` and the results and reviews tables.

The hash chain and the checkpoints prove the entry bytes; but ``search`` reads the columns
beside them, and people read results from their own tables. An insider who edits a column hides
an event from a search; one who edits a stored label changes "what the system decided". The
checks run after the bytes have been verified, in one snapshot (REPEATABLE READ), so what they
compare with are the sealed bytes; events still pending (committed with their result, not
sealed yet) count as the log's too.

Two stages, so that the usual case (nothing changed) parses no JSON. First PostgreSQL finds the
candidates: where the derived columns of migration 0015 are generated as it made them
(``audit.derived``), it compares each row's columns with ``fields`` (its bytes' search fields)
and joins each event's ``decision`` digest with its result's, on index-only scans; otherwise it
looks in each entry's bytes for the canonical JSON of every value its columns (or its result's
row) hold, as the event writes it (``"label":"BILLING",``): canonical bytes have one place where
each key can stand, and a quote inside a value is always escaped, so the text is there exactly
when the event says so. Only the candidates go on to the second stage, where Python decodes
their bytes and compares exactly (a value PostgreSQL writes otherwise as JSON, non-ASCII text or
a float, is then no finding).

Version 1 events (written before the decision fields) carry no decision: their results are
checked for existence only. Reviews from then are matched by count per result.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from audit import store
from audit.chain import event_bytes
from audit.derived import DECIDED_NOTHING, DECISIONS, GENERATED, SEARCH_FIELDS, derived
from audit.errors import RecordsTampered, StoreError
from audit.types import Finding, TamperKind

LIMIT = 100
"""Findings reported per kind: enough to act on, bounded output."""
CHUNK = 5000
"""Candidate rows decoded per round trip in the second stage."""
REVIEWED = ["review_classification"]


@dataclass(frozen=True)
class CrossCheck:
    """What was compared: sealed rows' columns, results, reviews (None: not readable), and
    whether the candidates came from the derived columns (all generated as migration 0015 made
    them) rather than from reading every entry's bytes."""

    rows: int
    results: int | None
    reviews: int | None
    derived: bool
    activity: list[dict[str, Any]] = field(default_factory=list)
    """Sealed rows per action and outcome (counted in the columns' pass), for the report."""

    def summary(self) -> dict[str, Any]:
        """What was compared, as the verification report shows it."""
        return {k: v for k, v in asdict(self).items() if k != "activity"}


def _holds(key: str, value_json: str, source: str) -> str:
    """SQL: the bytes ``source`` hold ``"key":<value_json>,`` (every field is followed by a
    comma: ``v`` is the last key)."""
    return f"position(convert_to('\"{key}\":' || {value_json} || ',', 'UTF8') in {source}) > 0"


def _json(expression: str) -> str:
    """SQL: the JSON of a text value, ``null`` for NULL."""
    return f"coalesce(to_json({expression})::text, 'null')"


SEARCH_JSON = {
    "occurred_at": "'\"' || to_char(occurred_at AT TIME ZONE 'UTC',"
    ' \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\') || \'"\'',
    "outcome_status": "outcome_status::text",
    "result_id": "coalesce('\"' || result_id::text || '\"', 'null')",
}
"""The canonical JSON of a search column's value, as SQL (the text columns: ``_json``)."""
COLUMN_CANDIDATES = (
    "SELECT seq FROM audit_entries WHERE NOT ("
    + " AND ".join(
        _holds(field, SEARCH_JSON.get(column, _json(column)), "entry")
        for column, field in store.SEARCH_COLUMNS.items()
    )
    + ")"
)
CASTS = {"occurred_at": "timestamptz", "outcome_status": "integer", "result_id": "uuid"}
AS_DERIVED = " AND ".join(
    f"{column} IS NOT DISTINCT FROM (fields ->> '{name}')"
    + (f"::{CASTS[column]}" if column in CASTS else "")
    for column, name in store.SEARCH_COLUMNS.items()
)
"""SQL: a row's search columns are the search fields PostgreSQL took from its bytes."""
FIELD_CANDIDATES = f"SELECT seq FROM audit_entries WHERE NOT ({AS_DERIVED})"
ACTIVITY = """
SELECT action, outcome_status, count(*), count(*) FILTER (WHERE NOT ({differs}))
  FROM audit_entries GROUP BY action, outcome_status ORDER BY action, outcome_status
"""
"""Rows per action and outcome, and how many of them ``{differs}`` (one pass)."""
COLUMNS_OF = (
    "SELECT seq, entry, " + ", ".join(store.SEARCH_COLUMNS)
    + " FROM audit_entries WHERE seq = ANY(%s) ORDER BY seq"
)  # fmt: skip


def _optional(key: str) -> str:
    """SQL: the event holds the result's ``key``, or neither has one (the key is then left out
    of the event's bytes)."""
    absent = f"position('\"{key}\":'::bytea in l.entry) = 0"
    present = _holds(key, _json(f"r.{key}"), "l.entry")
    return f"(CASE WHEN r.{key} IS NULL THEN {absent} ELSE {present} END)"


DECIDED = " AND ".join(
    [
        *(
            _holds(key, _json(f"r.{key}"), "l.entry")
            for key in ("label", "model", "taxonomy_version")
        ),
        _holds("truncated", "r.truncated::text", "l.entry"),
        _holds("confidence", "'\"' || r.confidence::text || '\"'", "l.entry"),
        _optional("model_digest"),
        _optional("prompt_version"),
        _optional("stage"),
    ]
)
DECISION = ("label", "confidence", "model", "model_digest", "prompt_version", "taxonomy_version",
            "truncated", "stage")  # fmt: skip
LOGGED = """
    SELECT seq, result_id, entry FROM audit_entries
     WHERE result_id IS NOT NULL AND action = ANY(%(actions)s)
    UNION ALL
    SELECT NULL, (convert_from(event, 'UTF8')::jsonb ->> 'result_id')::uuid, event
      FROM audit_pending WHERE action = ANY(%(actions)s)
       AND convert_from(event, 'UTF8')::jsonb ->> 'result_id' IS NOT NULL
"""
"""The events of ``actions`` that name a result, sealed (with their seq; the column is checked
against the bytes first) or pending."""
RESULT_CANDIDATES = f"""
WITH logged AS ({LOGGED})
SELECT l.seq, l.result_id, r.id IS NOT NULL
  FROM logged l LEFT JOIN classification_results r ON r.id = l.result_id
 WHERE r.id IS NULL OR (position('"label":'::bytea in l.entry) > 0 AND NOT ({DECIDED}))
"""
"""Events whose result is gone, and events whose bytes may not hold their result's decision
(decided exactly by ``_decision_differs``): ids only, so that even many are little to hold."""
DECISIONS_OF = (
    "SELECT id, " + ", ".join(DECISION) + " FROM classification_results WHERE id = ANY(%s)"
)
PENDING_CLASSIFIED = (
    "SELECT event FROM audit_pending WHERE action = ANY(%s)"
)  # fmt: skip
UNLOGGED_RESULTS = f"""
WITH logged AS ({LOGGED})
SELECT NULL, r.id FROM classification_results r
 WHERE NOT EXISTS (SELECT FROM logged l WHERE l.result_id = r.id) LIMIT {LIMIT}
"""
"""Results no event names."""
SCAN_SETTINGS = (
    "SET LOCAL work_mem = '256MB'",  # the hash of a million results stays in memory
    "SET LOCAL jit = off",  # compiling costs more than it saves on these scans
    "SET LOCAL parallel_setup_cost = 0",  # worth PostgreSQL's parallel workers at any size
    "SET LOCAL parallel_tuple_cost = 0",
    # A nested loop over a million rows on each side is never right here, and is what the
    # planner picks while a table has no statistics yet (after a restore, a bulk load).
    "SET LOCAL enable_nestloop = off",
)

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

CLASSIFYING = "(" + ", ".join(f"'{action}'" for action in store.CLASSIFYING_ACTIONS) + ")"
DECISIONS_DIFFER = f"""
SELECT l.seq, coalesce(l.result_id, r.id), l.result_id IS NOT NULL, r.id IS NOT NULL
  FROM (SELECT seq, result_id, decision FROM audit_entries
         WHERE result_id IS NOT NULL AND action IN {CLASSIFYING}) l
  FULL JOIN classification_results r ON r.id = l.result_id
 WHERE l.result_id IS NULL OR r.id IS NULL
    OR (l.decision IS DISTINCT FROM r.decision AND l.decision <> {DECIDED_NOTHING})
"""
"""Sealed events and results that do not pair up, or whose decision digests differ (events of
version 1 decide nothing: their result need only exist). The action list is literal, so that
the partial index of migration 0015 serves the scan."""
PENDING_RESULTS = """
SELECT p.result_id, r.id IS NOT NULL FROM (
    SELECT DISTINCT (convert_from(event, 'UTF8')::jsonb ->> 'result_id')::uuid AS result_id
      FROM audit_pending WHERE action = ANY(%s)
) p LEFT JOIN classification_results r ON r.id = p.result_id WHERE p.result_id IS NOT NULL
"""
"""The results that events still pending name, and whether each is stored."""

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
            SELECT v.id, v.result_id, v.created_at,
                   count(*) OVER (PARTITION BY v.result_id) AS reviews
              FROM classification_reviews v
             WHERE NOT EXISTS (SELECT FROM events WHERE (e ->> 'review_id')::uuid = v.id)),
        legacy AS (
            SELECT (e ->> 'result_id')::uuid AS result_id, count(*) AS events FROM events
             WHERE NOT e ? 'review_id' GROUP BY 1)
        SELECT NULL, u.id FROM unnamed u LEFT JOIN legacy l USING (result_id)
         WHERE u.reviews > coalesce(l.events, 0)
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
    disagreement found (up to ``LIMIT`` of each kind). ``records``: also the results and
    reviews (each skipped, as None, when this role cannot read it)."""
    findings: list[Finding] = []
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for setting in SCAN_SETTINGS:
            conn.execute(setting)
        trusted = derived(conn)
        activity, columns = _columns(conn, SEARCH_FIELDS in trusted)
        findings += columns
        results = reviews = None
        if records and _readable(conn, "classification_results", "id, label, model_digest"):
            results = _count(conn, "classification_results")
            paired = trusted >= DECISIONS and _readable(conn, "classification_results", "decision")
            findings += _results(conn, paired)
        if records and _readable(conn, "classification_reviews", "id, label, result_id"):
            reviews = _count(conn, "classification_reviews")
            findings += _reviews(conn)
    if findings:
        raise RecordsTampered(findings)
    rows = sum(group["count"] for group in activity)
    return CrossCheck(rows, results, reviews, trusted == frozenset(GENERATED), activity)


def _columns(
    conn: psycopg.Connection[Any], fast: bool
) -> tuple[list[dict[str, Any]], list[Finding]]:
    """The rows per action and outcome, and the rows whose columns differ from what their
    bytes say (decoded from the candidates: with ``fast``, those unlike their derived fields,
    looked for only when the count found any)."""
    groups = _run(conn, ACTIVITY.format(differs=AS_DERIVED if fast else "true"), {})
    activity = [{"action": a, "outcome_status": s, "count": n} for a, s, n, _ in groups]
    differ = not fast or any(unlike for *_, unlike in groups)
    query = FIELD_CANDIDATES if fast else COLUMN_CANDIDATES
    candidates = sorted(row[0] for row in _run(conn, query, {})) if differ else []
    found: list[Finding] = []
    for low in range(0, len(candidates), CHUNK):
        rows = conn.execute(COLUMNS_OF, [candidates[low : low + CHUNK]]).fetchall()
        for seq, entry, *stored in rows:
            said = store.search_values(json.loads(event_bytes(bytes(entry))))
            differing = [c for c, a, b in zip(store.SEARCH_COLUMNS, stored, said, strict=True)
                         if a != b]  # fmt: skip
            if differing and len(found) < LIMIT:
                detail = f"seq {seq}: column {differing[0]} does not say what the entry says"
                found.append(Finding(TamperKind.COLUMNS_MODIFIED, seq, None, detail))
    return activity, found


def _results(conn: psycopg.Connection[Any], fast: bool) -> list[Finding]:
    inserted, deleted, to_decode = (_paired if fast else _searched)(conn)
    found = {
        TamperKind.RESULT_INSERTED: [
            _finding(TamperKind.RESULT_INSERTED, None, result_id) for result_id in inserted
        ][:LIMIT],
        TamperKind.RESULT_DELETED: [
            _finding(TamperKind.RESULT_DELETED, seq, result_id) for seq, result_id in deleted
        ][:LIMIT],
        TamperKind.RESULT_MODIFIED: [
            _finding(TamperKind.RESULT_MODIFIED, seq, result_id)
            for seq, result_id in _modified(conn, to_decode)
        ][:LIMIT],
    }
    return [finding for kind in sorted(found) for finding in found[kind]]


Candidates = tuple[list[Any], list[tuple[int | None, Any]], list[tuple[int | None, Any]]]
"""Results no event names; events (seq, None while pending; result id) whose result is gone;
events to compare exactly with their result."""


def _paired(conn: psycopg.Connection[Any]) -> Candidates:
    """The candidates from the derived decision digests."""
    pending = _run(conn, PENDING_RESULTS, [store.CLASSIFYING_ACTIONS])
    waiting = {result_id for result_id, stored in pending if stored}
    inserted = []
    deleted: list[tuple[int | None, Any]] = [(None, rid) for rid, stored in pending if not stored]
    to_decode: list[tuple[int | None, Any]] = []
    # Merging the two covering indexes in id order reads nothing else once vacuum has marked
    # the tables' pages all-visible (0.3-0.5 s for a million pairs here); the planner's estimate
    # prefers hashing a million rows, twice as slow. Right after a restore or a bulk load, before
    # autovacuum has been, the merge would read most rows from the tables too: hash then.
    merge = _mostly_visible(conn)
    if merge:
        conn.execute("SET LOCAL enable_hashjoin = off")
    differing = _run(conn, DECISIONS_DIFFER, {})
    if merge:
        conn.execute("SET LOCAL enable_hashjoin = on")
    for seq, result_id, logged, stored in differing:
        if not stored:
            deleted.append((seq, result_id))
        elif logged:
            to_decode.append((seq, result_id))
        elif result_id in waiting:  # its event is not sealed yet
            to_decode.append((None, result_id))
        else:
            inserted.append(result_id)
    return inserted, deleted, to_decode


VISIBLE = """
SELECT bool_and(relallvisible >= 0.9 * relpages) FROM pg_class
 WHERE oid IN ('audit_entries'::regclass, 'classification_results'::regclass)
"""
"""Whether vacuum last found at least 90 % of both tables' pages all-visible."""


def _mostly_visible(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(VISIBLE).fetchone()
    return bool(row and row[0])


def _searched(conn: psycopg.Connection[Any]) -> Candidates:
    """The candidates from the entries' bytes, where the derived columns cannot be trusted."""
    params = {"actions": store.CLASSIFYING_ACTIONS}
    inserted = [result_id for _, result_id in _run(conn, UNLOGGED_RESULTS, params)]
    candidates = _run(conn, RESULT_CANDIDATES, params)
    deleted = [(seq, result_id) for seq, result_id, stored in candidates if not stored]
    to_decode = [(seq, result_id) for seq, result_id, stored in candidates if stored]
    return inserted, deleted, to_decode


def _modified(conn: psycopg.Connection[Any], events: list[tuple[int | None, Any]]) -> list[Any]:
    """Of the candidate events (seq, or None while pending; result id), those whose bytes say
    another decision than their result's row, decoded a chunk at a time."""
    by_result: dict[str, list[bytes]] = {}
    if any(seq is None for seq, _ in events):
        for (event,) in conn.execute(PENDING_CLASSIFIED, [store.CLASSIFYING_ACTIONS]):
            fields = json.loads(bytes(event))
            by_result.setdefault(fields.get("result_id") or "", []).append(bytes(event))
    differing = []
    for low in range(0, len(events), CHUNK):
        chunk = events[low : low + CHUNK]
        seqs = [seq for seq, _ in chunk if seq is not None]
        entries = dict(conn.execute("SELECT seq, entry FROM audit_entries WHERE seq = ANY(%s)",
                                    [seqs]).fetchall())  # fmt: skip
        rows = {row[0]: list(row[1:]) for row in conn.execute(
            DECISIONS_OF, [[result_id for _, result_id in chunk]])}  # fmt: skip
        for seq, result_id in chunk:
            said = [bytes(entries[seq])] if seq is not None else by_result.get(str(result_id), [])
            if any(_decision_differs(entry, rows[result_id]) for entry in said):
                differing.append((seq, result_id))
    return differing


def _finding(kind: TamperKind, seq: int | None, record: Any) -> Finding:
    return Finding(kind, seq, str(record), DETAILS[kind].format(id=record))


def _decision_differs(entry: bytes, stored: list[Any]) -> bool:
    """Whether the event in ``entry`` (sealed or pending bytes) says another decision than the
    result's stored columns (``DECISION``), compared exactly."""
    event = json.loads(event_bytes(entry) if entry.startswith(b'{"seq":') else entry)
    if "label" not in event:  # a version 1 event: it says no decision
        return False
    said = dict(zip(DECISION, stored, strict=True))
    try:
        if float(event["confidence"]) != said.pop("confidence"):
            return True
    except (KeyError, TypeError, ValueError):  # no confidence a decision could have
        return True
    return any(event.get(key) != value for key, value in said.items())


def _reviews(conn: psycopg.Connection[Any]) -> list[Finding]:
    return [
        _finding(kind, seq, record)
        for kind, query in REVIEW_CHECKS.items()
        for seq, record in _run(conn, query, {"actions": REVIEWED})
    ]


def _run(conn: psycopg.Connection[Any], query: str, params: Any) -> list[Any]:
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
