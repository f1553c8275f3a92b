"""What the API hands to the audit log, and what it gets back.

An event never carries document text: only ids (or their HMAC pseudonyms), content hashes and
outcomes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg


class Action(enum.StrEnum):
    """Every operation the audit log knows, one name whether it was allowed or denied."""

    CLASSIFY_DOCUMENT = "classify_document"
    CLASSIFY_BATCH = "classify_batch"
    CLASSIFY_FILE = "classify_file"
    READ_CLASSIFICATION = "read_classification"
    READ_RECEIPT = "read_receipt"
    READ_REVIEW_QUEUE = "read_review_queue"
    REVIEW_CLASSIFICATION = "review_classification"
    AUDIT_SEARCH = "audit_search"
    AUDIT_READ_EVENT = "audit_read_event"
    AUDIT_INCLUSION_PROOF = "audit_inclusion_proof"
    AUDIT_READ_CHECKPOINT = "audit_read_checkpoint"
    AUDIT_CONSISTENCY_PROOF = "audit_consistency_proof"
    AUDIT_VERIFY = "audit_verify"
    SUBMIT_JOB = "submit_job"
    READ_JOB = "read_job"
    READ_JOB_RESULTS = "read_job_results"
    CANCEL_JOB = "cancel_job"
    DELIVER_JOB_CALLBACK = "deliver_job_callback"
    """A worker's attempt to deliver a job's completion callback (outcome: the receiver's
    HTTP status, 502 when it did not answer)."""
    READ_USAGE = "read_usage"
    CHANGE_QUOTAS = "change_quotas"
    """The role table's quotas changed: recorded at start-up by the first worker to load them
    (``detail``: the declaration's digest, ``appliance.usage.declarations``)."""
    PROMOTE_STAGE_MODEL = "promote_stage_model"
    """``appliance train`` gated a new head for a cascade stage: 200 promoted, 409 refused
    (``detail``: the stage, the artifact's digest and the gate's figures)."""
    READ_OPENAPI = "read_openapi"
    READ_METRICS = "read_metrics"
    UNMATCHED_ROUTE = "unmatched_route"
    """A URL or method that matches no operation."""


@dataclass(frozen=True)
class AuditEvent:
    """One API access, allowed or denied."""

    occurred_at: datetime
    """UTC, microsecond precision."""
    actor_subject: str | None
    """Certificate subject or SAN name; None when no identity could be established."""
    actor_fingerprint: str | None
    source_address: str | None
    action: Action
    outcome_status: int
    """The HTTP status answered."""
    request_id: str
    error_code: str | None = None
    document_id: str | None = None
    """Raw id; the sink pseudonymises it if configured to."""
    result_id: str | None = None
    content_sha256: str | None = None
    on_behalf_of: str | None = None
    file: FileFacts | None = None
    """What was classified when it was a file (never its content)."""
    decision: Decision | None = None
    """What a classification decided, and what produced it."""
    review: ReviewFacts | None = None
    job: JobRef | None = None
    detail: str | None = None
    """What an event without a document is about, as short text (a quota declaration)."""


@dataclass(frozen=True)
class JobRef:
    """The bulk job an event is about, and for an item's classification the item's line."""

    job_id: str
    item: int | None = None


@dataclass(frozen=True)
class FileFacts:
    """A classified file as the audit log records it: its hash, pages, OCR use and mode (the
    counts are None when the file could not be read)."""

    sha256: str
    mode: str
    page_count: int | None = None
    ocr_pages: int | None = None


@dataclass(frozen=True)
class Decision:
    """A classification's answer as the audit log records it, so the log alone says what was
    decided for a document and by which model, prompt and taxonomy (the scores as a digest)."""

    label: str
    confidence: float
    scores: Mapping[str, float]
    model: str
    model_digest: str | None
    prompt_version: str | None
    taxonomy_version: str
    truncated: bool
    cached_from: str | None = None
    """The result the answer was served from (the dedupe cache); None when the model answered."""
    stages: tuple[tuple[str, float], ...] = ()
    """A cascade's stages asked, in order, with their confidences; the last one answered."""


@dataclass(frozen=True)
class ReviewFacts:
    """A human review as the audit log records it: which review, and the reviewer's label (the
    reviewed result is the event's ``result_id``; the note is never logged)."""

    review_id: str
    label: str


@dataclass(frozen=True)
class AuditReceipt:
    """The pending event's id; the sealer gives it its place (``seq``) in the log later."""

    event_id: str


@dataclass(frozen=True)
class RowInsert:
    """An INSERT of the row an event is about, and its parameters (see ``AuditSink.record``).

    ``statement`` is SQL for psycopg with named placeholders (``%(name)s``)."""

    statement: bytes
    params: Mapping[str, Any]


class AuditSink(Protocol):
    """Records audit events."""

    def record(
        self, connection: psycopg.Connection[Any], event: AuditEvent, row: RowInsert | None = None
    ) -> AuditReceipt:
        """Add the event on the caller's connection (in its transaction, if one is open).

        With ``row``, the row and the event are inserted by one SQL statement: both are written
        or neither, even on a connection in autocommit mode, in a single round trip."""

    def record_standalone(self, event: AuditEvent) -> AuditReceipt:
        """Record the event in a transaction of its own (denied or failed requests)."""
