"""PostgreSQL restarts under load (16 requests in flight, real gunicorn and mutual TLS): every
answer is a 200 or a 503 with Retry-After, nothing is logged as unexpected, and nothing is lost
or half-written: each answered classification is stored with its audit event, and no result is
stored without one."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
import requests

from harness import postgres
from harness.fake_vllm import FakeVllm, delay, running_fake_vllm
from harness.stack import Stack, appliance_stack

IN_FLIGHT = 16
SECONDS = 12.0
RESTART_AT = 3.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[postgres.Cluster]:
    """A cluster of its own: this test restarts it."""
    with postgres.private_cluster() as made:
        yield made


@pytest.fixture(scope="module")
def stack(cluster: postgres.Cluster) -> Iterator[tuple[Stack, FakeVllm]]:
    logins = postgres.create_logins(cluster.url)
    databases = postgres.DatabaseFactory(cluster.url, owner=logins.owner)
    env = {"APPLIANCE_WORKERS": "2", "APPLIANCE_THREADS": "8", "APPLIANCE_DATABASE_POOL_SIZE": "4"}
    try:
        with (
            running_fake_vllm() as upstream,
            appliance_stack(
                databases.create(), upstream.endpoint, logins, extra_env=env
            ) as running,
        ):
            running.wait_started()
            yield running, upstream
    finally:
        databases.close()


def test_a_restart_under_load_answers_503s_and_loses_nothing(
    cluster: postgres.Cluster, stack: tuple[Stack, FakeVllm]
) -> None:
    served, upstream = stack
    upstream.script(*[delay(0.02)] * 100_000)  # a model that takes a moment, as vLLM does
    answers: list[tuple[int, str | None, str | None]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS
    run = uuid.uuid4().hex[:8]

    def load(worker: int) -> None:
        client = requests.Session()
        client.cert = served.client_cert.pair
        n = 0
        while time.monotonic() < deadline:
            n += 1
            document = {"document_id": f"r-{run}-{worker}-{n}", "text": f"Note {run} {worker} {n}."}
            try:
                answer = client.post(
                    served.server.url("/api/v1/classify-document"),
                    json=document,
                    verify=served.pki.ca_path,
                    timeout=30,
                )
            except requests.RequestException as exc:
                entry: tuple[int, str | None, str | None] = (0, type(exc).__name__, None)
            else:
                body = answer.json()
                entry = (
                    answer.status_code,
                    answer.headers.get("Retry-After"),
                    body.get("result_id") if answer.status_code == 200 else body["error"]["code"],
                )
            with lock:
                answers.append(entry)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(IN_FLIGHT)]
    for thread in threads:
        thread.start()
    time.sleep(RESTART_AT)
    cluster.restart()
    for thread in threads:
        thread.join(60)

    statuses = Counter(status for status, _, _ in answers)
    assert statuses[200] > 50, statuses
    refused = [(s, retry, code) for s, retry, code in answers if s != 200]
    assert refused, "the restart reached no request: the test proves nothing"
    assert all(s == 503 and retry for s, retry, _ in refused), Counter(refused)
    assert "unexpected error" not in served.server.log()
    answered = {result_id for status, _, result_id in answers if status == 200}
    with psycopg.connect(served.database_url.replace("+psycopg", "")) as conn:
        stored = {
            str(row[0])
            for row in conn.execute(
                "SELECT id FROM classification_results WHERE document_id LIKE %s", [f"r-{run}-%"]
            )
        }
        audited = {
            row[0]
            for row in conn.execute(
                "SELECT convert_from(event, 'UTF8')::json->>'result_id' FROM audit_pending"
                " WHERE action = 'classify_document'"
            )
        }
    assert answered <= stored, "an answered classification was not stored"
    # (A result may be stored for a request answered 503: the commit went through and the
    # connection broke before the answer. The client's retry then gets it from the cache.)
    assert stored <= audited, "a result was stored without its audit event"
