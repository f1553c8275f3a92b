"""Document content as the dedupe key sees it: normalised, hashed, never kept."""

from __future__ import annotations

import hashlib
import unicodedata


def normalise(text: str) -> str:
    """NFC, whitespace runs folded to one space, trimmed: layout noise must not defeat dedupe."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_sha256(text: str) -> str:
    """Hex SHA-256 of the normalised text, encoded as UTF-8."""
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()
