"""Bulk jobs over the API, processed by a real procrastinate worker on the real database (as the
application's role) against the scripted upstream."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from appliance.classification.interfaces import Document
from appliance.context import RequestContext
from appliance.jobs.worker import ItemNotPending, ItemWrite
from appliance.services import Services
from appliance.settings import Settings
from audit.chain import decode_event
from audit.pseudonym import pseudonymise
from harness.fake_vllm import FakeVllm
from harness.identity import identity
from tests.jobs.conftest import AUDITOR, OTHER, OWNER, jsonl

NDJSON = "application/x-ndjson"


def _lines(n: int, tag: str) -> list[str]:
    return [
        json.dumps({"document_id": f"{tag}-{i}", "text": f"Invoice {tag} number {i}."})
        for i in range(n)
    ]


def _submit(client: FlaskClient, body: bytes, **headers: str) -> Any:
    return client.post("/api/v1/jobs", data=body, content_type=NDJSON, headers=headers)


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def _all_results(client: FlaskClient, job_id: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = client.get(f"/api/v1/jobs/{job_id}/results?after={after}&limit={limit}")
        assert page.status_code == 200, page.json
        items += page.json["items"]
        after = page.json["next_after"]
    return items


def test_a_job_is_stored_encrypted_processed_and_paged_through(
    owner: FlaskClient, drain: Callable[[], None], migrated_admin_url: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    lines = _lines(8, tag)
    bad = ["{not json", json.dumps({"document_id": f"{tag}-x", "text": "t", "colour": "red"})]
    answer = _submit(owner, jsonl(*lines[:3], "", bad[0], *lines[3:], bad[1]))
    assert answer.status_code == 202, answer.json
    job_id = answer.json["job_id"]
    assert answer.headers["Location"] == f"/api/v1/jobs/{job_id}"
    assert answer.json["state"] == "queued"
    assert answer.json["counts"] == {"total": 10, "done": 0, "failed": 2, "cancelled": 0,
                                     "pending": 8}  # fmt: skip
    with _admin(migrated_admin_url) as admin:
        stored = admin.execute(
            "SELECT ciphertext FROM job_items WHERE job_id = %s AND state = 'pending'", (job_id,)
        ).fetchall()
    assert len(stored) == 8
    assert all(tag.encode() not in row[0] and b"Invoice" not in row[0] for row in stored)

    drain()

    status = owner.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "done"
    assert status["counts"] == {"total": 10, "done": 8, "failed": 2, "cancelled": 0, "pending": 0}
    assert status["finished_at"] is not None
    items = _all_results(owner, job_id, limit=3)
    assert [item["position"] for item in items] == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    errors = {item["position"]: item["error"]["code"] for item in items if item["error"]}
    assert errors == {5: "malformed_json", 11: "invalid_request"}
    assert items[-1]["document_id"] == f"{tag}-x"
    done = [item for item in items if item["state"] == "done"]
    assert [item["result"]["document_id"] for item in done] == [f"{tag}-{i}" for i in range(8)]
    assert all(item["result"]["classification"] for item in done)
    with _admin(migrated_admin_url) as admin:
        left = admin.execute(
            "SELECT count(*) FROM job_items WHERE job_id = %s AND ciphertext IS NOT NULL",
            (job_id,),
        ).fetchone()
    assert left == (0,)


def test_each_item_has_one_result_and_one_event_naming_the_job(
    owner: FlaskClient, drain: Callable[[], None], migrated_admin_url: str
) -> None:
    job_id = _submit(owner, jsonl(*_lines(6, uuid.uuid4().hex[:8]))).json["job_id"]
    drain()
    drain()  # a second pass over the same queue finds nothing left to do
    with _admin(migrated_admin_url) as admin:
        results = admin.execute(
            "SELECT i.position, r.id FROM job_items i JOIN classification_results r"
            " ON r.id = i.result_id WHERE i.job_id = %s",
            (job_id,),
        ).fetchall()
        events = [decode_event(bytes(row[0])) for row in admin.execute(
            "SELECT event FROM audit_pending"
            " WHERE position(convert_to(%s, 'UTF8') in event) > 0",
            (job_id,),
        ).fetchall()]  # fmt: skip
    assert sorted(position for position, _ in results) == [1, 2, 3, 4, 5, 6]
    classified = [e for e in events if e.action == "classify_document"]
    assert sorted(e.job_item for e in classified if e.job_item is not None) == [1, 2, 3, 4, 5, 6]
    assert {e.result_id for e in classified} == {str(result_id) for _, result_id in results}
    assert all(e.job_id == job_id and e.actor_subject == OWNER for e in classified)
    assert [e.action for e in events if e.job_item is None] == ["submit_job"]


def test_another_client_gets_404_and_an_auditor_may_read(
    owner: FlaskClient,
    client_as: Callable[..., FlaskClient],
    migrated_admin_url: str,
    audit_pseudonym_key: Path,
) -> None:
    job_id = _submit(owner, jsonl(*_lines(2, uuid.uuid4().hex[:8]))).json["job_id"]
    other = client_as(OTHER, "classifier")
    for answer in (
        other.get(f"/api/v1/jobs/{job_id}"),
        other.get(f"/api/v1/jobs/{job_id}/results"),
        other.post(f"/api/v1/jobs/{job_id}/cancel"),
    ):
        assert answer.status_code == 404
        assert answer.json["error"]["code"] == "not_found"
    unknown = other.get(f"/api/v1/jobs/{uuid.uuid4()}")
    assert unknown.status_code == 404 and unknown.json["error"] == {
        **unknown.json["error"], "message": "no such job"
    }  # fmt: skip
    auditor = client_as(AUDITOR, "auditor")
    assert auditor.get(f"/api/v1/jobs/{job_id}").status_code == 200
    read = auditor.get(f"/api/v1/jobs/{job_id}/results")
    assert read.status_code == 200
    own = owner.get(f"/api/v1/jobs/{job_id}/results").json["items"]
    assert [item["document_id"] for item in read.json["items"]] == [
        pseudonymise(audit_pseudonym_key.read_bytes().rstrip(b"\n"), item["document_id"])
        for item in own
    ]  # the auditor sees the ids as the audit log has them, not in clear
    assert auditor.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 403
    with _admin(migrated_admin_url) as admin:
        denied = admin.execute(
            "SELECT count(*) FROM audit_pending WHERE actor = %s AND outcome_status = 404"
            " AND position(convert_to(%s, 'UTF8') in event) > 0",
            (OTHER, job_id),
        ).fetchone()
    assert denied == (3,)  # each probe is on record, with the job id it asked for


def test_a_repeated_idempotency_key_answers_the_same_job(
    owner: FlaskClient, client_as: Callable[..., FlaskClient], migrated_admin_url: str
) -> None:
    body = jsonl(*_lines(3, uuid.uuid4().hex[:8]))
    key = uuid.uuid4().hex
    first = _submit(owner, body, **{"Idempotency-Key": key})
    again = _submit(owner, body, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.json["job_id"] == again.json["job_id"]
    other_body = _submit(owner, jsonl(*_lines(3, "changed")), **{"Idempotency-Key": key})
    assert other_body.status_code == 422
    assert other_body.json["error"]["code"] == "idempotency_key_reused"
    someone_else = _submit(client_as(OTHER, "classifier"), body, **{"Idempotency-Key": key})
    assert someone_else.json["job_id"] != first.json["job_id"]
    with _admin(migrated_admin_url) as admin:
        jobs = admin.execute(
            "SELECT count(*) FROM bulk_jobs WHERE idempotency_key = %s", (key,)
        ).fetchone()
    assert jobs == (2,)
    with _admin(migrated_admin_url) as admin:
        submissions = admin.execute(
            "SELECT count(*) FROM audit_pending WHERE action = 'submit_job'"
            " AND outcome_status = 202 AND position(convert_to(%s, 'UTF8') in event) > 0",
            (first.json["job_id"],),
        ).fetchone()
    assert submissions == (2,)  # the repeat is on record too, naming the job it answered


def test_cancelling_drops_the_pending_texts_and_nothing_is_classified(
    owner: FlaskClient,
    drain: Callable[[], None],
    fake_vllm: FakeVllm,
    migrated_admin_url: str,
) -> None:
    job_id = _submit(owner, jsonl(*_lines(5, uuid.uuid4().hex[:8]))).json["job_id"]
    cancelled = owner.post(f"/api/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json["state"] == "cancelled"
    assert cancelled.json["counts"]["cancelled"] == 5
    calls = fake_vllm.count("/v1/chat/completions")
    drain()
    assert fake_vllm.count("/v1/chat/completions") == calls
    with _admin(migrated_admin_url) as admin:
        rows = admin.execute(
            "SELECT state, ciphertext IS NULL, result_id FROM job_items WHERE job_id = %s",
            (job_id,),
        ).fetchall()
    assert rows == [("cancelled", True, None)] * 5


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"\n\n", NDJSON, 400, "invalid_request"),
        (b'{"document_id": "a", "text": "b"}\n', "application/json", 415, "unsupported_media_type"),
        (b'{"document_id": "a", "text": "b"}\n' * 4, NDJSON, 413, "payload_too_large"),
    ],
)
def test_bad_submissions_are_refused_whole(
    client_with: Callable[..., FlaskClient], body: bytes, content_type: str, status: int, code: str
) -> None:
    client = client_with(job_max_items=3)
    answer = client.post("/api/v1/jobs", data=body, content_type=content_type)
    assert answer.status_code == status
    assert answer.json["error"]["code"] == code


def test_without_a_job_key_no_job_is_accepted(client_with: Callable[..., FlaskClient]) -> None:
    answer = _submit(client_with(job_key_path=None), jsonl(*_lines(1, "k")))
    assert answer.status_code == 503
    assert answer.json["error"]["code"] == "job_key_unavailable"
    assert "Retry-After" in answer.headers


def test_an_item_is_stored_once_however_often_it_is_classified(
    owner: FlaskClient, services: Services, migrated_admin_url: str
) -> None:
    """Two workers on the same item (a chunk retried while its first worker still runs): the
    one that commits second finds the item done and stores nothing."""
    job_id = uuid.UUID(_submit(owner, jsonl(*_lines(1, uuid.uuid4().hex[:8]))).json["job_id"])
    document = Document("twice", "Discharge summary, written twice.")
    context = RequestContext("job-test", identity("classifier", name=OWNER), None)
    services.classification.classify(document, context, ItemWrite(services.engine, job_id, 1))
    with pytest.raises(ItemNotPending):
        services.classification.classify(document, context, ItemWrite(services.engine, job_id, 1))
    with _admin(migrated_admin_url) as admin:
        stored = admin.execute(
            "SELECT count(*) FROM classification_results WHERE document_id = 'twice'"
        ).fetchone()
    assert stored == (1,)


def test_the_queue_is_in_the_metrics_without_ids(
    owner: FlaskClient,
    drain: Callable[[], None],
    client_as: Callable[..., FlaskClient],
) -> None:
    tag = uuid.uuid4().hex[:8]
    _submit(owner, jsonl(*_lines(3, tag), "{broken"))
    scraper = client_as("spiffe://hospital/svc/prometheus", "metrics")

    def sample(name: str) -> float:
        page = scraper.get("/metrics").get_data(as_text=True)
        assert tag not in page
        line = next(line for line in page.splitlines() if line.startswith(name + " "))
        return float(line.split()[-1])

    pending = 'appliance_job_items_pending'
    done = 'appliance_job_items_finished_total{state="done"}'
    malformed = 'appliance_job_item_failures_total{reason="malformed_json"}'
    assert sample(pending) >= 3
    before_done, before_malformed = sample(done), sample(malformed)
    drain()
    assert sample(pending) == 0
    assert sample(done) == before_done + 3
    assert sample(malformed) == before_malformed
    # Other tests' queue tasks (callbacks waiting out their backoff) share the database.
    assert sample('appliance_job_queue_chunks{status="todo"}') >= 0


def test_workers_ask_vllm_with_their_priority_and_the_api_without(
    owner: FlaskClient, job_settings: Settings, fake_vllm: FakeVllm
) -> None:
    """vLLM schedules lower numbers first (with --scheduling-policy priority): a worker set to
    a higher number lets interactive calls overtake its items; the API sends none (0)."""
    from appliance.jobs.worker import run_worker
    from appliance.services import build_services

    tag = uuid.uuid4().hex[:8]
    _submit(owner, jsonl(*_lines(2, tag)))
    assert owner.post(
        "/api/v1/classify-document", json={"document_id": "now", "text": "Urgent lab result."}
    ).status_code == 200  # fmt: skip
    worker_services = build_services(job_settings.model_copy(update={"vllm_request_priority": 7}))
    try:
        run_worker(worker_services, wait=False)
    finally:
        worker_services.close()
    chats = [body for path, body in fake_vllm.requests if path == "/v1/chat/completions"]
    interactive = [c for c in chats if "Urgent lab result" in json.dumps(c)]
    from_jobs = [c for c in chats if tag in json.dumps(c)]
    assert len(interactive) == 1 and "priority" not in interactive[0]
    assert len(from_jobs) == 2 and all(c["priority"] == 7 for c in from_jobs)


def test_a_chunk_whose_end_was_never_recorded_is_run_again(
    owner: FlaskClient, job_settings: Settings, migrated_admin_url: str
) -> None:
    """procrastinate lost the database between a chunk's end and its acknowledgement: the chunk
    stays 'doing' under a worker whose heartbeat goes on. Past the chunk time bound another
    worker runs it; its items are stored once."""
    from appliance.jobs.worker import run_worker
    from appliance.services import build_services

    job_id = _submit(owner, jsonl(*_lines(2, uuid.uuid4().hex[:8]))).json["job_id"]
    with _admin(migrated_admin_url) as admin:
        alive = admin.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() + interval '1 hour')"
            " RETURNING id"
        ).fetchone()
        assert alive is not None
        chunk = admin.execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s"
            " WHERE args ->> 'job_id' = %s RETURNING id",
            (alive[0], job_id),
        ).fetchone()
        assert chunk is not None
        admin.execute(  # it started an hour ago (procrastinate's trigger logged it as now)
            "UPDATE procrastinate_events SET at = now() - interval '1 hour' WHERE job_id = %s",
            chunk,
        )
    settings = job_settings.model_copy(
        update={"worker_stalled_after_s": 2.0, "worker_chunk_timeout_s": 600.0}
    )
    services = build_services(settings)
    deadline = time.monotonic() + 30
    try:
        while owner.get(f"/api/v1/jobs/{job_id}").json["state"] != "done":
            assert time.monotonic() < deadline, "the overdue chunk was never run again"
            run_worker(services, wait=False)
            time.sleep(0.5)
    finally:
        services.close()
        with _admin(migrated_admin_url) as admin:
            admin.execute("DELETE FROM procrastinate_workers WHERE id = %s", alive)
