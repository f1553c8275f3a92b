"""End to end: real gunicorn with mutual TLS, real PostgreSQL, real vLLM on the CPU (tiny model).

The tiny model is a plumbing model, not an accuracy model: these tests check that answers are
labels of the taxonomy with real, normalised scores, not which label a document gets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import httpx
import pytest

from appliance.backends.vllm import VllmBackend, chat_request
from appliance.classification.labeller import Labeller
from appliance.classification.taxonomy import load_taxonomy
from appliance.settings import Settings
from harness import postgres
from harness.stack import Stack, appliance_stack
from harness.upstream import VllmEndpoint
from tests.e2e.test_vllm_transport import client_for

pytestmark = pytest.mark.vllm

LABELS = set(load_taxonomy(None).names)
DOCUMENTS = {
    "E2E-1/note": "Progress note. Patient seen on rounds, afebrile, wound healing well. "
    "Plan: continue oral antibiotics, review in two days.",
    "E2E-2/bill": "Statement of account. Office visit CPT 99213, amount due $145.00. "
    "Please remit payment within 30 days.",
    "E2E-3/auth": "Prior authorization request for MRI of the lumbar spine. Insurer reference "
    "PA-5531. Decision: approved for one study.",
    "E2E-4/lab": "Laboratory report. Potassium 4.1 mmol/L, sodium 139 mmol/L, creatinine "
    "0.9 mg/dL. Reference ranges attached.",
}


@pytest.fixture(scope="module")
def stack(
    create_database: Callable[..., str], vllm_server: VllmEndpoint, logins: postgres.Logins
) -> Iterator[Stack]:
    with appliance_stack(create_database(), vllm_server, logins) as running:
        running.wait_started()
        yield running


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=120, **stack.client_options()) as client:  # type: ignore[arg-type]
        yield client


def check_result(body: dict, document_id: str) -> None:
    assert body["document_id"] == document_id
    assert body["classification"] in LABELS
    assert set(body["scores"]) == LABELS
    assert math.isclose(sum(body["scores"].values()), 1.0, abs_tol=1e-6)
    assert 0.0 < body["confidence"] <= 1.0
    assert body["confidence"] == body["scores"][body["classification"]]
    assert body["model"] == "smollm2-135m"


def test_classifies_documents_and_stores_them(api: httpx.Client) -> None:
    results = {}
    for document_id, text in DOCUMENTS.items():
        response = api.post(
            "/api/v1/classify-document", json={"document_id": document_id, "text": text}
        )
        assert response.status_code == 200, response.text
        check_result(response.json(), document_id)
        assert response.json()["cached"] is False
        results[document_id] = response.json()
    confidences = {round(body["confidence"], 6) for body in results.values()}
    assert len(confidences) > 1, "confidence must come from the model, not a constant"
    for document_id, body in results.items():
        stored = api.get(f"/api/v1/classifications/{document_id}")
        assert stored.status_code == 200
        assert stored.json()["result_id"] == body["result_id"]
        assert stored.json()["scores"] == pytest.approx(body["scores"])


def test_repeat_is_cached(api: httpx.Client) -> None:
    document = {"document_id": "E2E-5/repeat", "text": DOCUMENTS["E2E-4/lab"] + " Repeat."}
    first = api.post("/api/v1/classify-document", json=document).json()
    again = api.post("/api/v1/classify-document", json=document).json()
    assert first["cached"] is False and again["cached"] is True
    assert again["result_id"] == first["result_id"]
    assert again["scores"] == first["scores"]


def test_batch_classifies_concurrently(api: httpx.Client) -> None:
    documents = [
        {"document_id": f"E2E-B{i}", "text": f"{text} Copy {i}."}
        for i, text in enumerate(DOCUMENTS.values())
    ]
    response = api.post("/api/v1/classify-batch", json={"documents": documents})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    for document, result in zip(documents, results, strict=True):
        check_result(result, document["document_id"])


def classify_requests_counted(api: httpx.Client) -> float:
    page = api.get("/metrics")
    assert page.status_code == 200
    assert "E2E-" not in page.text, "document ids must never be metric labels"
    prefix = 'appliance_http_requests_total{method="POST",route="/api/v1/classify-document"'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in page.text.splitlines() if line.startswith(prefix)
    )


def test_metrics_are_aggregated_across_workers(stack: Stack, api: httpx.Client) -> None:
    before = classify_requests_counted(api)
    for i in range(6):  # a new connection each, so gunicorn spreads them over both workers
        with httpx.Client(base_url=stack.url, timeout=60, **stack.client_options()) as fresh:  # type: ignore[arg-type]
            response = fresh.post(
                "/api/v1/classify-document",
                json={"document_id": f"E2E-M{i}", "text": "Appointment reminder."},
            )
            assert response.status_code == 200
    assert classify_requests_counted(api) - before == 6


def test_tokens_stored_are_what_vllm_counts_for_the_same_request(
    api: httpx.Client, vllm_server: VllmEndpoint
) -> None:
    """The same question asked of vLLM directly: its ``usage`` is what the result shows, and
    the upper bound a quota reserves before the call holds for the real chat template."""
    text = DOCUMENTS["E2E-3/auth"] + " Tokens."
    answer = api.post("/api/v1/classify-document", json={"document_id": "E2E-T", "text": text})
    assert answer.status_code == 200, answer.text
    client = client_for(vllm_server)
    try:
        budget = Settings().max_document_tokens
        labeller = Labeller(VllmBackend(client), load_taxonomy(None), budget)
        usage = client.chat(chat_request(labeller.prompt(text)))["usage"]
        estimate = labeller.token_estimate(text)
    finally:
        client.close()
    assert answer.json()["usage"]["prompt_tokens"] == usage["prompt_tokens"] > 0
    assert answer.json()["usage"]["completion_tokens"] == usage["completion_tokens"] == 1
    assert estimate >= usage["prompt_tokens"] + usage["completion_tokens"]
