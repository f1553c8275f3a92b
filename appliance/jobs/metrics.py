"""Bulk jobs in Prometheus: the queue as the database holds it, read at scrape by the API's
``/metrics`` (one figure for every worker on every node), and each worker's item latency on its
own metrics port (``APPLIANCE_WORKER_METRICS_PORT``).

Items per second is ``rate(appliance_job_items_finished_total{state="done"}[1m])``. Labels are
states and error codes only: no job, document or caller in them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psycopg
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from appliance.db import autocommit
from appliance.errors import DatabaseUnavailable
from appliance.jobs.queue import QUEUE

log = logging.getLogger(__name__)

ITEM_SECONDS = Histogram(
    "appliance_job_item_seconds",
    "Time a worker took to classify and store one job item",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

ITEMS_BY_STATE = "SELECT state, count(*) FROM job_items GROUP BY state"
FAILURES_BY_REASON = (
    "SELECT error_code, count(*) FROM job_items WHERE state = 'failed' GROUP BY error_code"
)
CHUNKS_BY_STATUS = (
    "SELECT status::text, count(*) FROM procrastinate_jobs"
    " WHERE queue_name = %s AND status IN ('todo', 'doing') GROUP BY status"
)


class JobQueueCollector(Collector):
    """Queue depth, finished items and failures by reason, counted in the database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            with autocommit(self._engine) as connection:
                items = dict(connection.execute(ITEMS_BY_STATE).fetchall())
                failures = connection.execute(FAILURES_BY_REASON).fetchall()
                chunks = dict(connection.execute(CHUNKS_BY_STATUS, (QUEUE,)).fetchall())
        except (DatabaseUnavailable, psycopg.Error):
            log.warning("job queue metrics left out: the database did not answer")
            return
        pending = GaugeMetricFamily(
            "appliance_job_items_pending", "Job items waiting for a worker (the queue depth)"
        )
        pending.add_metric([], items.get("pending", 0))
        yield pending
        queued = GaugeMetricFamily(
            "appliance_job_queue_chunks",
            "Queue tasks (chunks of items) by status",
            labels=["status"],
        )
        for status in ("todo", "doing"):
            queued.add_metric([status], chunks.get(status, 0))
        yield queued
        finished = CounterMetricFamily(
            "appliance_job_items_finished", "Job items finished, by how", labels=["state"]
        )
        for state in ("done", "failed", "cancelled"):
            finished.add_metric([state], items.get(state, 0))
        yield finished
        failed = CounterMetricFamily(
            "appliance_job_item_failures", "Failed job items by error code", labels=["reason"]
        )
        for reason, count in failures:
            failed.add_metric([reason or "unknown"], count)
        yield failed
