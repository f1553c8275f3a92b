"""Input that JSON allows but storage or encoding does not (lone surrogates, NUL, deep nesting),
hostile path and query values, and a property test of the JSON edge: always a 4xx JSON error or
a 200, never a 500, and nothing is stored for a refused document. The real PostgreSQL audit sink
is used, so an audit write that would fail shows as a 503."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, ROLES
from appliance.settings import Settings
from harness.fake_vllm import FakeVllm
from harness.identity import identity
from tests.common.apps import app_over
from tests.core.test_bad_input import assert_error
from tests.core.test_classify import stored_rows

CLASSIFY = "/api/v1/classify-document"
BATCH = "/api/v1/classify-batch"


@pytest.fixture
def app(clean_database: str, fake_vllm: FakeVllm) -> Iterator[Flask]:
    settings = Settings(
        database_url=clean_database, vllm_base_url=fake_vllm.url, database_pool_size=4
    )
    with app_over(settings) as application:
        yield application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    test_client = app.test_client()
    test_client.environ_base[IDENTITY_ENVIRON_KEY] = identity(*ROLES)
    return test_client


def post(client: FlaskClient, path: str, raw: str) -> Any:
    return client.post(path, data=raw.encode(), content_type="application/json")


@pytest.mark.parametrize(
    "raw",
    [
        '{"document_id": "d", "text": "lone \\ud800 surrogate"}',
        '{"document_id": "d", "text": "x", "user_id": "u\\udfff"}',
        '{"document_id": "d", "text": "x", "user_id": "nul\\u0000"}',
        '{"document_id": "d\\ud800", "text": "x"}',
    ],
    ids=["surrogate-in-text", "surrogate-in-user", "nul-in-user", "surrogate-in-id"],
)
def test_unstorable_strings_are_400_before_the_model_is_asked(
    client: FlaskClient, fake_vllm: FakeVllm, clean_database: str, raw: str
) -> None:
    assert_error(post(client, CLASSIFY, raw), 400, "invalid_request")
    assert fake_vllm.count("/v1/chat/completions") == 0
    assert stored_rows(clean_database) == 0


def test_an_unstorable_batch_item_fails_alone(client: FlaskClient, clean_database: str) -> None:
    raw = (
        '{"documents": [{"document_id": "ok-1", "text": "Invoice."},'
        ' {"document_id": "bad", "text": "x", "user_id": "\\u0000"},'
        ' {"document_id": "ok-2", "text": "\\ud800"}]}'
    )
    response = post(client, BATCH, raw)
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert "classification" in results[0]
    assert [r.get("error", {}).get("code") for r in results[1:]] == ["invalid_request"] * 2
    assert stored_rows(clean_database) == 1


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_json_is_400(client: FlaskClient, depth: int) -> None:
    raw = '{"document_id": "d", "text": "x", "metadata": ' + "[" * depth + "]" * depth + "}"
    assert_error(post(client, CLASSIFY, raw), 400, "malformed_json")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/classifications/a%00b",
        "/api/v1/audit/events?actor=%00",
        "/api/v1/audit/events?document_id=x%00",
        "/api/v1/audit/events?action=%00",
    ],
)
def test_nul_in_paths_and_queries_is_400(client: FlaskClient, path: str) -> None:
    assert_error(client.get(path), 400, "invalid_request")


def test_unstorable_review_note_is_400(client: FlaskClient) -> None:
    result = client.post(CLASSIFY, json={"document_id": "r", "text": "Lab results."}).get_json()
    raw = '{"label": "BILLING", "note": "x\\ud800"}'
    response = post(client, f"/api/v1/classifications/{result['result_id']}/review", raw)
    assert_error(response, 400, "invalid_request")


# Any code point, the awkward ones often: lone surrogates, NUL, a bidi control.
ANY_CHARACTER = st.characters(exclude_categories=()) | st.sampled_from("\ud800\udfff\x00\u202e")
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(ANY_CHARACTER),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Mostly well-formed documents whose strings hold anything, sometimes anything at all.
DOCUMENT_IDS = st.from_regex(r"[A-Za-z0-9/_.-]{1,40}", fullmatch=True)
FIELDS = st.fixed_dictionaries(
    {
        "document_id": DOCUMENT_IDS | st.text(ANY_CHARACTER, max_size=300) | JSON_VALUES,
        "text": st.text(ANY_CHARACTER, min_size=1) | JSON_VALUES,
    },
    optional={
        "user_id": st.text(ANY_CHARACTER, max_size=300) | JSON_VALUES,
        "metadata": JSON_VALUES,
        "unknown": JSON_VALUES,
    },
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=FIELDS, batch=st.booleans())
def test_the_json_edge_never_answers_500(
    client: FlaskClient, body: dict[str, Any], batch: bool
) -> None:
    raw = json.dumps({"documents": [body, body]} if batch else body)  # \\u escapes kept
    response = post(client, BATCH if batch else CLASSIFY, raw)
    assert response.status_code in (200, 400, 413), response.get_data(as_text=True)[:300]
    if response.status_code != 200:
        assert set(response.get_json()) == {"error"}
