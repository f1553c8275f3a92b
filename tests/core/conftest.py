"""Fixtures for the core API: an app wired to a real database and a scripted upstream."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from flask.testing import FlaskClient

from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, ROLES
from appliance.settings import Settings
from harness.fake_vllm import FakeVllm
from harness.identity import identity
from tests.common.apps import app_over
from tests.common.doubles import RecordingSink


@pytest.fixture
def make_settings(clean_database: str, fake_vllm: FakeVllm) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": clean_database,
            "vllm_base_url": fake_vllm.url,
            "vllm_read_timeout_s": 2.0,
            "vllm_max_retries": 2,
            "database_pool_size": 4,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def audit_sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings], audit_sink: RecordingSink
) -> Iterator[Callable[..., FlaskClient]]:
    """``make_client(*roles, **settings)``: a test client of a new app whose requests carry a
    verified identity holding ``roles`` (default: every role)."""
    with contextlib.ExitStack() as apps:

        def make(*roles: str, **overrides: object) -> FlaskClient:
            settings = make_settings(**overrides)
            application = apps.enter_context(app_over(settings, audit_sink=audit_sink))
            test_client = application.test_client()
            test_client.environ_base[IDENTITY_ENVIRON_KEY] = identity(*(roles or ROLES))
            return test_client

        yield make


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()
