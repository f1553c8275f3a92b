"""The served OpenAPI document is the contract: schemathesis, run against the appliance exactly
as the quick start runs it (``appliance serve``, real gunicorn, mutual TLS), calls every
operation in all its phases (examples, boundary values, random data, stateful sequences) and must
find no failure: no 5xx, no answer the document does not describe, no valid request refused and
no invalid one accepted.

Stored data is there first (results waiting for review, a sealed and signed audit log), so the
calls reach the views' logic instead of ending in 404s."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from appliance.openapi import OPERATIONS
from harness import postgres
from harness.fake_vllm import running_fake_vllm
from harness.stack import Stack, appliance_stack

pytestmark = pytest.mark.slow
PHASES = "examples,coverage,fuzzing,stateful"
ORIGIN = "contract.test/audit"
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Served:
    stack: Stack
    document_id: str
    result_id: str


def _tool(*args: str) -> None:
    subprocess.run([str(BIN / "audit-tool"), *args], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def served(
    create_database: Callable[..., str],
    logins: postgres.Logins,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    keys = tmp_path_factory.mktemp("audit-key")
    _tool("keygen", "--name", ORIGIN, "--out", str(keys / "signer"))
    env = {
        "APPLIANCE_AUDIT_VERIFIER_KEY_PATH": str(keys / "signer.vkey"),
        "APPLIANCE_AUDIT_ORIGIN": ORIGIN,
        "APPLIANCE_REVIEW_THRESHOLD": "1.0",  # every result waits for a review
    }
    database = create_database()
    with (
        running_fake_vllm() as upstream,
        appliance_stack(database, upstream.endpoint, logins, extra_env=env) as stack,
    ):
        stack.wait_started()
        first = requests.post(
            stack.server.url("/api/v1/classify-document"),
            json={"document_id": "MRN-1/visit-1", "text": "Invoice for services rendered."},
            cert=stack.client_cert.pair, verify=stack.pki.ca_path, timeout=30,
        )  # fmt: skip
        assert first.status_code == 200, first.text
        sealer_url = logins.url(postgres.sqlalchemy_url(database), logins.sealer)
        _tool("seal", "--once", "--database-url", sealer_url, "--origin", ORIGIN,
              "--signing-key", str(keys / "signer.pem"))  # fmt: skip
        yield Served(stack, "MRN-1/visit-1", first.json()["result_id"])


def _config(served: Served, path: Path) -> Path:
    """Real ids for the operations that need stored data. Two method checks are off for the
    review URL alone: ``GET /classifications/{document_id}`` serves it too, for the document id
    ``<result_id>/review`` (document ids may hold slashes, as the document says), so its
    ``Allow`` names GET and a GET is not a 405. No OpenAPI path template can say that. And for
    ``classify-file`` a schema-valid body is any bytes, but only a readable file is accepted:
    no schema can say which bytes make a PDF, so random bytes answered 415 or 422 are right;
    likewise a job's body is any string, but one without a line holds no item (400), and a
    "wrong type" body (an object) has no wire form but a line, which fails alone as the job's
    item (202), as documented."""
    path.write_text(f"""
checks.enabled = true

[[operations]]
include-path = "/api/v1/classifications/{{result_id}}/review"
parameters = {{ "path.result_id" = "{served.result_id}" }}
checks.allow_header_conformance.enabled = false
checks.unsupported_method.enabled = false

[[operations]]
include-path = "/api/v1/classify-file"
checks.positive_data_acceptance.enabled = false

[[operations]]
include-path = "/api/v1/jobs"
checks.positive_data_acceptance.enabled = false
checks.negative_data_rejection.enabled = false

[[operations]]
include-path = "/api/v1/classifications/{{document_id}}"
parameters = {{ "path.document_id" = "{served.document_id}" }}

[[operations]]
include-path-regex = "^/api/v1/audit/events/\\\\{{seq\\\\}}"
parameters = {{ "path.seq" = 0 }}
""")
    return path


def test_schemathesis_finds_no_failure_in_any_phase(served: Served, tmp_path: Path) -> None:
    stack = served.stack
    cert, key = stack.client_cert.pair
    command = [
        str(BIN / "st"), "--config-file", str(_config(served, tmp_path / "schemathesis.toml")),
        "--no-color", "run", stack.server.url("/api/v1/openapi.json"),
        "--phases", PHASES, "--max-examples", "60", "--seed", "1",
        "--request-cert", cert, "--request-cert-key", key, "--tls-verify", stack.pki.ca_path,
        "--workers", "1",  # 2 trips a CPython 3.11 race in ast.parse inside hypothesis
    ]  # fmt: skip
    hooks = {"SCHEMATHESIS_HOOKS": "tests.core.schemathesis_hooks", "PYTHONPATH": str(REPO)}
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                         check=False, env={**os.environ, **hooks})  # fmt: skip
    assert run.returncode == 0, run.stdout[-30000:] + run.stderr[-4000:]
    summary = run.stdout[run.stdout.index("SUMMARY") :]
    assert f"Tested: {len(OPERATIONS)}" in summary, summary  # every operation,
    for phase in PHASES.split(","):  # in every phase (stateful needs the document's links)
        assert f"✅ {phase.capitalize()}" in summary, summary
