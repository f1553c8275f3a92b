"""Fixtures for the core API: an app wired to a real database and a scripted upstream."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from appliance.app import create_app
from appliance.audit_bridge.interfaces import AuditEvent, AuditReceipt
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, ROLES, Identity
from appliance.settings import Settings
from tests.common.fake_vllm import FakeVllm


class RecordingSink:
    """Keeps audit events in memory; can be told to fail. For tests of the core only: the
    PostgreSQL audit sink has its own tests and runs in the end-to-end tests."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.fail = False
        self._lock = threading.Lock()

    def record(self, session: Session, event: AuditEvent) -> AuditReceipt:
        if self.fail:
            raise RuntimeError("audit store refused the event")
        session.flush()  # like the real sink: the result row is written before the event
        with self._lock:
            self.events.append(event)
        return AuditReceipt(event_id=str(uuid.uuid4()))

    def record_standalone(self, event: AuditEvent) -> AuditReceipt:
        with self._lock:
            self.events.append(event)
        return AuditReceipt(event_id=str(uuid.uuid4()))


def identity(*roles: str, name: str = "spiffe://hospital/svc/intake") -> Identity:
    return Identity(
        subject=f"CN={name.rsplit('/', 1)[-1]}",
        sans=(f"URI:{name}",),
        serial="01",
        fingerprint_sha256="ab" * 32,
        not_after=datetime(2030, 1, 1, tzinfo=UTC),
        roles=frozenset(roles),
    )




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
    apps: list[Flask] = []

    def make(*roles: str, **overrides: object) -> FlaskClient:
        application = create_app(make_settings(**overrides), audit_sink=audit_sink)
        apps.append(application)
        test_client = application.test_client()
        test_client.environ_base[IDENTITY_ENVIRON_KEY] = identity(*(roles or ROLES))
        return test_client

    yield make
    for application in apps:
        application.extensions["appliance.vllm"].close()
        application.extensions["appliance.engine"].dispose()


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()
