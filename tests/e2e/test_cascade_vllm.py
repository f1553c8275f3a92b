"""End to end, the real path of a cascade: ``appliance train`` promotes a head for the embedding
stage, then real gunicorn (mutual TLS) serves a cascade of that stage and the real CPU vLLM:
a document the head is sure of is answered by it, with no model-server tokens, and one it is
not sure of goes on to the LLM; each answer names its stage and the confidence of each asked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from appliance import migrate
from appliance.cascade.config import embedding_labeller, load_cascade_config
from appliance.cascade.embedding import SERVED_NAME
from appliance.cascade.head import load_current
from appliance.classification.taxonomy import load_taxonomy
from appliance.cli import cli
from harness import postgres
from harness.corpus import labelled_texts
from harness.stack import appliance_stack
from harness.upstream import VllmEndpoint
from tests.evaluation.test_service_mode import tls_options

pytestmark = pytest.mark.vllm

SURE = "Statement of account for SYN-0042. Office visit CPT 99213, $140.00. Payment received."
UNSURE = "Thank you, see you then."
"""With a tenth of the examples mislabelled (as careless labelling would), the calibrated head
is about 0.67 sure of ``SURE`` and 0.28 of ``UNSURE``."""


def write_cascade(path: Path, encoder: Path, heads: Path, threshold: float) -> None:
    path.write_text(yaml.safe_dump({"stages": [
        {"name": "embedding", "kind": "embedding", "encoder": str(encoder), "heads": str(heads),
         "threshold": threshold},
        {"name": "llm", "kind": "llm"},
    ]}))  # fmt: skip


def test_the_head_answers_what_it_is_sure_of_and_the_llm_the_rest(
    create_database: Callable[..., str], vllm_server: VllmEndpoint, logins: postgres.Logins,
    encoder_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    database = create_database()
    url = postgres.sqlalchemy_url(database)
    migrate.upgrade(logins.url(url, logins.owner))
    cascade, heads, examples = tmp_path / "cascade.yaml", tmp_path / "heads", tmp_path / "x.jsonl"
    write_cascade(cascade, encoder_folder, heads, 0.5)
    examples.write_text("".join(json.dumps({"text": t.text, "label": t.label}) + "\n"
                                for t in labelled_texts(300, seed=6, noise=0.1)))  # fmt: skip
    monkeypatch.setenv("APPLIANCE_DATABASE_URL", logins.url(url, logins.app))
    monkeypatch.setenv("APPLIANCE_CASCADE_PATH", str(cascade))
    trained = CliRunner().invoke(cli, ["train", "--examples", str(examples),
                                       "--min-kept-accuracy", "0"])  # fmt: skip
    assert trained.exit_code == 0, trained.output

    # The threshold between the head's confidence in the two documents.
    stage = embedding_labeller(load_cascade_config(cascade).stages[0], load_taxonomy(None))  # type: ignore[arg-type]
    sure, unsure = (stage.label(text).scored.confidence for text in (SURE, UNSURE))
    assert sure > unsure + 0.05, (sure, unsure)
    write_cascade(cascade, encoder_folder, heads, (sure + unsure) / 2)
    head = load_current(heads)
    assert head is not None

    env = {"APPLIANCE_CASCADE_PATH": str(cascade)}
    dataset, out = tmp_path / "two.jsonl", tmp_path / "report"
    dataset.write_text(json.dumps({"text": SURE, "label": "BILLING"}) + "\n"
                       + json.dumps({"text": UNSURE, "label": "ADMINISTRATIVE"}) + "\n")
    with appliance_stack(database, vllm_server, logins, extra_env=env) as stack:
        stack.wait_started()
        # The eval report through the service first (the API calls below are then answered
        # from these stored results, stages included).
        evaluated = CliRunner().invoke(cli, ["eval", str(dataset), "--out", str(out),
                                             *tls_options(stack)])  # fmt: skip
        with httpx.Client(base_url=stack.url, timeout=120, **stack.client_options()) as api:  # type: ignore[arg-type]
            kept = api.post("/api/v1/classify-document", json={"document_id": "C-1", "text": SURE})
            escalated = api.post("/api/v1/classify-document",
                                 json={"document_id": "C-2", "text": UNSURE})  # fmt: skip
    assert kept.status_code == 200 and escalated.status_code == 200, (kept.text, escalated.text)
    kept_body, escalated_body = kept.json(), escalated.json()
    assert (kept_body["classification"], kept_body["model"]) == ("BILLING", SERVED_NAME)
    assert kept_body["stages"] == [{"stage": "embedding", "confidence": pytest.approx(sure)}]
    assert escalated_body["model"] == "smollm2-135m"
    assert [s["stage"] for s in escalated_body["stages"]] == ["embedding", "llm"]
    assert escalated_body["stages"][0]["confidence"] == pytest.approx(unsure)
    assert escalated_body["stages"][1]["confidence"] == pytest.approx(escalated_body["confidence"])

    # Each stage, what reached it and what it kept, and what its answers cost.
    assert evaluated.exit_code == 0, evaluated.output
    stages = json.loads((out / "report.json").read_text())["run"]["stages"]
    assert [(s["stage"], s["asked"], s["kept"], s["correct"]) for s in stages] == [
        ("embedding", 2, 1, 1),
        ("llm", 1, 1, int(escalated_body["classification"] == "ADMINISTRATIVE")),
    ]
    assert stages[0]["prompt_tokens"] == 0 and stages[1]["prompt_tokens"] > 0
    assert "## Per cascade stage" in (out / "report.md").read_text()
