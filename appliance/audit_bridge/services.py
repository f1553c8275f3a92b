"""The appliance side of the audit log: record events (pending, lock-free) and read the log.

``PostgresAuditSink`` implements ``AuditSink``: ``record`` adds the event to the caller's open
psycopg transaction (it commits with the result, or neither does); ``record_standalone`` commits
it on its own. Document ids become HMAC pseudonyms when a key file
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

from appliance.audit_bridge.interfaces import AuditEvent, AuditReceipt, RowInsert
from appliance.db import autocommit, database_errors
from appliance.errors import AuditUnavailable, DatabaseUnavailable
from appliance.settings import Settings
from audit import checkpoint as notes
from audit import pseudonym, store
from audit.chain import format_time
from audit.errors import AuditError
from audit.integrity import Trust
from audit.types import Event


def resource(key: bytes | None, document_id: str | None) -> str | None:
    """What the log stores for a document id: its pseudonym when a key is configured."""
    if document_id is None or key is None:
        return document_id
    return pseudonym.pseudonymise(key, document_id)


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
            resource=resource(self._key, event.document_id),
            result_id=event.result_id,
            content_sha256=event.content_sha256,
            on_behalf_of=event.on_behalf_of,
            file_sha256=event.file.sha256 if event.file else None,
            page_count=event.file.page_count if event.file else None,
            ocr_pages=event.file.ocr_pages if event.file else None,
            file_mode=event.file.mode if event.file else None,
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
        return resource(self._key, document_id)

    @property
    def trust(self) -> Trust | None:
        """The verifier key derived from the configured signing key (None if not configured)."""
        return self._trust

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
