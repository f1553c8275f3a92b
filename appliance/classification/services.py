"""Classify documents and store each result atomically with its audit event.

The model call happens outside any database transaction (it takes a second or more); the result
row and its audit event are then written by one SQL statement, so both commit or neither. Where
they are written is a ``ResultWrite``: an autocommit connection for the API, a transaction that
also claims the item for a bulk job's worker (``appliance.jobs.worker``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, Protocol

import psycopg
from sqlalchemy import select
from sqlalchemy.engine import Engine

from appliance import metrics
from appliance.audit_bridge.interfaces import (
    Action,
    AuditReceipt,
    Decision,
    FileFacts,
    RowInsert,
)
from appliance.audit_bridge.recorder import AuditRecorder, Clock, Subject, utc_now
from appliance.classification import store
from appliance.classification.content import content_sha256
from appliance.classification.interfaces import Classification, Document
from appliance.classification.labeller import DocumentLabeller, Labelled, StageAnswer
from appliance.classification.models import ClassificationResult
from appliance.classification.store import StoredRow
from appliance.context import RequestContext
from appliance.db import autocommit, transaction
from appliance.errors import ApplianceError
from appliance.usage.metering import REUSED, Meter, Metered
from appliance.usage.quotas import Hold, QuotaService


class ResultWrite(Protocol):
    """Where a classification's result and audit event are written, and what else commits with
    them."""

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A connection in autocommit mode, or in a transaction block on one (then the result
        and its event commit when the block ends)."""

    def written(self, connection: psycopg.Connection[Any], result: Classification) -> None:
        """Called on ``connection`` once ``result`` and its event are written."""


class Autocommit:
    """The API's write: each statement commits on its own, nothing else goes with it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        return autocommit(self._engine)

    def written(self, connection: psycopg.Connection[Any], result: Classification) -> None:
        """Nothing: the result and its event committed already."""


class ClassificationService:
    def __init__(
        self,
        engine: Engine,
        labeller: DocumentLabeller,
        taxonomy_version: str,
        review_threshold: float,
        audit: AuditRecorder,
        max_concurrency: int,
        quotas: QuotaService,
        meter: Meter,
        clock: Clock = utc_now,
        label_thresholds: Mapping[str, float] | None = None,
    ) -> None:
        """``label_thresholds`` (the taxonomy's per-label review thresholds) override
        ``review_threshold`` for results with those labels. ``quotas`` are checked before any
        work, ``meter`` records what the model calls consumed."""
        self._engine = engine
        self._labeller = labeller
        self._model = labeller.model
        self._fingerprint = labeller.fingerprint
        self._prompt_version = labeller.prompt_version
        self._taxonomy_version = taxonomy_version
        self._review_threshold = review_threshold
        self._label_thresholds = dict(label_thresholds or {})
        self._audit = audit
        self.quotas = quotas
        self.meter = meter
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="classify")
        self._autocommit = Autocommit(engine)

    def classify(
        self, document: Document, context: RequestContext, write: ResultWrite | None = None
    ) -> Classification:
        """Answer from a stored result for the same content if there is one, else ask the model.
        Audited either way: with the result, or as a failure with the error's status.
        ``write``: where the result goes (default: committed at once)."""
        digest = content_sha256(document.text)
        try:
            estimate = self._labeller.token_estimate
            with self.quotas.hold(context.identity, lambda: estimate(document.text)) as hold:
                return self._classify(document, digest, context, write or self._autocommit, hold)
        except ApplianceError as exc:
            subject = self._subject(document, digest, None)
            self._audit.record_outcome(
                context, Action.CLASSIFY_DOCUMENT, exc.status, subject, exc.code
            )
            raise

    def _classify(
        self,
        document: Document,
        digest: str,
        context: RequestContext,
        write: ResultWrite,
        hold: Hold,
    ) -> Classification:
        with write.connection() as connection:
            reused = self._from_store(connection, document, digest, context)
            if reused is not None:
                write.written(connection, reused)
        if reused is not None:
            metrics.CACHE_HITS.inc()
            hold.charge(0)
            return reused
        metrics.CACHE_MISSES.inc()
        labelled = self._labeller.label(document.text)
        scored = labelled.scored
        row = self.new_row(document, digest, context)
        row.label, row.confidence, row.scores = scored.label, scored.confidence, scored.scores
        row.needs_review = self.needs_review(scored.label, scored.confidence)
        row.truncated = labelled.truncated
        set_answered_by(row, labelled)
        metered = self.meter.measure(row.model, labelled.usage)
        set_usage(row, metered)
        hold.charge(metered.total_tokens)
        with write.connection() as connection:
            receipt = self.record(connection, context, document, row, store.result_insert(row))
            result = as_classification(row, cached=False, receipt=receipt)
            write.written(connection, result)
        metrics.CLASSIFICATIONS.labels(row.label, "model").inc()
        metrics.CONFIDENCE.observe(row.confidence)
        return result

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def taxonomy(self) -> str:
        """The taxonomy's version, part of every dedupe key."""
        return self._taxonomy_version

    def review_threshold(self, label: str) -> float:
        """Below this confidence a result labelled ``label`` needs a human review."""
        return self._label_thresholds.get(label, self._review_threshold)

    def classify_batch(
        self, items: Sequence[Document | ApplianceError], context: RequestContext
    ) -> list[Classification | ApplianceError]:
        """Classify the valid items concurrently; each failure stays with its own item."""
        futures = {
            index: self._pool.submit(self._classify_item, item, context)
            for index, item in enumerate(items)
            if isinstance(item, Document)
        }
        return [
            item if isinstance(item, ApplianceError) else futures[index].result()
            for index, item in enumerate(items)
        ]

    def history(self, document_id: str) -> list[Classification]:
        """Every stored result for ``document_id``, newest first."""
        query = (
            select(ClassificationResult)
            .where(ClassificationResult.document_id == document_id)
            .order_by(ClassificationResult.created_at.desc(), ClassificationResult.id)
        )
        with transaction(self._engine) as session:
            rows = session.scalars(query).all()
        return [as_classification(row) for row in rows]

    def _classify_item(
        self, document: Document, context: RequestContext
    ) -> Classification | ApplianceError:
        try:
            return self.classify(document, context)
        except ApplianceError as exc:
            return exc

    def _from_store(
        self,
        connection: psycopg.Connection[Any],
        document: Document,
        digest: str,
        context: RequestContext,
    ) -> Classification | None:
        """The stored result for this content, audited as this request's answer."""
        earlier = store.latest_for_content(
            connection, digest, self._fingerprint, self._taxonomy_version
        )
        if earlier is None:
            return None
        return self.answer_from(connection, earlier, document, digest, context)

    def answer_from(
        self,
        connection: psycopg.Connection[Any],
        earlier: StoredRow,
        document: Document,
        digest: str,
        context: RequestContext,
    ) -> Classification:
        """``earlier`` as this request's answer, audited. A new row points at it when another
        document id carried the same content, or when today's review thresholds judge it
        differently (the review queue reads stored rows)."""
        row: ClassificationResult | StoredRow = earlier
        copy = None
        needs_review = self.needs_review(earlier.label, earlier.confidence, earlier.segments)
        if earlier.document_id != document.document_id or earlier.needs_review != needs_review:
            row = self.new_row(document, digest, context)
            for column in REUSED_COLUMNS:
                setattr(row, column, getattr(earlier, column))
            row.needs_review = needs_review
            row.cached_from = earlier.cached_from or earlier.id
            set_usage(row, REUSED)
            copy = store.result_insert(row)
        receipt = self.record(connection, context, document, row, copy, reused=True)
        metrics.CLASSIFICATIONS.labels(row.label, "cache").inc()
        return as_classification(row, cached=True, receipt=receipt)

    def needs_review(
        self, label: str, confidence: float, segments: Sequence[Mapping[str, Any]] | None = None
    ) -> bool:
        """Whether a result, or any of its segments, is below its label's review threshold."""
        return confidence < self.review_threshold(label) or any(
            segment["confidence"] < self.review_threshold(segment["label"])
            for segment in segments or ()
        )

    def new_row(
        self, document: Document, digest: str, context: RequestContext
    ) -> ClassificationResult:
        return ClassificationResult(
            id=uuid.uuid4(),
            document_id=document.document_id,
            content_sha256=digest,
            content_length=len(document.text.encode("utf-8")),
            model=self._model.served_name,
            model_digest=self._model.weights_digest,
            prompt_version=self._prompt_version,
            labeller_fingerprint=self._fingerprint,
            taxonomy_version=self._taxonomy_version,
            requested_by=context.identity.name if context.identity else None,
            on_behalf_of=document.on_behalf_of,
            created_at=self._clock(),
        )

    def record(
        self,
        connection: psycopg.Connection[Any],
        context: RequestContext,
        document: Document,
        row: ClassificationResult | StoredRow,
        insert: RowInsert | None,
        reused: bool = False,
    ) -> AuditReceipt:
        """The classification's audit event, with ``insert`` (its new row) in one statement.
        ``reused``: ``row`` is a stored result answering again (``insert`` is None) or the
        copy of one (``insert`` is its new row)."""
        served_from = row.id if reused and insert is None else row.cached_from
        subject = self._subject(document, row.content_sha256, row, served_from)
        action = Action.CLASSIFY_DOCUMENT if row.file_sha256 is None else Action.CLASSIFY_FILE
        return self._audit.record(connection, context, action, subject, insert)

    @staticmethod
    def _subject(
        document: Document,
        digest: str,
        row: ClassificationResult | StoredRow | None,
        served_from: uuid.UUID | None = None,
    ) -> Subject:
        return Subject(
            document_id=document.document_id,
            result_id=str(row.id) if row is not None else None,
            content_sha256=digest,
            on_behalf_of=document.on_behalf_of,
            file=file_facts(row) if row is not None else None,
            decision=decision(row, served_from) if row is not None else None,
        )


REUSED_COLUMNS = (
    "content_length", "label", "confidence", "scores", "truncated", "file_sha256", "file_size",
    "file_media_type", "page_count", "file_mode", "intake_fingerprint", "pages", "segments",
    "model", "model_digest", "stage", "stages",
)  # fmt: skip
"""What a reused result takes from the earlier one: its answer, and what was classified."""


def set_answered_by(row: ClassificationResult, labelled: Labelled) -> None:
    """The model and cascade stage that answered, when a cascade's stage did (else the
    labeller's model, which ``new_row`` set)."""
    if labelled.model is not None:
        row.model, row.model_digest = labelled.model.served_name, labelled.model.weights_digest
    if labelled.stages:
        row.stage = labelled.stages[-1].stage
        row.stages = [{"stage": a.stage, "confidence": a.confidence} for a in labelled.stages]


def stored_stages(row: ClassificationResult | StoredRow) -> tuple[StageAnswer, ...]:
    """The cascade stages a stored result records (none: one model answered)."""
    return tuple(StageAnswer(**asked) for asked in row.stages or ())


def set_usage(row: ClassificationResult, metered: Metered) -> None:
    row.prompt_tokens, row.completion_tokens = metered.prompt_tokens, metered.completion_tokens
    row.cost = metered.cost


def decision(row: ClassificationResult | StoredRow, served_from: uuid.UUID | None) -> Decision:
    """A result's answer for its audit event (``served_from``: the result it was reused from)."""
    return Decision(
        label=row.label,
        confidence=row.confidence,
        scores=row.scores,
        model=row.model,
        model_digest=row.model_digest,
        prompt_version=row.prompt_version,
        taxonomy_version=row.taxonomy_version,
        truncated=row.truncated,
        cached_from=None if served_from is None else str(served_from),
        stages=tuple((asked.stage, asked.confidence) for asked in stored_stages(row)),
    )


def file_facts(row: ClassificationResult | StoredRow) -> FileFacts | None:
    """A file result's facts for its audit event; None for text."""
    if row.file_sha256 is None or row.page_count is None or row.file_mode is None:
        return None
    ocr_pages = sum(page["source"] == "ocr" for page in row.pages or ())
    return FileFacts(row.file_sha256, row.file_mode, row.page_count, ocr_pages)


def as_classification(
    row: ClassificationResult | StoredRow,
    cached: bool | None = None,
    receipt: AuditReceipt | None = None,
) -> Classification:
    """A stored row as the API shows it; ``cached`` defaults to whether it reused an earlier
    result."""
    cached = row.cached_from is not None if cached is None else cached
    spent = REUSED if cached else Metered(row.prompt_tokens, row.completion_tokens, row.cost)
    return Classification(
        result_id=row.id,
        document_id=row.document_id,
        label=row.label,
        confidence=row.confidence,
        scores=dict(row.scores),
        needs_review=row.needs_review,
        model=row.model,
        taxonomy_version=row.taxonomy_version,
        truncated=row.truncated,
        cached=cached,
        created_at=row.created_at,
        audit_event_id=receipt.event_id if receipt else None,
        prompt_tokens=spent.prompt_tokens,
        completion_tokens=spent.completion_tokens,
        cost=spent.cost,
        stages=stored_stages(row),
    )
