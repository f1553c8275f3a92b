"""Workers hold back their model calls while the API has interactive ones, through the real
PostgreSQL as the application's role (the signal every process on every node shares)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from appliance.backends.interfaces import ModelAnswer, Prompt
from appliance.db import make_engine
from appliance.jobs.yielding import (
    AnnouncingBackend,
    InteractiveBeacon,
    InteractiveGate,
    YieldingBackend,
)
from appliance.settings import Settings
from tests.common.doubles import ScriptedBackend

PROMPT = Prompt("Classify.", "Document: x", ("A", "B"))
GRACE_S = 0.5


class HeldBackend(ScriptedBackend):
    """Answers once ``release`` is set; counts the calls in flight."""

    def __init__(self) -> None:
        super().__init__({"A": 0.7, "B": 0.3})
        self.release = threading.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def classify(self, prompt: Prompt) -> ModelAnswer:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.release.wait(10)
        with self._lock:
            self.in_flight -= 1
        return super().classify(prompt)


@pytest.fixture
def engine(clean_database: str) -> Iterator[Engine]:
    built = make_engine(Settings(database_url=clean_database))
    yield built
    built.dispose()


def _calls(backend: YieldingBackend, count: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=backend.classify, args=(PROMPT,)) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_a_worker_waits_while_the_api_is_busy_and_goes_on_after(engine: Engine) -> None:
    api = HeldBackend()
    announcing = AnnouncingBackend(api, InteractiveBeacon(engine))
    interactive = threading.Thread(target=announcing.classify, args=(PROMPT,))
    interactive.start()  # in flight until released
    time.sleep(0.6)  # stamped by the beacon's next tick
    job = HeldBackend()
    job.release.set()
    (call,) = _calls(YieldingBackend(job, InteractiveGate(engine, 0, GRACE_S)), 1)
    time.sleep(1.0)
    assert call.is_alive() and job.most_in_flight == 0  # held back
    api.release.set()
    interactive.join(5)
    call.join(5)  # the stamp ages past the grace period: the job's call goes ahead
    assert not call.is_alive() and job.most_in_flight == 1


def test_a_worker_keeps_its_allowed_share_while_the_api_is_busy(engine: Engine) -> None:
    api = HeldBackend()
    interactive = threading.Thread(
        target=AnnouncingBackend(api, InteractiveBeacon(engine)).classify, args=(PROMPT,)
    )
    interactive.start()
    time.sleep(0.6)
    job = HeldBackend()
    calls = _calls(YieldingBackend(job, InteractiveGate(engine, 1, GRACE_S)), 3)
    time.sleep(1.0)
    assert job.most_in_flight == 1
    api.release.set()
    job.release.set()
    for thread in [interactive, *calls]:
        thread.join(5)
    assert not any(thread.is_alive() for thread in calls)


def test_jobs_run_when_the_signal_cannot_be_read() -> None:
    """A database that does not answer does not stall the workers (the API fails anyway)."""
    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    job = HeldBackend()
    job.release.set()
    (call,) = _calls(YieldingBackend(job, InteractiveGate(dead, 0, GRACE_S)), 1)
    call.join(10)
    assert not call.is_alive() and job.most_in_flight == 1
