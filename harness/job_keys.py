"""The bulk jobs' key-encryption key every install generates, made the same way for tests and
benchmarks."""

from __future__ import annotations

from pathlib import Path

from harness.audit_keys import random_hex_key

ENV = "APPLIANCE_JOB_KEY_PATH"


def job_key(folder: Path) -> Path:
    return random_hex_key(folder / "job-kek.key")
