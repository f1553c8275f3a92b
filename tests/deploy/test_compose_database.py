"""docker-compose's database initialisation, run for real: compose/initdb against a fresh
PostgreSQL cluster, then the migrations as its owner and each service as its own login (no
Docker engine here, so the script runs as the postgres image would run it)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine

from appliance import migrate
from appliance.classification.interfaces import Document
from appliance.context import RequestContext
from appliance.services import build_services
from appliance.settings import Settings
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from harness import postgres
from tests.common.doubles import ScriptedBackend
from tests.deploy import harness

INITDB = harness.REPO / "compose" / "initdb"
INIT_SCRIPTS = sorted(INITDB.glob("*.sh"))
"""What the postgres image runs on a new data directory, in this (its) order."""
LOGINS = ("owner", "app", "sealer", "auditor", "backup")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A cluster of its own: the script creates cluster-wide roles with fixed names."""
    with postgres.throwaway_cluster() as url:
        yield url


def run_init_script(server: str, script: Path, folder: Path) -> None:
    """One compose/initdb script, as the image runs it (its superuser, the secrets folder)."""
    host, port = server.split("@", 1)[1].split("/", 1)[0].split(":")
    env = {**os.environ, "POSTGRES_USER": "postgres", "PGHOST": host, "PGPORT": port,
           "DOCCLASS_SECRETS": str(folder)}  # fmt: skip
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip
    assert proc.returncode == 0, f"{script.name}: {proc.stderr}"


def initialise(server: str, folder: Path) -> dict[str, str]:
    """Write a password file per login into ``folder`` and run every compose/initdb script as
    the image does; the URL of each login."""
    assert [s.name for s in INIT_SCRIPTS][:1] == ["10-docclass-logins.sh"]
    passwords = {login: secrets.token_urlsafe(18) for login in LOGINS}
    for login, password in passwords.items():
        (folder / f"postgres_{login}_password").write_text(password + "\n")
    for script in INIT_SCRIPTS:
        run_init_script(server, script, folder)
    host_port = server.split("@", 1)[1].split("/", 1)[0]
    return {
        login: f"postgresql://docclass_{login}:{password}@{host_port}/docclass"
        for login, password in passwords.items()
    }


@pytest.fixture(scope="module")
def initialised(server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run the scripts as the image does; the URL of each login."""
    return initialise(server, tmp_path_factory.mktemp("compose-secrets"))


def test_the_owner_is_not_a_superuser(server: str, initialised: dict[str, str]) -> None:
    with psycopg.connect(server) as conn:
        rows: dict[str, bool] = dict(conn.execute(
            "SELECT rolname, rolsuper FROM pg_roles WHERE rolname LIKE 'docclass_%'"
        ).fetchall())  # fmt: skip
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'docclass'"
        ).fetchone()
    assert rows == {f"docclass_{login}": False for login in LOGINS}
    assert owner == ("docclass_owner",)


def test_each_service_works_as_its_own_login(initialised: dict[str, str], tmp_path: Path) -> None:
    url = {login: postgres.sqlalchemy_url(u) for login, u in initialised.items()}
    migrate.upgrade(url["owner"])
    engine = create_engine(url["app"])
    try:
        assert migrate.is_at_head(engine)  # what /health/startup asks, as the app
    finally:
        engine.dispose()
    services = build_services(
        Settings(database_url=url["app"], database_pool_size=2),
        backend=ScriptedBackend({"A": 0.9, "B": 0.1}),
    )
    try:
        services.classification.classify(
            Document("compose-1", "Progress note."), RequestContext("r", None, None)
        )
    finally:
        services.close()
    signer = Signer("compose/audit", "compose/audit", Ed25519PrivateKey.generate())
    sealer = Sealer(initialised["sealer"], signer, SealerState(tmp_path / "sealer.state"))
    assert sealer.run_once() == 1
    sealer.close()
    with psycopg.connect(initialised["auditor"]) as conn:
        assert conn.execute("SELECT count(*) FROM audit_entries").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO audit_pending (event_id, event, occurred_at, action,"
                         " outcome_status) VALUES (gen_random_uuid(), '', now(), 'x', 200)")
