"""Shared fixtures: a real PostgreSQL server and databases on it, the real CPU vLLM, and the
scripted upstream for fault injection.

The application runs as it does in production: migrations as the schema owner (not a
superuser), the API as a login in ``appliance_app``, the sealer in ``appliance_sealer``; so a
missing grant fails a test. Tests inspect or tamper through the superuser URLs.

See harness/postgres.py for where the server comes from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from appliance import migrate
from harness import audit_keys, encoder, job_keys, postgres, vllm_cpu
from harness.fake_vllm import FakeVllm, running_fake_vllm
from harness.upstream import VllmEndpoint


@pytest.fixture(scope="session", autouse=True)
def audit_pseudonym_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The appliance as every install sets it up, with a pseudonym key: in the environment, so
    every ``Settings`` and every process the tests start has it (a test opts out explicitly)."""
    path = audit_keys.pseudonym_key(tmp_path_factory.mktemp("audit-pseudonym"))
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv(audit_keys.ENV, str(path))
        yield path


@pytest.fixture(scope="session", autouse=True)
def job_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every install's bulk-job key-encryption key, in the environment like the pseudonym key."""
    path = job_keys.job_key(tmp_path_factory.mktemp("job-key"))
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv(job_keys.ENV, str(path))
        yield path


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Superuser ``postgresql://`` URL of the session's server."""
    with postgres.admin_server() as url:
        yield url


@pytest.fixture(scope="session")
def logins(pg_admin_url: str) -> Iterator[postgres.Logins]:
    """The session's least-privilege logins (owner, app, sealer, auditor)."""
    made = postgres.create_logins(pg_admin_url)
    yield made
    postgres.drop_logins(pg_admin_url, made)


@pytest.fixture(scope="session")
def create_database(pg_admin_url: str, logins: postgres.Logins) -> Iterator[Callable[..., str]]:
    """Factory: ``create_database()`` returns the superuser URL of a fresh, empty database
    owned by the owner login."""
    factory = postgres.DatabaseFactory(pg_admin_url, owner=logins.owner)
    yield factory.create
    factory.close()


@pytest.fixture(scope="session")
def migrated_admin_url(create_database: Callable[..., str], logins: postgres.Logins) -> str:
    """SQLAlchemy URL (superuser, for inspection) of the session's database, upgraded to the
    newest migration by the owner login."""
    url = create_database()
    migrate.upgrade(postgres.sqlalchemy_url(logins.url(url, logins.owner)))
    return postgres.sqlalchemy_url(url)


@pytest.fixture(scope="session")
def migrated_database_url(migrated_admin_url: str, logins: postgres.Logins) -> str:
    """The same database as the application's login (``appliance_app``) sees it."""
    return logins.url(migrated_admin_url, logins.app)


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[VllmEndpoint]:
    """The real CPU vLLM server with the tiny model (one per test session), over mutual TLS
    with an API key."""
    with vllm_cpu.running_vllm() as url:
        yield url


@pytest.fixture(scope="session")
def encoder_folder() -> Path:
    """The cascade's text encoder (int8 ONNX all-MiniLM-L6-v2), exported once and cached."""
    return encoder.encoder_folder()


@pytest.fixture
def clean_database(migrated_admin_url: str, migrated_database_url: str) -> str:
    """The session's migrated database with no results or reviews left by earlier tests, as
    the application's login. (The tables are append-only: the superuser sets triggers aside for
    this transaction.)"""
    engine = create_engine(migrated_admin_url)
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(text("TRUNCATE classification_results CASCADE"))
        connection.execute(text("TRUNCATE quota_usage, quota_declarations"))
    engine.dispose()
    return migrated_database_url


@pytest.fixture
def fake_vllm() -> Iterator[FakeVllm]:
    """The scripted upstream (harness/fake_vllm.py) on a loopback port."""
    with running_fake_vllm() as fake:
        yield fake
