"""Who asked, from where, under which request id, for which operation, and what was audited.

One ``RequestContext`` per API request (made by the request hooks in ``appliance.app``) or per
CLI run. Services take it explicitly; the audit recorder notes in it each operation it has
recorded, so the request hook audits exactly the requests that no service audited.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from appliance.audit_bridge.interfaces import Action, JobRef
from appliance.identity.interfaces import Identity


@dataclass(eq=False)
class RequestContext:
    request_id: str
    identity: Identity | None
    source_address: str | None
    action: Action | None = None
    """The operation asked for, as its view declares it; None when no route matched."""
    error_code: str | None = None
    """The code of the error answered, if any (set where error responses are built)."""
    recorded: set[Action] = field(default_factory=set)
    """Operations whose audit event has been committed for this request."""
    started: float = field(default_factory=time.perf_counter)
    job: JobRef | None = None
    """A worker's context: the bulk job item it classifies (its events name it)."""

    @property
    def actor(self) -> str | None:
        return self.identity.name if self.identity else None
