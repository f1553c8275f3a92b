"""Completion callbacks: allow-listed, over mutual TLS with the appliance's client certificate,
signed, retried, and every attempt on record (a real local mTLS receiver checks them)."""

from __future__ import annotations

import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from appliance.jobs.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from appliance.services import build_services
from appliance.settings import Settings
from audit.chain import decode_event
from harness.callback_receiver import Receiver, running_receiver
from harness.tls import DevPki
from tests.jobs.conftest import jsonl


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return DevPki.create(tmp_path_factory.mktemp("callback-pki"))


@pytest.fixture
def receiver(pki: DevPki) -> Iterator[Receiver]:
    with running_receiver(pki) as running:
        yield running


@pytest.fixture
def hmac_key(tmp_path: Path) -> Path:
    path = tmp_path / "callback-hmac.key"
    path.write_text(secrets.token_hex(32) + "\n")
    return path


@pytest.fixture
def callback_settings(
    job_settings: Settings, receiver: Receiver, pki: DevPki, hmac_key: Path
) -> Settings:
    appliance = pki.client("docclass-appliance")
    cert, key = appliance.pair
    return job_settings.model_copy(
        update={
            "job_callback_allowed_urls": [f"{receiver.url}/hooks"],
            "job_callback_hmac_key_path": hmac_key,
            "job_callback_tls_cert": Path(cert),
            "job_callback_tls_key": Path(key),
            "job_callback_tls_ca": Path(pki.ca_path),
        }
    )


def _submit(client: FlaskClient, callback: str) -> Any:
    body = jsonl(json.dumps({"document_id": "cb-1", "text": "Prior authorization request."}))
    return client.post(
        "/api/v1/jobs", query_string={"callback_url": callback}, data=body,
        content_type="application/x-ndjson",
    )  # fmt: skip


def _drain_until(condition: Callable[[], bool], settings: Settings, timeout_s: float) -> None:
    """Run a worker over the queue until ``condition`` (a retried delivery waits its backoff)."""
    from appliance.jobs.worker import run_worker

    services = build_services(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while not condition():
            assert time.monotonic() < deadline, "the condition never held"
            run_worker(services, wait=False)
            time.sleep(0.5)
    finally:
        services.close()


def test_a_finished_job_calls_back_signed_over_mutual_tls_and_retries(
    client_with: Callable[..., FlaskClient],
    callback_settings: Settings,
    receiver: Receiver,
    hmac_key: Path,
    migrated_admin_url: str,
) -> None:
    client = client_with(job_callback_allowed_urls=callback_settings.job_callback_allowed_urls)
    receiver.statuses.append(503)  # the first delivery is refused: it must be tried again
    answer = _submit(client, f"{receiver.url}/hooks/jobs?team=intake")
    assert answer.status_code == 202, answer.json
    job_id = answer.json["job_id"]

    _drain_until(lambda: len(receiver.deliveries) >= 2, callback_settings, timeout_s=60)

    first, second = receiver.deliveries[:2]
    assert second.path == "/hooks/jobs?team=intake"
    assert second.client_subject == "docclass-appliance"  # the appliance's certificate
    key = hmac_key.read_bytes().rstrip(b"\n")
    expected = signature(key, second.headers[TIMESTAMP_HEADER], second.body)
    assert hmac.compare_digest(second.headers[SIGNATURE_HEADER], expected)
    assert abs(int(second.headers[TIMESTAMP_HEADER]) - time.time()) < 120
    tampered = signature(key, second.headers[TIMESTAMP_HEADER], second.body + b" ")
    assert second.headers[SIGNATURE_HEADER] != tampered
    sent = json.loads(second.body)
    assert sent["job_id"] == job_id and sent["state"] == "done"
    assert sent["counts"]["done"] == 1
    assert b"Prior authorization" not in second.body and b"cb-1" not in second.body
    assert first.body and len(receiver.deliveries) == 2
    with psycopg.connect(migrated_admin_url.replace("+psycopg", ""), autocommit=True) as admin:
        attempts = [decode_event(bytes(row[0])) for row in admin.execute(
            "SELECT event FROM audit_pending WHERE action = 'deliver_job_callback'"
            " AND position(convert_to(%s, 'UTF8') in event) > 0 ORDER BY occurred_at",
            (job_id,),
        ).fetchall()]  # fmt: skip
    assert [(e.outcome_status, e.error_code) for e in attempts] == [
        (503, "callback_refused"), (204, None)
    ]  # fmt: skip


@pytest.mark.parametrize(
    "callback",
    [
        "https://elsewhere.example/hooks",
        "{receiver}/hookshot",  # a prefix is a path boundary, not a string prefix
        "http://{host}/hooks",
        "https://user:pw@{host}/hooks",
    ],
)
def test_a_callback_outside_the_allow_list_is_refused(
    client_with: Callable[..., FlaskClient], receiver: Receiver, callback: str
) -> None:
    client = client_with(job_callback_allowed_urls=[f"{receiver.url}/hooks"])
    host = receiver.url.removeprefix("https://")
    answer = _submit(client, callback.format(receiver=receiver.url, host=host))
    assert answer.status_code == 400
    assert answer.json["error"]["code"] == "callback_not_allowed"


def test_an_idempotent_retry_with_another_callback_is_another_request(
    client_with: Callable[..., FlaskClient], receiver: Receiver
) -> None:
    client = client_with(job_callback_allowed_urls=[f"{receiver.url}/hooks"])
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = jsonl(json.dumps({"document_id": "i", "text": "x"}))
    first = client.post("/api/v1/jobs", query_string={"callback_url": f"{receiver.url}/hooks/a"},
                        data=body, content_type="application/x-ndjson", headers=key)  # fmt: skip
    other = client.post("/api/v1/jobs", query_string={"callback_url": f"{receiver.url}/hooks/b"},
                        data=body, content_type="application/x-ndjson", headers=key)  # fmt: skip
    assert first.status_code == 202 and other.status_code == 422
