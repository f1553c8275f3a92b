"""``appliance taxonomy show|validate|diff``."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from appliance.classification.taxonomy import load_taxonomy
from appliance.cli import cli

DEFAULT = load_taxonomy(None)


def changed_copy(tmp_path: Path) -> Path:
    data = DEFAULT.model_dump(mode="json", exclude_none=True)
    labels = data["labels"]
    labels[1]["description"] += " Also remittance advice."
    labels[3]["review_threshold"] = 0.8
    removed = labels.pop(2)  # AUTHORIZATION: later labels move up one answer code
    assert removed["name"] == "AUTHORIZATION"
    labels.append({"name": "REFERRALS", "description": "Referral letters to other services."})
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_show_default_and_configured(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["taxonomy", "show", "default"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"version {DEFAULT.version}"
    assert "A  CLINICAL_NOTES" in result.output and "E  ADMINISTRATIVE" in result.output
    path = changed_copy(tmp_path)
    result = CliRunner(env={"APPLIANCE_TAXONOMY_PATH": str(path)}).invoke(cli, ["taxonomy", "show"])
    assert "D  REFERRALS" not in result.output and "E  REFERRALS" in result.output
    assert "C  TEST_RESULTS  [review < 0.8]" in result.output


def test_validate(tmp_path: Path) -> None:
    good = changed_copy(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: [{name: lower, description: x}, {name: B, description: y}]")
    result = CliRunner().invoke(cli, ["taxonomy", "validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"{good}: ok, {load_taxonomy(good).version}" in result.stdout
    assert f"{bad}: INVALID" in result.stderr
    assert "1 of 2 taxonomy files are invalid" in result.stderr
    assert CliRunner().invoke(cli, ["taxonomy", "validate", str(good)]).exit_code == 0


def test_diff(tmp_path: Path) -> None:
    new = changed_copy(tmp_path)
    result = CliRunner().invoke(cli, ["taxonomy", "diff", "default", str(new)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"version {DEFAULT.version} -> {load_taxonomy(new).version}",
        "- AUTHORIZATION (removed)",
        "+ REFERRALS (added)",
        "~ BILLING: description changed",
        "~ TEST_RESULTS: review_threshold None -> 0.8; answer code D -> C",
        "~ ADMINISTRATIVE: answer code E -> D",
        "results made with the old version will not be reused: re-run the evaluation",
    ]
    same = CliRunner().invoke(cli, ["taxonomy", "diff", "default", "default"])
    assert same.output == "identical\n"
    missing = CliRunner().invoke(cli, ["taxonomy", "diff", "default", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "cannot read taxonomy" in missing.output
