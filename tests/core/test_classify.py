"""Classifying through the HTTP API on a real database, with the scripted upstream."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select

from appliance.backends import vllm
from appliance.classification import labeller
from appliance.classification.models import ClassificationResult
from appliance.classification.taxonomy import load_taxonomy
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, ROLES
from harness.fake_vllm import FakeVllm, delay
from harness.identity import identity
from tests.common.doubles import RecordingSink

LABELS = set(load_taxonomy(None).names)


def classify(client: FlaskClient, document_id: str, text: str, **extra: object) -> dict:
    response = client.post(
        "/api/v1/classify-document", json={"document_id": document_id, "text": text, **extra}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def stored_rows(database_url: str) -> int:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        count = connection.scalar(select(func.count()).select_from(ClassificationResult))
    engine.dispose()
    return int(count or 0)


def test_result_is_a_label_with_scores_summing_to_one(client: FlaskClient) -> None:
    body = classify(client, "MRN-00017/visit-3", "CBC: WBC 6.1, Hb 13.2, platelets 250.")
    assert body["classification"] in LABELS
    assert set(body["scores"]) == LABELS
    assert math.isclose(sum(body["scores"].values()), 1.0, abs_tol=1e-9)
    assert body["confidence"] == body["scores"][body["classification"]]
    assert body["confidence"] == max(body["scores"].values())
    assert body["cached"] is False and body["truncated"] is False
    assert body["taxonomy_version"] == load_taxonomy(None).version
    assert uuid.UUID(body["result_id"])
    assert body["timestamp"].endswith("Z")


def test_stored_result_is_retrievable_with_history(client: FlaskClient) -> None:
    first = classify(client, "doc/1", "Invoice 77 for services rendered, balance due.")
    second = classify(client, "doc/1", "Invoice 78, a different document body.")
    response = client.get("/api/v1/classifications/doc/1")
    assert response.status_code == 200
    body = response.get_json()
    assert body["result_id"] == second["result_id"]
    assert [item["result_id"] for item in body["history"]] == [
        second["result_id"],
        first["result_id"],
    ]


def test_repeat_is_cached_without_upstream_call(client: FlaskClient, fake_vllm: FakeVllm) -> None:
    first = classify(client, "doc-a", "Discharge summary:  patient\nstable.")
    calls = fake_vllm.count("/v1/chat/completions")
    again = classify(client, "doc-a", "Discharge summary: patient stable.")
    other = classify(client, "doc-b", "Discharge summary: patient stable.")
    assert fake_vllm.count("/v1/chat/completions") == calls
    assert again["cached"] and again["result_id"] == first["result_id"]
    assert other["cached"] and other["result_id"] != first["result_id"]
    assert other["scores"] == first["scores"]
    assert (
        client.get("/api/v1/classifications/doc-b").get_json()["classification"]
        == (first["classification"])
    )


def _swap_weights(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    return {"model_weights_digest": "sha256:" + "1" * 64}


def _new_prompt(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setattr(labeller, "question", lambda text: f"Text:\n{text}\nCategory:")
    return {}


def _new_decoding(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setitem(vllm.DECODING, "temperature", 0.5)
    return {}


def _new_budget(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    return {"max_document_tokens": 999}


@pytest.mark.parametrize("change", [_swap_weights, _new_prompt, _new_decoding, _new_budget])
def test_a_result_is_reused_only_from_the_same_model_call(
    make_client: Callable[..., FlaskClient],
    fake_vllm: FakeVllm,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[pytest.MonkeyPatch], dict[str, object]],
) -> None:
    """Same served model name and taxonomy, but weights, prompt, decoding or budget changed."""
    text = "Prior authorization request for an MRI of the left knee."
    first = classify(make_client(), "doc", text)
    changed = make_client(**change(monkeypatch))
    calls = fake_vllm.count("/v1/chat/completions")
    again = classify(changed, "doc", text)
    assert fake_vllm.count("/v1/chat/completions") == calls + 1
    assert again["cached"] is False and again["result_id"] != first["result_id"]
    assert classify(changed, "doc", text)["cached"] is True


def test_a_reused_result_is_judged_by_todays_review_threshold(
    make_client: Callable[..., FlaskClient],
) -> None:
    text = "Referral letter for cardiology follow-up."
    first = classify(make_client(review_threshold=0.0), "doc", text)
    assert first["needs_review"] is False
    strict = make_client(review_threshold=1.0)
    again = classify(strict, "doc", text)
    assert again["cached"] is True and again["needs_review"] is True
    queue = strict.get("/api/v1/review-queue?limit=10").get_json()["results"]
    assert [item["result_id"] for item in queue] == [again["result_id"]]
    assert classify(make_client(review_threshold=0.0), "doc", text)["needs_review"] is False


def test_low_confidence_needs_review(make_client: Callable[..., FlaskClient]) -> None:
    client = make_client("classifier", review_threshold=1.0)
    assert classify(client, "doc", "Some letter.")["needs_review"] is True


def test_long_document_is_truncated_to_the_token_budget(
    make_client: Callable[..., FlaskClient], fake_vllm: FakeVllm
) -> None:
    client = make_client("classifier", max_document_tokens=16)
    words = [f"word{i}" for i in range(100)]
    assert classify(client, "long", " ".join(words))["truncated"] is True
    prompt = fake_vllm.requests[-1][1]["messages"][-1]["content"]
    assert "word15" in prompt and "word16" not in prompt
    assert classify(client, "short", "just a few words")["truncated"] is False


def test_prompt_prefix_is_identical_across_documents(
    client: FlaskClient, fake_vllm: FakeVllm
) -> None:
    classify(client, "one", "First document.")
    classify(client, "two", "Second document.")
    chats = [payload for path, payload in fake_vllm.requests if path == "/v1/chat/completions"]
    assert chats[0]["messages"][0] == chats[1]["messages"][0]
    assert chats[0]["structured_outputs"] == {"choice": ["A", "B", "C", "D", "E"]}
    assert "First document." not in chats[0]["messages"][0]["content"]


def test_audit_event_per_classification_without_text(
    client: FlaskClient, audit_sink: RecordingSink
) -> None:
    body = classify(client, "MRN-1", "Patient Jane Roe, date of birth 1970-01-01.", user_id="u7")
    event = audit_sink.events[-1]
    assert event.action == "classify_document"
    assert event.result_id == body["result_id"]
    assert event.document_id == "MRN-1" and event.on_behalf_of == "u7"
    assert event.content_sha256 and len(event.content_sha256) == 64
    assert "Jane" not in repr(audit_sink.events)


def test_audit_failure_stores_nothing(
    client: FlaskClient, audit_sink: RecordingSink, clean_database: str
) -> None:
    audit_sink.fail = True
    response = client.post("/api/v1/classify-document", json={"document_id": "d", "text": "x"})
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert stored_rows(clean_database) == 0


def test_batch_keeps_order_isolates_bad_items_and_runs_concurrently(
    client: FlaskClient, fake_vllm: FakeVllm, clean_database: str
) -> None:
    fake_vllm.script(*[delay(0.2)] * 8)
    documents: list[object] = [{"document_id": f"b{i}", "text": f"Document {i}."} for i in range(8)]
    documents.insert(3, {"document_id": "bad", "text": "   "})
    documents.insert(5, "not an object")
    response = client.post("/api/v1/classify-batch", json={"documents": documents})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == 10
    assert results[3] == {
        "document_id": "bad",
        "error": {
            "code": "invalid_request",
            "message": results[3]["error"]["message"],
            "request_id": response.headers["X-Request-ID"],
        },
    }
    assert results[5]["document_id"] is None and results[5]["error"]["code"] == "invalid_request"
    good = [item for index, item in enumerate(results) if index not in (3, 5)]
    assert [item["document_id"] for item in good] == [f"b{i}" for i in range(8)]
    assert all(item["classification"] in LABELS for item in good)
    assert fake_vllm.max_in_flight > 1
    assert stored_rows(clean_database) == 8


def test_request_id_is_echoed_or_generated(client: FlaskClient) -> None:
    echoed = client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    generated = client.get("/health/live", headers={"X-Request-ID": "bad id\u0007"})
    assert generated.headers["X-Request-ID"] not in ("", "bad id\u0007")


@pytest.mark.parametrize("roles", [(), ("reader",), ("auditor", "metrics")])
def test_classify_needs_the_classifier_role(client: FlaskClient, roles: tuple[str, ...]) -> None:
    client.environ_base[IDENTITY_ENVIRON_KEY] = identity(*roles)
    response = client.post("/api/v1/classify-document", json={"document_id": "d", "text": "t"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


def test_no_identity_is_refused(client: FlaskClient) -> None:
    del client.environ_base[IDENTITY_ENVIRON_KEY]
    response = client.get("/api/v1/classifications/x")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthenticated"


def test_reader_reads_but_unknown_document_is_404(client: FlaskClient) -> None:
    client.environ_base[IDENTITY_ENVIRON_KEY] = identity("reader")
    response = client.get("/api/v1/classifications/never-seen")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_metrics_need_the_metrics_role_and_count_requests(client: FlaskClient) -> None:
    classify(client, "m1", "Lab result: potassium 4.1 mmol/L.")
    page = client.get("/metrics")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'appliance_http_requests_total{method="POST",route="/api/v1/classify-document"' in text
    assert "appliance_classification_confidence_bucket" in text
    assert "m1" not in text
    client.environ_base[IDENTITY_ENVIRON_KEY] = identity("classifier")
    assert client.get("/metrics").status_code == 403


def test_every_role_exists(client: FlaskClient) -> None:
    assert {"classifier", "reader", "reviewer", "auditor", "admin", "metrics"} == ROLES
