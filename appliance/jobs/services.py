"""Bulk jobs on the API side: submit, read, page through results, cancel.

A job belongs to the identity that submitted it: to anybody else but an auditor it does not
exist (404, never 403, so ids leak nothing). Submitting stores the job, its encrypted items,
its queue chunks and its audit event in one transaction; cancelling marks its pending items
cancelled and drops their texts with its audit event in another.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import namedtuple_row
from sqlalchemy.engine import Engine

from appliance.audit_bridge.interfaces import Action, JobRef
from appliance.audit_bridge.recorder import AuditRecorder, Clock, Subject, utc_now
from appliance.classification.interfaces import Classification, Document
from appliance.classification.services import as_classification
from appliance.classification.store import COLUMNS
from appliance.context import RequestContext
from appliance.db import autocommit
from appliance.errors import ApplianceError, InvalidRequest, NotFound, Unauthenticated
from appliance.identity.interfaces import Identity
from appliance.jobs import queue as work_queue
from appliance.jobs.crypto import JobCipher, JobKeyError
from appliance.jobs.items import Item
from appliance.usage.quotas import QuotaService


class IdempotencyKeyReused(InvalidRequest):
    """The same ``Idempotency-Key`` with another body: not a retry of the same submission."""

    status = 422
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class JobStatus:
    job_id: uuid.UUID
    state: str
    """queued, running, done, failed or cancelled."""
    total: int
    done: int
    failed: int
    cancelled: int
    created_at: datetime
    finished_at: datetime | None
    items_per_s: float | None
    """Items classified per second so far (None until two are)."""
    eta_s: float | None
    """Seconds left at that rate (None when unknown or nothing is left)."""


@dataclass(frozen=True)
class ItemOutcome:
    """One item for the results page: its result, or its error (code and message)."""

    position: int
    document_id: str | None
    state: str
    result: Classification | None
    error: tuple[str, str] | None


STATUS_QUERY = """
SELECT j.id, j.owner, j.total_items, j.created_at, j.cancelled_at, j.finished_at,
       count(*) FILTER (WHERE i.state = 'pending') AS pending,
       count(*) FILTER (WHERE i.state = 'done') AS done,
       count(*) FILTER (WHERE i.state = 'failed') AS failed,
       count(*) FILTER (WHERE i.state = 'failed' AND i.finished_at > j.created_at)
           AS failed_by_workers,
       count(*) FILTER (WHERE i.state = 'cancelled') AS cancelled,
       min(i.finished_at) FILTER (WHERE i.state = 'done') AS first_done,
       max(i.finished_at) FILTER (WHERE i.state = 'done') AS last_done
  FROM bulk_jobs j JOIN job_items i ON i.job_id = j.id
 WHERE j.id = %s
 GROUP BY j.id
"""

RESULTS_QUERY = (
    sql.SQL(
        "SELECT i.position AS item_position, i.document_id AS item_document_id,"
        " i.state AS item_state, i.error_code, i.error_message, {columns}"
        " FROM job_items i LEFT JOIN classification_results r ON r.id = i.result_id"
        " WHERE i.job_id = %s AND i.position > %s ORDER BY i.position LIMIT %s"
    )
    .format(columns=sql.SQL(", ").join(sql.Identifier("r", column) for column in COLUMNS))
    .as_bytes()
)
"""A page of items with their results (the result's columns by the model's names)."""

COPY_ITEMS = (
    "COPY job_items (job_id, position, document_id, on_behalf_of, ciphertext, state,"
    " error_code, error_message, finished_at) FROM STDIN"
)


def submitter(owner: str, fingerprint: str) -> Identity:
    """The identity a worker classifies a job's items as, for their audit events: the
    submitter's name and certificate fingerprint as the job recorded them (no roles: a worker
    is not a caller)."""
    return Identity(owner, (), "", fingerprint, datetime.max, frozenset())


class JobService:
    def __init__(
        self,
        engine: Engine,
        queue: work_queue.Deferrer,
        audit: AuditRecorder,
        key_encryption_key: bytes | None,
        chunk_items: int,
        shown_id: Callable[[str | None], str | None],
        quotas: QuotaService,
        clock: Clock = utc_now,
    ) -> None:
        """``key_encryption_key``: None when none is configured (then no job is accepted).
        ``shown_id``: a document id as auditors see it (its audit pseudonym). ``quotas``: a
        job's documents count against its submitter's daily document quotas."""
        self._engine = engine
        self._quotas = quotas
        self._shown_id = shown_id
        self._key = key_encryption_key
        self._chunk_items = chunk_items
        self._queue = queue
        self._audit = audit
        self._clock = clock

    def submit(
        self,
        context: RequestContext,
        items: list[Item],
        body_sha256: str,
        idempotency_key: str | None,
        callback_url: str | None = None,
    ) -> JobStatus:
        """Store and queue a new job; or, for a repeated ``idempotency_key`` with the same body,
        the job it made (the repeat is audited as a submission answered with that job)."""
        identity = _caller(context)
        if self._key is None:  # fail closed: no text is stored unencrypted
            raise JobKeyError("bulk jobs need a key-encryption key: set APPLIANCE_JOB_KEY_PATH")
        key = self._key
        with autocommit(self._engine) as connection:
            earlier = self._earlier(connection, identity.name, idempotency_key, body_sha256)
            if earlier is not None:
                return self._replayed(connection, earlier, context)
            job_id = uuid.uuid4()
            try:
                with connection.transaction():
                    documents = sum(isinstance(item.outcome, Document) for item in items)
                    self._quotas.charge_job(connection, context.identity, documents)
                    self._store(
                        connection, identity, job_id, items, key, idempotency_key, body_sha256,
                        callback_url,
                    )  # fmt: skip
                    self._queue_chunks(connection, job_id, items)
                    self._audit.record(
                        connection, context, Action.SUBMIT_JOB, _about(job_id), status=202
                    )
            except psycopg.errors.UniqueViolation:  # the same key, submitted concurrently
                earlier = self._earlier(connection, identity.name, idempotency_key, body_sha256)
                if earlier is None:
                    raise
                return self._replayed(connection, earlier, context)
            return self._status_on(connection, job_id, context)

    def _replayed(
        self, connection: psycopg.Connection[Any], job_id: uuid.UUID, context: RequestContext
    ) -> JobStatus:
        status = self._status_on(connection, job_id, context)
        self._audit.record_outcome(context, Action.SUBMIT_JOB, 202, _about(job_id))
        return status

    def status(self, job_id: uuid.UUID, context: RequestContext) -> JobStatus:
        with autocommit(self._engine) as connection:
            status = self._status_on(connection, job_id, context)
        self._audit.record_outcome(context, Action.READ_JOB, 200, _about(job_id))
        return status

    def results(
        self, job_id: uuid.UUID, context: RequestContext, after: int, limit: int
    ) -> list[ItemOutcome]:
        """Items after line ``after``, at most ``limit``, with their results or errors. An
        auditor sees the document ids as the audit log shows them (pseudonyms), as it reads
        stored results without them."""
        with autocommit(self._engine) as connection:
            owner = self._visible(connection, job_id, context, Action.READ_JOB_RESULTS)
            with connection.cursor(row_factory=namedtuple_row) as cursor:
                rows = cursor.execute(RESULTS_QUERY, (job_id, after, limit)).fetchall()
        self._audit.record_outcome(context, Action.READ_JOB_RESULTS, 200, _about(job_id))
        outcomes = [_outcome(row) for row in rows]
        return outcomes if owner else [self._as_auditor_sees(item) for item in outcomes]

    def _as_auditor_sees(self, item: ItemOutcome) -> ItemOutcome:
        shown = self._shown_id(item.document_id)
        result = item.result
        if result is not None:
            pseudonym = str(self._shown_id(result.document_id))
            result = dataclasses.replace(result, document_id=pseudonym)
        return dataclasses.replace(item, document_id=shown, result=result)

    def cancel(self, job_id: uuid.UUID, context: RequestContext) -> JobStatus:
        """Cancel the items no worker has finished, and drop their texts. Items a worker is
        classifying at this moment may still finish (their result is kept)."""
        with autocommit(self._engine) as connection:
            self._visible(connection, job_id, context, Action.CANCEL_JOB, owner_only=True)
            with connection.transaction():
                cancelled = connection.execute(
                    "UPDATE bulk_jobs SET cancelled_at = %s WHERE id = %s AND cancelled_at IS NULL"
                    " AND finished_at IS NULL RETURNING callback_url",
                    (self._clock(), job_id),
                ).fetchone()
                if cancelled is not None and cancelled[0] is not None:
                    self._queue.callback(connection, job_id)
                connection.execute(
                    "UPDATE job_items SET state = 'cancelled', ciphertext = NULL, finished_at = %s"
                    " WHERE job_id = %s AND state = 'pending'",
                    (self._clock(), job_id),
                )
                self._audit.record(connection, context, Action.CANCEL_JOB, _about(job_id))
            return self._status_on(connection, job_id, context)

    def _store(
        self,
        connection: psycopg.Connection[Any],
        identity: Identity,
        job_id: uuid.UUID,
        items: list[Item],
        key: bytes,
        idempotency_key: str | None,
        body_sha256: str,
        callback_url: str | None,
    ) -> None:
        cipher, wrapped = JobCipher.new(job_id, key)
        now = self._clock()
        connection.execute(
            "INSERT INTO bulk_jobs (id, owner, owner_fingerprint, idempotency_key, request_sha256,"
            " total_items, wrapped_key, callback_url, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                job_id,
                identity.name,
                identity.fingerprint_sha256,
                idempotency_key,
                body_sha256,
                len(items),
                wrapped,
                callback_url,
                now,
            ),
        )
        with connection.cursor().copy(COPY_ITEMS) as copy:
            for item in items:
                copy.write_row(_item_row(job_id, item, cipher, now))
        if all(isinstance(item.outcome, ApplianceError) for item in items):
            connection.execute("UPDATE bulk_jobs SET finished_at = %s WHERE id = %s", (now, job_id))
            if callback_url is not None:
                self._queue.callback(connection, job_id)

    def _queue_chunks(
        self, connection: psycopg.Connection[Any], job_id: uuid.UUID, items: list[Item]
    ) -> None:
        """One queue job per chunk of lines that holds any valid item."""
        valid = {item.position for item in items if isinstance(item.outcome, Document)}
        if not valid:
            return
        size = self._chunk_items
        positions = sorted(valid)
        ranges = [
            (positions[start], positions[min(start + size, len(positions)) - 1])
            for start in range(0, len(positions), size)
        ]
        self._queue.chunks(connection, job_id, ranges)

    def _earlier(
        self,
        connection: psycopg.Connection[Any],
        owner: str,
        idempotency_key: str | None,
        body_sha256: str,
    ) -> uuid.UUID | None:
        if idempotency_key is None:
            return None
        row = connection.execute(
            "SELECT id, request_sha256 FROM bulk_jobs WHERE owner = %s AND idempotency_key = %s",
            (owner, idempotency_key),
        ).fetchone()
        if row is None:
            return None
        if row[1] != body_sha256:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for another job body: use a new key"
            )
        job_id: uuid.UUID = row[0]
        return job_id

    def _visible(
        self,
        connection: psycopg.Connection[Any],
        job_id: uuid.UUID,
        context: RequestContext,
        action: Action,
        owner_only: bool = False,
    ) -> bool:
        """Whether the caller owns the job, if it may see it (its owner; an auditor, to read);
        else 404, audited with the job id asked for."""
        identity = _caller(context)
        row = connection.execute("SELECT owner FROM bulk_jobs WHERE id = %s", (job_id,)).fetchone()
        may_see = row is not None and (
            row[0] == identity.name or (not owner_only and "auditor" in identity.roles)
        )
        if row is None or not may_see:
            error = NotFound("no such job")
            self._audit.record_outcome(context, action, error.status, _about(job_id), error.code)
            raise error
        return bool(row[0] == identity.name)

    def _status_on(
        self, connection: psycopg.Connection[Any], job_id: uuid.UUID, context: RequestContext
    ) -> JobStatus:
        self._visible(connection, job_id, context, Action.READ_JOB)
        return job_status(connection, job_id)


def job_status(connection: psycopg.Connection[Any], job_id: uuid.UUID) -> JobStatus:
    """The job's state and counts (the caller has checked who may see them)."""
    with connection.cursor(row_factory=namedtuple_row) as cursor:
        row = cursor.execute(STATUS_QUERY, (job_id,)).fetchone()
    return _status(row)


def _caller(context: RequestContext) -> Identity:
    if context.identity is None:
        raise Unauthenticated("a verified client certificate is required")
    return context.identity


def _about(job_id: uuid.UUID) -> Subject:
    return Subject(job=JobRef(str(job_id)))


def _item_row(job_id: uuid.UUID, item: Item, cipher: JobCipher, now: datetime) -> tuple[Any, ...]:
    outcome = item.outcome
    if isinstance(outcome, Document):
        ciphertext = cipher.encrypt(item.position, outcome.text)
        return (job_id, item.position, item.document_id, outcome.on_behalf_of, ciphertext,
                "pending", None, None, None)  # fmt: skip
    return (job_id, item.position, item.document_id, None, None,
            "failed", outcome.code, outcome.message[:1024], now)  # fmt: skip


def _status(row: Any) -> JobStatus:
    pending = row.pending
    if row.cancelled_at is not None:
        state = "cancelled"
    elif pending:
        state = "running" if row.done or row.failed_by_workers else "queued"
    else:
        state = "done" if row.done else "failed"
    rate = None
    if row.done >= 2 and row.last_done > row.first_done:
        rate = (row.done - 1) / (row.last_done - row.first_done).total_seconds()
    return JobStatus(
        job_id=row.id,
        state=state,
        total=row.total_items,
        done=row.done,
        failed=row.failed,
        cancelled=row.cancelled,
        created_at=row.created_at,
        finished_at=row.finished_at or row.cancelled_at,
        items_per_s=rate,
        eta_s=pending / rate if rate and pending else None,
    )


def _outcome(row: Any) -> ItemOutcome:
    result = None
    if row.id is not None:
        result = as_classification(row)
    error = (row.error_code, row.error_message) if row.error_code is not None else None
    return ItemOutcome(row.item_position, row.item_document_id, row.item_state, result, error)
