"""HMAC-SHA-256 pseudonyms for document ids, so the log links accesses without holding the id."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from audit.errors import KeyFileError

PREFIX = "hmac-sha256:"
MIN_KEY_BYTES = 16


def load_key(path: Path, what: str = "pseudonym key") -> bytes:
    """The key file's bytes (a trailing newline is ignored); at least 16 bytes. ``what`` names
    the key in errors (the job callbacks' signing key is read the same way)."""
    try:
        key = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise KeyFileError(f"cannot read the {what} {path}: {exc}") from exc
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"{what} {path}: got {len(key)} bytes, want >= {MIN_KEY_BYTES}")
    return key


def pseudonymise(key: bytes, document_id: str) -> str:
    digest = hmac.new(key, document_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest
