"""Where ``appliance eval`` and ``appliance classify`` send documents (a light module: the
commands build it while parsing options)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Target:
    """Where documents are classified: a running appliance (``service``) or in-process."""

    service: str | None
    cert: Path | None
    key: Path | None
    ca: Path | None
    concurrency: int
    progress: bool
