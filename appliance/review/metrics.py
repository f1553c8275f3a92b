"""The review queue's size in Prometheus, counted in the database at scrape time (one figure for
every API worker on every node)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psycopg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from appliance.db import autocommit
from appliance.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

QUEUE_SIZE = (
    "SELECT count(*) FROM classification_results AS r WHERE r.needs_review"
    " AND NOT EXISTS (SELECT FROM classification_reviews AS v WHERE v.result_id = r.id)"
)
"""What ``ReviewService.queue`` pages through (the partial index of migration 0012)."""


class ReviewQueueCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with autocommit(self._engine) as connection:
                row = connection.execute(QUEUE_SIZE).fetchone()
        except (DatabaseUnavailable, psycopg.Error):
            log.warning("review queue metric left out: the database did not answer")
            return
        size = GaugeMetricFamily(
            "appliance_review_queue_size", "Results that need a human review and have none yet"
        )
        size.add_metric([], row[0] if row else 0)
        yield size
