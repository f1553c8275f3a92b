"""A bulk job end to end, as an operator runs one: ``appliance jobs submit --follow`` over mutual
TLS to the served appliance (gunicorn), an ``appliance worker`` process classifying with the real
CPU vLLM, then ``appliance jobs status``, ``results`` and ``cancel``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from appliance.classification.taxonomy import load_taxonomy
from audit.chain import decode_event
from harness import postgres
from harness.stack import Stack, appliance_stack
from harness.upstream import VllmEndpoint

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "labelled-synthetic.jsonl"
APPLIANCE = str(Path(sys.executable).with_name("appliance"))


@pytest.fixture(scope="module")
def stack(
    create_database: Callable[[], str], vllm_server: VllmEndpoint, logins: postgres.Logins
) -> Iterator[Stack]:
    with appliance_stack(create_database(), vllm_server, logins) as running:
        running.wait_started()
        yield running


def _jobs(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    cert, key = stack.client_cert.pair
    service = ["--service", stack.url, "--cert", cert, "--key", key, "--ca", stack.pki.ca_path]
    return subprocess.run(
        [APPLIANCE, "jobs", *args, *service], capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip


def test_a_job_runs_through_the_cli_and_a_worker_with_the_real_model(
    stack: Stack, tmp_path: Path
) -> None:
    examples = [json.loads(line) for line in EXAMPLES.read_text().splitlines()[:6]]
    job_file = tmp_path / "job.jsonl"
    job_file.write_text(
        "".join(json.dumps({"document_id": e["document_id"], "text": e["text"]}) + "\n"
                for e in examples)
        + "this line is not JSON\n"
    )  # fmt: skip
    # As deployed: the worker's requests yield to interactive ones in vLLM's scheduler.
    worker = stack.worker(tmp_path / "worker.log", APPLIANCE_VLLM_REQUEST_PRIORITY="10")
    try:
        submitted = _jobs(stack, "submit", str(job_file), "--follow")
    finally:
        worker.stop()
    assert submitted.returncode == 0, submitted.stderr + (tmp_path / "worker.log").read_text()
    job = json.loads(submitted.stdout)
    assert job["state"] == "done"
    assert job["counts"] == {"total": 7, "done": 6, "failed": 1, "cancelled": 0, "pending": 0}
    assert "item" in submitted.stderr  # the progress bar

    status = _jobs(stack, "status", job["job_id"])
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "done"
    results_file = tmp_path / "results.jsonl"
    results = _jobs(stack, "results", job["job_id"], "--output", str(results_file))
    assert results.returncode == 0, results.stderr
    items = [json.loads(line) for line in results_file.read_text().splitlines()]
    labels = set(load_taxonomy(None).names)
    assert [item["position"] for item in items] == [1, 2, 3, 4, 5, 6, 7]
    assert all(item["result"]["classification"] in labels for item in items[:6])
    assert items[6]["error"]["code"] == "malformed_json"
    unknown = _jobs(stack, "status", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 1 and "not_found" in unknown.stderr

    with psycopg.connect(stack.libpq_url) as connection:
        events = [decode_event(bytes(row[0])) for row in connection.execute(
            "SELECT event FROM audit_pending WHERE action = 'classify_document'"
        ).fetchall()]  # fmt: skip
    mine = [e for e in events if e.job_id == job["job_id"]]
    assert sorted(e.job_item for e in mine if e.job_item) == [1, 2, 3, 4, 5, 6]
    assert all(e.model and e.label in labels for e in mine)
