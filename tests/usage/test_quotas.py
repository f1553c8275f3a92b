"""Quotas, tokens and cost in process (the app over the real PostgreSQL as the application's
role, the scripted upstream): what is charged, refunded, refused, shown and audited."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, QuotaLimits, RuleQuota
from appliance.identity.roles import RoleConfigError, parse_role_table
from appliance.services import Services, build_services
from appliance.settings import ModelPrice, Settings
from appliance.usage.declarations import declaration_digest, record_declarations
from appliance.web import services_of
from audit.chain import decode_event
from harness.fake_vllm import FakeVllm, prompt_tokens, status
from harness.identity import identity
from tests.common.apps import app_over

CALLER = "spiffe://hospital/svc/intake"
PRICE = ModelPrice(per_1k_prompt_tokens=0.5, per_1k_completion_tokens=2.0)
RULE = "uri=spiffe://hospital/svc/*"


@pytest.fixture
def settings(clean_database: str, fake_vllm: FakeVllm, job_key: Path) -> Settings:
    return Settings(
        database_url=clean_database,
        vllm_base_url=fake_vllm.url,
        vllm_max_retries=0,
        model_costs={"smollm2-135m": PRICE},
        job_key_path=job_key,
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    """The app with its clock held in the middle of the current minute: a test's requests fall
    in one minute window however long it takes."""
    held = datetime.now(UTC).replace(second=30, microsecond=0)
    with app_over(settings, clock=lambda: held) as built:
        yield built


def client(app: Flask, *roles: str, name: str = CALLER, **limits: int) -> FlaskClient:
    """A client whose identity matched ``RULE`` with ``limits`` (none: no quota)."""
    quotas = (RuleQuota(RULE, QuotaLimits(**limits)),) if limits else ()
    test_client = app.test_client()
    test_client.environ_base[IDENTITY_ENVIRON_KEY] = identity(*roles, name=name, quotas=quotas)
    return test_client


def classify(caller: FlaskClient, text: str | None = None) -> tuple[int, dict]:
    body = {"document_id": f"D-{uuid.uuid4().hex[:8]}", "text": text or f"Invoice {uuid.uuid4()}"}
    answer = caller.post("/api/v1/classify-document", json=body)
    return answer.status_code, answer.json or {}


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def test_tokens_and_cost_are_the_upstream_s_usage_stored_and_shown(
    app: Flask, fake_vllm: FakeVllm, migrated_admin_url: str
) -> None:
    code, body = classify(client(app, "classifier"))
    assert code == 200
    chats = [payload for path, payload in fake_vllm.requests if path == "/v1/chat/completions"]
    counted = prompt_tokens(chats[-1]["messages"])  # what the upstream answered as usage
    assert body["usage"] == {"prompt_tokens": counted, "completion_tokens": 1,
                             "cost": pytest.approx(counted * 0.5 / 1000 + 2.0 / 1000)}  # fmt: skip
    with _admin(migrated_admin_url) as admin:
        stored = admin.execute(
            "SELECT prompt_tokens, completion_tokens, cost FROM classification_results"
            " WHERE id = %s",
            (body["result_id"],),
        ).fetchone()
    assert stored == (counted, 1, pytest.approx(body["usage"]["cost"]))


def test_an_answer_reused_from_a_stored_result_costs_nothing(app: Flask) -> None:
    caller = client(app, "classifier")
    text = f"Lab report {uuid.uuid4()}"
    first, second = classify(caller, text)[1], classify(caller, text)[1]
    assert first["usage"]["prompt_tokens"] > 0
    assert second["cached"] is True
    assert second["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}


def test_a_document_quota_refuses_with_429_retry_after_and_an_audited_denial(
    app: Flask, migrated_admin_url: str
) -> None:
    caller = client(app, "classifier", documents_per_day=2)
    assert [classify(caller)[0] for _ in range(2)] == [200, 200]
    answer = caller.post("/api/v1/classify-document", json={"document_id": "D-3", "text": "x"})
    assert answer.status_code == 429
    assert answer.json["error"]["code"] == "quota_exceeded"
    assert "documents quota for this day" in answer.json["error"]["message"]
    assert 0 < int(answer.headers["Retry-After"]) <= 86400
    with _admin(migrated_admin_url) as admin:
        denial = admin.execute(
            "SELECT event FROM audit_pending WHERE outcome_status = 429 ORDER BY id DESC LIMIT 1"
        ).fetchone()
    event = decode_event(bytes(denial[0]))
    assert (event.action, event.error_code, event.actor_subject) == (
        "classify_document", "quota_exceeded", CALLER)  # fmt: skip


def test_a_refusal_in_one_window_takes_nothing_from_the_others(app: Flask) -> None:
    caller = client(app, "classifier", documents_per_minute=1, documents_per_day=100)
    assert [classify(caller)[0] for _ in range(3)] == [200, 429, 429]
    used = {w["period"]: w["documents"]["used"] for w in client_usage(caller)}
    assert used == {"minute": 1, "day": 1}  # the day window was taken, then given back


def test_a_failed_request_is_refunded_and_a_cache_hit_charges_no_tokens(
    app: Flask, fake_vllm: FakeVllm
) -> None:
    caller = client(app, "classifier", documents_per_day=3, tokens_per_day=100_000)
    first = classify(caller)[1]["usage"]
    fake_vllm.script(status(503))  # the model call fails after the reservation
    assert classify(caller)[0] == 503
    services_of(app).classification.quotas.flush()  # the refund is written in the background
    text = f"Referral letter {uuid.uuid4()}"
    second = classify(caller, text)[1]["usage"]
    assert classify(caller, text)[0] == 200  # reused: a document, no tokens
    (day,) = [w for w in client_usage(caller) if w["period"] == "day"]
    assert day["documents"] == {"used": 3, "limit": 3}
    spent = first["prompt_tokens"] + second["prompt_tokens"] + 2
    assert day["tokens"] == {"used": spent, "limit": 100_000}


def test_a_token_quota_counts_the_estimate_before_the_call(app: Flask) -> None:
    """A document whose upper bound does not fit is refused before the model is asked."""
    caller = client(app, "classifier", tokens_per_minute=600)
    assert classify(caller, "short note")[0] == 200
    code, body = classify(caller, "word " * 400)
    assert code == 429 and "tokens quota for this minute" in body["error"]["message"]


def test_a_bulk_job_counts_its_documents_against_the_daily_quota_whole(app: Flask) -> None:
    caller = client(app, "classifier", documents_per_day=5, documents_per_minute=1)
    lines = [json.dumps({"document_id": f"J-{n}", "text": f"Note {n}"}) for n in range(6)]

    def submit(*body: str) -> int:
        answer = caller.post("/api/v1/jobs", data="\n".join(body) + "\n",
                             content_type="application/x-ndjson")  # fmt: skip
        return answer.status_code

    assert submit(*lines) == 429  # six do not fit in five: nothing is stored
    assert submit(*lines[:4], "not JSON") == 202  # four documents (a bad line is not one)
    (day,) = [w for w in client_usage(caller) if w["period"] == "day"]
    assert day["documents"] == {"used": 4, "limit": 5}  # the minute window is not charged


def client_usage(caller: FlaskClient) -> list[dict]:
    answer = caller.get("/api/v1/usage")
    assert answer.status_code == 200, answer.json
    return answer.json["windows"]


def test_usage_shows_a_caller_its_own_windows_and_an_admin_everyone_s(app: Flask) -> None:
    first = client(app, "classifier", name=CALLER, documents_per_minute=50)
    other = client(app, "classifier", name="spiffe://hospital/svc/billing", documents_per_minute=50)
    classify(first)
    classify(other)
    classify(other)
    own = client_usage(first)
    assert [(w["member"], w["period"], w["documents"]) for w in own] == [
        (CALLER, "minute", {"used": 1, "limit": 50})]  # fmt: skip
    assert client(app, "reader").get("/api/v1/usage").status_code == 403
    # The admin's view has the limits the role table declares; these identities were made by
    # hand, so their rule is not in this app's (empty) table: shown without limits.
    everyone = client_usage(client(app, "admin", name="spiffe://hospital/people/admin"))
    used = {w["member"]: w["documents"]["used"] for w in everyone if w["period"] == "minute"}
    assert used == {CALLER: 1, "spiffe://hospital/svc/billing": 2}


def test_the_role_table_declares_quotas_and_refuses_bad_ones() -> None:
    table = parse_role_table(
        'version: 1\nrules:\n  - uri: "spiffe://h/svc/*"\n    roles: [classifier]\n'
        "    quota: {documents_per_minute: 5, shared: true}\n"
    )
    assert table.quotas_by_rule() == {
        "uri=spiffe://h/svc/*": QuotaLimits(documents_per_minute=5, shared=True)}  # fmt: skip
    for bad in ("{}", "{documents_per_minute: -1}", "{documents_per_hour: 5}", "{shared: true}"):
        with pytest.raises(RoleConfigError):
            parse_role_table(
                f"version: 1\nrules:\n  - cn: x\n    roles: [classifier]\n    quota: {bad}\n"
            )


def test_a_change_of_quotas_is_recorded_and_audited_once(
    settings: Settings, migrated_admin_url: str
) -> None:
    services: Services = build_services(settings)
    declared = [{"rule": RULE, "documents_per_minute": 5}]
    record: Callable[[list], bool] = lambda d: record_declarations(  # noqa: E731
        services.engine, services.audit, d
    )
    try:
        assert record([]) is False  # nothing declared, nothing ever was: no change
        assert record(declared) is True
        assert record(declared) is False  # a second worker starting with the same table
        assert record([]) is True  # quotas removed
    finally:
        services.close()
    with _admin(migrated_admin_url) as admin:
        events = [decode_event(bytes(row[0])) for row in admin.execute(
            "SELECT event FROM audit_pending WHERE action = 'change_quotas' ORDER BY id"
        ).fetchall()]  # fmt: skip
        stored = admin.execute("SELECT digest FROM quota_declarations ORDER BY id").fetchall()
    digests = [declaration_digest(declared), declaration_digest([])]
    assert [row[0] for row in stored] == digests
    details = [f"quotas sha256:{digests[0]} (1 rules)", f"quotas sha256:{digests[1]} (0 rules)"]
    assert [e.detail for e in events[-2:]] == details
