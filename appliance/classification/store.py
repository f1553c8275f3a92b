"""The two statements of the classification hot path, as constant SQLAlchemy Core statements.

Every classification looks up an earlier result for the same content and then inserts one row
(together with its audit event, see ``AuditSink.record``). Core statements on an autocommit
connection do that for a fraction of the CPU and round trips the ORM unit of work took (see
docs/benchmarks.md); reads elsewhere (history, reviews) keep using the ORM.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Table, bindparam, insert, select
from sqlalchemy.engine import Connection

from appliance.audit_bridge.interfaces import RowInsert
from appliance.classification.models import ClassificationResult

RESULTS: Table = ClassificationResult.__table__  # type: ignore[assignment]

LATEST_FOR_CONTENT = (
    select(RESULTS)
    .where(
        RESULTS.c.content_sha256 == bindparam("content_sha256"),
        RESULTS.c.model == bindparam("model"),
        RESULTS.c.taxonomy_version == bindparam("taxonomy_version"),
    )
    .order_by(RESULTS.c.created_at.desc())
    .limit(1)
)
INSERT_RESULT = insert(RESULTS).values(
    {column.key: bindparam(column.key, type_=column.type) for column in RESULTS.c}
)


def latest_for_content(
    connection: Connection, content_sha256: str, model: str, taxonomy_version: str
) -> Row[Any] | None:
    """The newest stored result for this content under this model and taxonomy, if any."""
    return connection.execute(
        LATEST_FOR_CONTENT,
        {"content_sha256": content_sha256, "model": model, "taxonomy_version": taxonomy_version},
    ).first()


def result_insert(result: ClassificationResult) -> RowInsert:
    """The INSERT of a new (transient) result object as one row."""
    return RowInsert(
        INSERT_RESULT, {column.key: getattr(result, column.key) for column in RESULTS.c}
    )
