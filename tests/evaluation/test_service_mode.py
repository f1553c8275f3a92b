"""``--service``: the same commands through a running appliance (gunicorn, mutual TLS)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.classification.taxonomy import load_taxonomy
from appliance.cli import cli
from harness import postgres
from harness.fake_vllm import FakeVllm, running_fake_vllm
from harness.stack import Stack, appliance_stack
from tests.evaluation.files import write_pdf

LABELS = load_taxonomy(None).names


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeVllm]:
    with running_fake_vllm() as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(
    create_database: Callable[..., str], upstream: FakeVllm, logins: postgres.Logins
) -> Iterator[Stack]:
    with appliance_stack(create_database(), upstream.endpoint, logins) as running:
        running.wait_started()
        yield running


def tls_options(stack: Stack, with_cert: bool = True) -> list[str]:
    cert, key = stack.client_cert.pair
    options = ["--service", stack.url, "--ca", stack.pki.ca_path, "--no-progress"]
    return [*options, "--cert", cert, "--key", key] if with_cert else options


def test_classify_and_eval_through_the_service(
    stack: Stack, upstream: FakeVllm, tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    note.write_text("Discharge summary: patient stable, follow up in clinic.")
    pdf = write_pdf(tmp_path / "claim.pdf", "Claim 4411 denied, resubmit with modifier.")
    result = CliRunner().invoke(cli, ["classify", str(note), str(pdf), *tls_options(stack)])
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[1] in LABELS for line in result.stdout.splitlines()] == [True, True]
    chats = [p for path, p in upstream.requests if path == "/v1/chat/completions"]
    assert any("Claim 4411" in chat["messages"][-1]["content"] for chat in chats)

    dataset = tmp_path / "three.jsonl"
    dataset.write_text(
        "".join(
            json.dumps({"text": f"Letter {i}.", "label": "ADMINISTRATIVE"}) + "\n" for i in range(3)
        )
    )
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["eval", str(dataset), "--out", str(out), *tls_options(stack)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["count"] == 3 and report["run"]["mode"] == "service"
    assert report["run"]["model"] == "smollm2-135m"


def test_without_a_client_certificate_every_file_fails_clearly(
    stack: Stack, tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    note.write_text("Appointment reminder.")
    result = CliRunner().invoke(cli, ["classify", str(note), *tls_options(stack, False)])
    assert result.exit_code == 1
    assert result.stdout.split("\t")[1:3] == ["ERROR", "connection_error"]
    assert "1 of 1 files could not be classified" in result.output
