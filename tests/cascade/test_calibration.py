"""Temperature scaling fitted on one held-out half lowers the calibration error on the other,
leaves a calibrated stage alone, and never changes a label."""

from __future__ import annotations

import random

import pytest

from appliance.cascade.calibration import (
    Calibrated,
    HeldOut,
    Temperature,
    calibration_error,
    fit_temperature,
)
from appliance.classification.labeller import Labeller
from appliance.classification.taxonomy import load_taxonomy
from tests.common.doubles import ScriptedBackend

LABELS = ("CLINICAL_NOTES", "BILLING", "AUTHORIZATION", "TEST_RESULTS", "ADMINISTRATIVE")


def answers(count: int, right: float, sure: float, seed: int) -> list[HeldOut]:
    """A stage that is right ``right`` of the time and always says ``sure`` (the rest of its
    probability spread over the other labels)."""
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        gold = rng.choice(LABELS)
        said = gold if rng.random() < right else rng.choice([x for x in LABELS if x != gold])
        rest = (1 - sure) / (len(LABELS) - 1)
        made.append(HeldOut({x: sure if x == said else rest for x in LABELS}, gold))
    return made


def test_an_overconfident_stage_is_tempered_on_data_it_was_not_fitted_on() -> None:
    fitted_on, checked_on = answers(1000, 0.7, 0.97, seed=1), answers(1000, 0.7, 0.97, seed=2)
    temperature = fit_temperature(fitted_on)
    before, after = (
        calibration_error(checked_on, Temperature(1.0)),
        calibration_error(checked_on, temperature),
    )
    assert temperature.value > 1.5  # softer
    assert before > 0.2 and after < before / 4, (before, after)


def test_a_calibrated_stage_keeps_a_temperature_near_one() -> None:
    # Right 60 % of the time and says 0.6: already calibrated.
    assert fit_temperature(answers(2000, 0.6, 0.6, seed=3)).value == pytest.approx(1.0, abs=0.15)


def test_the_calibrated_labeller_tempers_confidence_not_labels() -> None:
    inner = Labeller(ScriptedBackend({"B": 0.9, "A": 0.06, "C": 0.04}), load_taxonomy(None), 512)
    calibrated = Calibrated(inner, Temperature(2.0))
    plain, tempered = inner.label("Invoice 12"), calibrated.label("Invoice 12")
    assert tempered.scored.label == plain.scored.label == "BILLING"
    assert 0.34 < tempered.scored.confidence < plain.scored.confidence
    assert sum(tempered.scored.scores.values()) == pytest.approx(1.0)
    assert calibrated.fingerprint != inner.fingerprint
    assert calibrated.prompt_version != Calibrated(inner, Temperature(1.5)).prompt_version
    with pytest.raises(ValueError, match="held-out"):
        fit_temperature([])
