"""The review flow through the HTTP API on a real PostgreSQL: queue, review, history, audit."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text

from appliance.classification.taxonomy import load_taxonomy
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.web import services_of
from audit import pseudonym
from harness.identity import identity
from tests.common.apps import app_over
from tests.common.doubles import RecordingSink
from tests.review.conftest import REVIEWER

LABELS = load_taxonomy(None).names


def classify(client: FlaskClient, document_id: str, text_: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/classify-document", json={"document_id": document_id, "text": text_}
    )
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def other_label(label: str) -> str:
    return next(name for name in LABELS if name != label)


def queue(client: FlaskClient, query: str = "") -> dict[str, Any]:
    response = client.get(f"/api/v1/review-queue{query}")
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def audit_events(database_url: str, action: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT actor, event FROM audit_pending WHERE action = :a ORDER BY id"),
            {"a": action},
        ).all()
    engine.dispose()
    return [{"actor": actor, **json.loads(bytes(event))} for actor, event in rows]


def test_review_adds_to_history_leaves_result_and_is_audited(
    classifier: FlaskClient, reviewer: FlaskClient, clean_database: str, audit_pseudonym_key: Path
) -> None:
    key = audit_pseudonym_key.read_bytes().strip()
    first = classify(classifier, "MRN-9/visit-1", "Pathology report: benign nevus, margins clear.")
    second = classify(classifier, "MRN-9/visit-2", "Claim 4411 denied, resubmit with modifier.")
    assert first["needs_review"] and second["needs_review"]
    assert [item["result_id"] for item in queue(reviewer)["results"]] == [
        first["result_id"],
        second["result_id"],
    ]
    corrected = other_label(first["classification"])
    confusion = {"model_label": first["classification"], "review_label": corrected}
    reviews_before = REGISTRY.get_sample_value("appliance_reviews_total", confusion) or 0.0
    response = reviewer.post(
        f"/api/v1/classifications/{first['result_id']}/review",
        json={"label": corrected, "note": "pathology goes to results"},
    )
    assert response.status_code == 201, response.get_json()
    made = response.get_json()
    assert made["classification"] == corrected
    assert made["model_classification"] == first["classification"]
    assert made["reviewer"] == REVIEWER
    assert made["result_id"] == first["result_id"]
    assert made["taxonomy_version"] == load_taxonomy(None).version
    assert made["audit_event_id"]
    assert REGISTRY.get_sample_value("appliance_reviews_total", confusion) == reviews_before + 1

    # The reviewed result left the queue; the other one is still there.
    assert [item["result_id"] for item in queue(reviewer)["results"]] == [second["result_id"]]

    # History: the review first (newest), then the model's result, unchanged.
    history = classifier.get("/api/v1/classifications/MRN-9/visit-1").get_json()
    assert history["result_id"] == first["result_id"]
    assert history["classification"] == first["classification"]
    assert [(item["source"], item["classification"]) for item in history["history"]] == [
        ("review", corrected),
        ("model", first["classification"]),
    ]
    assert history["history"][0]["review_id"] == made["review_id"]

    # Audited in the same transaction, without the note.
    events = [
        event
        for event in audit_events(clean_database, "review_classification")
        if event["result_id"] == first["result_id"]
    ]
    assert len(events) == 1
    assert events[0]["actor"] == REVIEWER
    assert events[0]["event_id"] == made["audit_event_id"]
    assert events[0]["content_sha256"].startswith(pseudonym.PREFIX)
    assert events[0]["resource"] == pseudonym.pseudonymise(key, "MRN-9/visit-1")
    assert events[0]["review_label"] == made["classification"]
    assert "pathology goes to results" not in json.dumps(events)


def test_queue_pages_with_after(classifier: FlaskClient, reviewer: FlaskClient) -> None:
    ids = [classify(classifier, f"doc-{i}", f"Letter number {i}.")["result_id"] for i in range(5)]
    page = queue(reviewer, "?limit=2")
    assert [item["result_id"] for item in page["results"]] == ids[:2]
    assert page["next_after"] == ids[1]
    page = queue(reviewer, f"?limit=2&after={page['next_after']}")
    assert [item["result_id"] for item in page["results"]] == ids[2:4]
    page = queue(reviewer, f"?limit=2&after={page['next_after']}")
    assert [item["result_id"] for item in page["results"]] == ids[4:]
    assert page["next_after"] is None


def test_bad_queue_parameters(reviewer: FlaskClient) -> None:
    for query in ("?limit=0", "?limit=501", "?limit=x", "?limit=", "?after=nope"):
        response = reviewer.get(f"/api/v1/review-queue{query}")
        assert response.status_code == 400, query
        assert response.get_json()["error"]["code"] == "invalid_request"
    # a well-formed cursor naming no result: the document's contract says 404
    response = reviewer.get(f"/api/v1/review-queue?after={uuid.uuid4()}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_roles_and_denials_are_audited(
    make_client: Callable[..., FlaskClient],
    classifier: FlaskClient,
    reviewer: FlaskClient,
    clean_database: str,
) -> None:
    result = classify(classifier, "doc", "Referral needs approval.")
    others = make_client("classifier", "reader", "auditor", "admin", "metrics")
    run = uuid.uuid4().hex
    response = others.get("/api/v1/review-queue", headers={"X-Request-ID": f"{run}-1"})
    assert response.status_code == 403
    response = others.post(
        f"/api/v1/classifications/{result['result_id']}/review",
        json={"label": "BILLING"},
        headers={"X-Request-ID": f"{run}-2"},
    )
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    assert (
        reviewer.get("/api/v1/review-queue", headers={"X-Request-ID": f"{run}-3"}).status_code
        == 200
    )
    events = {
        event["request_id"]: (event["action"], event["actor"], event["outcome_status"])
        for action in ("read_review_queue", "review_classification")
        for event in audit_events(clean_database, action)
        if event["request_id"].startswith(run)
    }
    assert events == {
        f"{run}-1": ("read_review_queue", "spiffe://hospital/svc/intake", 403),
        f"{run}-2": ("review_classification", "spiffe://hospital/svc/intake", 403),
        f"{run}-3": ("read_review_queue", REVIEWER, 200),
    }


def test_bad_reviews(classifier: FlaskClient, reviewer: FlaskClient) -> None:
    result_id = classify(classifier, "doc", "Appointment on Tuesday.")["result_id"]
    cases = [
        (result_id, {"label": "NOT_A_LABEL"}, 400),
        (result_id, {"label": "billing"}, 400),
        (result_id, {"label": "BILLING", "reviewer": "someone-else"}, 400),
        (result_id, {"label": "BILLING", "note": "x" * 2001}, 400),
        (result_id, {}, 400),
        (str(uuid.uuid4()), {"label": "BILLING"}, 404),
        ("not-a-uuid", {"label": "BILLING"}, 404),
    ]
    for target, body, status in cases:
        response = reviewer.post(f"/api/v1/classifications/{target}/review", json=body)
        assert response.status_code == status, (body, response.get_json())
    assert len(queue(reviewer)["results"]) == 1


def test_reviewing_twice_keeps_both_and_corrections_take_the_latest(
    app: Flask, classifier: FlaskClient, reviewer: FlaskClient
) -> None:
    result = classify(classifier, "doc", "Consent to release records to the insurer.")
    for label in ("BILLING", "AUTHORIZATION"):
        response = reviewer.post(
            f"/api/v1/classifications/{result['result_id']}/review", json={"label": label}
        )
        assert response.status_code == 201
    history = classifier.get("/api/v1/classifications/doc").get_json()["history"]
    assert [item["classification"] for item in history[:2]] == ["AUTHORIZATION", "BILLING"]
    corrections = services_of(app).review.corrections()
    assert [(str(c.result_id), c.predicted, c.gold) for c in corrections] == [
        (result["result_id"], result["classification"], "AUTHORIZATION")
    ]


def test_no_review_is_stored_when_the_audit_write_fails(
    app: Flask, classifier: FlaskClient, reviewer: FlaskClient
) -> None:
    result_id = classify(classifier, "doc", "Statement of account.")["result_id"]
    sink = RecordingSink()
    sink.fail = True
    with app_over(services_of(app).settings, audit_sink=sink) as failing:
        client = failing.test_client()
        client.environ_base[IDENTITY_ENVIRON_KEY] = identity("reviewer", name=REVIEWER)
        response = client.post(
            f"/api/v1/classifications/{result_id}/review", json={"label": "BILLING"}
        )
    assert response.status_code == 500
    assert [item["result_id"] for item in queue(reviewer)["results"]] == [result_id]
    history = classifier.get("/api/v1/classifications/doc").get_json()["history"]
    assert [item["source"] for item in history] == ["model"]
