"""A job survives a worker killed mid-job and a PostgreSQL restart: at the end every item has
exactly one result and one audit event, and the job's counts say so (issue 15, done-when 1).

Real ``appliance worker`` processes on a cluster of the test's own (it is restarted), as the
application's role, against the scripted upstream answering after a short delay."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from appliance import migrate
from appliance.app import create_app
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.services import build_services
from appliance.settings import Settings
from audit.chain import decode_event
from harness import postgres
from harness.fake_vllm import FakeVllm, delay
from harness.identity import identity
from harness.workers import WorkerProcess
from tests.jobs.conftest import OWNER, jsonl

ITEMS = 2000


@pytest.fixture(scope="module")
def cluster() -> Iterator[postgres.Cluster]:
    with postgres.private_cluster() as made:
        yield made


@pytest.fixture(scope="module")
def database(cluster: postgres.Cluster) -> Iterator[tuple[str, str]]:
    """(superuser URL, the application login's SQLAlchemy URL) of a migrated database."""
    logins = postgres.create_logins(cluster.url)
    databases = postgres.DatabaseFactory(cluster.url, owner=logins.owner)
    try:
        admin = databases.create()
        migrate.upgrade(postgres.sqlalchemy_url(logins.url(admin, logins.owner)))
        yield admin, postgres.sqlalchemy_url(logins.url(admin, logins.app))
    finally:
        databases.close()
        postgres.drop_logins(cluster.url, logins)


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def _count(admin: str, query: str, *params: Any) -> int:
    try:
        with psycopg.connect(admin, connect_timeout=2) as connection:
            row = connection.execute(query, params).fetchone()
    except psycopg.OperationalError:  # the server is restarting
        return -1
    return int(row[0]) if row else 0


def test_a_killed_worker_and_a_database_restart_lose_and_duplicate_nothing(
    cluster: postgres.Cluster,
    database: tuple[str, str],
    fake_vllm: FakeVllm,
    tmp_path: Path,
) -> None:
    admin, app_url = database
    fake_vllm.script(*[delay(0.01)] * (ITEMS * 2))  # a model that takes a moment
    settings = Settings(database_url=app_url, vllm_base_url=fake_vllm.url, database_pool_size=2)
    services = build_services(settings)
    client: FlaskClient = create_app(services).test_client()
    client.environ_base[IDENTITY_ENVIRON_KEY] = identity("classifier", name=OWNER)
    tag = uuid.uuid4().hex[:8]
    lines = [
        json.dumps({"document_id": f"{tag}-{i}", "text": f"Lab result {tag} {i}."})
        for i in range(ITEMS)
    ]
    submitted = client.post("/api/v1/jobs", data=jsonl(*lines), content_type="application/x-ndjson")
    assert submitted.status_code == 202, submitted.json
    job_id = submitted.json["job_id"]
    done = "SELECT count(*) FROM job_items WHERE job_id = %s AND state = 'done'"
    env = {
        "APPLIANCE_DATABASE_URL": app_url,
        "APPLIANCE_VLLM_BASE_URL": fake_vllm.url,
        "APPLIANCE_DATABASE_POOL_SIZE": "6",
        "APPLIANCE_WORKER_CONCURRENCY": "4",
        "APPLIANCE_WORKER_HEARTBEAT_S": "0.5",
        "APPLIANCE_WORKER_STALLED_AFTER_S": "3",
    }
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in range(2)]
    try:
        _wait_for(lambda: _count(admin, done, job_id) >= 300, 120, "no progress")
        workers[0].kill()
        _wait_for(lambda: _count(admin, done, job_id) >= 900, 120, "no progress after the kill")
        cluster.restart()
        _wait_for(
            lambda: _count(admin, done, job_id) == ITEMS, 300,
            "the job did not finish:\n" + (tmp_path / "worker-1.log").read_text()[-3000:],
        )  # fmt: skip
        assert workers[1].alive, "the surviving worker stopped at the database restart"
        status = client.get(f"/api/v1/jobs/{job_id}").json
    finally:
        for worker in workers:
            if worker.alive:
                worker.stop()
        services.close()

    assert status["state"] == "done"
    assert status["counts"] == {"total": ITEMS, "done": ITEMS, "failed": 0, "cancelled": 0,
                                "pending": 0}  # fmt: skip
    with psycopg.connect(admin) as connection:
        results = connection.execute(
            "SELECT document_id, count(*) FROM classification_results"
            " WHERE document_id LIKE %s GROUP BY document_id",
            (f"{tag}-%",),
        ).fetchall()
        linked = connection.execute(
            "SELECT count(DISTINCT result_id) FROM job_items WHERE job_id = %s", (job_id,)
        ).fetchone()
        events = [decode_event(bytes(row[0])) for row in connection.execute(
            "SELECT event FROM audit_pending WHERE action = 'classify_document'"
        ).fetchall()]  # fmt: skip
    assert len(results) == ITEMS and {count for _, count in results} == {1}
    assert linked == (ITEMS,)
    per_item = [e.job_item for e in events if e.job_id == job_id and e.outcome_status == 200]
    assert sorted(per_item) == list(range(1, ITEMS + 1))
