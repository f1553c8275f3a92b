"""The report files: JSON numbers, Markdown tables, and real PNG images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib import image

from appliance.cascade.artifacts import ArtifactInvalid
from appliance.cascade.calibration import fit_and_check, load_calibration
from appliance.evaluation.metrics import evaluate
from appliance.evaluation.report import RunInfo, write_report
from tests.cascade.test_calibration import answers
from tests.evaluation.test_metrics import LABELS, PREDICTIONS

RUN = RunInfo(
    source="known.jsonl",
    mode="in-process",
    model="m",
    taxonomy_version="sha256:x",
    submitted=12,
    elapsed_s=5.0,
    concurrency=4,
    cached=1,
    errors={"upstream_timeout": 2},
)


def test_report_files(tmp_path: Path) -> None:
    paths = write_report(evaluate(LABELS, PREDICTIONS), RUN, tmp_path / "out")
    body = json.loads(paths.json.read_text())
    assert body["accuracy"] == pytest.approx(0.6)
    assert body["macro_f1"] == pytest.approx(38 / 63)
    assert body["expected_calibration_error"] == pytest.approx(0.3)
    assert body["abstention_rate"] == pytest.approx(0.3)
    assert body["accuracy_non_abstained"] == pytest.approx(6 / 7)
    assert body["confusion_matrix"]["matrix"] == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    assert body["per_label"]["A"]["precision"] == pytest.approx(2 / 3)
    assert len(body["reliability"]) == 10
    assert body["run"]["throughput_docs_per_s"] == pytest.approx(2.0)  # (12 - 2) / 5 s
    text = paths.markdown.read_text()
    assert "| Accuracy | 60.0% |" in text
    assert "| A | 2 | 1 | 1 |" in text
    assert "upstream_timeout: 2" in text
    assert "![Reliability diagram](reliability.png)" in text
    for png in (paths.confusion, paths.reliability):
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        height, width, _ = image.imread(png).shape
        assert width >= 400 and height >= 400


def test_the_report_calibrates_on_half_the_answers_and_writes_the_artifact(tmp_path: Path) -> None:
    check = fit_and_check(answers(600, 0.7, 0.97, seed=3))  # overconfident
    paths = write_report(evaluate(LABELS, PREDICTIONS), RUN, tmp_path, check)
    body = json.loads(paths.json.read_text())
    calibration = body["calibration"]
    assert (calibration["fitted_on"], calibration["checked_on"]) == (300, 300)
    assert calibration["ece_after"] < calibration["ece_before"] / 2, calibration
    artifact = tmp_path / calibration["artifact"]
    assert load_calibration(artifact, "m").value == calibration["temperature"]
    with pytest.raises(ArtifactInvalid, match="calibrates 'm', not 'other'"):
        load_calibration(artifact, "other")

    curve = body["accuracy_coverage"]
    assert curve[0] == {"threshold": 0.0, "coverage": 1.0, "accuracy": pytest.approx(0.6)}
    kept = [p for p in PREDICTIONS if p.confidence >= 0.5]
    at_half = next(point for point in curve if point["threshold"] == 0.5)
    assert at_half["coverage"] == len(kept) / len(PREDICTIONS)
    text = paths.markdown.read_text()
    assert "## Accuracy and coverage" in text and "| 0.00 | 100.0% | 60.0% |" in text
    assert f"artifact `{calibration['artifact']}`" in text
