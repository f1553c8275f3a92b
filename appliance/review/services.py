"""The review queue and human reviews, each review stored atomically with its audit event.

A review never changes the model's result: it is a new row next to it. Reviews are made against
the taxonomy loaded now, whatever taxonomy the result was made with (a reviewer can relabel an
old result into the current taxonomy); each review keeps the version it was made with.
Notes are stored for the reviewers but never logged and never put into audit events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, select, tuple_
from sqlalchemy.engine import Engine

from appliance import metrics
from appliance.audit_bridge.interfaces import Action, AuditReceipt, ReviewFacts, RowInsert
from appliance.audit_bridge.recorder import AuditRecorder, Clock, Subject, utc_now
from appliance.classification.interfaces import Classification
from appliance.classification.models import ClassificationResult
from appliance.classification.services import as_classification
from appliance.classification.taxonomy import Taxonomy
from appliance.context import RequestContext
from appliance.db import autocommit, insert_sql, row_values, transaction
from appliance.errors import InvalidRequest, NotFound
from appliance.review.models import ClassificationReview

MAX_QUEUE_PAGE = 500
INSERT_REVIEW = insert_sql(ClassificationReview)
CREATED = 201


@dataclass(frozen=True)
class Review:
    """A stored human review as the API returns it."""

    review_id: uuid.UUID
    result_id: uuid.UUID
    document_id: str
    label: str
    model_label: str
    taxonomy_version: str
    reviewer: str
    note: str | None
    created_at: datetime
    audit_event_id: str | None = None
    """The audit event recorded with this review; None for reviews read back from storage."""


@dataclass(frozen=True)
class Correction:
    """A reviewed result: what the model said and the latest human label (the gold label)."""

    result_id: uuid.UUID
    predicted: str
    confidence: float
    scores: dict[str, float]
    needs_review: bool
    gold: str
    model: str
    taxonomy_version: str


class ReviewService:
    def __init__(
        self,
        engine: Engine,
        taxonomy: Taxonomy,
        audit: AuditRecorder,
        clock: Clock = utc_now,
    ) -> None:
        self._engine = engine
        self._taxonomy = taxonomy
        self._audit = audit
        self._clock = clock

    def queue(self, limit: int, after: uuid.UUID | None = None) -> list[Classification]:
        """Results that need review and have none yet, oldest first, after the result ``after``.

        Preconditions: ``1 <= limit <= MAX_QUEUE_PAGE``; ``after`` names a stored result.
        """
        if not 1 <= limit <= MAX_QUEUE_PAGE:
            raise InvalidRequest(f"limit: got {limit}, want 1..{MAX_QUEUE_PAGE}")
        results = ClassificationResult
        reviewed = exists().where(ClassificationReview.result_id == results.id)
        query = select(results).where(results.needs_review, ~reviewed)
        with transaction(self._engine) as session:
            if after is not None:
                cursor = session.get(results, after)
                if cursor is None:
                    raise NotFound("after: no classification result has this id")
                key = tuple_(results.created_at, results.id)
                query = query.where(key > tuple_(cursor.created_at, cursor.id))
            query = query.order_by(results.created_at, results.id).limit(limit)
            rows = session.scalars(query).all()
        return [as_classification(row) for row in rows]

    def review(
        self, result_id: uuid.UUID, label: str, note: str | None, context: RequestContext
    ) -> Review:
        """Record a reviewer's label for a result, in one statement with its audit event.

        Preconditions: ``label`` is a label of the loaded taxonomy; the result exists; the
        caller has a verified identity.
        """
        if label not in self._taxonomy.names:
            raise InvalidRequest(f"label: got {label!r}, want one of {list(self._taxonomy.names)}")
        if context.identity is None:
            raise InvalidRequest("a review needs a verified reviewer identity")
        with transaction(self._engine) as session:  # results are never changed: read, then write
            result = session.get(ClassificationResult, result_id)
        if result is None:
            raise NotFound("no classification result has this id")
        row = ClassificationReview(
            id=uuid.uuid4(),
            result_id=result.id,
            document_id=result.document_id,
            label=label,
            taxonomy_version=self._taxonomy.version,
            reviewer=context.identity.name,
            note=note,
            created_at=self._clock(),
        )
        subject = Subject(
            document_id=result.document_id,
            result_id=str(result.id),
            content_sha256=result.content_sha256,
            review=ReviewFacts(review_id=str(row.id), label=label),
        )
        insert = RowInsert(INSERT_REVIEW, row_values(row))
        with autocommit(self._engine) as connection:
            receipt = self._audit.record(
                connection, context, Action.REVIEW_CLASSIFICATION, subject, insert, CREATED
            )
        metrics.REVIEWS.labels(result.label, label).inc()
        return as_review(row, result.label, receipt)

    def for_document(self, document_id: str) -> list[Review]:
        """Every review of every result of ``document_id``, newest first."""
        query = (
            select(ClassificationReview, ClassificationResult.label)
            .join(ClassificationResult, ClassificationReview.result_id == ClassificationResult.id)
            .where(ClassificationReview.document_id == document_id)
            .order_by(ClassificationReview.created_at.desc(), ClassificationReview.id)
        )
        with transaction(self._engine) as session:
            rows = session.execute(query).all()
        return [as_review(review, model_label) for review, model_label in rows]

    def corrections(self) -> list[Correction]:
        """Every reviewed result with its latest review's label (see ``stored_corrections``)."""
        return stored_corrections(self._engine)


def stored_corrections(engine: Engine) -> list[Correction]:
    """Every reviewed result with its latest review's label, oldest result first."""
    newest_first = func.row_number().over(
        partition_by=ClassificationReview.result_id,
        order_by=(ClassificationReview.created_at.desc(), ClassificationReview.id),
    )
    ranked = select(
        ClassificationReview.result_id,
        ClassificationReview.label,
        newest_first.label("rank"),
    ).subquery()
    query = (
        select(ClassificationResult, ranked.c.label)
        .join(ranked, ranked.c.result_id == ClassificationResult.id)
        .where(ranked.c.rank == 1)
        .order_by(ClassificationResult.created_at, ClassificationResult.id)
    )
    with transaction(engine) as session:
        rows = session.execute(query).all()
    return [
        Correction(
            result_id=result.id,
            predicted=result.label,
            confidence=result.confidence,
            scores=dict(result.scores),
            needs_review=result.needs_review,
            gold=gold,
            model=result.model,
            taxonomy_version=result.taxonomy_version,
        )
        for result, gold in rows
    ]


def as_review(
    row: ClassificationReview, model_label: str, receipt: AuditReceipt | None = None
) -> Review:
    return Review(
        review_id=row.id,
        result_id=row.result_id,
        document_id=row.document_id,
        label=row.label,
        model_label=model_label,
        taxonomy_version=row.taxonomy_version,
        reviewer=row.reviewer,
        note=row.note,
        created_at=row.created_at,
        audit_event_id=receipt.event_id if receipt else None,
    )
