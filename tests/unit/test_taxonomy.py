"""Taxonomy files: validation, and a version that depends on content only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from appliance.classification.content import content_sha256, normalise
from appliance.classification.prompts import system_prompt
from appliance.classification.taxonomy import TaxonomyError, load_taxonomy

DEFAULT = load_taxonomy(None)


def test_default_has_the_five_classes() -> None:
    assert DEFAULT.names == (
        "CLINICAL_NOTES",
        "BILLING",
        "AUTHORIZATION",
        "TEST_RESULTS",
        "ADMINISTRATIVE",
    )
    assert DEFAULT.version.startswith("sha256:") and len(DEFAULT.version) == 71


def test_version_depends_on_content_not_format(tmp_path: Path) -> None:
    data = DEFAULT.model_dump(mode="json")
    as_json = tmp_path / "t.json"
    as_json.write_text(json.dumps(data, indent=4))
    as_yaml = tmp_path / "t.yaml"
    as_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_taxonomy(as_json).version == load_taxonomy(as_yaml).version == DEFAULT.version
    data["labels"][0]["description"] += " Also nursing notes."
    as_json.write_text(json.dumps(data))
    assert load_taxonomy(as_json).version != DEFAULT.version


@pytest.mark.parametrize(
    "text",
    [
        "labels: []",
        "labels: [{name: ONLY, description: one}]",
        "labels: [{name: lower, description: x}, {name: B, description: y}]",
        "labels: [{name: A, description: x}, {name: A, description: y}]",
        "labels: [{name: A, description: x}, {name: B, description: y, colour: red}]",
        "labels: [{name: A, description: x}, {name: B}]",
        "{unclosed",
        "labels:\n" + "".join(f"  - {{name: L{i}, description: d}}\n" for i in range(21)),
    ],
    ids=[
        "empty",
        "one-label",
        "lowercase",
        "duplicate",
        "unknown-key",
        "no-description",
        "bad-yaml",
        "too-many",
    ],
)
def test_invalid_taxonomies_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(text)
    with pytest.raises(TaxonomyError):
        load_taxonomy(path)


def test_prompt_lists_every_label_with_its_code() -> None:
    prompt = system_prompt(DEFAULT)
    for code, name in DEFAULT.code_to_label.items():
        assert f"{code}. {name}:" in prompt


def test_normalised_content_ignores_layout_only() -> None:
    assert normalise("  Café\r\n\tbill ") == "Café bill"
    assert content_sha256("Cafe\u0301 bill") == content_sha256("Café  bill")
    assert content_sha256("Café bill") != content_sha256("Cafe bill")
