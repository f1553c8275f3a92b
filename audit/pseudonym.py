"""HMAC-SHA-256 pseudonyms for document ids, so the log links accesses without holding the id."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from audit.errors import KeyFileError

PREFIX = "hmac-sha256:"
MIN_KEY_BYTES = 16


def load_key(path: Path) -> bytes:
    """The key file's bytes (a trailing newline is ignored); at least 16 bytes."""
    try:
        key = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise KeyFileError(f"cannot read the pseudonym key {path}: {exc}") from exc
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"pseudonym key {path}: got {len(key)} bytes, want >= {MIN_KEY_BYTES}")
    return key


def pseudonymise(key: bytes, document_id: str) -> str:
    digest = hmac.new(key, document_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest
