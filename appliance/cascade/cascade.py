"""A cascade of labellers asked in order: a stage's answer is kept when its confidence reaches
that stage's threshold, otherwise the next stage is asked; the last stage's answer is always
kept. Each result records the stage that answered and the confidence of every stage asked.

Confidences are compared as each stage reports them: a stage whose raw probabilities are not
calibrated should be wrapped so that they are (a threshold then means the same for every
model), before it goes into a cascade.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from appliance import metrics
from appliance.backends.interfaces import ModelIdentity, combined
from appliance.classification.labeller import DocumentLabeller, Labelled, StageAnswer

STAGE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
"""A stage's name: in metrics labels, result rows and audit entries (``name:confidence``)."""


@dataclass(frozen=True)
class CascadeStage:
    """A named stage and the confidence at which its answer is kept."""

    name: str
    labeller: DocumentLabeller
    threshold: float
    """Kept when its confidence is at least this; the last stage's answer is kept whatever."""


class Cascade:
    """A ``DocumentLabeller`` over several: the first stage sure enough answers."""

    def __init__(self, stages: Sequence[CascadeStage]) -> None:
        if not stages:
            raise ValueError("a cascade needs at least one stage")
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names) or not all(map(STAGE_NAME.fullmatch, names)):
            raise ValueError(f"cascade stage names must differ and match {STAGE_NAME.pattern}")
        self._stages = tuple(stages)
        self.fingerprint = _digest(
            [(s.name, s.threshold, s.labeller.fingerprint) for s in self._stages]
        )
        """Every stage's fingerprint and threshold: a change to any asks the models again."""
        self.prompt_version = _digest(
            [(s.name, s.threshold, s.labeller.prompt_version) for s in self._stages]
        )

    @property
    def model(self) -> ModelIdentity:
        """The last stage's model (a result names the stage's that answered it)."""
        return self._stages[-1].labeller.model

    def label(self, text: str) -> Labelled:
        asked: list[StageAnswer] = []
        usages = []
        for stage in self._stages:  # not empty (the constructor's check)
            labelled = stage.labeller.label(text)
            usages.append(labelled.usage)
            asked.append(StageAnswer(stage.name, labelled.scored.confidence))
            if labelled.scored.confidence >= stage.threshold or stage is self._stages[-1]:
                break
            metrics.CASCADE_STAGE_ANSWERS.labels(stage.name, "escalated").inc()
        metrics.CASCADE_STAGE_ANSWERS.labels(stage.name, "kept").inc()
        model = labelled.model or stage.labeller.model
        return Labelled(labelled.scored, labelled.truncated, combined(usages), model, tuple(asked))

    def token_estimate(self, text: str) -> int:
        """Every stage may be asked: the sum of their bounds."""
        return sum(stage.labeller.token_estimate(text) for stage in self._stages)

    def warm_up(self) -> None:
        for stage in self._stages:
            stage.labeller.warm_up()


def _digest(shape: object) -> str:
    canonical = json.dumps({"cascade": shape}, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
