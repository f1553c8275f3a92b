"""Audit fixtures: a migrated database per test, a checkpoint key, events and a sealer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import migrate
from audit import checkpoint as notes
from audit import store
from audit.chain import format_time
from audit.integrity import Trust
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from audit.types import Event
from harness.postgres import Logins, sqlalchemy_url

ORIGIN = "test.appliance/audit"


@pytest.fixture(scope="session")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def key_files(tmp_path_factory: pytest.TempPathFactory, signing_key: Ed25519PrivateKey) -> Path:
    """Folder with ``signing.pem`` and ``verifier.vkey``."""
    folder = tmp_path_factory.mktemp("audit-keys")
    pem = signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (folder / "signing.pem").write_bytes(pem)
    (folder / "verifier.vkey").write_text(notes.vkey(ORIGIN, signing_key.public_key()) + "\n")
    return folder


@pytest.fixture
def signer(signing_key: Ed25519PrivateKey) -> Signer:
    return Signer(ORIGIN, ORIGIN, signing_key)


@pytest.fixture
def state(tmp_path: Path) -> SealerState:
    """The state file of the test's sealer (sealers of one test share it, as on one host)."""
    return SealerState(tmp_path / "sealer.state")


@pytest.fixture
def trust(signing_key: Ed25519PrivateKey) -> Trust:
    return Trust(ORIGIN, signing_key.public_key(), ORIGIN)


@pytest.fixture(scope="session")
def migrated_template(create_database: Callable[..., str]) -> str:
    """One database migrated to head; tests clone it (much faster than migrating each)."""
    url = create_database("audit_template")
    migrate.upgrade(sqlalchemy_url(url))
    return url


@pytest.fixture
def audit_db(migrated_template: str, create_database: Callable[..., str]) -> str:
    """Superuser URL of a fresh database at migration head."""
    url = create_database("audit_test")
    name = url.rsplit("/", 1)[1]
    template = migrated_template.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}"')
        for attempt in range(50):  # autovacuum may briefly be connected to the template
            try:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 49:
                    raise
                time.sleep(0.1)
    return url


@pytest.fixture
def sealer_url(audit_db: str, logins: Logins) -> str:
    """The test's database as the sealer's login (``appliance_sealer``), as in production."""
    return logins.url(audit_db, logins.sealer)


def make_event(i: int, **fields: object) -> Event:
    values: dict[str, object] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": format_time(datetime.now(UTC)),
        "action": "classify_document",
        "outcome_status": 200,
        "request_id": f"req-{i}",
        "actor_subject": f"spiffe://hospital/svc/{i % 3}",
        "resource": f"doc-{i}",
    }
    values.update(fields)
    return Event(**values)  # type: ignore[arg-type]


def add_events(url: str, count: int, start: int = 0) -> list[Event]:
    events = [make_event(start + i) for i in range(count)]
    with psycopg.connect(url) as conn:
        for event in events:
            store.append_pending(conn, event)
    return events


@pytest.fixture
def sealed_log(audit_db: str, sealer_url: str, signer: Signer, state: SealerState) -> Iterator[str]:
    """A log of 40 sealed events in four batches of 10, each with its checkpoint."""
    for batch in range(4):
        add_events(audit_db, 10, start=batch * 10)
        sealer = Sealer(sealer_url, signer, state)
        assert sealer.run_once() == 10
        sealer.close()
    yield audit_db
