"""Start-up state of one worker: migrations at head and the model warmed up.

The warm-up runs in a background thread started by gunicorn's ``post_worker_init`` hook (never at
import or in the app factory), retrying until the model answers, so a worker can start before
the model server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.engine import Engine
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from appliance import migrate
from appliance.classification.labeller import DocumentLabeller
from appliance.errors import ApplianceError

log = logging.getLogger(__name__)


class StartupState:
    def __init__(
        self, engine: Engine, labeller: DocumentLabeller, record_quotas: Callable[[], object]
    ) -> None:
        """``record_quotas`` puts the quotas in force on the audit record (before the worker
        is ready: a change of quotas is never unaudited)."""
        self._engine = engine
        self._labeller = labeller
        self._record_quotas = record_quotas
        self._warmed = threading.Event()
        self._migrated = False

    @property
    def warmed_up(self) -> bool:
        return self._warmed.is_set()

    def migrations_at_head(self) -> bool:
        """Checked until true once, then remembered: migrations never go backwards under us."""
        if not self._migrated:
            self._migrated = migrate.is_at_head(self._engine)
        return self._migrated

    def warm_up(self) -> None:
        """Record the quotas and warm the model up, retrying with backoff until both are
        done."""
        for attempt in Retrying(
            retry=retry_if_exception_type(ApplianceError),
            wait=wait_exponential(multiplier=0.5, max=10),
        ):
            with attempt:
                self._record_quotas()
                self._labeller.warm_up()
        self._warmed.set()
        log.info("model warm-up done", extra={"model": self._labeller.model.served_name})

    def start_warm_up(self) -> None:
        threading.Thread(target=self.warm_up, name="warm-up", daemon=True).start()
