"""``appliance worker`` processes, started as operators start them, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

WORKER = [str(Path(sys.executable).with_name("appliance")), "worker"]


class WorkerProcess:
    """One worker; its output goes to ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                WORKER, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to finish or to say goodbye (a crashed node)."""
        self._process.kill()
        self._process.wait()

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, as systemd and Kubernetes stop it; its exit status."""
        if self.alive:
            self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
