"""Fixtures for bulk jobs: the app over the real PostgreSQL audit sink (a job's events commit
with its rows), clients as several identities, and an in-process procrastinate worker that
drains the queue through the same code ``appliance worker`` runs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance.app import create_app
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.jobs.worker import run_worker
from appliance.services import Services, build_services
from appliance.settings import Settings
from harness.fake_vllm import FakeVllm
from harness.identity import identity
from tests.common.apps import app_over

OWNER = "spiffe://hospital/svc/archive"
OTHER = "spiffe://hospital/svc/billing"
AUDITOR = "spiffe://hospital/people/auditor"


@pytest.fixture
def job_settings(clean_database: str, fake_vllm: FakeVllm) -> Settings:
    return Settings(
        database_url=clean_database,
        vllm_base_url=fake_vllm.url,
        vllm_read_timeout_s=2.0,
        database_pool_size=4,
        job_chunk_items=4,
        worker_concurrency=2,
    )


@pytest.fixture
def services(job_settings: Settings) -> Iterator[Services]:
    built = build_services(job_settings)
    yield built
    built.close()


@pytest.fixture
def app(services: Services) -> Flask:
    return create_app(services)


@pytest.fixture
def client_as(app: Flask) -> Callable[..., FlaskClient]:
    """``client_as(name, *roles)``: a client whose requests carry that verified identity."""

    def make(name: str, *roles: str) -> FlaskClient:
        client = app.test_client()
        client.environ_base[IDENTITY_ENVIRON_KEY] = identity(*roles, name=name)
        return client

    return make


@pytest.fixture
def client_with(job_settings: Settings) -> Iterator[Callable[..., FlaskClient]]:
    """``client_with(**settings)``: the owner's client of an app built with other settings."""
    with contextlib.ExitStack() as apps:

        def make(**overrides: object) -> FlaskClient:
            settings = job_settings.model_copy(update=overrides)
            client = apps.enter_context(app_over(settings)).test_client()
            client.environ_base[IDENTITY_ENVIRON_KEY] = identity("classifier", name=OWNER)
            return client

        yield make


@pytest.fixture
def owner(client_as: Callable[..., FlaskClient]) -> FlaskClient:
    return client_as(OWNER, "classifier")


@pytest.fixture
def drain(services: Services) -> Callable[[], None]:
    """Run a worker until the queue is empty."""
    return lambda: run_worker(services, wait=False)


def jsonl(*lines: str) -> bytes:
    return "\n".join(lines).encode() + b"\n"
