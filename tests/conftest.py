"""Shared fixtures: a real PostgreSQL server and databases on it, the real CPU vLLM, and the
scripted upstream for fault injection.

See harness/postgres.py for where the server comes from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text

from appliance import migrate
from harness import postgres, vllm_cpu
from harness.fake_vllm import FakeVllm, running_fake_vllm


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Superuser ``postgresql://`` URL of the session's server."""
    with postgres.admin_server() as url:
        yield url


@pytest.fixture(scope="session")
def create_database(pg_admin_url: str) -> Iterator[Callable[..., str]]:
    """Factory: ``create_database()`` returns the superuser URL of a fresh, empty database."""
    factory = postgres.DatabaseFactory(pg_admin_url)
    yield factory.create
    factory.close()


@pytest.fixture(scope="session")
def migrated_database_url(create_database: Callable[..., str]) -> str:
    """SQLAlchemy URL (superuser) of a fresh database upgraded to the newest migration."""
    url = postgres.sqlalchemy_url(create_database())
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[str]:
    """Base URL of the real CPU vLLM server with the tiny model (one per test session)."""
    with vllm_cpu.running_vllm() as url:
        yield url


@pytest.fixture
def clean_database(migrated_database_url: str) -> str:
    """The session's migrated database with no results or reviews left by earlier tests."""
    engine = create_engine(migrated_database_url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE classification_results CASCADE"))
    engine.dispose()
    return migrated_database_url


@pytest.fixture
def fake_vllm() -> Iterator[FakeVllm]:
    """The scripted upstream (harness/fake_vllm.py) on a loopback port."""
    with running_fake_vllm() as fake:
        yield fake
