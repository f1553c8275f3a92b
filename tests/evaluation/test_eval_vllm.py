"""``appliance eval`` and ``appliance classify`` end to end against the real CPU vLLM (tiny model).

The tiny model is a plumbing model: these tests check the pipeline and that the report agrees
with itself and with the stored results, not how accurate the model is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from matplotlib import image

from appliance import migrate
from appliance.classification.taxonomy import load_taxonomy
from appliance.cli import cli
from harness.postgres import sqlalchemy_url
from harness.upstream import VllmEndpoint
from tests.evaluation.conftest import EXAMPLES, runner_for
from tests.evaluation.files import write_docx, write_pdf, write_scan

pytestmark = pytest.mark.vllm
LABELS = list(load_taxonomy(None).names)


def test_eval_example_set_writes_json_markdown_and_png(
    create_database: Callable[..., str], vllm_server: VllmEndpoint, tmp_path: Path
) -> None:
    database_url = sqlalchemy_url(create_database())
    migrate.upgrade(database_url)
    runner = runner_for(database_url, vllm_server, APPLIANCE_VLLM_MAX_RETRIES="2")
    out = tmp_path / "report"
    result = runner.invoke(cli, ["eval", str(EXAMPLES), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output

    report = json.loads((out / "report.json").read_text())
    assert report["count"] == 40 and report["run"]["errors"] == {}
    assert report["run"]["model"] == "smollm2-135m"
    assert report["run"]["throughput_docs_per_s"] > 0
    matrix = report["confusion_matrix"]["matrix"]
    assert report["confusion_matrix"]["labels"] == LABELS
    assert [sum(row) for row in matrix] == [8] * 5  # eight synthetic documents per class
    assert report["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(5)) / 40)
    assert sum(item["count"] for item in report["reliability"]) == 40
    assert 0.0 <= report["expected_calibration_error"] <= 1.0
    markdown = (out / "report.md").read_text()
    assert "| Accuracy |" in markdown and "![Confusion matrix](confusion_matrix.png)" in markdown
    for name in ("confusion_matrix.png", "reliability.png"):
        assert image.imread(out / name).shape[0] >= 400

    # The same content again is answered from the stored results (same model and taxonomy).
    again = runner.invoke(cli, ["eval", str(EXAMPLES), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    second = json.loads((tmp_path / "again" / "report.json").read_text())
    assert second["run"]["cached"] == 40
    assert second["confusion_matrix"] == report["confusion_matrix"]


def test_classify_files_with_the_real_model(
    create_database: Callable[..., str], vllm_server: VllmEndpoint, tmp_path: Path
) -> None:
    database_url = sqlalchemy_url(create_database())
    migrate.upgrade(database_url)
    pdf = write_pdf(tmp_path / "labs.pdf", "Urine culture: E. coli, sensitive to nitrofurantoin.")
    docx_file = write_docx(tmp_path / "letter.docx", ["Your appointment is on Tuesday at 10:30."])
    scan = write_scan(tmp_path / "fax.pdf", ["LABORATORY REPORT", "Hemoglobin 13.2 g/dL"])
    empty = tmp_path / "empty.txt"
    empty.write_text(" ")
    runner = runner_for(database_url, vllm_server, APPLIANCE_VLLM_MAX_RETRIES="2")
    files = [pdf, docx_file, scan, empty]
    result = runner.invoke(cli, ["classify", *map(str, files), "--json", "--no-progress"])
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row.get("classification") in LABELS for row in rows] == [True, True, True, False]
    assert rows[2]["pages"] == 1  # the scanned page, read by OCR and classified by the model
    assert rows[3]["error"]["code"] == "empty_document"
