"""The two statements of the classification hot path, as precompiled SQLAlchemy Core.

Every classification looks up an earlier result for the same content and then inserts one row.
Core statements on a plain connection do that for a fraction of the CPU the ORM unit of work took
(see docs/benchmarks.md); reads elsewhere (history, reviews) keep using the ORM.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Table, bindparam, insert, select
from sqlalchemy.engine import Connection

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
INSERT_RESULT = insert(RESULTS)


def latest_for_content(
    connection: Connection, content_sha256: str, model: str, taxonomy_version: str
) -> Row[Any] | None:
    """The newest stored result for this content under this model and taxonomy, if any."""
    return connection.execute(
        LATEST_FOR_CONTENT,
        {"content_sha256": content_sha256, "model": model, "taxonomy_version": taxonomy_version},
    ).first()


def insert_result(connection: Connection, result: ClassificationResult) -> None:
    """Insert a new (transient) result object as one row."""
    connection.execute(
        INSERT_RESULT, {column.key: getattr(result, column.key) for column in RESULTS.c}
    )
