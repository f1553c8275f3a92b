"""``appliance train`` on the real encoder and a real PostgreSQL of its own, as the application's
login: a first head is fitted, calibrated, gated and promoted; a head fitted on mislabelled
examples is refused and the one in service stays; both outcomes are audited; reviewers'
corrections relabel the examples whose text they reviewed; calibration lowers the held-out
calibration error of an overconfident head."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner, Result

from appliance import migrate
from appliance.cascade.config import describe_cascade
from appliance.cascade.head import load_current
from appliance.cascade.training import Example
from appliance.classification.content import content_sha256
from appliance.classification.taxonomy import load_taxonomy
from appliance.cli import cli
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.settings import Settings
from audit.chain import decode_event
from harness.corpus import PHRASES, LabelledText, labelled_texts
from harness.fake_vllm import FakeVllm
from harness.identity import identity
from harness.postgres import Logins, sqlalchemy_url
from tests.common.apps import app_over
from tests.common.doubles import ScriptedBackend

LABELS = list(PHRASES)
Train = Callable[..., tuple[Result, dict[str, Any]]]


@pytest.fixture
def database(create_database: Callable[..., str], logins: Logins) -> str:
    url = create_database()
    migrate.upgrade(sqlalchemy_url(logins.url(url, logins.owner)))
    return url


@pytest.fixture
def heads(tmp_path: Path) -> Path:
    return tmp_path / "heads"


@pytest.fixture
def app_settings(
    database: str, logins: Logins, encoder_folder: Path, heads: Path, tmp_path: Path,
    fake_vllm: FakeVllm, monkeypatch: pytest.MonkeyPatch,
) -> Settings:  # fmt: skip
    cascade = tmp_path / "cascade.yaml"
    cascade.write_text(yaml.safe_dump({"stages": [
        {"name": "embedding", "kind": "embedding", "encoder": str(encoder_folder),
         "heads": str(heads), "threshold": 0.9},
        {"name": "llm", "kind": "llm"},
    ]}))  # fmt: skip
    url = sqlalchemy_url(logins.url(database, logins.app))
    monkeypatch.setenv("APPLIANCE_DATABASE_URL", url)
    monkeypatch.setenv("APPLIANCE_CASCADE_PATH", str(cascade))
    return Settings(database_url=url, vllm_base_url=fake_vllm.url)


@pytest.fixture
def train(app_settings: Settings, tmp_path: Path) -> Train:
    runs = iter(range(1000))

    def run(
        examples: Sequence[LabelledText | Example], *options: str
    ) -> tuple[Result, dict[str, Any]]:
        n = next(runs)
        path, report = tmp_path / f"examples-{n}.jsonl", tmp_path / f"report-{n}.json"
        path.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n"
                                for e in examples))  # fmt: skip
        result = CliRunner().invoke(cli, ["train", "--examples", str(path), "--report", str(report),
                                          *options])  # fmt: skip
        return result, json.loads(report.read_text()) if report.exists() else {}

    return run


def training_events(database: str) -> list[Any]:
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT event FROM audit_pending WHERE action = 'promote_stage_model' ORDER BY id"
        ).fetchall()
    return [decode_event(bytes(row[0])) for row in rows]


def mislabelled_where_fitted(texts: Sequence[LabelledText]) -> list[Example]:
    """The same documents, but those the head is fitted on carry the next label over: the
    gate's documents keep their true labels."""
    made = []
    for t in texts:
        example = Example(t.text, t.label, content_sha256(t.text))
        wrong = LABELS[(LABELS.index(t.label) + 1) % len(LABELS)]
        made.append(Example(t.text, wrong, example.digest) if example.side() == "fit" else example)
    return made


def test_a_good_head_is_promoted_and_a_worse_one_refused(
    train: Train, heads: Path, database: str, app_settings: Settings
) -> None:
    texts = labelled_texts(400, seed=3)
    first, report = train(texts)
    assert first.exit_code == 0, first.output
    assert report["promoted"] and report["current_figures"] is None
    figures = report["candidate_figures"]
    assert figures["kept_accuracy"] >= 0.9 and figures["kept_share"] > 0.5, figures
    promoted = load_current(heads)
    assert promoted is not None and report["candidate"] == f"sha256:{promoted.digest}"
    shown = describe_cascade(app_settings.cascade_path, load_taxonomy(None))  # check-config's
    assert shown is not None and shown[0]["model"] == report["candidate"]

    second, refused = train(mislabelled_where_fitted(texts))
    assert second.exit_code == 1 and "the gate refused the new head" in second.output
    assert not refused["promoted"] and refused["current_figures"]["kept_accuracy"] >= 0.9
    assert any("below the current head's" in reason for reason in refused["reasons"])
    still = load_current(heads)
    assert still is not None and still.digest == promoted.digest  # the good head stays
    assert len(list(heads.glob("head-*.json"))) == 2  # the refused candidate kept for study

    events = training_events(database)
    assert [e.outcome_status for e in events] == [200, 409]
    assert f"head {report['candidate']} by " in events[0].detail
    assert f"head {refused['candidate']} by " in events[1].detail and "refused" in events[1].detail


def test_reviewers_corrections_relabel_the_examples_they_reviewed(
    train: Train, app_settings: Settings
) -> None:
    texts = labelled_texts(300, seed=4)
    reviewed = texts[:40]
    backend = ScriptedBackend({"A": 0.3, "B": 0.2, "C": 0.2, "D": 0.2, "E": 0.1})
    with app_over(app_settings.model_copy(update={"cascade_path": None}), backend=backend) as app:
        client = app.test_client()
        client.environ_base[IDENTITY_ENVIRON_KEY] = identity("classifier", "reviewer")
        for i, t in enumerate(reviewed):
            answer = client.post("/api/v1/classify-document",
                                 json={"document_id": f"D-{i}", "text": t.text})  # fmt: skip
            assert answer.status_code == 200, answer.get_json()
            review = client.post(f"/api/v1/classifications/{answer.get_json()['result_id']}/review",
                                 json={"label": t.label})  # fmt: skip
            assert review.status_code == 201, review.get_json()
    # The training file says every reviewed document is ADMINISTRATIVE; the reviews say not.
    given = [LabelledText(t.text, "ADMINISTRATIVE", t.label) for t in reviewed] + texts[40:]
    result, report = train(given)
    assert result.exit_code == 0, result.output
    assert report["corrected_by_reviews"] == sum(t.label != "ADMINISTRATIVE" for t in reviewed)
    assert report["candidate_figures"]["kept_accuracy"] >= 0.9


def test_calibration_lowers_the_held_out_calibration_error(train: Train) -> None:
    """Careless labels: the head fits them and is overconfident on documents it has not seen."""
    result, report = train(labelled_texts(500, seed=5, noise=0.2), "--min-kept-accuracy", "0")
    assert result.exit_code == 0, result.output
    figures = report["candidate_figures"]
    assert report["temperature"] > 1.0
    assert figures["ece_calibrated"] < figures["ece_uncalibrated"], figures
