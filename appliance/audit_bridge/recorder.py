"""The one place audit events are built: who asked (the request context), what for (an
``Action``), about what (a ``Subject``), and the outcome.

Services record their operation together with the row it wrote; the request hook records every
request that no service recorded (denials, failures, reads). Either way the context remembers
which operations are on record, so nothing is audited twice and nothing is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from appliance.audit_bridge.interfaces import (
    Action,
    AuditEvent,
    AuditReceipt,
    AuditSink,
    Decision,
    FileFacts,
    JobRef,
    ReviewFacts,
    RowInsert,
)
from appliance.context import RequestContext

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Subject:
    """What an event is about: ids and hashes, never document text."""

    document_id: str | None = None
    """The raw id; the sink stores its pseudonym when a key is configured."""
    result_id: str | None = None
    content_sha256: str | None = None
    on_behalf_of: str | None = None
    file: FileFacts | None = None
    decision: Decision | None = None
    review: ReviewFacts | None = None
    job: JobRef | None = None
    detail: str | None = None


NOTHING = Subject()


class AuditRecorder:
    def __init__(self, sink: AuditSink, clock: Clock = utc_now) -> None:
        self._sink = sink
        self._clock = clock

    def record(
        self,
        connection: psycopg.Connection[Any],
        context: RequestContext,
        action: Action,
        subject: Subject,
        row: RowInsert | None = None,
        status: int = 200,
    ) -> AuditReceipt:
        """Insert the event, and ``row`` with it in one statement, on an autocommit connection:
        when this returns both are committed, when it raises neither is. Inside a transaction
        block on that connection (``connection.transaction()``) both commit with the block, and
        whatever else it wrote with them (a bulk job's item state).

        Precondition: ``connection`` is in autocommit mode (``appliance.db.autocommit``), so
        nothing is left uncommitted by a caller that opened no block."""
        if not connection.autocommit:
            raise ValueError("AuditRecorder.record needs a connection in autocommit mode")
        receipt = self._sink.record(connection, self._event(context, action, status, subject), row)
        context.recorded.add(action)
        return receipt

    def record_outcome(
        self,
        context: RequestContext,
        action: Action,
        status: int,
        subject: Subject = NOTHING,
        error_code: str | None = None,
    ) -> AuditReceipt:
        """Record an operation that wrote nothing (a denial, a failure, a read), committed on
        its own."""
        event = self._event(context, action, status, subject, error_code)
        receipt = self._sink.record_standalone(event)
        context.recorded.add(action)
        return receipt

    def _event(
        self,
        context: RequestContext,
        action: Action,
        status: int,
        subject: Subject,
        error_code: str | None = None,
    ) -> AuditEvent:
        identity = context.identity
        return AuditEvent(
            occurred_at=self._clock(),
            actor_subject=identity.name if identity else None,
            actor_fingerprint=identity.fingerprint_sha256 if identity else None,
            source_address=context.source_address,
            action=action,
            outcome_status=status,
            request_id=context.request_id,
            error_code=error_code,
            document_id=subject.document_id,
            result_id=subject.result_id,
            content_sha256=subject.content_sha256,
            on_behalf_of=subject.on_behalf_of,
            file=subject.file,
            decision=subject.decision,
            review=subject.review,
            job=subject.job or context.job,
            detail=subject.detail,
        )
