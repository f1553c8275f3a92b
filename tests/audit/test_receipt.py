"""A classification's receipt, fetched over mutual TLS from the appliance as operators run it,
verifies offline with ``audit-tool verify-receipt``; any changed byte makes it fail."""

from __future__ import annotations

import json
import re
import string
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from harness import postgres
from harness.fake_vllm import FakeVllm
from harness.stack import Stack, appliance_stack
from tests.audit.conftest import ORIGIN
from tests.audit.test_cli import run

ALPHABET = string.ascii_letters + string.digits + "+/"
DOCUMENT = {"document_id": "MRN-77/visit-2", "text": "Referral for cardiology consult."}


@pytest.fixture
def stack(
    create_database: Callable[..., str], fake_vllm: FakeVllm, logins: postgres.Logins
) -> Iterator[Stack]:
    with appliance_stack(create_database(), fake_vllm.endpoint, logins) as running:
        running.wait_started()
        yield running


@pytest.fixture
def seal(
    stack: Stack, logins: postgres.Logins, signer: Signer, state: SealerState
) -> Callable[[], None]:
    libpq = stack.libpq_url
    url = logins.url(libpq, logins.sealer)

    def run_once() -> None:
        sealer = Sealer(url, signer, state)
        sealer.run_once()
        sealer.close()

    return run_once


def test_a_receipt_verifies_offline_and_a_flipped_byte_does_not(
    stack: Stack, seal: Callable[[], None], key_files: Path, tmp_path: Path
) -> None:
    with httpx.Client(base_url=stack.url, timeout=60, **stack.client_options()) as api:  # type: ignore[arg-type]
        classified = api.post("/api/v1/classify-document", json=DOCUMENT)
        assert classified.status_code == 200, classified.text
        result_id = classified.json()["result_id"]
        early = api.get(f"/api/v1/classifications/{result_id}/receipt")
        assert early.status_code == 409 and early.headers["Retry-After"] == "1", early.text
        assert early.json()["error"]["code"] == "not_yet_available"
        seal()
        fetched = api.get(f"/api/v1/classifications/{result_id}/receipt")
        unknown = api.get(f"/api/v1/classifications/{uuid.uuid4()}/receipt")
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["Content-Type"].startswith("text/plain")
    assert fetched.text.startswith("c2sp.org/tlog-proof@v1\nextra ")
    assert unknown.status_code == 404

    path = tmp_path / "result.tlog-proof"
    path.write_bytes(fetched.content)
    vkey = str(key_files / "verifier.vkey")
    checked = run("verify-receipt", str(path), "--key", vkey, "--origin", ORIGIN)
    assert checked.exit_code == 0, checked.output
    proven = json.loads(checked.stdout)
    assert proven["event"]["result_id"] == result_id
    assert proven["event"]["label"] == classified.json()["classification"]
    assert float(proven["event"]["confidence"]) == classified.json()["confidence"]

    data = fetched.content
    for position in range(len(data)):
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        assert_refused(path, bytes(flipped), vkey, (position, chr(data[position])))
    # The last character of a base64 value has unused low bits: no other character there may
    # decode to the same bytes (only the canonical encoding is accepted).
    text = fetched.text
    for match in re.finditer(r"[A-Za-z0-9+/]{8,}(?==*(\n| ))", text):
        end = match.end() - 1
        for other in set(ALPHABET) - {text[end]}:
            changed = text[:end] + other + text[end + 1 :]
            assert_refused(path, changed.encode(), vkey, (end, other))


def assert_refused(path: Path, data: bytes, vkey: str, where: object) -> None:
    path.write_bytes(data)
    outcome = run("verify-receipt", str(path), "--key", vkey)
    assert outcome.exit_code != 0, (where, outcome.output)


def test_the_receipt_needs_a_role_that_may_read_results(stack: Stack) -> None:
    nobody = stack.pki.client("metrics-only", "URI:spiffe://hospital/svc/unknown")
    options = {"verify": stack.pki.client_context(nobody)}
    with httpx.Client(base_url=stack.url, timeout=60, **options) as outsider:  # type: ignore[arg-type]
        denied = outsider.get(f"/api/v1/classifications/{uuid.uuid4()}/receipt")
    assert denied.status_code == 403
