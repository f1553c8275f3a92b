"""Bulk work yields to interactive calls, across every process and node.

vLLM's priority scheduling (``APPLIANCE_VLLM_REQUEST_PRIORITY``) orders only the requests that
wait. Where a step's time grows with the batch, as on a CPU, a job's requests batched with an
interactive one still slow it down several times (docs/benchmarks.md). So while any API process
has a classification in flight, or had one within ``APPLIANCE_WORKER_INTERACTIVE_GRACE_S``,
workers start no new model call beyond ``APPLIANCE_WORKER_IN_FLIGHT_WHEN_INTERACTIVE`` (default
0: jobs run in the gaps; on a GPU, where batching is nearly free, more keeps jobs moving).

The signal goes through PostgreSQL, which every API process and worker shares: an API process
stamps its row of ``interactive_activity`` at most every ``TICK_S`` while it is busy, and each
worker reads the newest stamp every ``TICK_S``. A database that does not answer lets jobs run
(the API then fails anyway; jobs must not stall on a signal).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import Engine

from appliance.backends.interfaces import ModelAnswer, ModelBackend, ModelIdentity, Prompt
from appliance.db import autocommit
from appliance.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

TICK_S = 0.2
STAMP = (
    "INSERT INTO interactive_activity (process, seen_at) VALUES (%s, now())"
    " ON CONFLICT (process) DO UPDATE SET seen_at = now()"
)
FORGET_OLD = "DELETE FROM interactive_activity WHERE seen_at < now() - interval '1 day'"
ACTIVE = (
    "SELECT coalesce(max(seen_at) > now() - make_interval(secs => %s), false)"
    " FROM interactive_activity"
)


class DelegatingBackend:
    """A ``ModelBackend`` that passes everything to another; subclasses wrap ``classify``."""

    def __init__(self, backend: ModelBackend) -> None:
        self._backend = backend

    @property
    def identity(self) -> ModelIdentity:
        return self._backend.identity

    def classify(self, prompt: Prompt) -> ModelAnswer:
        return self._backend.classify(prompt)

    def tokenize(self, text: str) -> list[int]:
        return self._backend.tokenize(text)

    def detokenize(self, tokens: list[int]) -> str:
        return self._backend.detokenize(tokens)

    def is_healthy(self) -> bool:
        return self._backend.is_healthy()

    def close(self) -> None:
        self._backend.close()


class InteractiveBeacon:
    """An API process's stamp: busy now (stamped from a background thread, off the request)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._process = f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._in_flight = 0
        self._started_since_tick = False
        self._thread: threading.Thread | None = None

    @contextmanager
    def busy(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self._started_since_tick = True
            if self._thread is None:  # started on first use: after gunicorn's fork
                self._process = f"{socket.gethostname()}:{os.getpid()}"
                self._thread = threading.Thread(target=self._run, name="beacon", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def _run(self) -> None:
        self._quietly(FORGET_OLD)
        while True:
            with self._lock:
                busy = self._in_flight > 0 or self._started_since_tick
                self._started_since_tick = False
            if busy:
                self._quietly(STAMP, (self._process,))
            time.sleep(TICK_S)

    def _quietly(self, statement: str, params: tuple[object, ...] = ()) -> None:
        try:
            with autocommit(self._engine) as connection:
                connection.execute(statement, params)
        except (DatabaseUnavailable, psycopg.Error):
            log.warning("interactive activity not stamped: the database did not answer")


class AnnouncingBackend(DelegatingBackend):
    """The API's backend: each model call marks the process busy while it runs."""

    def __init__(self, backend: ModelBackend, beacon: InteractiveBeacon) -> None:
        super().__init__(backend)
        self._beacon = beacon

    def classify(self, prompt: Prompt) -> ModelAnswer:
        with self._beacon.busy():
            return self._backend.classify(prompt)


class InteractiveGate:
    """A worker's view of the API's activity, and the limit on its own model calls."""

    def __init__(self, engine: Engine, allowed_when_interactive: int, grace_s: float) -> None:
        self._engine = engine
        self._allowed = allowed_when_interactive
        self._grace_s = grace_s
        self._changed = threading.Condition()
        self._interactive = False
        self._in_flight = 0
        self._thread: threading.Thread | None = None

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Wait while interactive calls are about and this worker has its share in flight."""
        with self._changed:
            if self._thread is None:  # the first call reads the signal before it goes
                self._interactive = self._active()
                self._thread = threading.Thread(target=self._watch, name="gate", daemon=True)
                self._thread.start()
            while self._interactive and self._in_flight >= self._allowed:
                self._changed.wait(TICK_S)
            self._in_flight += 1
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def _watch(self) -> None:
        while True:
            active = self._active()
            with self._changed:
                self._interactive = active
                self._changed.notify_all()
            time.sleep(TICK_S)

    def _active(self) -> bool:
        try:
            with autocommit(self._engine) as connection:
                row = connection.execute(ACTIVE, (self._grace_s,)).fetchone()
        except (DatabaseUnavailable, psycopg.Error):
            return False
        return bool(row and row[0])


class YieldingBackend(DelegatingBackend):
    """A worker's backend: each model call waits for a slot of the gate."""

    def __init__(self, backend: ModelBackend, gate: InteractiveGate) -> None:
        super().__init__(backend)
        self._gate = gate

    def classify(self, prompt: Prompt) -> ModelAnswer:
        with self._gate.slot():
            return self._backend.classify(prompt)
