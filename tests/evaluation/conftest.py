"""Fixtures for the operator commands: a clean migrated database and the environment the
in-process classifier reads its settings from."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.fake_vllm import FakeVllm
from harness.upstream import VllmEndpoint

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "labelled-synthetic.jsonl"


def runner_for(database_url: str, vllm: VllmEndpoint, **extra: str) -> CliRunner:
    return CliRunner(
        env={
            "APPLIANCE_DATABASE_URL": database_url,
            **vllm.env,
            "APPLIANCE_VLLM_MAX_RETRIES": "0",
            "APPLIANCE_TAXONOMY_PATH": None,  # type: ignore[dict-item]  # None unsets
            **extra,
        }
    )


@pytest.fixture
def runner(clean_database: str, fake_vllm: FakeVllm) -> CliRunner:
    return runner_for(clean_database, fake_vllm.endpoint)
