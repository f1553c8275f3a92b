"""Temperature scaling: one number, fitted on held-out answers, that makes a stage's confidence
mean what it says, so that a cascade's thresholds (and the review threshold) mean the same for
every model.

A stage's scores are probabilities over the taxonomy; calibrated, each becomes ``p ** (1 / T)``
renormalised (the softmax of its logarithms divided by ``T``). ``T`` above 1 tempers an
overconfident model, below 1 sharpens a timid one; the ranking, and so the label, never
changes. ``T`` is the one that minimises the negative log-likelihood of the true labels on
held-out documents (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from scipy.optimize import minimize_scalar

from appliance.backends.interfaces import ModelIdentity
from appliance.cascade.artifacts import ArtifactInvalid, load_artifact, save_artifact
from appliance.classification.labeller import DocumentLabeller, Labelled, Scored
from appliance.evaluation.metrics import Prediction, expected_calibration_error, reliability

SMALLEST_PROBABILITY = 1e-12
"""A score of 0 counts as this (its logarithm must be finite)."""
BOUNDS = (0.05, 20.0)
CALIBRATION_KIND = "calibration"
"""The temperatures searched: from twenty times sharper to twenty times softer."""


@dataclass(frozen=True)
class Temperature:
    value: float

    def apply(self, scores: Mapping[str, float]) -> dict[str, float]:
        """``scores`` calibrated: tempered by ``value`` and renormalised."""
        logs = {label: math.log(max(p, SMALLEST_PROBABILITY)) / self.value
                for label, p in scores.items()}  # fmt: skip
        top = max(logs.values())
        weights = {label: math.exp(log - top) for label, log in logs.items()}
        total = sum(weights.values())
        return {label: weight / total for label, weight in weights.items()}


@dataclass(frozen=True)
class HeldOut:
    """A held-out document's scores from a stage, and its true label."""

    scores: Mapping[str, float]
    gold: str


def negative_log_likelihood(temperature: Temperature, held_out: Sequence[HeldOut]) -> float:
    """Mean negative log-likelihood of the true labels under ``temperature``."""
    return -sum(
        math.log(max(temperature.apply(item.scores)[item.gold], SMALLEST_PROBABILITY))
        for item in held_out
    ) / len(held_out)


def calibration_error(held_out: Sequence[HeldOut], temperature: Temperature) -> float:
    """Expected calibration error (10 equal bins) of the answers under ``temperature``."""
    return expected_calibration_error(reliability([
        prediction(item.scores, item.gold, temperature) for item in held_out
    ]))  # fmt: skip


def prediction(scores: Mapping[str, float], gold: str, temperature: Temperature) -> Prediction:
    """The label ``scores`` answer and its confidence under ``temperature``."""
    tempered = temperature.apply(scores)
    label = max(tempered, key=tempered.__getitem__)
    return Prediction(gold, label, tempered[label])


def fit_temperature(held_out: Sequence[HeldOut]) -> Temperature:
    """The temperature that fits ``held_out`` best (bounded 1-D search over log T)."""
    if not held_out:
        raise ValueError("fitting a temperature needs held-out documents")
    best = minimize_scalar(
        lambda log_t: negative_log_likelihood(Temperature(math.exp(log_t)), held_out),
        bounds=tuple(math.log(bound) for bound in BOUNDS),
        method="bounded",
    )
    return Temperature(round(math.exp(float(best.x)), 6))


@dataclass(frozen=True)
class CalibrationCheck:
    """A temperature fitted on one half of held-out answers, checked on the other."""

    temperature: Temperature
    fitted_on: int
    checked_on: int
    ece_before: float
    """Of the checked half, raw."""
    ece_after: float
    """Of the checked half, calibrated."""


def fit_and_check(answers: Sequence[HeldOut]) -> CalibrationCheck:
    """Fit on every other answer, check on the rest: the check is on answers the fit did not
    see. Precondition: at least two answers."""
    fit, check = answers[::2], answers[1::2]
    if not check:
        raise ValueError("fitting and checking a temperature needs at least two answers")
    temperature = fit_temperature(fit)
    return CalibrationCheck(
        temperature, len(fit), len(check),
        calibration_error(check, Temperature(1.0)), calibration_error(check, temperature),
    )  # fmt: skip


def save_calibration(
    check: CalibrationCheck, model: str, taxonomy_version: str, directory: Path
) -> Path:
    """The calibration of ``model``'s confidences as a versioned artifact
    (``calibration-<sha256>.json``), for a cascade's LLM stage to name."""
    document = {
        "format": 1,
        "model": model,
        "taxonomy_version": taxonomy_version,
        "temperature": check.temperature.value,
        "fitted_on": check.fitted_on,
        "checked_on": check.checked_on,
        "ece_before": check.ece_before,
        "ece_after": check.ece_after,
    }
    return save_artifact(CALIBRATION_KIND, document, directory)[0]


def load_calibration(path: Path, model: str) -> Temperature:
    """The temperature of a calibration artifact fitted for ``model`` (a served model name);
    refused for any other model, whose confidences it does not describe."""
    document, _ = load_artifact(CALIBRATION_KIND, path)
    if document.get("model") != model:
        raise ArtifactInvalid(f"{path} calibrates {document.get('model')!r}, not {model!r}")
    try:
        value = float(document["temperature"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactInvalid(f"{path} holds no temperature") from exc
    if not BOUNDS[0] <= value <= BOUNDS[1]:
        raise ArtifactInvalid(f"{path}: temperature {value} is outside {BOUNDS}")
    return Temperature(value)


class Calibrated:
    """A ``DocumentLabeller`` whose confidences are another's, calibrated by a temperature."""

    def __init__(self, labeller: DocumentLabeller, temperature: Temperature) -> None:
        self._labeller = labeller
        self.temperature = temperature
        self.fingerprint = _digest(labeller.fingerprint, temperature)
        """The stage's, and the temperature: a new calibration stores new results."""
        self.prompt_version = _digest(labeller.prompt_version, temperature)
        """What the audit log records of how an answer came about: calibration included."""

    @property
    def model(self) -> ModelIdentity:
        return self._labeller.model

    def label(self, text: str) -> Labelled:
        labelled = self._labeller.label(text)
        scores = self.temperature.apply(labelled.scored.scores)
        label = labelled.scored.label  # a temperature never changes the ranking
        return replace(labelled, scored=Scored(label, scores[label], scores))

    def token_estimate(self, text: str) -> int:
        return self._labeller.token_estimate(text)

    def warm_up(self) -> None:
        self._labeller.warm_up()


def _digest(inner: str, temperature: Temperature) -> str:
    shape = {"calibrated": inner, "temperature": temperature.value}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode("ascii")).hexdigest()
