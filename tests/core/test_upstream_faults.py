"""Fault injection with the scripted upstream: each fault gets its status and stores nothing."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from harness import fake_vllm as faults
from harness.fake_vllm import FakeVllm
from tests.common.doubles import RecordingSink
from tests.core.test_classify import stored_rows

DOCUMENT = {"document_id": "MRN-9/fax-2", "text": "Referral letter for cardiology consult."}


def post(client: FlaskClient) -> tuple[int, dict, dict]:
    response = client.post("/api/v1/classify-document", json=DOCUMENT)
    return response.status_code, response.get_json(), dict(response.headers)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_upstream_down_is_503_with_retry_after(
    make_client: Callable[..., FlaskClient], clean_database: str
) -> None:
    client = make_client(vllm_base_url=f"http://127.0.0.1:{closed_port()}")
    status, body, headers = post(client)
    assert status == 503
    assert body["error"]["code"] == "upstream_unavailable"
    assert int(headers["Retry-After"]) > 0
    assert stored_rows(clean_database) == 0


def test_slow_upstream_is_504(
    make_client: Callable[..., FlaskClient], fake_vllm: FakeVllm, clean_database: str
) -> None:
    client = make_client(vllm_read_timeout_s=0.3)
    fake_vllm.script(faults.delay(1.0))
    status, body, _ = post(client)
    assert (status, body["error"]["code"]) == (504, "upstream_timeout")
    assert fake_vllm.count("/v1/chat/completions") == 1, "a read timeout is not retried"
    assert stored_rows(clean_database) == 0


def test_500s_then_success_is_retried(
    client: FlaskClient, fake_vllm: FakeVllm, clean_database: str
) -> None:
    fake_vllm.script(faults.status(500), faults.status(500))
    status, body, _ = post(client)
    assert status == 200, body
    assert fake_vllm.count("/v1/chat/completions") == 3
    assert stored_rows(clean_database) == 1


def test_persistent_500s_give_up_after_the_retry_budget(
    client: FlaskClient, fake_vllm: FakeVllm, clean_database: str
) -> None:
    fake_vllm.script(*[faults.status(500)] * 3)
    status, body, _ = post(client)
    assert (status, body["error"]["code"]) == (502, "upstream_invalid_response")
    assert fake_vllm.count("/v1/chat/completions") == 3
    assert stored_rows(clean_database) == 0


def test_overloaded_upstream_is_503(client: FlaskClient, fake_vllm: FakeVllm) -> None:
    fake_vllm.script(*[faults.status(429)] * 3)
    status, body, headers = post(client)
    assert (status, body["error"]["code"]) == (503, "upstream_unavailable")
    assert "Retry-After" in headers


@pytest.mark.parametrize(
    "fault",
    [
        faults.garbage(),
        faults.garbage(b"[1, 2, 3]"),
        faults.garbage(b'{"choices": []}'),
        faults.answer("Z"),
        faults.status(400),
        faults.drop_connection(),
    ],
    ids=["not-json", "not-an-object", "no-choices", "outside-taxonomy", "refused", "dropped"],
)
def test_garbage_is_502_and_stores_nothing(
    client: FlaskClient,
    fake_vllm: FakeVllm,
    clean_database: str,
    audit_sink: RecordingSink,
    fault: faults.Fault,
) -> None:
    fake_vllm.script(fault)
    status, body, _ = post(client)
    assert status == 502, body
    assert body["error"]["code"] == "upstream_invalid_response"
    assert stored_rows(clean_database) == 0
    # The failed request is audited as such, and nothing else is.
    assert [(e.action, e.outcome_status, e.error_code, e.result_id) for e in audit_sink.events] == [
        ("classify_document", 502, "upstream_invalid_response", None)
    ]


def test_one_failing_batch_item_does_not_fail_the_others(
    client: FlaskClient, fake_vllm: FakeVllm, audit_sink: RecordingSink
) -> None:
    fake_vllm.script(faults.answer("Z"))
    response = client.post(
        "/api/v1/classify-batch",
        json={"documents": [{"document_id": f"d{i}", "text": f"text {i}"} for i in range(3)]},
    )
    results = response.get_json()["results"]
    assert response.status_code == 200
    assert sum("error" in item for item in results) == 1
    assert sum("classification" in item for item in results) == 2
    failed = [event for event in audit_sink.events if event.outcome_status == 502]
    assert len(failed) == 1 and failed[0].error_code == "upstream_invalid_response"
