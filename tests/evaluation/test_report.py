"""The report files: JSON numbers, Markdown tables, and real PNG images."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from matplotlib import image

from appliance.cascade.artifacts import ArtifactInvalid
from appliance.cascade.calibration import fit_and_check, load_calibration
from appliance.evaluation.metrics import evaluate
from appliance.evaluation.report import RunInfo, write_report
from appliance.evaluation.runner import Outcome
from appliance.evaluation.stages import StageSummary, per_stage
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


def outcome(
    label: str, stages: list[tuple[str, float]], tokens: int, cost: float | None
) -> Outcome:
    return Outcome(label, stages[-1][1] if stages else 0.5, False, "m", "sha256:x", False, False,
                   prompt_tokens=tokens, completion_tokens=tokens // 10, cost=cost,
                   stages=tuple(stages))  # fmt: skip


def test_the_report_shows_each_cascade_stage(tmp_path: Path) -> None:
    answers = [
        ("A", outcome("A", [("embedding", 0.9)], 0, None)),
        ("B", outcome("A", [("embedding", 0.8)], 0, None)),
        ("B", outcome("B", [("embedding", 0.3), ("llm", 0.7)], 120, 0.002)),
        ("C", outcome("A", [("embedding", 0.2), ("llm", 0.6)], 100, 0.001)),
    ]
    stages = per_stage(answers)
    assert stages == (
        StageSummary("embedding", asked=4, kept=2, correct=1, share=0.5,
                     prompt_tokens=0, completion_tokens=0, cost=None),
        StageSummary("llm", asked=2, kept=2, correct=1, share=0.5,
                     prompt_tokens=220, completion_tokens=22, cost=pytest.approx(0.003)),
    )  # fmt: skip
    assert per_stage([("A", outcome("A", [], 5, None))]) == ()  # no cascade, no section

    paths = write_report(evaluate(LABELS, PREDICTIONS), replace(RUN, stages=stages), tmp_path)
    reported = json.loads(paths.json.read_text())["run"]["stages"]
    assert [(s["stage"], s["accuracy"]) for s in reported] == [("embedding", 0.5), ("llm", 0.5)]
    text = paths.markdown.read_text()
    assert "| embedding | 4 | 2 | 50.0% | 50.0% | 0 | 0 | n/a |" in text
    assert "| llm | 2 | 2 | 50.0% | 50.0% | 220 | 22 | 0.003 |" in text
    assert "Per cascade stage" not in write_report(
        evaluate(LABELS, PREDICTIONS), RUN, tmp_path / "plain").markdown.read_text()
