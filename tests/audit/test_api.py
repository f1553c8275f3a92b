"""Through the HTTP API with the real PostgreSQL sink: every request is audited, fail closed.

Uses the scripted vLLM stand-in (harness/fake_vllm.py); the audit side is all real.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance.classification.content import content_sha256
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.settings import Settings
from audit.pseudonym import pseudonymise
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from harness.fake_vllm import FakeVllm
from harness.identity import FINGERPRINT, identity
from harness.postgres import sqlalchemy_url
from tests.audit.conftest import ORIGIN
from tests.common.apps import app_over

TEXT = "Patient Jane Roe, DOB 1961-02-03, presents with chest pain. CBC: WBC 6.1."
DOC = "MRN-00017/visit-3"
PSEUDONYM_KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def app(audit_db: str, fake_vllm: FakeVllm, key_files: Path, tmp_path: Path) -> Iterator[Flask]:
    (tmp_path / "pseudonym.key").write_bytes(PSEUDONYM_KEY + b"\n")
    settings = Settings(
        database_url=sqlalchemy_url(audit_db),
        vllm_base_url=fake_vllm.url,
        database_pool_size=4,
        audit_verifier_key_path=key_files / "verifier.vkey",
        audit_pseudonym_key_path=tmp_path / "pseudonym.key",
        audit_origin=ORIGIN,
    )
    with app_over(settings) as application:
        yield application


@pytest.fixture
def as_role(app: Flask) -> Callable[..., FlaskClient]:
    def make(*roles: str, name: str = "spiffe://hospital/svc/intake") -> FlaskClient:
        client = app.test_client()
        if roles:
            client.environ_base[IDENTITY_ENVIRON_KEY] = identity(*roles, name=name)  # type: ignore[assignment]
        return client

    return make


@pytest.fixture
def seal(sealer_url: str, signer: Signer, state: SealerState) -> Callable[[], None]:
    """Seal what is pending now (and sign a checkpoint over it)."""

    def run() -> None:
        sealer = Sealer(sealer_url, signer, state)
        sealer.run_once()
        sealer.close()

    return run


def _events(url: str, request_id: str) -> list[dict[str, Any]]:
    """Sealed events of one request, decoded from the stored bytes."""
    import json

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT entry FROM audit_entries ORDER BY seq").fetchall()
    events = [json.loads(bytes(r[0]))["event"] for r in rows]
    return [e for e in events if e["request_id"] == request_id]


def test_classification_denied_and_auditor_query_are_each_audited(
    as_role: Callable[..., FlaskClient], audit_db: str, seal: Callable[[], None]
) -> None:
    ok = as_role("classifier").post(
        "/api/v1/classify-document", json={"document_id": DOC, "text": TEXT}
    )
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["audit_event_id"]
    denied = as_role("reader", name="spiffe://hospital/svc/nosy").post(
        "/api/v1/classify-document", json={"document_id": DOC, "text": TEXT}
    )
    assert denied.status_code == 403
    anonymous = as_role().get("/api/v1/classifications/" + DOC)
    assert anonymous.status_code == 401
    seal()
    auditor = as_role("auditor", name="spiffe://hospital/people/auditor")
    query = auditor.get("/api/v1/audit/events", query_string={"document_id": DOC})
    assert query.status_code == 200
    found = query.get_json()["events"]
    # The denied POST never reached body parsing, so it names no document; the denied GET does.
    assert [e["action"] for e in found] == ["classify_document", "read_classification"]
    seal()

    pseudonym = pseudonymise(PSEUDONYM_KEY, DOC)
    [classified] = _events(audit_db, ok.headers["X-Request-ID"])
    assert classified["action"] == "classify_document"
    assert classified["actor_subject"] == "spiffe://hospital/svc/intake"
    assert classified["actor_fingerprint"] == FINGERPRINT
    assert classified["outcome_status"] == 200 and classified["error_code"] is None
    assert classified["resource"] == pseudonym
    assert classified["result_id"] == ok.get_json()["result_id"]
    assert classified["content_sha256"] == pseudonymise(PSEUDONYM_KEY, content_sha256(TEXT))
    assert classified["occurred_at"].endswith("Z") and len(classified["occurred_at"]) == 27

    [refused] = _events(audit_db, denied.headers["X-Request-ID"])
    assert refused["action"] == "classify_document"
    assert (refused["outcome_status"], refused["error_code"]) == (403, "forbidden")
    assert refused["actor_subject"] == "spiffe://hospital/svc/nosy"

    [unknown] = _events(audit_db, anonymous.headers["X-Request-ID"])
    assert (unknown["outcome_status"], unknown["actor_subject"]) == (401, None)
    assert unknown["resource"] == pseudonym

    [read] = _events(audit_db, query.headers["X-Request-ID"])
    assert read["action"] == "audit_search"
    assert read["actor_subject"] == "spiffe://hospital/people/auditor"
    assert read["outcome_status"] == 200


def test_no_document_text_or_raw_id_in_audit_tables_or_logs(
    as_role: Callable[..., FlaskClient],
    audit_db: str,
    seal: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = as_role("classifier", "reader")
    assert (
        client.post(
            "/api/v1/classify-document", json={"document_id": DOC, "text": TEXT}
        ).status_code
        == 200
    )
    assert client.get("/api/v1/classifications/" + DOC).status_code == 200
    assert client.post(
        "/api/v1/classify-document", json={"document_id": DOC, "text": ""}
    ).status_code in (400, 422)
    seal()
    with psycopg.connect(audit_db) as conn:
        dumped = "".join(
            str(row)
            for table in ("audit_entries", "audit_pending", "audit_checkpoints", "audit_chain_head")
            for row in conn.execute(f"SELECT t::text FROM {table} t")
        )
        entries = conn.execute(
            "SELECT string_agg(convert_from(entry, 'UTF8'), '') FROM audit_entries"
        ).fetchone()
    assert entries and entries[0].count("hmac-sha256:") >= 2
    for secret in ("Jane Roe", "chest pain", "1961-02-03", DOC, "MRN-00017"):
        assert secret not in entries[0]
        assert secret.encode().hex() not in dumped
        assert secret not in caplog.text


def test_audit_failure_turns_the_response_into_a_503(
    as_role: Callable[..., FlaskClient], audit_db: str
) -> None:
    with psycopg.connect(audit_db) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'audit store down'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_pending EXECUTE FUNCTION refuse()"
        )
    client = as_role("classifier", "reader")
    read = client.get("/api/v1/classifications/" + DOC)
    assert read.status_code == 503
    assert read.get_json()["error"]["code"] == "audit_unavailable"
    assert read.headers["X-Request-ID"] and read.headers["Retry-After"]
    classify = client.post("/api/v1/classify-document", json={"document_id": DOC, "text": TEXT})
    assert classify.status_code == 503
    with psycopg.connect(audit_db) as conn:
        assert conn.execute("SELECT count(*) FROM classification_results").fetchone() == (0,)


def test_auditor_endpoints(
    as_role: Callable[..., FlaskClient], audit_db: str, seal: Callable[[], None]
) -> None:
    client = as_role("classifier", "auditor")
    for i in range(5):
        body = {"document_id": f"doc-{i}", "text": f"Invoice {i} for services rendered."}
        assert client.post("/api/v1/classify-document", json=body).status_code == 200
    seal()
    note = client.get("/api/v1/audit/checkpoints/latest")
    assert note.status_code == 200 and note.text.startswith(ORIGIN + "\n5\n")
    event = client.get("/api/v1/audit/events/2")
    assert event.status_code == 200 and event.get_json()["seq"] == 2
    proof = client.get("/api/v1/audit/events/2/proof")
    assert proof.status_code == 200 and proof.get_json()["tree_size"] == 5
    for i in range(3):
        client.get(f"/api/v1/audit/events/{i}")
    seal()
    latest = int(client.get("/api/v1/audit/checkpoints/latest").text.split("\n")[1])
    assert latest == 11  # five classifications, then six audited reads
    consistency = client.get("/api/v1/audit/consistency", query_string={"from": 5, "to": latest})
    assert consistency.status_code == 200, consistency.get_json()
    page = client.get("/api/v1/audit/events", query_string={"after_seq": 0, "limit": 2}).get_json()
    assert [e["seq"] for e in page["events"]] == [1, 2] and page["next_after_seq"] == 2
    assert client.get("/api/v1/audit/events/999").status_code == 404
    assert client.get("/api/v1/audit/events", query_string={"limit": "x"}).status_code == 400
    report = client.post("/api/v1/audit/verify")
    assert report.status_code == 200
    assert report.get_json()["status"] == "ok"
    assert as_role("classifier").get("/api/v1/audit/events").status_code == 403
    with psycopg.connect(audit_db) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM audit_entries WHERE seq = 3")
    tampered = client.post("/api/v1/audit/verify").get_json()
    assert tampered["status"] == "tampered"
    assert tampered["tampering"]["kind"] == "deleted" and tampered["tampering"]["seq"] == 3
