"""End to end: every access through the real mTLS stack is audited, and no document text lands
in the database (results or audit tables) or in the service's logs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from audit.pseudonym import PREFIX, pseudonymise
from harness import postgres
from harness.stack import CLIENT_URI, Stack, appliance_stack
from harness.upstream import VllmEndpoint

pytestmark = pytest.mark.vllm

SECRET = "Zebra Quasar Marmalade"
"""A phrase that stands for patient text: it must never be stored or logged."""


@pytest.fixture(scope="module")
def stack(
    create_database: Callable[..., str], vllm_server: VllmEndpoint, logins: postgres.Logins
) -> Iterator[Stack]:
    with appliance_stack(create_database(), vllm_server, logins) as running:
        running.wait_started()
        yield running


def libpq_url(stack: Stack) -> str:
    return stack.libpq_url


def pending_events(stack: Stack) -> list[dict[str, object]]:
    with psycopg.connect(libpq_url(stack)) as conn:
        rows = conn.execute("SELECT event FROM audit_pending ORDER BY id").fetchall()
    return [json.loads(bytes(event)) for (event,) in rows]


def test_allowed_denied_and_auditor_requests_are_audited_without_text(stack: Stack) -> None:
    options = stack.client_options()
    stranger = stack.pki.client("stranger", "URI:spiffe://hospital/svc/stranger")
    document = {"document_id": "E2E-AUDIT-1", "text": f"Patient {SECRET} seen for follow-up."}
    with httpx.Client(base_url=stack.url, timeout=120, **options) as api:  # type: ignore[arg-type]
        classified = api.post("/api/v1/classify-document", json=document)
        assert classified.status_code == 200
        searched = api.get("/api/v1/audit/events", params={"action": "classify_document"})
        assert searched.status_code == 200
    with httpx.Client(
        base_url=stack.url, timeout=60, verify=stack.pki.client_context(stranger)
    ) as outsider:
        denied = outsider.post("/api/v1/classify-document", json=document)
        assert denied.status_code == 403

    events = {event["request_id"]: event for event in pending_events(stack)}
    allowed = events[classified.headers["X-Request-ID"]]
    assert allowed["action"] == "classify_document" and allowed["outcome_status"] == 200
    assert allowed["actor_subject"] == CLIENT_URI
    key = stack.pseudonym_key.read_bytes().strip()
    assert allowed["resource"] == pseudonymise(key, "E2E-AUDIT-1")  # never the raw id
    assert allowed["result_id"] == classified.json()["result_id"]
    assert allowed["content_sha256"].startswith(PREFIX) and allowed["source_address"] == "127.0.0.1"
    refused = events[denied.headers["X-Request-ID"]]
    assert refused["outcome_status"] == 403 and refused["error_code"] == "forbidden"
    assert refused["actor_subject"] == "spiffe://hospital/svc/stranger"
    assert refused["actor_fingerprint"] and refused["result_id"] is None
    audit_read = events[searched.headers["X-Request-ID"]]
    assert audit_read["action"] == "audit_search"
    assert audit_read["outcome_status"] == 200

    dump = subprocess.run(
        ["pg_dump", "--data-only", libpq_url(stack)], capture_output=True, text=True, check=True
    ).stdout
    assert "E2E-AUDIT-1" in dump, "the dump must contain the data it is searched for"
    assert SECRET not in dump
    assert SECRET not in stack.server.log()
