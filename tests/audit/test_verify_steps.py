"""``POST /api/v1/audit/verify`` in bounded steps: each request checks at most a configured
number of entries, continuing one full pass over the log from a signed checkpoint; the step
that reaches the head completes the pass (with the cross-checks), the next starts again at 0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.settings import Settings
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from harness.identity import identity
from harness.postgres import Logins, sqlalchemy_url
from tests.audit.conftest import ORIGIN, add_events
from tests.common.apps import app_over

STEP = 4


@pytest.fixture
def app(audit_db: str, logins: Logins, key_files: Path) -> Iterator[Flask]:
    settings = Settings(
        database_url=sqlalchemy_url(logins.url(audit_db, logins.app)),
        database_pool_size=2,
        audit_verifier_key_path=key_files / "verifier.vkey",
        audit_origin=ORIGIN,
        audit_verify_max_entries=STEP,
    )
    with app_over(settings) as application:
        yield application


@pytest.fixture
def auditor(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base[IDENTITY_ENVIRON_KEY] = identity("auditor")  # type: ignore[assignment]
    return client


@pytest.fixture
def log_of_ten(audit_db: str, sealer_url: str, signer: Signer, state: SealerState) -> None:
    """Ten sealed entries under checkpoints of size 5 and 10."""
    for start in (0, 5):
        add_events(audit_db, 5, start=start)
        sealer = Sealer(sealer_url, signer, state)
        sealer.run_once()
        sealer.close()


Verify = Callable[[], dict[str, Any]]


@pytest.fixture
def verify(auditor: FlaskClient, log_of_ten: None) -> Verify:
    def post() -> dict[str, Any]:
        answer = auditor.post("/api/v1/audit/verify")
        assert answer.status_code == 200, answer.get_json()
        return dict(answer.get_json())

    return post


def steps(report: dict[str, Any]) -> tuple[str, int, int, bool]:
    done = report.get("verification", {})
    return (
        report["status"],
        done.get("verified_from"),
        done.get("verified_to"),
        done.get("complete"),
    )


def test_a_pass_goes_checkpoint_by_checkpoint_and_starts_again(verify: Verify) -> None:
    first, second, third = verify(), verify(), verify()
    assert steps(first) == ("ok", 0, 5, False)  # 10 entries, at most 4: up to the first checkpoint
    assert first["verification"]["remaining"] == 5 and "cross_check" not in first
    assert steps(second) == ("ok", 5, 10, True)  # the rest: the head, and the cross-checks
    assert second["cross_check"]["rows"] == 10
    assert steps(third) == ("ok", 0, 5, False)  # a new pass
    assert third["verification"]["pass_started_at"] >= second["verification"]["pass_started_at"]


def test_an_edit_behind_a_finished_pass_is_found_by_the_next(verify: Verify, audit_db: str) -> None:
    assert steps(verify())[:2] == ("ok", 0) and steps(verify())[3] is True
    with psycopg.connect(audit_db) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM audit_entries WHERE seq = 2")
    found = verify()
    assert (found["status"], found["tampering"]["kind"], found["tampering"]["seq"]) == (
        "tampered", "deleted", 2,
    )  # fmt: skip


def test_a_step_that_finds_tampering_does_not_advance(verify: Verify, audit_db: str) -> None:
    assert steps(verify()) == ("ok", 0, 5, False)
    with psycopg.connect(audit_db) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE audit_entries SET entry = entry || ' '::bytea WHERE seq = 7")
    for _ in range(2):  # the same part again, not past it
        found = verify()
        assert (found["status"], found["tampering"]["seq"]) == ("tampered", 7)
    with psycopg.connect(audit_db) as conn:
        rows = conn.execute("SELECT verified_size FROM audit_verify_progress ORDER BY id")
        assert [row[0] for row in rows] == [5]
