"""The composition root without Flask: ``build_services`` with a scripted model backend classifies,
stores and audits a document; nothing in that path needs the web layer."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
from flask import Flask

from appliance.audit_bridge.declare import audited, undeclared_endpoints
from appliance.audit_bridge.interfaces import Action
from appliance.classification.interfaces import Document
from appliance.context import RequestContext
from appliance.services import build_services
from appliance.settings import Settings
from harness.identity import identity
from tests.common.doubles import ScriptedBackend


def test_services_classify_store_and_audit_without_flask(clean_database: str) -> None:
    backend = ScriptedBackend({"B": 0.7, "A": 0.2, "C": 0.1})
    settings = Settings(database_url=clean_database, database_pool_size=2)
    services = build_services(settings, backend=backend)
    context = RequestContext("req-services", identity("classifier"), "192.0.2.7")
    try:
        result = services.classification.classify(
            Document("MRN-5/visit-1", "Statement of account, balance due."), context
        )
    finally:
        services.close()
    assert (result.label, result.model) == ("BILLING", "scripted")
    assert result.confidence == pytest.approx(0.7)
    assert "Statement of account" in backend.prompts[0].question
    assert context.recorded == {Action.CLASSIFY_DOCUMENT}
    with psycopg.connect(clean_database.replace("postgresql+psycopg://", "postgresql://")) as conn:
        stored = conn.execute(
            "SELECT label FROM classification_results WHERE id = %s", [result.result_id]
        ).fetchone()
        event = conn.execute(
            "SELECT action, convert_from(event, 'UTF8')::json->>'result_id' FROM audit_pending"
            " WHERE event_id = %s",
            [result.audit_event_id],
        ).fetchone()
    assert stored == ("BILLING",)
    assert event == ("classify_document", str(result.result_id))


def test_the_service_layer_imports_no_web_framework() -> None:
    code = (
        "import sys, appliance.services, appliance.evaluation.runner, appliance.evaluation.jobs;"
        "assert 'flask' not in sys.modules, 'flask was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_a_view_without_an_audit_declaration_is_found() -> None:
    app = Flask(__name__)

    @app.get("/declared")
    @audited(Action.READ_METRICS)
    def declared() -> str:
        return "ok"

    @app.get("/forgotten")
    def forgotten() -> str:
        return "ok"

    @app.get("/health/live")
    def live() -> str:
        return "ok"

    assert undeclared_endpoints(app) == ["forgotten"]
