"""``appliance worker``: classifies bulk jobs' items, a chunk at a time, from the queue.

Exactly one result per item. An item is classified (the model call, outside any transaction),
then one transaction locks the item, checks it is still pending, and stores its result, its
audit event and its new state (``ItemWrite``). A worker killed before that commit leaves the
item pending, and its chunk is run again once the worker's heartbeat is missed; killed after,
the rerun finds the item done and skips it. Nothing is lost, nothing is stored twice.

Failures: an unavailable dependency (vLLM, the database: a 5xx) fails the chunk, which
procrastinate retries with backoff; on its last try the items it cannot classify are marked
failed with the error, so every job ends. An error of the item itself (a 4xx) fails that item.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import procrastinate
import psycopg
from procrastinate import sql as procrastinate_sql
from procrastinate.job_context import JobContext
from procrastinate.jobs import Job
from procrastinate.retry import RetryStrategy
from prometheus_client import start_http_server
from psycopg.rows import namedtuple_row
from sqlalchemy.engine import Engine

from appliance.audit_bridge.interfaces import Action, JobRef
from appliance.classification.interfaces import Classification, Document
from appliance.context import RequestContext
from appliance.db import autocommit
from appliance.errors import ApplianceError
from appliance.jobs import queue as work_queue
from appliance.jobs.callbacks import CallbackSender, callback_body
from appliance.jobs.crypto import JobCipher, JobKeyError, load_job_key
from appliance.jobs.metrics import ITEM_SECONDS
from appliance.jobs.schemas import serialise_job
from appliance.jobs.services import job_status, submitter
from appliance.services import Services

log = logging.getLogger(__name__)


class ItemNotPending(Exception):
    """The item was finished or cancelled meanwhile: nothing to do."""


class ItemWrite:
    """A job item's ``ResultWrite``: the result, its event and the item's state in one
    transaction, only while the item is pending (the row lock orders two workers)."""

    def __init__(self, engine: Engine, job_id: uuid.UUID, position: int) -> None:
        self._engine = engine
        self._key = (job_id, position)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with autocommit(self._engine) as connection, connection.transaction():
            state = connection.execute(
                "SELECT state FROM job_items WHERE job_id = %s AND position = %s FOR UPDATE",
                self._key,
            ).fetchone()
            if state is None or state[0] != "pending":
                raise ItemNotPending
            yield connection

    def written(self, connection: psycopg.Connection[Any], result: Classification) -> None:
        connection.execute(
            "UPDATE job_items SET state = 'done', result_id = %s, ciphertext = NULL,"
            " finished_at = now() WHERE job_id = %s AND position = %s",
            (result.result_id, *self._key),
        )


PENDING_ITEMS = """
SELECT i.position, i.document_id, i.on_behalf_of, i.ciphertext
  FROM job_items i
 WHERE i.job_id = %s AND i.position BETWEEN %s AND %s AND i.state = 'pending'
 ORDER BY i.position
"""


class ChunkWorker:
    """Classifies the pending items of one chunk of one job."""

    def __init__(
        self, services: Services, key_encryption_key: bytes, queue: work_queue.Deferrer
    ) -> None:
        self._services = services
        self._engine = services.engine
        self._key = key_encryption_key
        self._queue = queue

    def process(self, job_id: uuid.UUID, first: int, last: int, last_try: bool) -> None:
        with autocommit(self._engine) as connection:
            job = connection.execute(
                "SELECT owner, owner_fingerprint, wrapped_key FROM bulk_jobs WHERE id = %s",
                (job_id,),
            ).fetchone()
            if job is None:
                return
            with connection.cursor(row_factory=namedtuple_row) as cursor:
                items: list[Any] = cursor.execute(PENDING_ITEMS, (job_id, first, last)).fetchall()
        cipher = JobCipher.unwrap(job_id, job[2], self._key)
        identity = submitter(job[0], job[1])
        for item in items:  # named tuples of PENDING_ITEMS' columns
            context = RequestContext(
                f"job-{job_id.hex}-{item.position}", identity, None,
                job=JobRef(str(job_id), item.position),
            )  # fmt: skip
            document = Document(
                item.document_id, cipher.decrypt(item.position, item.ciphertext), item.on_behalf_of
            )
            self._classify(job_id, item.position, document, context, last_try)
        self._finish_if_complete(job_id)

    def _classify(
        self,
        job_id: uuid.UUID,
        position: int,
        document: Document,
        context: RequestContext,
        last_try: bool,
    ) -> None:
        write = ItemWrite(self._engine, job_id, position)
        try:
            with ITEM_SECONDS.time():
                self._services.classification.classify(document, context, write)
        except ItemNotPending:
            return
        except ApplianceError as exc:
            if exc.status >= 500 and not last_try:
                raise  # the chunk is tried again later
            self._fail(job_id, position, exc)

    def _fail(self, job_id: uuid.UUID, position: int, error: ApplianceError) -> None:
        with autocommit(self._engine) as connection:
            connection.execute(
                "UPDATE job_items SET state = 'failed', ciphertext = NULL, error_code = %s,"
                " error_message = %s, finished_at = now()"
                " WHERE job_id = %s AND position = %s AND state = 'pending'",
                (error.code, error.message[:1024], job_id, position),
            )

    def _finish_if_complete(self, job_id: uuid.UUID) -> None:
        """Mark the job finished once no item is pending (exactly one worker succeeds), and queue
        its callback in the same transaction."""
        with autocommit(self._engine) as connection, connection.transaction():
            finished = connection.execute(
                "UPDATE bulk_jobs SET finished_at = now() WHERE id = %s AND finished_at IS NULL"
                " AND cancelled_at IS NULL AND NOT EXISTS (SELECT FROM job_items"
                " WHERE job_id = %s AND state = 'pending') RETURNING callback_url",
                (job_id, job_id),
            ).fetchone()
            if finished is not None and finished[0] is not None:
                self._queue.callback(connection, job_id)


class CallbackDelivery:
    """Delivers a job's completion callback; every attempt is audited with its outcome."""

    def __init__(self, services: Services, sender: CallbackSender) -> None:
        self._engine = services.engine
        self._audit = services.audit
        self._sender = sender

    def deliver(self, job_id: uuid.UUID, attempt: int) -> None:
        """Raise ``CallbackFailed`` unless the receiver answered 2xx (the task is retried)."""
        with autocommit(self._engine) as connection:
            job = connection.execute(
                "SELECT owner, owner_fingerprint, callback_url FROM bulk_jobs WHERE id = %s",
                (job_id,),
            ).fetchone()
            if job is None or job[2] is None:
                return
            body = callback_body(serialise_job(job_status(connection, job_id)))
        context = RequestContext(
            f"job-{job_id.hex}-callback-{attempt}", submitter(job[0], job[1]), None,
            job=JobRef(str(job_id)),
        )  # fmt: skip
        try:
            status, error = self._sender.send(job[2], body), None
        except httpx.HTTPError as exc:
            status, error = 502, f"callback_{type(exc).__name__}"
        self._audit.record_outcome(
            context, Action.DELIVER_JOB_CALLBACK, status, error_code=error or _refusal(status)
        )
        if not 200 <= status < 300:
            raise CallbackFailed(f"the callback receiver answered {status}")


class CallbackFailed(Exception):
    """The receiver did not take the callback: the delivery is tried again later."""


def _refusal(status: int) -> str | None:
    return None if 200 <= status < 300 else "callback_refused"


def register_tasks(
    queue: procrastinate.App,
    worker: ChunkWorker,
    callbacks: CallbackDelivery | None,
    stalled_after_s: float,
    chunk_timeout_s: float,
) -> None:
    """The worker's tasks: classify a chunk, deliver a callback, and give dead workers' chunks
    to the living. Without ``callbacks`` (none configured) a callback task fails and waits."""
    retry = RetryStrategy(max_attempts=work_queue.CHUNK_ATTEMPTS - 1, exponential_wait=2)
    callback_retry = RetryStrategy(
        max_attempts=work_queue.CALLBACK_ATTEMPTS - 1, exponential_wait=2
    )

    @queue.task(name=work_queue.CHUNK_TASK, queue=work_queue.QUEUE, retry=retry, pass_context=True)
    def classify_chunk(context: JobContext, job_id: str, first: int, last: int) -> None:
        attempts = context.job.attempts if context.job else 0
        last_try = attempts + 1 >= work_queue.CHUNK_ATTEMPTS
        worker.process(uuid.UUID(job_id), first, last, last_try)

    @queue.task(
        name=work_queue.CALLBACK_TASK, queue=work_queue.QUEUE, retry=callback_retry,
        pass_context=True,
    )  # fmt: skip
    def deliver_callback(context: JobContext, job_id: str) -> None:
        if callbacks is None:
            raise CallbackFailed("this worker has no callback configuration")
        callbacks.deliver(uuid.UUID(job_id), (context.job.attempts if context.job else 0) + 1)

    every = max(1, round(stalled_after_s / 2))

    @queue.periodic(cron=f"* * * * * */{every}", periodic_id="retry-stalled-chunks")
    @queue.task(name=work_queue.RETRY_STALLED_TASK, queue=work_queue.QUEUE, pass_context=True)
    async def retry_stalled_chunks(context: JobContext, timestamp: int) -> None:
        """Chunks of workers whose heartbeat stopped; and chunks running for longer than any
        chunk takes, whose end procrastinate could not record (the database went away just
        then) although their worker lives on. A chunk run twice stores nothing twice."""
        manager = context.app.job_manager
        dead = await manager.get_stalled_jobs(
            task_name=work_queue.CHUNK_TASK, seconds_since_heartbeat=stalled_after_s
        )
        overdue = await context.app.connector.execute_query_all_async(
            query=procrastinate_sql.queries["select_stalled_jobs_by_started"],
            queue=work_queue.QUEUE, task_name=work_queue.CHUNK_TASK, nb_seconds=chunk_timeout_s,
        )  # fmt: skip
        stalled = {job.id: job for job in [*dead, *map(Job.from_row, overdue)]}
        for job in stalled.values():
            log.warning("retrying chunk %s: its worker stopped answering or it is overdue", job.id)
            await manager.retry_job(job)


RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits before starting the queue worker again after it stopped on a database error."""


def run_worker(services: Services, wait: bool = True) -> None:
    """Run until SIGTERM or SIGINT (then finish the chunks in hand); with ``wait=False``, until
    the queue is empty (tests, a one-off drain).

    procrastinate stops its worker when its listener or heartbeat loses the database (a
    restart, a failover): this starts it again, after a backoff, until a signal says stop.
    Chunks the stopped worker held are then retried as a dead worker's (its heartbeat is gone).
    """
    settings = services.settings
    if settings.job_key_path is None:
        raise JobKeyError("the worker needs the jobs' key-encryption key: APPLIANCE_JOB_KEY_PATH")
    concurrency = settings.worker_concurrency
    if settings.worker_metrics_port is not None:
        start_http_server(settings.worker_metrics_port, settings.worker_metrics_address)
    queue = work_queue.build_queue(settings, pool_size=concurrency + 2)
    worker = ChunkWorker(services, load_job_key(settings.job_key_path), work_queue.Deferrer())
    sender = CallbackSender(settings) if settings.job_callback_hmac_key_path else None
    callbacks = CallbackDelivery(services, sender) if sender else None
    register_tasks(
        queue, worker, callbacks, settings.worker_stalled_after_s, settings.worker_chunk_timeout_s
    )
    options: dict[str, Any] = {
        "queues": [work_queue.QUEUE],
        "concurrency": concurrency,
        "update_heartbeat_interval": settings.worker_heartbeat_s,
        "stalled_worker_timeout": settings.worker_stalled_after_s,
        "delete_jobs": "successful",
        "wait": wait,
        "install_signal_handlers": False,
    }

    async def run_once() -> None:
        async with queue.open_async():
            await queue.run_worker_async(**options)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # procrastinate runs a synchronous task in the loop's default executor: size it so
        # ``concurrency`` chunks really run at once.
        loop.set_default_executor(ThreadPoolExecutor(concurrency))
        stopping = asyncio.Event()
        running: asyncio.Task[None] | None = None

        def stop() -> None:
            stopping.set()
            if running is not None:
                running.cancel()  # procrastinate's graceful stop: the chunks in hand finish

        if wait:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop)
        for attempt in itertools.count():
            running = asyncio.create_task(run_once())
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await running
                except Exception:
                    log.exception("the queue worker stopped on an error")
            if stopping.is_set() or not wait:
                return
            pause = RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)]
            log.warning("starting the queue worker again in %.0f s", pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), pause)
            if stopping.is_set():
                return

    try:
        asyncio.run(main())
    finally:
        if sender is not None:
            sender.close()
