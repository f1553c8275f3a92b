"""A cascade of two scripted stages through the API on a real PostgreSQL of its own: the first
stage answers what it is sure of, the next stage the rest; each result records the stage that
answered, the confidence of every stage asked and the answering stage's model, in its row, its
answer and its audit event; a stage changed behind the log's back is found by the cross-check."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask

from appliance import migrate
from appliance.backends.interfaces import ModelAnswer, Prompt
from appliance.cascade.cascade import Cascade, CascadeStage
from appliance.classification.labeller import Labeller
from appliance.classification.taxonomy import load_taxonomy
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.settings import Settings
from audit.crosscheck import cross_check
from audit.errors import RecordsTampered
from audit.types import TamperKind
from harness.fake_vllm import FakeVllm
from harness.identity import identity
from harness.postgres import Logins, sqlalchemy_url
from tests.common.apps import app_over
from tests.common.doubles import ScriptedBackend

SURE = {"B": 0.95, "A": 0.05}
"""The cheap stage's answer to a text that says "plain": BILLING, sure."""
UNSURE = {"A": 0.5, "B": 0.5}


class ByText(ScriptedBackend):
    """Sure of BILLING for a text that says "plain", torn between two labels otherwise."""

    def classify(self, prompt: Prompt) -> ModelAnswer:
        self.probabilities = SURE if "plain" in prompt.question else UNSURE
        return super().classify(prompt)


@pytest.fixture
def database(create_database: Callable[..., str], logins: Logins) -> str:
    """A database of this test's own (superuser URL), migrated by the owner login: the
    cross-check reads every event in it."""
    url = create_database()
    migrate.upgrade(sqlalchemy_url(logins.url(url, logins.owner)))
    return url


@pytest.fixture
def stages() -> tuple[ByText, ScriptedBackend]:
    return ByText(UNSURE, name="cheap-embedder"), ScriptedBackend({"C": 0.9, "A": 0.1}, "big-llm")


@pytest.fixture
def app(
    database: str, logins: Logins, fake_vllm: FakeVllm, stages: tuple[ByText, ScriptedBackend]
) -> Iterator[Flask]:
    settings = Settings(
        database_url=sqlalchemy_url(logins.url(database, logins.app)), vllm_base_url=fake_vllm.url
    )
    taxonomy = load_taxonomy(settings.taxonomy_path)
    cheap, llm = (Labeller(backend, taxonomy, settings.max_document_tokens) for backend in stages)
    cascade = Cascade([CascadeStage("cheap", cheap, 0.9), CascadeStage("llm", llm, 0.0)])
    with app_over(settings, labeller=cascade) as built:
        yield built


def classify(app: Flask, text: str) -> dict[str, Any]:
    client = app.test_client()
    client.environ_base[IDENTITY_ENVIRON_KEY] = identity("classifier")
    answer = client.post("/api/v1/classify-document", json={"document_id": "D-1", "text": text})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def stored(url: str, result_id: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT stage, stages, model, label FROM classification_results WHERE id = %s",
            [result_id],
        ).fetchone()
        (event,) = conn.execute(
            "SELECT event FROM audit_pending WHERE convert_from(event, 'UTF8')::jsonb"
            " ->> 'result_id' = %s",
            [result_id],
        ).fetchone() or (None,)
    assert row is not None and event is not None
    return (*row, json.loads(bytes(event)))


def test_the_first_stage_sure_enough_answers_and_the_rest_escalate(
    app: Flask, database: str, logins: Logins, stages: tuple[ByText, ScriptedBackend]
) -> None:
    cheap, llm = stages
    sure = classify(app, "A plain invoice for an office visit.")
    assert (sure["classification"], sure["model"]) == ("BILLING", "cheap-embedder")
    assert sure["stages"] == [{"stage": "cheap", "confidence": 0.95}]
    assert llm.prompts == []  # the LLM was not asked

    unsure = classify(app, "Prior authorization request for an MRI.")
    assert (unsure["classification"], unsure["model"]) == ("AUTHORIZATION", "big-llm")
    assert unsure["stages"] == [{"stage": "cheap", "confidence": 0.5},
                                {"stage": "llm", "confidence": 0.9}]  # fmt: skip
    assert len(llm.prompts) == 1 and len(cheap.prompts) == 2

    stage, asked, model, label, event = stored(database, unsure["result_id"])
    assert (stage, model, label) == ("llm", "big-llm", "AUTHORIZATION")
    assert asked == unsure["stages"]
    assert (event["stage"], event["stages"], event["model"]) == ("llm", "cheap:0.5,llm:0.9",
                                                                  "big-llm")  # fmt: skip
    assert stored(database, sure["result_id"])[4]["stage"] == "cheap"

    with psycopg.connect(logins.url(database, logins.auditor)) as conn:
        assert cross_check(conn).results == 2  # both results agree with their events
    with psycopg.connect(database) as conn:  # an insider moves a result to the other stage
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE classification_results SET stage = 'cheap' WHERE id = %s",
                     [unsure["result_id"]])  # fmt: skip
    with psycopg.connect(logins.url(database, logins.auditor)) as conn, pytest.raises(
        RecordsTampered
    ) as found:
        cross_check(conn)
    assert [(f.kind, f.record_id) for f in found.value.findings] == [
        (TamperKind.RESULT_MODIFIED, unsure["result_id"])]  # fmt: skip


def test_a_cascade_refuses_stages_it_could_not_record() -> None:
    llm = Labeller(ScriptedBackend({"A": 1.0}), load_taxonomy(None), 512)
    for names in (["llm", "llm"], ["LLM"], ["a:b"], []):
        with pytest.raises(ValueError, match="cascade"):
            Cascade([CascadeStage(name, llm, 0.5) for name in names])


def test_a_file_read_page_by_page_records_each_pages_stages(app: Flask, database: str) -> None:
    client = app.test_client()
    client.environ_base[IDENTITY_ENVIRON_KEY] = identity("classifier")
    two_pages = b"A plain invoice for an office visit.\fPrior authorization request for an MRI."
    answer = client.post("/api/v1/classify-file?document_id=F-1&mode=pages", data=two_pages,
                         content_type="text/plain")  # fmt: skip
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert [page.get("stages") for page in body["pages"]] == [
        [{"stage": "cheap", "confidence": 0.95}],
        [{"stage": "cheap", "confidence": 0.5}, {"stage": "llm", "confidence": 0.9}],
    ]
    # The file records the deepest stage a page needed, and that stage's model.
    assert body["model"] == "big-llm" and [s["stage"] for s in body["stages"]] == ["cheap", "llm"]
    stage, _, model, _, event = stored(database, body["result_id"])
    assert (stage, model, event["stage"], event["model"]) == ("llm", "big-llm", "llm", "big-llm")
