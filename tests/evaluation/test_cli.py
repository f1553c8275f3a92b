"""``appliance eval`` and ``appliance classify`` in-process against the scripted upstream and a
real PostgreSQL (the results they make are stored like any other)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select

from appliance.audit_bridge.recorder import AuditRecorder
from appliance.classification.models import ClassificationResult
from appliance.classification.taxonomy import load_taxonomy
from appliance.cli import cli
from appliance.context import RequestContext
from appliance.review.services import ReviewService
from harness import documents
from harness.documents import INVOICE, LAB_REPORT, LETTER
from harness.fake_vllm import FakeVllm, status
from harness.identity import identity
from tests.common.doubles import RecordingSink
from tests.evaluation.conftest import EXAMPLES, runner_for
from tests.evaluation.files import write_docx, write_pdf

LABELS = load_taxonomy(None).names


def stored_labels(database_url: str) -> dict[str, str]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(ClassificationResult.document_id, ClassificationResult.label)
        ).all()
    engine.dispose()
    return dict(rows)


def write_dataset(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_eval_in_process_report_matches_stored_results(
    runner: CliRunner, clean_database: str, tmp_path: Path
) -> None:
    result = runner.invoke(
        cli, ["eval", str(EXAMPLES), "--out", str(tmp_path), "--no-progress", "--concurrency", "4"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    gold = {
        row["document_id"]: row["label"]
        for row in map(json.loads, EXAMPLES.read_text().splitlines())
    }
    stored = stored_labels(clean_database)
    assert set(stored) == set(gold)  # every document went through the service and was stored
    correct = sum(stored[document_id] == label for document_id, label in gold.items())
    assert report["count"] == 40
    assert report["accuracy"] == correct / 40
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == 40
    assert report["confusion_matrix"]["labels"] == list(LABELS)
    assert report["run"]["mode"] == "in-process" and report["run"]["errors"] == {}
    for name in ("report.md", "confusion_matrix.png", "reliability.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / report["calibration"]["artifact"]).is_file()  # one model answered
    assert f"accuracy {correct / 40:.3f}" in result.output


def test_eval_reports_the_tokens_and_cost_the_results_stored(
    clean_database: str, fake_vllm: FakeVllm, tmp_path: Path
) -> None:
    prices = {"smollm2-135m": {"per_1k_prompt_tokens": 0.25, "per_1k_completion_tokens": 1.0}}
    costs = json.dumps(prices)
    runner = runner_for(clean_database, fake_vllm.endpoint, APPLIANCE_MODEL_COSTS=costs)
    result = runner.invoke(cli, ["eval", str(EXAMPLES), "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    engine = create_engine(clean_database)
    with engine.connect() as connection:
        prompt, completion, cost = connection.execute(
            select(
                func.sum(ClassificationResult.prompt_tokens),
                func.sum(ClassificationResult.completion_tokens),
                func.sum(ClassificationResult.cost),
            )
        ).one()
    engine.dispose()
    run = json.loads((tmp_path / "report.json").read_text())["run"]
    assert (run["prompt_tokens"], run["completion_tokens"]) == (prompt, completion) != (0, 0)
    assert run["cost"] == pytest.approx(cost) == pytest.approx((prompt * 0.25 + completion) / 1000)
    assert run["cost_per_1000_documents"] == pytest.approx(cost * 1000 / 40)
    assert f"{run['cost_per_1000_documents']:.6g} per 1,000 documents" in (
        tmp_path / "report.md").read_text()  # fmt: skip


def test_eval_counts_failures_and_keeps_going(
    runner: CliRunner, fake_vllm: FakeVllm, tmp_path: Path
) -> None:
    rows = [{"text": f"Document {i}.", "label": LABELS[i % 5]} for i in range(6)]
    dataset = write_dataset(tmp_path / "six.jsonl", rows)
    fake_vllm.script(status(500), status(500))
    result = runner.invoke(
        cli,
        ["eval", str(dataset), "--out", str(tmp_path / "r"), "--no-progress", "--concurrency", "1"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["count"] == 4
    assert sum(report["run"]["errors"].values()) == 2
    assert "4 scored, 2 failed" in result.output


def test_eval_rejects_bad_datasets(runner: CliRunner, tmp_path: Path) -> None:
    cases = {
        "not-json.jsonl": (
            '{"text": "a", "label": "BILLING"}\n{oops\n',
            "not-json.jsonl:2: not JSON",
        ),
        "label.jsonl": ('{"text": "a", "label": "SPAM"}\n', "label: got 'SPAM'"),
        "text.jsonl": ('{"text": "  ", "label": "BILLING"}\n', "text: want a non-empty string"),
        "empty.jsonl": ("\n\n", "no examples"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content)
        result = runner.invoke(cli, ["eval", str(tmp_path / name), "--out", str(tmp_path / "o")])
        assert result.exit_code == 1, (name, result.output)
        assert message in result.output, (name, result.output)
    assert not (tmp_path / "o").exists()
    result = runner.invoke(cli, ["eval", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "either DATASET or --from-reviews" in result.output


def test_eval_from_reviews_scores_the_corrections(
    runner: CliRunner, clean_database: str, tmp_path: Path
) -> None:
    rows = [
        {"document_id": f"r-{i}", "text": f"Reviewed document {i}.", "label": "BILLING"}
        for i in range(4)
    ]
    dataset = write_dataset(tmp_path / "four.jsonl", rows)
    assert runner.invoke(cli, ["eval", str(dataset), "--out", str(tmp_path / "a")]).exit_code == 0
    engine = create_engine(clean_database)
    with engine.connect() as connection:
        results = {r.document_id: r for r in connection.execute(select(ClassificationResult))}
    reviews = ReviewService(engine, load_taxonomy(None), AuditRecorder(RecordingSink()))
    context = RequestContext("req", identity("reviewer", name="spiffe://h/u/r"), None)
    # Reviewers confirm r-0's model label and correct r-1 to a label the model did not give.
    reviews.review(results["r-0"].id, results["r-0"].label, None, context)
    wrong = next(label for label in LABELS if label != results["r-1"].label)
    reviews.review(results["r-1"].id, wrong, None, context)
    engine.dispose()
    result = runner.invoke(cli, ["eval", "--from-reviews", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["count"] == 2 and report["accuracy"] == 0.5
    assert report["run"]["mode"] == "reviews"


def test_classify_text_pdf_docx_and_reports_bad_files(
    runner: CliRunner, fake_vllm: FakeVllm, clean_database: str, tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    note.write_text("Progress note: patient afebrile, continue antibiotics.")
    pdf = write_pdf(tmp_path / "labs.pdf", "Potassium 5.8 mmol/L (high), creatinine 1.4.")
    document = write_docx(tmp_path / "bill.docx", ["Invoice INV-7: balance due $40.00."])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 truncated")
    files = [note, empty, pdf, broken, document]
    result = runner.invoke(cli, ["classify", *map(str, files), "--no-progress"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(path) for path in files]
    fields = [line.split("\t") for line in lines]
    for index in (0, 2, 4):
        assert fields[index][1] in LABELS and fields[index][3] in ("ok", "needs_review")
        assert 0.0 < float(fields[index][2]) <= 1.0
    assert fields[1][1:3] == ["ERROR", "empty_document"]
    assert fields[3][1:3] == ["ERROR", "unreadable_document"]
    assert "3 classified, 2 failed" in result.stderr
    prompts = [
        payload["messages"][-1]["content"]
        for path, payload in fake_vllm.requests
        if path == "/v1/chat/completions"
    ]
    assert any("Potassium 5.8" in prompt for prompt in prompts)
    assert any("Invoice INV-7" in prompt for prompt in prompts)
    assert set(stored_labels(clean_database)) == {f"file:{note}", f"file:{pdf}", f"file:{document}"}


def test_classify_json_output_all_good(runner: CliRunner, tmp_path: Path) -> None:
    note = tmp_path / "letter.txt"
    note.write_text("Appointment reminder for Tuesday.")
    result = runner.invoke(cli, ["classify", str(note), "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["file"] == str(note) and row["classification"] in LABELS
    assert row["document_id"] == f"file:{note}" and isinstance(row["needs_review"], bool)


def test_classify_in_process_keeps_the_api_file_limit(
    clean_database: str, fake_vllm: FakeVllm, tmp_path: Path
) -> None:
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text("Short letter.")
    large.write_text("A much longer letter than twenty bytes.")
    runner = runner_for(clean_database, fake_vllm.endpoint, APPLIANCE_FILE_MAX_BYTES="20")
    result = runner.invoke(cli, ["classify", str(small), str(large), "--no-progress"])
    assert result.exit_code == 1
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert lines[0][1] in LABELS
    assert lines[1][1:3] == ["ERROR", "payload_too_large"]
    assert fake_vllm.count("/v1/chat/completions") == 1


def test_classify_splits_a_faxed_packet_with_a_progress_bar_over_files_and_pages(
    runner: CliRunner, fake_vllm: FakeVllm, tmp_path: Path
) -> None:
    """The same path as the API's classify-file: OCR, page labels, segments."""
    for word, code in {"cardiology": "A", "laboratory": "D", "invoice": "B"}.items():
        fake_vllm.answer_when(word, code)
    fax = tmp_path / "packet.tif"
    fax.write_bytes(documents.fax_tiff([LETTER, LAB_REPORT, INVOICE]))
    result = runner.invoke(cli, ["classify", str(fax), "--mode", "split", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["pages"] == 3
    assert [(s["first_page"], s["last_page"], s["label"]) for s in row["segments"]] == [
        (1, 1, "CLINICAL_NOTES"), (2, 2, "TEST_RESULTS"), (3, 3, "BILLING")]  # fmt: skip
    assert "1/1" in result.stderr and "pages=3" in result.stderr
