"""The cheap stage's linear head: weights over an encoder's vectors, one row per label, and the
temperature that calibrates its probabilities, stored as a versioned artifact.

An artifact is a JSON file named by its own SHA-256 (``head-<hex>.json``); that digest is the
stage's model identity, recorded with every result it answers. A head names the encoder it was
trained on: it is refused next to any other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance.cascade.artifacts import ArtifactInvalid, load_artifact, save_artifact

KIND = "head"
FORMAT = 1
CURRENT = "current.json"
"""The pointer to the promoted artifact, in the heads directory."""


class HeadInvalid(ArtifactInvalid):
    """The file is not a head artifact, or not the one its name or a pointer says."""


@dataclass(frozen=True)
class Head:
    labels: tuple[str, ...]
    weights: NDArray[np.float64]
    """Labels by encoder dimensions."""
    bias: NDArray[np.float64]
    temperature: float
    encoder_digest: str
    taxonomy_version: str
    training: Mapping[str, Any] = field(default_factory=dict)
    """What it was fitted and gated on (counts and figures, never text)."""

    def probabilities(
        self, vectors: NDArray[np.float32], calibrated: bool = True
    ) -> NDArray[np.float64]:
        """A row of label probabilities per vector (the softmax of the logits over ``T``)."""
        logits = vectors.astype(np.float64) @ self.weights.T + self.bias
        if calibrated:
            logits = logits / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def to_document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "labels": list(self.labels),
            "weights": self.weights.tolist(),
            "bias": self.bias.tolist(),
            "temperature": self.temperature,
            "encoder_digest": self.encoder_digest,
            "taxonomy_version": self.taxonomy_version,
            "training": dict(self.training),
        }


@dataclass(frozen=True)
class StoredHead:
    head: Head
    digest: str
    """SHA-256 (hex) of the artifact's bytes."""
    path: Path


def save_head(head: Head, directory: Path) -> StoredHead:
    """Write ``head`` as ``head-<sha256>.json`` in ``directory``."""
    path, digest = save_artifact(KIND, head.to_document(), directory)
    return StoredHead(head, digest, path)


def load_head(path: Path) -> StoredHead:
    """Read an artifact, checking its bytes against the digest in its name."""
    try:
        document, digest = load_artifact(KIND, path)
        if document.get("format") != FORMAT:
            raise HeadInvalid(f"{path}: unknown head format {document.get('format')!r}")
        head = Head(
            labels=tuple(document["labels"]),
            weights=np.array(document["weights"], dtype=np.float64),
            bias=np.array(document["bias"], dtype=np.float64),
            temperature=float(document["temperature"]),
            encoder_digest=str(document["encoder_digest"]),
            taxonomy_version=str(document["taxonomy_version"]),
            training=document.get("training", {}),
        )
    except (ArtifactInvalid, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, HeadInvalid):
            raise
        raise HeadInvalid(f"{path} is not a head artifact: {exc}") from exc
    rows = len(head.labels)
    if head.weights.ndim != 2 or head.weights.shape[0] != rows or head.bias.shape != (rows,):
        raise HeadInvalid(f"{path}: weights and bias do not match its {rows} labels")
    if not head.temperature > 0:
        raise HeadInvalid(f"{path}: temperature must be positive")
    return StoredHead(head, digest, path)


def promote(stored: StoredHead, directory: Path) -> None:
    """Make ``stored`` the head the stage loads from ``directory`` (``current.json``, replaced
    atomically: a stage starting meanwhile reads the old pointer or the new, never half)."""
    pointer = directory / CURRENT
    partial = pointer.with_suffix(".partial")
    partial.write_text(json.dumps({"head": stored.path.name}) + "\n")
    os.replace(partial, pointer)


def load_current(directory: Path) -> StoredHead | None:
    """The promoted head in ``directory``; None before any was promoted."""
    pointer = directory / CURRENT
    try:
        name = json.loads(pointer.read_text())["head"]
    except FileNotFoundError:
        return None
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise HeadInvalid(f"{pointer} is not a head pointer: {exc}") from exc
    if not isinstance(name, str) or "/" in name:
        raise HeadInvalid(f"{pointer} names no artifact in {directory}")
    return load_head(directory / name)
