"""The audit pseudonym key every install generates, made the same way for tests and benchmarks."""

from __future__ import annotations

import secrets
from pathlib import Path

ENV = "APPLIANCE_AUDIT_PSEUDONYM_KEY_PATH"


def pseudonym_key(folder: Path) -> Path:
    """A new random HMAC key file in ``folder`` (see ``random_hex_key``)."""
    return random_hex_key(folder / "audit-pseudonym.key")


def random_hex_key(path: Path) -> Path:
    """A new random 256-bit key file at ``path``: 64 hex characters, like ``openssl rand -hex
    32`` (how every install makes its keys), readable by its owner only."""
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path
