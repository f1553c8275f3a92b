"""Fixtures for reviews: the real app with the real PostgreSQL audit sink, a scripted upstream,
and test clients carrying a verified identity."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.settings import Settings
from harness.fake_vllm import FakeVllm
from harness.identity import identity
from tests.common.apps import app_over

REVIEWER = "spiffe://hospital/user/reviewer-7"
INTAKE = "spiffe://hospital/svc/intake"


@pytest.fixture
def app(clean_database: str, fake_vllm: FakeVllm) -> Iterator[Flask]:
    """Every result needs review (threshold 1.0); audited by the PostgreSQL sink."""
    settings = Settings(
        database_url=clean_database,
        vllm_base_url=fake_vllm.url,
        vllm_read_timeout_s=2.0,
        database_pool_size=4,
        review_threshold=1.0,
    )
    with app_over(settings) as application:
        yield application


@pytest.fixture
def make_client(app: Flask) -> Callable[..., FlaskClient]:
    """``make_client(*roles, name=...)``: a client whose requests carry that verified identity."""

    def make(*roles: str, name: str = INTAKE) -> FlaskClient:
        client = app.test_client()
        client.environ_base[IDENTITY_ENVIRON_KEY] = identity(*roles, name=name)
        return client

    return make


@pytest.fixture
def reviewer(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client("reviewer", name=REVIEWER)


@pytest.fixture
def classifier(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client("classifier", "reader")
