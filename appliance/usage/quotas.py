"""Per-client quotas: documents and model tokens per UTC minute and day, held in PostgreSQL.

A request reserves before the model call: one document and an upper bound of its tokens, in
every window of every quota its identity's role rules declare, in one upsert whose rows carry
the limits; a CHECK constraint refuses a row over them, which fails the whole statement, so it
takes nothing unless every window has room (migration 0012). Row locks serialise concurrent
reservations on every thread, process and node, so racing requests cannot overspend. After
the call the reservation is settled to the tokens the model server counted (0 for a stored
result reused), or released if the request failed: a caller is not charged for a refused or
broken request. Windows are fixed UTC minutes and days, as in most API rate limits:
simple to state, to show in ``GET /api/v1/usage`` and to audit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.pq import TransactionStatus
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

RESERVE_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s)"
RESERVE = """
INSERT INTO quota_usage AS u
       (rule, member, period, window_start, documents, tokens, max_documents, max_tokens)
VALUES {rows}
    ON CONFLICT (rule, member, period, window_start) DO UPDATE
   SET documents = u.documents + EXCLUDED.documents, tokens = u.tokens + EXCLUDED.tokens,
       max_documents = EXCLUDED.max_documents, max_tokens = EXCLUDED.max_tokens
"""
"""One row per window, in the order of ``windows_for`` (the order its rows are locked in)."""
MEASURES = {"ck_quota_usage_documents": "documents", "ck_quota_usage_tokens": "tokens"}
FORGET_OLD = "DELETE FROM quota_usage WHERE window_start < now() - interval '2 days'"
FORGET_EVERY_S = 3600.0
SETTLE = """
WITH k AS (
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::bigint[],
                         %s::bigint[]) AS k(rule, member, period, window_start, documents, tokens)
), locked AS (
    SELECT u.rule, u.member, u.period, u.window_start FROM quota_usage AS u JOIN k
     USING (rule, member, period, window_start)
     ORDER BY u.rule, u.member, u.period, u.window_start FOR UPDATE OF u
)
UPDATE quota_usage AS u SET documents = u.documents + k.documents, tokens = u.tokens + k.tokens,
       max_documents = NULL, max_tokens = NULL
  FROM k JOIN locked USING (rule, member, period, window_start)
 WHERE (u.rule, u.member, u.period, u.window_start)
     = (k.rule, k.member, k.period, k.window_start)
"""
"""Corrections of several reservations at once, the rows locked in the order reservations lock
them (rule, member, period, then window), so the two never deadlock. The limits are cleared:
only a reservation is checked against them (a correction after the limits were lowered must
not fail)."""
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


SETTLE_EVERY_S = 0.05
"""How long corrections gather before one statement writes them: at most this late."""
WindowKey = tuple[str, str, str, datetime]
"""rule, member, period, window start."""


class Settlements:
    """Corrections to reservations, written by a background thread in batches, so a request
    does not wait for its own. A correction only ever lowers a window's usage (a reservation is
    an upper bound), so a late one never lets a budget be overspent; one the database does not
    take is dropped, leaving the caller charged its upper bound."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._changed = threading.Condition()
        self._waiting: dict[WindowKey, list[int]] = {}
        self._writing = False
        self._thread: threading.Thread | None = None

    def add(self, windows: list[Window], documents: int, tokens: int) -> None:
        with self._changed:
            for w in windows:
                delta = self._waiting.setdefault((w.rule, w.member, w.period, w.start), [0, 0])
                delta[0] += documents
                delta[1] += tokens
            if self._thread is None:  # started on first use: after gunicorn's fork
                self._thread = threading.Thread(target=self._run, name="settle", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def flush(self) -> None:
        """Wait until the corrections added so far are written (or dropped)."""
        with self._changed:
            self._changed.wait_for(lambda: not self._waiting and not self._writing, timeout=10)

    def _run(self) -> None:
        forget_at = 0.0
        while True:
            if time.monotonic() >= forget_at:  # windows older than yesterday: nobody asks
                forget_at = time.monotonic() + FORGET_EVERY_S
                with (
                    contextlib.suppress(DatabaseUnavailable, psycopg.Error),
                    autocommit(self._engine) as connection,
                ):
                    connection.execute(FORGET_OLD)
            with self._changed:
                self._changed.wait_for(lambda: bool(self._waiting), timeout=FORGET_EVERY_S)
                if not self._waiting:
                    continue
            time.sleep(SETTLE_EVERY_S)  # gather the corrections of the requests meanwhile
            with self._changed:
                batch, self._waiting, self._writing = self._waiting, {}, True
            try:
                self._write(batch)
            except (DatabaseUnavailable, psycopg.Error):
                log.warning("quota reservations not settled: the database did not answer")
            with self._changed:
                self._writing = False
                self._changed.notify_all()

    def _write(self, batch: dict[WindowKey, list[int]]) -> None:
        keys = sorted(batch)
        with autocommit(self._engine) as connection:
            connection.execute(
                SETTLE,
                (
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [k[2] for k in keys],
                    [k[3] for k in keys],
                    [batch[k][0] for k in keys],
                    [batch[k][1] for k in keys],
                ),
            )


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
        self._settlements = Settlements(engine)

    def flush(self) -> None:
        """Wait until this process's settlements so far are written."""
        self._settlements.flush()

    def usage(self, identity: Identity) -> list[WindowUsage]:
        """The current windows of ``identity``'s own budgets (this process's settlements
        written first)."""
        self.flush()
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
        self.flush()
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
            self._settlements.add(windows, -1, -hold.reserved_tokens)
            raise
        if hold.tokens != hold.reserved_tokens:
            self._settlements.add(windows, 0, hold.tokens - hold.reserved_tokens)

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
        """The upsert on ``connection``: in autocommit mode the statement alone, inside a
        transaction behind a savepoint (a refusal leaves the transaction usable)."""
        params: list[object] = []
        for w in windows:
            params += [w.rule, w.member, w.period, w.start, documents, tokens]
            params += [w.max_documents, w.max_tokens]
        statement = RESERVE.format(rows=", ".join([RESERVE_ROW] * len(windows)))
        in_transaction = connection.info.transaction_status != TransactionStatus.IDLE
        try:
            with connection.transaction() if in_transaction else contextlib.nullcontext():
                connection.execute(statement, params)
        except psycopg.errors.CheckViolation as exc:
            measure = MEASURES.get(exc.diag.constraint_name or "", "documents")
            window = self._full(connection, windows, measure, documents, tokens)
            metrics.QUOTA_DENIALS.labels(measure, window.period).inc()
            raise QuotaExceeded(measure, window.period, self._seconds_until(window.ends)) from exc

    def _full(
        self,
        connection: psycopg.Connection[Any],
        windows: list[Window],
        measure: str,
        documents: int,
        tokens: int,
    ) -> Window:
        """The window that had no room for ``measure`` (for the refusal's message and
        Retry-After): read back, as the refused statement does not say which row it was."""
        limited = [w for w in windows if getattr(w, f"max_{measure}") is not None]
        used = {
            (rule, member, period): (d, t)
            for rule, member, period, d, t in connection.execute(
                USED_IN, ([w.rule for w in windows], [w.start for w in windows])
            )
        }
        for w in limited:
            d, t = used.get((w.rule, w.member, w.period), (0, 0))
            wanted = d + documents if measure == "documents" else t + tokens
            if wanted > getattr(w, f"max_{measure}"):
                return w
        return limited[0]  # its room was given back meanwhile

    def _seconds_until(self, moment: datetime) -> int:
        return max(1, math.ceil((moment - self._clock()).total_seconds()))
