"""The cascade an operator configures: the LLM stage calibrated by the artifact ``appliance eval``
wrote for that model (refused for another), and configurations that cannot serve refused with
a message instead of starting."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from appliance.cascade.calibration import CalibrationCheck, Temperature, save_calibration
from appliance.cascade.config import CascadeConfigError, build_cascade, load_cascade_config
from appliance.classification.labeller import Labeller
from appliance.classification.taxonomy import load_taxonomy
from tests.common.doubles import ScriptedBackend

TAXONOMY = load_taxonomy(None)


def config(path: Path, *stages: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"stages": list(stages)}))
    return path


def llm() -> Labeller:
    return Labeller(ScriptedBackend({"B": 0.9, "A": 0.1}, "big-llm"), TAXONOMY, 1500)


def test_the_llm_stage_answers_with_the_calibration_fitted_for_its_model(tmp_path: Path) -> None:
    check = CalibrationCheck(Temperature(2.0), 100, 100, 0.2, 0.05)
    artifact = save_calibration(check, "big-llm", TAXONOMY.version, tmp_path)
    path = config(tmp_path / "c.yaml", {"name": "llm", "kind": "llm", "calibration": str(artifact)})
    raw = llm().label("An invoice.").scored
    calibrated = build_cascade(load_cascade_config(path), llm(), TAXONOMY).label("An invoice.")
    assert raw.confidence == pytest.approx(0.9)
    assert calibrated.scored.label == raw.label == "BILLING"
    assert calibrated.scored.confidence == pytest.approx(0.75, abs=1e-4)  # 3 / (3 + 1)

    other = save_calibration(check, "another-model", TAXONOMY.version, tmp_path)
    path = config(tmp_path / "c.yaml", {"name": "llm", "kind": "llm", "calibration": str(other)})
    with pytest.raises(CascadeConfigError, match="calibrates 'another-model', not 'big-llm'"):
        build_cascade(load_cascade_config(path), llm(), TAXONOMY)


def test_configurations_that_cannot_serve_are_refused(tmp_path: Path, encoder_folder: Path) -> None:
    no_head = config(tmp_path / "c.yaml", {
        "name": "embedding", "kind": "embedding", "encoder": str(encoder_folder),
        "heads": str(tmp_path / "heads"), "threshold": 0.9,
    }, {"name": "llm", "kind": "llm"})  # fmt: skip
    with pytest.raises(CascadeConfigError, match=r"no promoted head .* run `appliance train`"):
        build_cascade(load_cascade_config(no_head), llm(), TAXONOMY)
    unknown = config(tmp_path / "u.yaml", {"name": "llm", "kind": "gpt"})
    with pytest.raises(CascadeConfigError, match="is not valid"):
        load_cascade_config(unknown)
    twice = config(
        tmp_path / "t.yaml", {"name": "llm", "kind": "llm"}, {"name": "llm", "kind": "llm"}
    )
    with pytest.raises(CascadeConfigError, match="must differ"):
        build_cascade(load_cascade_config(twice), llm(), TAXONOMY)
