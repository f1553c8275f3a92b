"""The two statements of the classification hot path, run on the pooled psycopg connection.

Every classification looks up an earlier result for the same content and then inserts one row
(together with its audit event, see ``AuditRecorder.record_with_row``). Without the ORM unit of
work and SQLAlchemy's execution layer, and on an autocommit connection, they cost a fraction of
the CPU and round trips (see docs/benchmarks.md). Reads elsewhere (history, reviews) use the ORM.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import namedtuple_row

from appliance.audit_bridge.interfaces import RowInsert
from appliance.classification.models import ClassificationResult
from appliance.db import insert_sql, row_values

COLUMNS = tuple(column.key for column in ClassificationResult.__table__.c)
"""Every column of ``classification_results``, as the model declares them."""

StoredRow = Any
"""A row read by ``latest_for_content``: a named tuple with the model's attribute names."""



def _newest_where(*keys: str) -> bytes:
    """The newest result whose ``keys`` columns equal the like-named parameters, rendered to
    bytes once (psycopg would render a composed statement on every execution)."""
    where = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in keys
    )
    columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    query = "SELECT {columns} FROM classification_results WHERE {where}"
    return (
        sql.SQL(query + " ORDER BY created_at DESC LIMIT 1")
        .format(columns=columns, where=where)
        .as_bytes()
    )


LATEST_FOR_CONTENT = _newest_where("content_sha256", "labeller_fingerprint", "taxonomy_version")
LATEST_FOR_FILE = _newest_where(
    "file_sha256", "intake_fingerprint", "labeller_fingerprint", "taxonomy_version"
)
INSERT_RESULT = insert_sql(ClassificationResult)


def latest_for_content(
    connection: psycopg.Connection[Any],
    content_sha256: str,
    labeller_fingerprint: str,
    taxonomy_version: str,
) -> StoredRow | None:
    """The newest stored result for this content from the same model call and taxonomy."""
    params = {
        "content_sha256": content_sha256,
        "labeller_fingerprint": labeller_fingerprint,
        "taxonomy_version": taxonomy_version,
    }
    with connection.cursor(row_factory=namedtuple_row) as cursor:
        return cursor.execute(LATEST_FOR_CONTENT, params).fetchone()


def latest_for_file(
    connection: psycopg.Connection[Any],
    file_sha256: str,
    intake_fingerprint: str,
    labeller_fingerprint: str,
    taxonomy_version: str,
) -> StoredRow | None:
    """The newest stored result for this file, read the same way, from the same model call."""
    params = {
        "file_sha256": file_sha256,
        "intake_fingerprint": intake_fingerprint,
        "labeller_fingerprint": labeller_fingerprint,
        "taxonomy_version": taxonomy_version,
    }
    with connection.cursor(row_factory=namedtuple_row) as cursor:
        return cursor.execute(LATEST_FOR_FILE, params).fetchone()


def result_insert(result: ClassificationResult) -> RowInsert:
    """The INSERT of a new (transient) result object as one row."""
    return RowInsert(INSERT_RESULT, row_values(result))
