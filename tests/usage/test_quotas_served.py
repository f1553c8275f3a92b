"""Quotas under concurrency, as served: ``appliance serve`` (gunicorn, two worker processes,
mutual TLS) over the real PostgreSQL, 32 client threads at once. Exactly the quota succeeds,
every refusal is a 429 with Retry-After and an audit event, and a token budget is never
overspent although each request reserves an upper bound before its model call."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from harness import postgres
from harness.fake_vllm import FakeVllm, running_fake_vllm
from harness.stack import CLIENT_URI, Stack, appliance_stack

THREADS = 32
DOCUMENTS_PER_MINUTE = 10
TOKENS_PER_MINUTE = 3000
TOKENS_URI = "spiffe://hospital/svc/tokens"
ROLES = f"""\
version: 1
rules:
  - uri: "{CLIENT_URI}"
    roles: [classifier, reader, auditor, metrics]
    quota: {{documents_per_minute: {DOCUMENTS_PER_MINUTE}}}
  - uri: "{TOKENS_URI}"
    roles: [classifier]
    quota: {{tokens_per_minute: {TOKENS_PER_MINUTE}}}
"""


@pytest.fixture(scope="module")
def stack(create_database: Callable[..., str], logins: postgres.Logins) -> Iterator[Stack]:
    with running_fake_vllm() as fake:
        yield from _served(create_database(), fake, logins)


def _served(database: str, fake: FakeVllm, logins: postgres.Logins) -> Iterator[Stack]:
    env = {"APPLIANCE_WORKERS": "2", "APPLIANCE_THREADS": "16"}
    with appliance_stack(database, fake.endpoint, logins, extra_env=env, roles=ROLES) as running:
        running.wait_started()
        yield running


def _with_a_minute_to_spare() -> None:
    """The windows are UTC minutes: start a burst early in one, so it ends in the same one."""
    if datetime.now(UTC).second > 40:
        time.sleep(61 - datetime.now(UTC).second)


def _burst(stack: Stack, verify: object, words: int) -> list[httpx.Response]:
    """``THREADS`` different documents of ``words`` words each, all at once."""
    with httpx.Client(base_url=stack.url, verify=verify, timeout=60) as api:  # type: ignore[arg-type]

        def one(n: int) -> httpx.Response:
            text = " ".join(f"w{n}x{i}" for i in range(words)) + f" {uuid.uuid4()}"
            return api.post(
                "/api/v1/classify-document", json={"document_id": f"Q-{n}", "text": text}
            )

        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(one, range(THREADS)))


def _denials_audited(stack: Stack, actor: str) -> int:
    with psycopg.connect(stack.libpq_url) as admin:
        row = admin.execute(
            "SELECT count(*) FROM audit_pending WHERE actor = %s AND action = 'classify_document'"
            " AND outcome_status = 429",
            (actor,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _charged(stack: Stack, member: str, until: int) -> int:
    """The tokens charged to ``member`` this minute, once they reach ``until`` (or after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(stack.libpq_url) as admin:
            row = admin.execute(
                "SELECT sum(tokens) FROM quota_usage WHERE member = %s AND period = 'minute'",
                (member,),
            ).fetchone()
        charged = int(row[0]) if row and row[0] is not None else 0
        if charged == until or time.monotonic() > deadline:
            return charged
        time.sleep(0.1)


def test_32_threads_over_two_workers_get_exactly_the_document_quota(stack: Stack) -> None:
    _with_a_minute_to_spare()
    answers = _burst(stack, stack.pki.client_context(stack.client_cert), words=5)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * DOCUMENTS_PER_MINUTE + [429] * (THREADS - DOCUMENTS_PER_MINUTE)
    refused = [answer for answer in answers if answer.status_code == 429]
    assert all(a.json()["error"]["code"] == "quota_exceeded" for a in refused)
    assert all(0 < int(a.headers["Retry-After"]) <= 60 for a in refused)
    assert _denials_audited(stack, CLIENT_URI) == len(refused)
    with httpx.Client(verify=stack.pki.client_context(stack.client_cert)) as api:
        page = api.get(stack.server.url("/metrics")).text
    # Summed over both workers' files: every refusal was counted by the worker that refused it.
    denials = 'appliance_quota_denials_total{measure="documents",window="minute"}'
    assert f"{denials} {float(len(refused))}" in page


def test_a_token_budget_is_never_overspent_by_concurrent_requests(stack: Stack) -> None:
    cert = stack.pki.client("tokens", f"URI:{TOKENS_URI}")
    _with_a_minute_to_spare()
    answers = _burst(stack, stack.pki.client_context(cert), words=40)
    ok = [answer.json() for answer in answers if answer.status_code == 200]
    refused = [answer for answer in answers if answer.status_code == 429]
    assert ok and refused and len(ok) + len(refused) == THREADS
    spent = sum(body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] for body in ok)
    # Settled to the upstream's counts, refusals refunded: by the workers' background
    # settlements, a moment after the answers.
    assert _charged(stack, TOKENS_URI, until=spent) == spent
    assert spent <= TOKENS_PER_MINUTE
    assert _denials_audited(stack, TOKENS_URI) == len(refused)
