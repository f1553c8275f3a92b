"""The appliance side of the audit log: record events (pending, lock-free) and read the log.

``PostgresAuditSink`` implements ``AuditSink``: ``record`` adds the event to the caller's open
psycopg transaction (it commits with the result, or neither does); ``record_standalone`` commits
it on its own. Document ids and content hashes become HMAC pseudonyms when a key file
is configured. A lost database raises ``DatabaseUnavailable``, any other failure
``AuditUnavailable``: nothing proceeds unaudited.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from appliance.audit_bridge.interfaces import AuditEvent, AuditReceipt, Decision, RowInsert
from appliance.db import autocommit, database_errors
from appliance.errors import (
    AuditUnavailable,
    DatabaseUnavailable,
    InvalidRequest,
    NotFound,
    NotYetAvailable,
    ServiceUnavailable,
)
from appliance.settings import Settings
from audit import checkpoint as notes
from audit import pseudonym, service, store
from audit.chain import format_confidence, format_time, scores_digest
from audit.errors import AuditError, KeyFileError, NotSealedYet, ProofError, StoreError
from audit.integrity import Trust
from audit.types import Event


def pseudonymised(key: bytes | None, value: str | None) -> str | None:
    """What the log stores for a document id or a content hash: its pseudonym when a key is
    configured (a hash of a short templated document could otherwise be confirmed by hashing
    guesses)."""
    if value is None or key is None:
        return value
    return pseudonym.pseudonymise(key, value)


def load_pseudonym_key(settings: Settings) -> bytes | None:
    """The key for audit pseudonyms. Fails closed: no key is an error unless the operator opted
    out (``audit_raw_identifiers``), so an MRN-style id never reaches the log by omission."""
    if settings.audit_pseudonym_key_path is not None:
        return pseudonym.load_key(settings.audit_pseudonym_key_path)
    if settings.audit_raw_identifiers:
        return None
    raise KeyFileError(
        "no audit pseudonym key: set APPLIANCE_AUDIT_PSEUDONYM_KEY_PATH (every install generates"
        " one), or APPLIANCE_AUDIT_RAW_IDENTIFIERS=true to log raw document ids"
    )


def decision_fields(decision: Decision | None) -> dict[str, Any]:
    """The event fields of a classification's decision (none for other events)."""
    if decision is None:
        return {}
    return {
        "label": decision.label,
        "confidence": format_confidence(decision.confidence),
        "scores_sha256": scores_digest(decision.scores),
        "model": decision.model,
        "model_digest": decision.model_digest,
        "prompt_version": decision.prompt_version,
        "taxonomy_version": decision.taxonomy_version,
        "truncated": decision.truncated,
        "cached": decision.cached_from is not None,
        "cached_from": decision.cached_from,
        "stage": decision.stages[-1][0] if decision.stages else None,
        "stages": ",".join(f"{name}:{format_confidence(c)}" for name, c in decision.stages)
        or None,
    }


class PostgresAuditSink:
    """Writes audit events into ``audit_pending``; the sealer does the rest."""

    def __init__(self, engine: Engine, pseudonym_key: bytes | None = None) -> None:
        self._engine = engine
        self._key = pseudonym_key

    def to_event(self, event: AuditEvent) -> Event:
        return Event(
            event_id=str(uuid.uuid4()),
            occurred_at=format_time(event.occurred_at),
            action=event.action,
            outcome_status=event.outcome_status,
            request_id=event.request_id,
            actor_subject=event.actor_subject,
            actor_fingerprint=event.actor_fingerprint,
            source_address=event.source_address,
            error_code=event.error_code,
            resource=pseudonymised(self._key, event.document_id),
            result_id=event.result_id,
            content_sha256=pseudonymised(self._key, event.content_sha256),
            on_behalf_of=event.on_behalf_of,
            file_sha256=pseudonymised(self._key, event.file.sha256) if event.file else None,
            page_count=event.file.page_count if event.file else None,
            ocr_pages=event.file.ocr_pages if event.file else None,
            file_mode=event.file.mode if event.file else None,
            review_id=event.review.review_id if event.review else None,
            review_label=event.review.label if event.review else None,
            job_id=event.job.job_id if event.job else None,
            job_item=event.job.item if event.job else None,
            detail=event.detail,
            **decision_fields(event.decision),
        )

    def _params(self, event: AuditEvent) -> tuple[str, dict[str, Any]]:
        try:
            stored = self.to_event(event)
            return stored.event_id, store.pending_params(stored)
        except (AuditError, ValueError) as exc:
            raise AuditUnavailable(f"the audit event is invalid: {exc}") from exc

    def record(
        self, connection: psycopg.Connection[Any], event: AuditEvent, row: RowInsert | None = None
    ) -> AuditReceipt:
        event_id, params = self._params(event)
        statement = store.INSERT_PENDING
        if row is not None:
            statement, params = _statement_with(row), {**row.params, **params}
        try:
            connection.execute(statement, params)
        except psycopg.OperationalError as exc:  # the database is down, not the audit log
            raise DatabaseUnavailable("the database is unavailable") from exc
        except psycopg.Error as exc:
            raise AuditUnavailable("the audit log could not record this request") from exc
        return AuditReceipt(event_id=event_id)

    def record_standalone(self, event: AuditEvent) -> AuditReceipt:
        try:
            with autocommit(self._engine) as connection:
                return self.record(connection, event)
        except SQLAlchemyError as exc:
            raise AuditUnavailable("the audit log could not record this request") from exc


def _statement_with(row: RowInsert) -> bytes:
    """The event's INSERT with the row's as a data-modifying CTE: one statement."""
    clash = set(row.params) & set(store.PENDING_COLUMNS)
    if clash:
        raise ValueError(f"the row's parameters {sorted(clash)} clash with the event's")
    return b"WITH audited_row AS (" + row.statement + b") " + store.INSERT_PENDING


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Audit library errors as the appliance's error types (one place)."""
    try:
        yield
    except NotSealedYet as exc:
        raise NotYetAvailable(str(exc)) from exc
    except ProofError as exc:
        raise NotFound(str(exc)) from exc
    except StoreError as exc:
        raise ServiceUnavailable(str(exc)) from exc
    except AuditError as exc:
        raise InvalidRequest(str(exc)) from exc


def _trust(path: Path, origin: str) -> Trust:
    """Verifier key for ``POST /audit/verify``: a ``.vkey`` file is enough (the API then never
    holds the signing key); a private PEM works too, its public half is used."""
    if path.suffix == ".vkey":
        name, public = notes.load_verifier_key(path)
        return Trust(name, public, origin)
    return Trust(origin, notes.load_private_key(path).public_key(), origin)


class AuditReader:
    """Read side for the auditor endpoints: psycopg connections borrowed from the app's pool."""

    def __init__(self, engine: Engine, settings: Settings, pseudonym_key: bytes | None) -> None:
        self._engine = engine
        self._key = pseudonym_key
        self.origin = settings.audit_origin
        self._trust: Trust | None = None
        path = settings.audit_verifier_key_path
        if path is not None:
            self._trust = _trust(path, settings.audit_origin)

    def resource(self, document_id: str | None) -> str | None:
        return pseudonymised(self._key, document_id)

    @property
    def trust(self) -> Trust | None:
        """The verifier key derived from the configured signing key (None if not configured)."""
        return self._trust

    def receipt(self, result_id: uuid.UUID) -> str:
        """The C2SP tlog-proof receipt of the event that recorded ``result_id``."""
        with translated(), self.connection() as conn:
            return service.receipt_for(conn, result_id).render()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A clean psycopg connection from the pool, rolled back and returned afterwards."""
        with database_errors():
            raw = self._engine.raw_connection()
        conn = raw.driver_connection
        if not isinstance(conn, psycopg.Connection):
            raw.close()
            raise DatabaseUnavailable("the audit reader needs the psycopg driver")
        try:
            conn.rollback()
            yield conn
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable("the database is unavailable") from exc
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            raw.close()
