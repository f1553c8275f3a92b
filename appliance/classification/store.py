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

# Rendered to bytes once: psycopg would render a composed statement on every execution.
LATEST_FOR_CONTENT = (
    sql.SQL(
        "SELECT {columns} FROM classification_results"
        " WHERE content_sha256 = %(content_sha256)s"
        " AND labeller_fingerprint = %(labeller_fingerprint)s"
        " AND taxonomy_version = %(taxonomy_version)s"
        " ORDER BY created_at DESC LIMIT 1"
    )
    .format(columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
    .as_bytes()
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


def result_insert(result: ClassificationResult) -> RowInsert:
    """The INSERT of a new (transient) result object as one row."""
    return RowInsert(INSERT_RESULT, row_values(result))
