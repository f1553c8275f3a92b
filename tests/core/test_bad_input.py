"""Bad input gets the JSON error shape with the right status, and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from harness.fake_vllm import FakeVllm
from tests.core.test_classify import stored_rows

CLASSIFY = "/api/v1/classify-document"


def assert_error(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"", "malformed_json"),
        (b"[]", "invalid_request"),
        (b'{"text": "x"}', "invalid_request"),
        (b'{"document_id": "d"}', "invalid_request"),
        (b'{"document_id": 5, "text": "x"}', "invalid_request"),
        (b'{"document_id": "d", "text": ["x"]}', "invalid_request"),
        (b'{"document_id": "d", "text": "   \\n\\t "}', "invalid_request"),
        (b'{"document_id": "", "text": "x"}', "invalid_request"),
        (b'{"document_id": "bad\\u0000id", "text": "x"}', "invalid_request"),
        (b'{"document_id": "bad\\nid", "text": "x"}', "invalid_request"),
        (b'{"document_id": "bad\\u202eid", "text": "x"}', "invalid_request"),
        (json.dumps({"document_id": "d" * 257, "text": "x"}).encode(), "invalid_request"),
        (b'{"document_id": "d", "text": "x", "colour": "red"}', "invalid_request"),
        (b'{"document_id": "d", "text": "x", "user_id": 7}', "invalid_request"),
    ],
    ids=[
        "malformed",
        "not-utf8",
        "empty-body",
        "array",
        "missing-id",
        "missing-text",
        "id-wrong-type",
        "text-wrong-type",
        "blank-text",
        "empty-id",
        "nul-in-id",
        "newline-in-id",
        "bidi-control-in-id",
        "id-too-long",
        "unknown-field",
        "user-id-type",
    ],
)
def test_invalid_bodies_are_400(
    client: FlaskClient, fake_vllm: FakeVllm, clean_database: str, body: bytes, code: str
) -> None:
    response = client.post(CLASSIFY, data=body, content_type="application/json")
    assert_error(response, 400, code)
    assert fake_vllm.count("/v1/chat/completions") == 0
    assert stored_rows(clean_database) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(client: FlaskClient, content_type: str | None) -> None:
    response = client.post(
        CLASSIFY, data=b'{"document_id": "d", "text": "x"}', content_type=content_type
    )
    assert_error(response, 415, "unsupported_media_type")


def test_text_over_the_limit_is_413(make_client: Callable[..., FlaskClient]) -> None:
    client = make_client(max_text_bytes=1000)
    ok = client.post(CLASSIFY, json={"document_id": "d", "text": "é" * 500})
    assert ok.status_code == 200
    response = client.post(CLASSIFY, json={"document_id": "d", "text": "é" * 501})
    assert_error(response, 413, "payload_too_large")


def test_oversize_body_is_413_before_parsing(client: FlaskClient, clean_database: str) -> None:
    huge = b'{"document_id": "d", "text": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    response = client.post(CLASSIFY, data=huge, content_type="application/json")
    assert_error(response, 413, "payload_too_large")
    assert stored_rows(clean_database) == 0


def test_batch_over_the_limit_is_400(make_client: Callable[..., FlaskClient]) -> None:
    client = make_client(max_batch_documents=4)
    documents = [{"document_id": f"d{i}", "text": "x"} for i in range(5)]
    response = client.post("/api/v1/classify-batch", json={"documents": documents})
    assert_error(response, 400, "invalid_request")
    assert "at most 4" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "body", [{"documents": []}, {"documents": "x"}, {"docs": []}, {"documents": [], "x": 1}]
)
def test_malformed_batches_are_400(client: FlaskClient, body: object) -> None:
    assert_error(client.post("/api/v1/classify-batch", json=body), 400, "invalid_request")


def test_unknown_route_and_wrong_method_are_json(client: FlaskClient) -> None:
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(client.get(CLASSIFY), 405, "method_not_allowed")
