"""The sealer's Prometheus metrics (served by ``audit-tool seal --metrics-bind``). No event
content: counts, sizes, times and fixed reason names only."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge

from audit.sealer_state import REFUSAL_REASONS

REFUSING = Gauge(
    "audit_sealer_refusing",
    "1 while the sealer refuses to sign because the log does not extend its last signed tree",
    ["reason"],
)
PENDING = Gauge("audit_pending_events", "Events waiting to be sealed (read when the sealer idles)")
LOG_SIZE = Gauge("audit_log_entries", "Entries in the sealed log")
CHECKPOINT_SIZE = Gauge("audit_checkpoint_size", "Entries covered by the newest signed checkpoint")
CHECKPOINT_TIME = Gauge(
    "audit_checkpoint_timestamp_seconds",
    "When this sealer last signed (or, at start, adopted) a checkpoint, Unix time",
)
SEALED = Counter("audit_sealed_events_total", "Events sealed into the log by this sealer")
QUARANTINED = Counter(
    "audit_quarantined_rows_total",
    "Pending rows the sealer set aside instead of sealing",
    ["reason"],
)

WITNESS_SIZE = Gauge(
    "audit_witness_cosigned_size", "Size of the newest checkpoint a witness cosigned", ["witness"]
)
WITNESS_TIME = Gauge(
    "audit_witness_cosigned_timestamp_seconds",
    "When a witness last cosigned a checkpoint, Unix time",
    ["witness"],
)
WITNESS_FAILURES = Counter(
    "audit_witness_failures_total",
    "Submissions to a witness that got no cosignature, by reason",
    ["witness", "reason"],
)


def refusing(reason: str | None) -> None:
    """Mark the sealer as refusing for ``reason``, or as sealing again (None)."""
    for known in REFUSAL_REASONS:
        REFUSING.labels(known).set(1 if known == reason else 0)


def checkpoint_signed(size: int) -> None:
    CHECKPOINT_SIZE.set(size)
    CHECKPOINT_TIME.set(time.time())
