"""Witnesses: the protocol's refusals, cosignatures that verify, the sealer submitting over real
mutual TLS, and auditors requiring cosignatures, including against an insider who also holds
the log's signing key."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import checkpoint as notes
from audit.cosignature import WitnessKey, cosigners, verify_cosignature
from audit.errors import SignatureError
from audit.proof import Tree
from audit.rfc6962 import hash_leaf
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from audit.types import Checkpoint
from audit.witness import Witness, WitnessState, serve
from audit.witness_client import Submitter, WitnessEndpoint
from harness.tls import DevPki, free_port
from tests.audit.conftest import ORIGIN, add_events
from tests.audit.test_rollback import roll_back, superuser

WITNESS = "witness.site-b.test"
LEAVES = [hash_leaf(b"entry %d" % i) for i in range(40)]
TREE = Tree(LEAVES)


@pytest.fixture(scope="module")
def witness_private() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def witness_key(witness_private: Ed25519PrivateKey) -> WitnessKey:
    return WitnessKey(WITNESS, witness_private.public_key())


@pytest.fixture
def keeper(witness_private: Ed25519PrivateKey, signer: Signer, tmp_path: Path) -> Witness:
    return Witness(WITNESS, witness_private, [signer.verifier], WitnessState(tmp_path / "w.json"))


def signed(signer: Signer, size: int, tree: Tree = TREE) -> str:
    return notes.sign(
        Checkpoint(signer.origin, size, tree.root(size)), signer.name, signer.key
    ).note


def request(old: int, proof: list[bytes], note: str) -> str:
    return (
        f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + note
    )


def test_the_witness_cosigns_consistent_checkpoints_only(
    keeper: Witness, signer: Signer, witness_key: WitnessKey, tmp_path: Path
) -> None:
    first = keeper.add_checkpoint(request(0, [], signed(signer, 10)))
    assert first.status == 200
    assert verify_cosignature(signed(signer, 10), first.body, witness_key) > 0
    grown = keeper.add_checkpoint(request(10, TREE.consistency(10, 25), signed(signer, 25)))
    assert grown.status == 200
    forked_tree = Tree([*LEAVES[:20], hash_leaf(b"forged"), *LEAVES[21:]])
    forked = signed(signer, 30, forked_tree)
    refused = keeper.add_checkpoint(request(25, forked_tree.consistency(25, 30), forked))
    assert refused.status == 422
    stale = keeper.add_checkpoint(request(10, TREE.consistency(10, 30), signed(signer, 30)))
    assert (stale.status, stale.content_type, stale.body) == (409, "text/x.tlog.size", "25\n")
    same_size_other_root = keeper.add_checkpoint(request(25, [], signed(signer, 25, forked_tree)))
    assert same_size_other_root.status == 409
    # Its memory survives a restart: a new process still knows 25.
    again = Witness(
        WITNESS, Ed25519PrivateKey.generate(), [signer.verifier], WitnessState(tmp_path / "w.json")
    )
    assert again.add_checkpoint(request(0, [], signed(signer, 30))).body == "25\n"


def test_the_witness_refuses_bad_signatures_unknown_logs_and_bad_requests(
    keeper: Witness, signer: Signer
) -> None:
    other = Signer(ORIGIN, ORIGIN, Ed25519PrivateKey.generate())
    assert keeper.add_checkpoint(request(0, [], signed(other, 10))).status == 403
    stranger = Signer("other.log/audit", "other.log/audit", signer.key)
    assert keeper.add_checkpoint(request(0, [], signed(stranger, 10))).status == 404
    assert keeper.add_checkpoint(request(20, [], signed(signer, 10))).status == 400
    assert keeper.add_checkpoint("old x\n\n" + signed(signer, 10)).status == 400
    assert keeper.add_checkpoint(signed(signer, 10)).status == 400
    assert keeper.add_checkpoint(request(0, [LEAVES[0]], signed(signer, 10))).status == 422


def test_cosignatures_name_their_key(
    signer: Signer, keeper: Witness, witness_key: WitnessKey
) -> None:
    note = signed(signer, 10)
    line = keeper.add_checkpoint(request(0, [], note)).body
    impostor = WitnessKey(WITNESS, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(SignatureError):
        verify_cosignature(note, line, impostor)
    assert cosigners(note, [line], [witness_key]) == {WITNESS}
    assert cosigners(signed(signer, 9), [line], [witness_key]) == set()


@pytest.fixture
def pki(tmp_path: Path) -> DevPki:
    return DevPki.create(tmp_path / "pki")


@pytest.fixture
def witness_url(keeper: Witness, pki: DevPki) -> Iterator[str]:
    """The witness over HTTPS, client certificates required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki.ca_path)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(pki.server.cert_path), str(pki.server.key_path))
    server = serve(keeper, ("127.0.0.1", free_port()), context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_client_without_a_certificate_is_turned_away(witness_url: str, pki: DevPki) -> None:
    import urllib3

    http = urllib3.PoolManager(ssl_context=pki.client_context(None), retries=False)
    with pytest.raises(urllib3.exceptions.HTTPError):
        http.request("GET", witness_url + "/latest", fields={"origin": ORIGIN})


@pytest.fixture
def key_dir(tmp_path: Path, signing_key: Ed25519PrivateKey, witness_key: WitnessKey) -> Path:
    folder = tmp_path / "keys"
    folder.mkdir()
    pem = signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (folder / "log.pem").write_bytes(pem)
    (folder / "log.vkey").write_text(notes.vkey(ORIGIN, signing_key.public_key()) + "\n")
    (folder / "witness.vkey").write_text(witness_key.vkey + "\n")
    return folder


def audit_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit", *args], capture_output=True, text=True, check=False
    )


def verify_args(url: str, keys: Path, pki: DevPki, *extra: str) -> list[str]:
    client = pki.client("auditor", "URI:spiffe://hospital/user/auditor")
    return [
        "verify", "--json", "--database-url", url, "--public-key", str(keys / "log.vkey"),
        "--witness", str(keys / "witness.vkey"), "--witness-grace", "0",
        "--witness-ca", pki.ca_path, "--witness-cert", client.pair[0],
        "--witness-cert-key", client.pair[1], *extra,
    ]  # fmt: skip


def test_the_sealer_gets_cosignatures_and_auditors_require_them(
    audit_db: str,
    sealer_url: str,
    signer: Signer,
    state: SealerState,
    witness_url: str,
    witness_key: WitnessKey,
    pki: DevPki,
    key_dir: Path,
) -> None:
    sealer_cert = pki.client("sealer", "URI:spiffe://hospital/svc/audit-sealer")
    submitter = Submitter(
        sealer_url, [WitnessEndpoint(witness_url, witness_key)], pki.client_context(sealer_cert)
    )
    for batch in range(3):
        add_events(audit_db, 7, start=batch * 7)
        sealer = Sealer(sealer_url, signer, state, witnesses=submitter)
        sealer.run_once()
        sealer.close()
    with psycopg.connect(audit_db) as conn:
        stored = conn.execute(
            "SELECT size, witness FROM audit_cosignatures ORDER BY size"
        ).fetchall()
    assert stored == [(7, WITNESS), (14, WITNESS), (21, WITNESS)]
    ok = audit_tool(
        *verify_args(audit_db, key_dir, pki, "--quorum", "1", "--witness-url", witness_url)
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["witnessed"] == {"quorum": 1, "size": 21, "witness_views": {witness_url: 21}}

    with superuser(audit_db) as conn:
        conn.execute("DELETE FROM audit_cosignatures WHERE size = 21")
    missing = audit_tool(*verify_args(audit_db, key_dir, pki, "--quorum", "1"))
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert json.loads(missing.stdout)["tampering"]["kind"] == "unwitnessed"


def test_a_fork_signed_with_the_stolen_key_is_caught_by_the_witness(
    audit_db: str,
    sealer_url: str,
    signer: Signer,
    state: SealerState,
    witness_url: str,
    witness_key: WitnessKey,
    pki: DevPki,
    key_dir: Path,
    tmp_path: Path,
) -> None:
    """The insider of issue 12 with the signing key too: roll back 32 entries, accept the
    shorter log with their own sealer state, seal and sign new entries. The log verifies with
    the log's key alone; with the witness it does not."""
    sealer_cert = pki.client("sealer", "URI:spiffe://hospital/svc/audit-sealer")
    submitter = Submitter(
        sealer_url, [WitnessEndpoint(witness_url, witness_key)], pki.client_context(sealer_cert)
    )
    for batch in range(4):
        add_events(audit_db, 16, start=batch * 16)
        sealer = Sealer(sealer_url, signer, state, witnesses=submitter)
        sealer.run_once()
        sealer.close()
    roll_back(audit_db, 32)
    with psycopg.connect(audit_db) as conn:
        note = conn.execute("SELECT note FROM audit_checkpoints WHERE size = 32").fetchone()[0]  # type: ignore[index]
    attacker = SealerState(tmp_path / "attacker.state")
    Sealer(sealer_url, signer, attacker).accept_restore(note)
    add_events(audit_db, 40, start=1000)
    forger = Sealer(sealer_url, signer, attacker, witnesses=submitter)
    forger.run_once()  # the witness refuses: it cosigned 64 entries this log does not extend
    forger.close()

    alone = audit_tool(
        "verify", "--json", "--database-url", audit_db, "--public-key", str(key_dir / "log.vkey")
    )
    assert alone.returncode == 0, alone.stdout  # the signatures alone cannot tell
    caught = audit_tool(*verify_args(audit_db, key_dir, pki, "--witness-url", witness_url))
    assert caught.returncode == 1, caught.stdout + caught.stderr
    tampering = json.loads(caught.stdout)["tampering"]
    assert tampering["kind"] == "forked"
    assert "cosigned a tree of size 64" in tampering["detail"]
    offline = audit_tool(*verify_args(audit_db, key_dir, pki))
    assert json.loads(offline.stdout)["tampering"]["kind"] == "unwitnessed"


def test_a_witness_that_is_down_delays_nothing(
    audit_db: str, sealer_url: str, signer: Signer, state: SealerState, witness_key: WitnessKey
) -> None:
    from prometheus_client import REGISTRY

    labels = {"witness": WITNESS, "reason": "unreachable"}
    before = REGISTRY.get_sample_value("audit_witness_failures_total", labels) or 0
    down = Submitter(sealer_url, [WitnessEndpoint(f"https://127.0.0.1:{free_port()}", witness_key)])
    add_events(audit_db, 5)
    sealer = Sealer(sealer_url, signer, state, witnesses=down)
    assert sealer.run_once() == 5
    sealer.close()
    with psycopg.connect(audit_db) as conn:
        assert conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone() == (1,)
    assert REGISTRY.get_sample_value("audit_witness_failures_total", labels) == before + 1
