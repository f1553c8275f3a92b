"""The log says what was decided: each classification event carries the answer and what produced
it, each review event the reviewer's label; and no document text or raw document id reaches
it, under the configuration every install path writes (a pseudonym key)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from appliance.audit_bridge.interfaces import Action
from appliance.classification.content import content_sha256
from appliance.classification.interfaces import Document
from appliance.cli import cli
from appliance.context import RequestContext
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.services import build_services
from appliance.settings import Settings
from audit.chain import scores_digest
from audit.errors import KeyFileError
from audit.pseudonym import pseudonymise
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from harness.fake_vllm import FakeVllm
from harness.identity import identity
from harness.postgres import Logins, sqlalchemy_url
from harness.tls import DevPki
from tests.audit.conftest import ORIGIN
from tests.audit.test_cli import run
from tests.common.apps import app_over
from tests.common.doubles import ScriptedBackend

DOC, OTHER_DOC = "MRN-00017/visit-3", "MRN-00018/visit-1"
TEXT = "Patient Jane Roe, DOB 1961-02-03. Lab results: HbA1c 6.1 %, LDL 2.9 mmol/L."
WEIGHTS = "sha256:" + "ab" * 32


@pytest.fixture
def app(audit_db: str, logins: Logins, fake_vllm: FakeVllm, key_files: Path) -> Iterator[Flask]:
    """The API as installed: the app's login, the pseudonym key from the environment."""
    settings = Settings(
        database_url=sqlalchemy_url(logins.url(audit_db, logins.app)),
        vllm_base_url=fake_vllm.url,
        database_pool_size=2,
        model_weights_digest=WEIGHTS,
        audit_origin=ORIGIN,
    )
    assert settings.audit_pseudonym_key_path is not None  # what the install wrote
    with app_over(settings) as application:
        yield application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base[IDENTITY_ENVIRON_KEY] = identity("classifier", "reviewer")  # type: ignore[assignment]
    return client


def sealed_events(audit_db: str, sealer_url: str, signer: Signer, state: SealerState) -> list[Any]:
    """Seal what is pending, then every entry's event, decoded from its stored bytes."""
    sealer = Sealer(sealer_url, signer, state)
    sealer.run_once()
    sealer.close()
    with psycopg.connect(audit_db) as conn:
        rows = conn.execute("SELECT entry FROM audit_entries ORDER BY seq").fetchall()
    return [json.loads(bytes(row[0]))["event"] for row in rows]


def classify(client: FlaskClient, document_id: str) -> dict[str, Any]:
    answer = client.post(
        "/api/v1/classify-document", json={"document_id": document_id, "text": TEXT}
    )
    assert answer.status_code == 200, answer.get_json()
    return dict(answer.get_json())


def test_events_carry_the_decision_and_no_text_or_raw_id(
    client: FlaskClient,
    audit_db: str,
    sealer_url: str,
    signer: Signer,
    state: SealerState,
    audit_pseudonym_key: Path,
) -> None:
    first = classify(client, DOC)
    copied = classify(client, OTHER_DOC)  # same text, another document: a copy of the result
    review = client.post(f"/api/v1/classifications/{first['result_id']}/review",
                         json={"label": "BILLING", "note": "Jane Roe's invoice"})  # fmt: skip
    assert review.status_code == 201, review.get_json()
    events = sealed_events(audit_db, sealer_url, signer, state)

    by_result = {e["result_id"]: e for e in events if e["action"] == "classify_document"}
    fresh, reused = by_result[first["result_id"]], by_result[copied["result_id"]]
    assert fresh["v"] == 2
    decided = (fresh["label"], float(fresh["confidence"]))
    assert decided == (first["classification"], first["confidence"])
    assert fresh["scores_sha256"] == scores_digest(first["scores"])
    assert (fresh["model"], fresh["model_digest"]) == (first["model"], WEIGHTS)
    assert fresh["taxonomy_version"] == first["taxonomy_version"]
    assert (
        len(fresh["prompt_version"]) == 64 and fresh["prompt_version"] == reused["prompt_version"]
    )
    assert (fresh["truncated"], fresh["cached"], fresh.get("cached_from")) == (False, False, None)
    assert (reused["cached"], reused["cached_from"]) == (True, first["result_id"])
    [reviewed] = [e for e in events if e["action"] == "review_classification"]
    assert (reviewed["review_label"], reviewed["result_id"]) == ("BILLING", first["result_id"])
    assert reviewed["review_id"] == review.get_json()["review_id"]

    key = audit_pseudonym_key.read_bytes().strip()
    assert fresh["resource"] == pseudonymise(key, DOC)
    assert fresh["content_sha256"] == pseudonymise(key, content_sha256(TEXT))
    for event in events:
        values = [str(value) for value in event.values()]
        for secret in (DOC, OTHER_DOC, content_sha256(TEXT), "Jane Roe", "HbA1c", "invoice"):
            assert not any(secret in value for value in values), (secret, event)

    found = run("search", "--database-url", audit_db, "--document-id", DOC,
                "--pseudonym-key", str(audit_pseudonym_key))  # fmt: skip
    assert found.exit_code == 0, found.output
    actions = [json.loads(line)["action"] for line in found.stdout.splitlines()]
    assert actions == ["classify_document", "review_classification"]


def test_without_a_key_the_appliance_refuses_unless_told_to_log_raw_ids(
    clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APPLIANCE_AUDIT_PSEUDONYM_KEY_PATH")
    with pytest.raises(KeyFileError, match="APPLIANCE_AUDIT_RAW_IDENTIFIERS"):
        build_services(Settings(database_url=clean_database), backend=ScriptedBackend({"A": 1.0}))
    settings = Settings(database_url=clean_database, audit_raw_identifiers=True)
    services = build_services(settings, backend=ScriptedBackend({"A": 1.0}))
    try:
        context = RequestContext("req-raw", identity("classifier"), None)
        result = services.classification.classify(Document(DOC, TEXT), context)
    finally:
        services.close()
    assert context.recorded == {Action.CLASSIFY_DOCUMENT}
    with psycopg.connect(clean_database.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT resource FROM audit_pending WHERE event_id = %s", [result.audit_event_id]
        ).fetchone()
    assert row == (DOC,)


def test_check_config_says_whether_ids_are_pseudonymised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in DevPki.create(tmp_path / "pki").env().items():
        monkeypatch.setenv(name, value)
    shown = CliRunner().invoke(cli, ["check-config"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["audit_identifiers"] == "pseudonymised"
    monkeypatch.delenv("APPLIANCE_AUDIT_PSEUDONYM_KEY_PATH")
    refused = CliRunner().invoke(cli, ["check-config"])
    assert refused.exit_code == 1 and "no audit pseudonym key" in refused.output
    monkeypatch.setenv("APPLIANCE_AUDIT_RAW_IDENTIFIERS", "true")
    raw = CliRunner().invoke(cli, ["check-config"])
    assert json.loads(raw.output)["audit_identifiers"].startswith("RAW")
