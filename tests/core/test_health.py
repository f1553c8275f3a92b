"""Health probes: live always, ready with both dependencies, startup after migrations + warm-up."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

from appliance.web import services_of
from harness.fake_vllm import FakeVllm
from harness.postgres import sqlalchemy_url
from tests.core.test_upstream_faults import closed_port


def test_live_and_ready(client: FlaskClient) -> None:
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ok", "checks": {"database": True, "vllm": True}}
    assert client.get("/api/v1/health").get_json() == ready.get_json()


def test_ready_names_the_failed_dependency(make_client: Callable[..., FlaskClient]) -> None:
    client = make_client(vllm_base_url=f"http://127.0.0.1:{closed_port()}")
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.get_json()["checks"] == {"database": True, "vllm": False}
    down = make_client(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/x")
    assert down.get("/health/ready").get_json()["checks"]["database"] is False
    assert down.get("/health/live").status_code == 200


def test_startup_waits_for_the_warm_up(client: FlaskClient, fake_vllm: FakeVllm) -> None:
    before = client.get("/health/startup")
    assert before.status_code == 503
    assert before.get_json()["checks"] == {"migrations_at_head": True, "warmed_up": False}
    services_of(client.application).startup.warm_up()
    assert client.get("/health/startup").status_code == 200
    tokenized = [payload["prompt"] for path, payload in fake_vllm.requests if path == "/tokenize"]
    assert tokenized == ["A", "B", "C", "D", "E"], "each answer code is checked to be one token"
    assert fake_vllm.count("/v1/chat/completions") == 1


def test_startup_is_503_before_migrations(
    make_client: Callable[..., FlaskClient], create_database: Callable[..., str]
) -> None:
    client = make_client(database_url=sqlalchemy_url(create_database()))
    response = client.get("/health/startup")
    assert response.status_code == 503
    assert response.get_json()["checks"]["migrations_at_head"] is False
