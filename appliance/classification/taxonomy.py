"""The taxonomy: which labels exist, how to describe them, and its content-derived version."""

from __future__ import annotations

import hashlib
import json
import string
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from appliance.errors import ApplianceError

LABEL_PATTERN = r"^[A-Z][A-Z0-9_]{0,127}$"
CODES = string.ascii_uppercase[:20]
"""One single-letter answer code per label: single tokens for any tokenizer we have met.
Twenty at most, because vLLM returns at most 20 top log-probabilities per token by default."""


class TaxonomyError(ApplianceError):
    code = "invalid_taxonomy"


class Label(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=LABEL_PATTERN)
    description: str = Field(min_length=1, max_length=1000)
    examples: tuple[str, ...] = ()
    review_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Results with this label and a lower confidence need review; None: the global setting."""


class Taxonomy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    labels: tuple[Label, ...] = Field(min_length=2, max_length=len(CODES))

    @field_validator("labels")
    @classmethod
    def _names_unique(cls, labels: tuple[Label, ...]) -> tuple[Label, ...]:
        names = [label.name for label in labels]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"label names must be unique, got duplicates {duplicates}")
        return labels

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    @property
    def code_to_label(self) -> dict[str, str]:
        """``{"A": "CLINICAL_NOTES", ...}`` in taxonomy order."""
        return dict(zip(CODES, self.names, strict=False))

    @property
    def review_thresholds(self) -> dict[str, float]:
        """The per-label review thresholds that are set, ``{label: threshold}``."""
        return {
            label.name: label.review_threshold
            for label in self.labels
            if label.review_threshold is not None
        }

    @property
    def version(self) -> str:
        """``sha256:<hex>`` of the canonical JSON: equal content gives an equal version. Unset
        optional fields are left out, so adding an optional field keeps existing versions."""
        canonical = json.dumps(
            self.model_dump(mode="json", exclude_none=True),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_taxonomy(text: str, source: str) -> Taxonomy:
    """Parse YAML (JSON is YAML too) into a validated taxonomy."""
    try:
        return Taxonomy.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        raise TaxonomyError(f"taxonomy {source} is invalid: {exc}") from exc


def load_taxonomy(path: Path | None) -> Taxonomy:
    """The taxonomy at ``path``, or the built-in default of five classes."""
    if path is None:
        text = resources.files("appliance.data").joinpath("default_taxonomy.yaml").read_text()
        return parse_taxonomy(text, "(built-in default)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaxonomyError(f"cannot read taxonomy {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise TaxonomyError(f"taxonomy {path} is not UTF-8 text") from exc
    return parse_taxonomy(text, str(path))
