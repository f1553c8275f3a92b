"""The work queue of bulk jobs: procrastinate over the appliance's own PostgreSQL.

Why procrastinate (3.10): a maintained, PostgreSQL-only job library on psycopg 3, whose queue is
plain tables and functions we apply through Alembic (migration 0011). Idle workers wait on
LISTEN/NOTIFY instead of polling, a worker's heartbeat tells a dead one from a busy one, and
retries with backoff are declared per task. What it cannot give, exactly one result per item,
comes from the items' own state (``worker.ItemWrite``), so a queue job is a chunk of items (its
arguments are the job id and a line range, never text) and running a chunk twice is harmless.

The API defers a job's chunks in the transaction that stores the job, and a worker a job's
callback in the transaction that ends it (``Deferrer``, on the caller's connection): a job is
either stored and queued, or neither.
"""

from __future__ import annotations

import uuid
from typing import Any

import procrastinate
import psycopg
from procrastinate.jobs import Job
from procrastinate.manager import JobManager
from sqlalchemy.engine import make_url

from appliance.settings import Settings

QUEUE = "bulk-jobs"
CHUNK_TASK = "appliance.jobs.classify_chunk"
RETRY_STALLED_TASK = "appliance.jobs.retry_stalled_chunks"
CALLBACK_TASK = "appliance.jobs.deliver_callback"
CALLBACK_ATTEMPTS = 10
"""Deliveries of a completion callback (backoff 2 s, 4 s, ... about 17 minutes in all)."""
CHUNK_ATTEMPTS = 8
"""Tries of a chunk whose items meet an unavailable dependency (vLLM, the database), with
exponential backoff; the last try marks the items it could not classify as failed."""


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL (``postgresql+psycopg://``) as libpq takes it."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def build_queue(settings: Settings, pool_size: int = 2) -> procrastinate.App:
    """The worker's procrastinate app over the appliance's database (procrastinate checks a
    pooled connection before use, so a restarted database costs no failed query)."""
    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_url(settings.database_url),
        min_size=1,
        max_size=pool_size,
        kwargs={"application_name": "docclass-worker", "connect_timeout": 5},
    )
    return procrastinate.App(connector=connector)


def chunks(total_items: int, chunk_items: int) -> list[tuple[int, int]]:
    """Line ranges ``(first, last)``, inclusive and from 1, covering ``total_items``."""
    return [
        (first, min(first + chunk_items - 1, total_items))
        for first in range(1, total_items + 1, chunk_items)
    ]


class Deferrer:
    """Queues tasks on the caller's psycopg connection, in its transaction. A connector of its
    own that is never opened: the caller's connection is the only one it uses (a worker's
    procrastinate app has an asynchronous pool, which cannot run on a synchronous connection).
    """

    def __init__(self) -> None:
        self._manager = JobManager(procrastinate.SyncPsycopgConnector())

    def chunks(
        self,
        connection: psycopg.Connection[Any],
        job_id: uuid.UUID,
        ranges: list[tuple[int, int]],
    ) -> None:
        """A job's chunks, one queue task per line range."""
        self._defer(connection, [
            _job(CHUNK_TASK, {"job_id": str(job_id), "first": first, "last": last})
            for first, last in ranges
        ])  # fmt: skip

    def callback(self, connection: psycopg.Connection[Any], job_id: uuid.UUID) -> None:
        """The delivery of a job's completion callback (in the transaction that ends the job:
        exactly one per job)."""
        self._defer(connection, [_job(CALLBACK_TASK, {"job_id": str(job_id)})])

    def _defer(self, connection: psycopg.Connection[Any], jobs: list[Job]) -> None:
        self._manager.batch_defer_jobs(jobs, connection=connection)


def _job(task_name: str, arguments: dict[str, Any]) -> Job:
    return Job(queue=QUEUE, task_name=task_name, lock=None, queueing_lock=None,
               task_kwargs=arguments)  # fmt: skip
