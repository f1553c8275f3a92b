"""Artifacts named by their own SHA-256 (``<kind>-<hex>.json``): a trained head, a calibration.
The digest is the artifact's identity, recorded with what it produced; a file whose bytes are
not the ones its name says is refused, so an artifact cannot be edited in place unseen."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


class ArtifactInvalid(ValueError):
    """The file is not an artifact of the kind asked for, or not the one its name says."""


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, indent=1).encode("ascii") + b"\n"


def save_artifact(kind: str, document: dict[str, Any], directory: Path) -> tuple[Path, str]:
    """Write ``document`` as ``<kind>-<sha256>.json`` in ``directory`` (atomically: a reader
    sees no file or the whole); returns its path and digest."""
    data = canonical(document)
    digest = hashlib.sha256(data).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{kind}-{digest}.json"
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return path, digest


def load_artifact(kind: str, path: Path) -> tuple[dict[str, Any], str]:
    """The document in ``path`` and its digest, checked against the name."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactInvalid(f"cannot read {path}: {exc.strerror}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if path.name != f"{kind}-{digest}.json":
        raise ArtifactInvalid(f"{path} does not hold the bytes its name says (sha256 {digest})")
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ArtifactInvalid(f"{path} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ArtifactInvalid(f"{path} is not a {kind} artifact")
    return document, digest
