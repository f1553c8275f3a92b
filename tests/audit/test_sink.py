"""PostgresAuditSink on a real database: transactional semantics, pseudonyms, failing closed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from appliance.audit_bridge import services
from appliance.audit_bridge.interfaces import AuditEvent, RowInsert
from appliance.audit_bridge.services import PostgresAuditSink
from appliance.errors import AuditUnavailable
from audit.pseudonym import pseudonymise
from harness.postgres import sqlalchemy_url
from tests.audit.conftest import ORIGIN

KEY = b"k" * 32


def _event(**fields: object) -> AuditEvent:
    values: dict[str, object] = {
        "occurred_at": datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC),
        "actor_subject": "spiffe://hospital/svc/intake",
        "actor_fingerprint": "ab" * 32,
        "source_address": "10.0.0.7",
        "action": "classify_document",
        "outcome_status": 200,
        "request_id": "req-1",
        "document_id": "MRN-1/visit-2",
    }
    values.update(fields)
    return AuditEvent(**values)  # type: ignore[arg-type]


def _pending(url: str) -> list[dict[str, object]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT event FROM audit_pending ORDER BY id").fetchall()
    return [json.loads(bytes(row[0])) for row in rows]


def test_record_commits_and_rolls_back_with_the_callers_transaction(audit_db: str) -> None:
    sink = PostgresAuditSink(create_engine(sqlalchemy_url(audit_db)), KEY)
    with psycopg.connect(audit_db) as connection:
        receipt = sink.record(connection, _event(request_id="kept"))
        connection.commit()
        sink.record(connection, _event(request_id="rolled-back"))
        connection.rollback()  # the result could not be stored
    [event] = _pending(audit_db)
    assert event["request_id"] == "kept" and event["event_id"] == receipt.event_id
    assert event["resource"] == pseudonymise(KEY, "MRN-1/visit-2")
    assert event["occurred_at"] == "2026-11-22T10:00:00.123456Z"


def test_a_row_and_its_event_are_one_statement_even_in_autocommit(audit_db: str) -> None:
    """Whichever of the two inserts fails, neither is written."""
    insert_row = b"INSERT INTO scratch_rows (id) VALUES (%(id)s)"
    sink = PostgresAuditSink(create_engine(sqlalchemy_url(audit_db)))
    with psycopg.connect(audit_db, autocommit=True) as connection:
        connection.execute("CREATE TABLE scratch_rows (id int PRIMARY KEY)")
        connection.execute(
            "ALTER TABLE audit_pending ADD CONSTRAINT refuse CHECK (action <> 'refused')"
        )
        sink.record(connection, _event(request_id="first"), RowInsert(insert_row, {"id": 1}))
        with pytest.raises(AuditUnavailable):  # the event fails
            sink.record(
                connection,
                _event(request_id="refused", action="refused"),
                RowInsert(insert_row, {"id": 2}),
            )
        with pytest.raises(AuditUnavailable):  # the row fails (duplicate key)
            sink.record(
                connection, _event(request_id="duplicate"), RowInsert(insert_row, {"id": 1})
            )
        stored = [row[0] for row in connection.execute("SELECT id FROM scratch_rows")]
    assert stored == [1]
    assert [event["request_id"] for event in _pending(audit_db)] == ["first"]


def test_standalone_and_raw_ids_without_a_key(audit_db: str) -> None:
    engine = create_engine(sqlalchemy_url(audit_db))
    PostgresAuditSink(engine).record_standalone(_event(outcome_status=403, error_code="forbidden"))
    engine.dispose()
    [event] = _pending(audit_db)
    assert (event["outcome_status"], event["error_code"]) == (403, "forbidden")
    assert event["resource"] == "MRN-1/visit-2"


def test_failures_raise_audit_unavailable(audit_db: str) -> None:
    engine = create_engine(sqlalchemy_url(audit_db))
    sink = PostgresAuditSink(engine, KEY)
    role = f"limited_{uuid.uuid4().hex[:8]}"  # roles are cluster-wide: never reuse a name
    with pytest.raises(AuditUnavailable):
        sink.record_standalone(_event(request_id="x" * 5000))
    with engine.begin() as connection:
        connection.execute(text("REVOKE INSERT ON audit_pending FROM PUBLIC"))
        connection.execute(text(f"CREATE ROLE {role} LOGIN IN ROLE appliance_auditor"))
    limited = create_engine(sqlalchemy_url(audit_db).replace("postgres@", f"{role}@"))
    with pytest.raises(AuditUnavailable):
        PostgresAuditSink(limited).record_standalone(_event())
    limited.dispose()
    engine.dispose()
    assert _pending(audit_db) == []


def test_the_api_verifies_with_only_the_public_key(key_files: Path) -> None:
    from_vkey = services._trust(key_files / "verifier.vkey", ORIGIN)
    from_pem = services._trust(key_files / "signing.pem", ORIGIN)
    assert from_vkey.public.public_bytes_raw() == from_pem.public.public_bytes_raw()
    assert from_vkey.name == from_pem.name == ORIGIN
