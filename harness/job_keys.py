"""The bulk jobs' key-encryption key every install generates, made the same way for tests and
benchmarks."""

from __future__ import annotations

import secrets
from pathlib import Path

ENV = "APPLIANCE_JOB_KEY_PATH"


def job_key(folder: Path) -> Path:
    """A new random 256-bit key file (64 hex characters, like ``openssl rand -hex 32``) in
    ``folder``, readable by its owner only."""
    path = folder / "job-kek.key"
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path
