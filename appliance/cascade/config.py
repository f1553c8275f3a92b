"""The cascade an operator configures (``APPLIANCE_CASCADE_PATH``, YAML): its stages in order,
each with the confidence at which its answer is kept.

    stages:
      - name: embedding          # the cheap stage: encoder and promoted head
        kind: embedding
        encoder: /var/lib/appliance/encoder
        heads: /var/lib/appliance/heads
        threshold: 0.9
      - name: llm                # the model server, optionally calibrated
        kind: llm
        calibration: /var/lib/appliance/calibration-<sha256>.json   # from `appliance eval`

Without the file the appliance asks the LLM alone, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appliance.cascade.artifacts import ArtifactInvalid
from appliance.cascade.calibration import Calibrated, Temperature, load_calibration
from appliance.cascade.cascade import STAGE_NAME, Cascade, CascadeStage
from appliance.cascade.embedding import EmbeddingLabeller
from appliance.cascade.encoder import Encoder, EncoderInvalid
from appliance.cascade.head import StoredHead, load_current
from appliance.classification.labeller import DocumentLabeller
from appliance.classification.taxonomy import Taxonomy
from appliance.errors import ApplianceError


class CascadeConfigError(ApplianceError):
    code = "invalid_cascade"


class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=f"^{STAGE_NAME.pattern}$")
    threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    """Its answer is kept at this confidence or more (the last stage's always)."""


class EmbeddingStageConfig(_Stage):
    kind: Literal["embedding"]
    encoder: Path
    """The folder ``scripts/encoder-model.sh`` made."""
    heads: Path
    """Where ``appliance train`` writes head artifacts and the pointer to the promoted one."""
    threads: int = Field(default=1, ge=1)
    """ONNX Runtime threads per process (the API runs several processes)."""


class LlmStageConfig(_Stage):
    kind: Literal["llm"]
    calibration: Path | None = None
    """The artifact ``appliance eval`` writes (a temperature fitted on held-out answers, for
    the served model); None: the model's raw confidences."""


StageConfig = Annotated[EmbeddingStageConfig | LlmStageConfig, Field(discriminator="kind")]


class CascadeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: tuple[StageConfig, ...] = Field(min_length=1)

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise CascadeConfigError(f"the cascade has no stage {name!r}")


def load_cascade_config(path: Path) -> CascadeConfig:
    try:
        return CascadeConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise CascadeConfigError(f"cannot read cascade {path}: {exc.strerror}") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise CascadeConfigError(f"cascade {path} is not valid: {exc}") from exc


def stage_parts(stage: EmbeddingStageConfig, threads: int) -> tuple[Encoder, StoredHead | None]:
    """The stage's encoder and its promoted head (None before the first promotion); an error
    when either is not what its digests say."""
    try:
        return Encoder(stage.encoder, threads), load_current(stage.heads)
    except (ArtifactInvalid, EncoderInvalid) as exc:
        raise CascadeConfigError(f"stage {stage.name!r}: {exc}") from exc


def embedding_labeller(stage: EmbeddingStageConfig, taxonomy: Taxonomy) -> EmbeddingLabeller:
    """The stage with its promoted head; an error when none has been promoted yet."""
    encoder, head = stage_parts(stage, stage.threads)
    if head is None:
        raise CascadeConfigError(
            f"stage {stage.name!r} has no promoted head in {stage.heads}: run `appliance train`"
        )
    try:
        return EmbeddingLabeller(encoder, head, taxonomy)
    except ArtifactInvalid as exc:
        raise CascadeConfigError(f"stage {stage.name!r}: {exc}") from exc


def calibration(path: Path, model: str) -> Temperature:
    try:
        return load_calibration(path, model)
    except ArtifactInvalid as exc:
        raise CascadeConfigError(str(exc)) from exc


def build_cascade(config: CascadeConfig, llm: DocumentLabeller, taxonomy: Taxonomy) -> Cascade:
    """The configured stages over ``llm`` (the model server's labeller)."""
    stages = []
    for stage in config.stages:
        labeller: DocumentLabeller
        if isinstance(stage, EmbeddingStageConfig):
            labeller = embedding_labeller(stage, taxonomy)
        else:
            labeller = llm
            if stage.calibration is not None:
                labeller = Calibrated(llm, calibration(stage.calibration, llm.model.served_name))
        stages.append(CascadeStage(stage.name, labeller, stage.threshold))
    try:
        return Cascade(stages)
    except ValueError as exc:
        raise CascadeConfigError(str(exc)) from exc


def describe_cascade(
    path: Path | None, taxonomy: Taxonomy
) -> list[dict[str, object]] | None:
    """What ``appliance check-config`` shows: each stage, its threshold and, for an embedding
    stage, the promoted head (loaded, so a missing or altered artifact fails the check)."""
    if path is None:
        return None
    shown: list[dict[str, object]] = []
    for stage in load_cascade_config(path).stages:
        item: dict[str, object] = {
            "name": stage.name,
            "kind": stage.kind,
            "threshold": stage.threshold,
        }
        if isinstance(stage, EmbeddingStageConfig):
            item["model"] = embedding_labeller(stage, taxonomy).model.weights_digest
        shown.append(item)
    return shown
