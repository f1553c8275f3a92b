"""Per-label review thresholds: taxonomy field, version stability, and the service using them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from appliance.audit_bridge.recorder import AuditRecorder
from appliance.backends.vllm import VllmBackend
from appliance.backends.vllm_client import VllmClient, VllmConfig
from appliance.classification.interfaces import Document
from appliance.classification.labeller import Labeller
from appliance.classification.services import ClassificationService
from appliance.classification.taxonomy import TaxonomyError, load_taxonomy, parse_taxonomy
from appliance.context import RequestContext
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.settings import Settings
from appliance.usage.metering import Meter
from appliance.usage.quotas import QuotaService
from harness.fake_vllm import FakeVllm, Fault, chat_body
from harness.identity import identity
from tests.common.apps import app_over
from tests.common.doubles import RecordingSink

TAXONOMY = """
labels:
  - {name: BILLING, description: invoices, review_threshold: 0.99}
  - {name: ADMINISTRATIVE, description: letters, review_threshold: 0.0}
  - {name: TEST_RESULTS, description: labs}
"""


def scripted(chosen: str, probabilities: dict[str, float]) -> Fault:
    def fault(handler: Any) -> bool:
        handler.send(200, json.dumps(chat_body(probabilities, chosen)).encode())
        return True

    return fault


def test_thresholds_parse_and_validate() -> None:
    taxonomy = parse_taxonomy(TAXONOMY, "test")
    assert taxonomy.review_thresholds == {"BILLING": 0.99, "ADMINISTRATIVE": 0.0}
    with pytest.raises(TaxonomyError):
        parse_taxonomy(TAXONOMY.replace("0.99", "1.5"), "test")


def test_unset_thresholds_keep_the_version() -> None:
    default = load_taxonomy(None)
    with_none = default.model_dump(mode="json")
    assert all(label["review_threshold"] is None for label in with_none["labels"])
    # Pinned: the built-in taxonomy's version from before the field existed.
    assert default.version == (
        "sha256:4fe20d18165a4aea9e76897cdb0a7ff6187340596d363735a6c017d64f4e64a5"
    )
    changed = parse_taxonomy(TAXONOMY, "a")
    unchanged = parse_taxonomy(TAXONOMY.replace(", review_threshold: 0.99", ""), "b")
    assert changed.version != unchanged.version



def test_service_uses_the_label_threshold(fake_vllm: FakeVllm, migrated_database_url: str) -> None:
    taxonomy = parse_taxonomy(TAXONOMY, "test")
    client = VllmClient(VllmConfig(base_url=fake_vllm.url, model="m", max_retries=0))
    engine = create_engine(migrated_database_url)
    service = ClassificationService(
        engine=engine,
        labeller=Labeller(VllmBackend(client), taxonomy, 1000),
        taxonomy_version=taxonomy.version,
        review_threshold=0.5,
        audit=AuditRecorder(RecordingSink()),
        max_concurrency=2,
        quotas=QuotaService(engine, {}),
        meter=Meter({}),
        label_thresholds=taxonomy.review_thresholds,
    )
    context = RequestContext(request_id="r", identity=None, source_address=None)
    try:
        assert service.review_threshold("BILLING") == 0.99
        assert service.review_threshold("TEST_RESULTS") == 0.5
        fake_vllm.script(
            scripted("A", {"A": 0.9, "B": 0.1}),
            scripted("B", {"A": 0.25, "B": 0.3, "C": 0.45}),
            scripted("C", {"A": 0.3, "B": 0.3, "C": 0.4}),
        )
        billing = service.classify(Document("t-1", "threshold test one"), context)
        admin = service.classify(Document("t-2", "threshold test two"), context)
        labs = service.classify(Document("t-3", "threshold test three"), context)
    finally:
        client.close()
        engine.dispose()
    # Under the global 0.5 alone these would be False, True, True.
    assert (billing.label, billing.confidence, billing.needs_review) == ("BILLING", 0.9, True)
    assert (admin.label, admin.confidence, admin.needs_review) == ("ADMINISTRATIVE", 0.3, False)
    assert (labs.label, labs.needs_review) == ("TEST_RESULTS", True)


def test_the_app_uses_the_taxonomy_thresholds(
    fake_vllm: FakeVllm, migrated_database_url: str, tmp_path: Path
) -> None:
    """Global threshold 1.0 (everything needs review) but every label says 0.0 (nothing does)."""
    path = tmp_path / "taxonomy.yaml"
    path.write_text(TAXONOMY.replace("0.99", "0.0").replace("labs}", "labs, review_threshold: 0}"))
    settings = Settings(
        database_url=migrated_database_url,
        vllm_base_url=fake_vllm.url,
        taxonomy_path=path,
        review_threshold=1.0,
        database_pool_size=2,
    )
    with app_over(settings, audit_sink=RecordingSink()) as app:
        client = app.test_client()
        client.environ_base[IDENTITY_ENVIRON_KEY] = identity("classifier")
        response = client.post(
            "/api/v1/classify-document", json={"document_id": "t-app", "text": "wired?"}
        )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["needs_review"] is False
