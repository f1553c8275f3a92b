"""In-process stand-ins shared by the tests that build the app with a Flask test client: a
verified caller (what the mTLS middleware would publish) and an in-memory audit sink."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from appliance.audit_bridge.interfaces import AuditEvent, AuditReceipt, RowInsert
from appliance.identity.interfaces import Identity

FINGERPRINT = "ab" * 32


class RecordingSink:
    """Keeps audit events in memory; can be told to fail. For tests of the core only: the
    PostgreSQL audit sink has its own tests and runs in the end-to-end tests."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.fail = False
        self._lock = threading.Lock()

    def record(
        self, connection: psycopg.Connection[Any], event: AuditEvent, row: RowInsert | None = None
    ) -> AuditReceipt:
        if self.fail:
            raise RuntimeError("audit store refused the event")
        if row is not None:
            connection.execute(row.statement, row.params)
        with self._lock:
            self.events.append(event)
        return AuditReceipt(event_id=str(uuid.uuid4()))

    def record_standalone(self, event: AuditEvent) -> AuditReceipt:
        with self._lock:
            self.events.append(event)
        return AuditReceipt(event_id=str(uuid.uuid4()))


def identity(*roles: str, name: str = "spiffe://hospital/svc/intake") -> Identity:
    return Identity(
        subject=f"CN={name.rsplit('/', 1)[-1]}",
        sans=(f"URI:{name}",),
        serial="01",
        fingerprint_sha256=FINGERPRINT,
        not_after=datetime(2030, 1, 1, tzinfo=UTC),
        roles=frozenset(roles),
    )
