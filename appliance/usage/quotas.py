"""Per-client quotas: documents and model tokens per UTC minute and day, held in PostgreSQL.

A request reserves before the model call: one document and an upper bound of its tokens, in
every window of every quota its identity's role rules declare, in one statement
(``quota_reserve``, migration 0012) that takes nothing if any window would overflow. Row locks
serialise concurrent reservations on every thread, process and node, so racing requests cannot
overspend. After the call the reservation is settled to the tokens the model server counted (0
for a stored result reused), or released if the request failed: a caller is not charged for a
refused or broken request. Windows are fixed UTC minutes and days, as in most API rate limits:
simple to state, to show in ``GET /api/v1/usage`` and to audit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from sqlalchemy.engine import Engine

from appliance import metrics
from appliance.db import autocommit
from appliance.errors import DatabaseUnavailable, QuotaExceeded
from appliance.identity.interfaces import Identity, QuotaLimits

log = logging.getLogger(__name__)

Period = Literal["minute", "day"]
PERIODS: tuple[tuple[Period, timedelta], ...] = (
    ("minute", timedelta(minutes=1)),
    ("day", timedelta(days=1)),
)

RESERVE = "SELECT quota_reserve(%s, %s, %s, %s, %s, %s, %s, %s)"
SETTLE = """
UPDATE quota_usage AS u SET documents = u.documents + %s, tokens = u.tokens + %s
  FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])
    AS k(rule, member, period, window_start)
 WHERE (u.rule, u.member, u.period, u.window_start)
     = (k.rule, k.member, k.period, k.window_start)
"""
USED_IN = """
SELECT rule, member, period, documents, tokens FROM quota_usage
 WHERE (rule, window_start) IN (SELECT * FROM unnest(%s::text[], %s::timestamptz[]))
"""
EVERYONE_IN = """
SELECT rule, member, period, window_start, documents, tokens FROM quota_usage
 WHERE (period = 'minute' AND window_start = %s) OR (period = 'day' AND window_start = %s)
 ORDER BY rule, member, period
"""


@dataclass(frozen=True)
class Window:
    """One quota window a request must fit: a rule's budget (for one member identity, or
    ``""`` when shared) in one minute or day, with its limits (None: unlimited)."""

    rule: str
    member: str
    period: Period
    start: datetime
    length: timedelta
    max_documents: int | None
    max_tokens: int | None

    @property
    def ends(self) -> datetime:
        return self.start + self.length


def windows_for(identity: Identity, now: datetime) -> list[Window]:
    """The windows of every quota that applies to ``identity`` at ``now``, in a fixed order
    (rule, member, period), the order every reservation locks them in (no deadlocks)."""
    windows = []
    for quota in identity.quotas:
        member = "" if quota.limits.shared else identity.name
        for period, length in PERIODS:
            max_documents, max_tokens = _limits(quota.limits, period)
            if max_documents is None and max_tokens is None:
                continue
            start = _window_start(now, period)
            windows.append(
                Window(quota.rule, member, period, start, length, max_documents, max_tokens)
            )
    return sorted(windows, key=lambda w: (w.rule, w.member, w.period))


def _limits(limits: QuotaLimits, period: Period) -> tuple[int | None, int | None]:
    if period == "minute":
        return limits.documents_per_minute, limits.tokens_per_minute
    return limits.documents_per_day, limits.tokens_per_day


def _window_start(now: datetime, period: Period) -> datetime:
    if period == "minute":
        return now.replace(second=0, microsecond=0)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


class Hold:
    """A reservation in progress: ``charge(tokens)`` says what the request really consumed,
    ``extend(tokens)`` reserves more once the request knows it needs more (a file, once its
    pages are read)."""

    def __init__(self, service: QuotaService | None, windows: list[Window], tokens: int) -> None:
        self._service = service
        self._windows = windows
        self.reserved_tokens = tokens
        self.tokens = tokens
        """What the request will be charged; the reservation unless told otherwise."""

    def charge(self, tokens: int | None) -> None:
        """The tokens to charge; None (not counted) keeps the reservation."""
        if tokens is not None:
            self.tokens = tokens

    def extend(self, tokens: int) -> None:
        """Reserve ``tokens`` more; ``QuotaExceeded`` if a window has no room for them."""
        if self._service is not None:
            self._service.reserve(self._windows, 0, tokens)
        self.reserved_tokens += tokens
        self.tokens += tokens


@dataclass(frozen=True)
class WindowUsage:
    """One window of a budget as ``GET /api/v1/usage`` shows it."""

    window: Window
    documents: int
    tokens: int


class QuotaService:
    """Reserves, settles and releases quota for a request's identity; reads what was used."""

    def __init__(
        self,
        engine: Engine,
        declared: Mapping[str, QuotaLimits],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``declared``: every role rule's quota by rule (``RoleMap.quotas_by_rule``), for the
        limits of everyone's budgets."""
        self._engine = engine
        self._declared = dict(declared)
        self._clock = clock or (lambda: datetime.now(UTC))

    def usage(self, identity: Identity) -> list[WindowUsage]:
        """The current windows of ``identity``'s own budgets."""
        windows = windows_for(identity, self._clock())
        with autocommit(self._engine) as connection:
            used = {
                (rule, member, period): (documents, tokens)
                for rule, member, period, documents, tokens in connection.execute(
                    USED_IN, ([w.rule for w in windows], [w.start for w in windows])
                )
            }
        return [
            WindowUsage(w, *used.get((w.rule, w.member, w.period), (0, 0))) for w in windows
        ]

    def everyones_usage(self) -> list[WindowUsage]:
        """The current windows of every budget used in them, with the declared limits (None
        for a rule no longer declared)."""
        now = self._clock()
        starts = [_window_start(now, period) for period, _ in PERIODS]
        with autocommit(self._engine) as connection:
            rows = connection.execute(EVERYONE_IN, (starts[0], starts[1])).fetchall()
        lengths = dict(PERIODS)
        usages = []
        for rule, member, period, start, documents, tokens in rows:
            limits = self._declared.get(rule)
            maxima = _limits(limits, period) if limits else (None, None)
            window = Window(rule, member, period, start, lengths[period], *maxima)
            usages.append(WindowUsage(window, documents, tokens))
        return usages

    @contextmanager
    def hold(self, identity: Identity | None, estimate: Callable[[], int]) -> Iterator[Hold]:
        """Reserve one document and ``estimate()`` tokens (an upper bound) for the body of the
        ``with``; settle to what ``Hold.charge`` set when it ends, release everything if it
        raises. Raises ``QuotaExceeded`` (429) before the body when a window has no room. A
        caller without quotas costs nothing here (not even the estimate)."""
        if identity is None or not identity.quotas:
            yield Hold(None, [], 0)
            return
        windows = windows_for(identity, self._clock())
        tokens = estimate()
        self.reserve(windows, 1, tokens)
        hold = Hold(self, windows, tokens)
        try:
            yield hold
        except BaseException:
            self._settle(windows, -1, -hold.reserved_tokens)
            raise
        if hold.tokens != hold.reserved_tokens:
            self._settle(windows, 0, hold.tokens - hold.reserved_tokens)

    def charge_job(
        self, connection: psycopg.Connection[Any], identity: Identity | None, documents: int
    ) -> None:
        """A bulk job's ``documents``, charged to the day windows of its submitter's document
        quotas on ``connection``, in the transaction that stores the job (both or neither);
        ``QuotaExceeded`` when the whole job does not fit. Minute windows and token quotas do
        not apply to jobs: workers pace them, and their tokens are known only as items run."""
        if identity is None or not identity.quotas:
            return
        windows = [
            w
            for w in windows_for(identity, self._clock())
            if w.period == "day" and w.max_documents is not None
        ]
        if windows:
            self._reserve_on(connection, windows, documents, 0)

    def reserve(self, windows: list[Window], documents: int, tokens: int) -> None:
        with autocommit(self._engine) as connection:
            self._reserve_on(connection, windows, documents, tokens)

    def _reserve_on(
        self,
        connection: psycopg.Connection[Any],
        windows: list[Window],
        documents: int,
        tokens: int,
    ) -> None:
        row = connection.execute(
            RESERVE,
            (
                [w.rule for w in windows],
                [w.member for w in windows],
                [w.period for w in windows],
                [w.start for w in windows],
                [w.max_documents for w in windows],
                [w.max_tokens for w in windows],
                documents,
                tokens,
            ),
        ).fetchone()
        failed = row[0] if row is not None else 0
        if failed:
            window = windows[abs(failed) - 1]
            measure = "documents" if failed > 0 else "tokens"
            metrics.QUOTA_DENIALS.labels(measure, window.period).inc()
            raise QuotaExceeded(measure, window.period, self._seconds_until(window.ends))

    def _settle(self, windows: list[Window], documents: int, tokens: int) -> None:
        """Correct a reservation. If the database does not answer, the reservation stands: the
        caller is charged its upper bound rather than its answer being lost."""
        try:
            self._correct(windows, documents, tokens)
        except (DatabaseUnavailable, psycopg.Error):
            log.warning("a quota reservation was not settled: the database did not answer")

    def _correct(self, windows: list[Window], documents: int, tokens: int) -> None:
        with autocommit(self._engine) as connection:
            connection.execute(
                SETTLE,
                (
                    documents,
                    tokens,
                    [w.rule for w in windows],
                    [w.member for w in windows],
                    [w.period for w in windows],
                    [w.start for w in windows],
                ),
            )

    def _seconds_until(self, moment: datetime) -> int:
        return max(1, math.ceil((moment - self._clock()).total_seconds()))
