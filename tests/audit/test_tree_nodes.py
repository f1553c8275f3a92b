"""Proofs from the stored tree nodes: the same proofs as a whole tree gives, from nodes the
sealer, its catch-up and migration 0008 all write alike; an append-only table nothing trusts."""

from __future__ import annotations

import base64
from collections.abc import Callable

import psycopg
import pytest

from appliance import migrate
from audit import sealer as sealer_module
from audit import service, store, stored_proofs, tree_nodes
from audit.errors import RootMismatchError, StoreError
from audit.proof import Tree
from audit.rfc6962 import CompactRange
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from audit.verify import verify_consistency, verify_inclusion
from harness.postgres import Logins, sqlalchemy_url
from tests.audit.conftest import add_events
from tests.audit.test_rollback import roll_back, superuser

BATCHES = (1, 6, 17, 40, 64, 100, 72)
"""Sealed one checkpoint each: sizes 1, 7, 24, 64, 128, 228, 300."""
LARGE = (127, 128, 129, 200, 255, 256, 257, 300)

Seal = Callable[[int], None]


@pytest.fixture
def seal(audit_db: str, sealer_url: str, signer: Signer, state: SealerState) -> Seal:
    """Seal ``count`` new events and sign a checkpoint over them."""
    done = [0]

    def run(count: int) -> None:
        add_events(audit_db, count, start=done[0])
        done[0] += count
        sealer = Sealer(sealer_url, signer, state)
        assert sealer.run_once() == count
        sealer.close()

    return run


def _nodes(url: str) -> dict[tuple[int, int], bytes]:
    """The table's (level, index) -> hash; fails on two rows of one node."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT level, index, hash FROM audit_tree_nodes").fetchall()
    found = {(level, index): bytes(h) for level, index, h in rows}
    assert len(found) == len(rows)
    return found


def _expected(url: str) -> dict[tuple[int, int], bytes]:
    with psycopg.connect(url) as conn:
        head = conn.execute("SELECT seq FROM audit_chain_head").fetchone()[0]  # type: ignore[index]
        leaves = service.leaves(conn, head + 1)
    return {(level, index): h for level, index, h in tree_nodes.completed(CompactRange(), leaves)}


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_proofs_from_stored_nodes_are_the_whole_trees_proofs(
    audit_db: str, logins: Logins, seal: Seal, monkeypatch: pytest.MonkeyPatch, stride: int
) -> None:
    """Every index and size up to 70, a sample beyond (levels 4 and 8 stored); with 4 (the
    code's) and with smaller strides, where most proof nodes fold from several stored ones."""
    monkeypatch.setattr(tree_nodes, "STRIDE", stride)
    for count in BATCHES:
        seal(count)
    with psycopg.connect(logins.url(audit_db, logins.app)) as conn:  # as the API reads
        tree = Tree(service.leaves(conn, sum(BATCHES)))
        for size in [*range(1, 71), *LARGE]:
            indices = range(size) if size <= 70 else [*range(0, size, 7), size - 1]
            for index in indices:
                assert stored_proofs.inclusion(conn, index, size) == tree.inclusion(index, size)
            for size1 in range(0, size + 1, 1 if size <= 70 else 5):
                got = stored_proofs.consistency(conn, size1, size)
                assert got == tree.consistency(size1, size), (size1, size)


def test_the_services_proofs_verify_against_every_checkpoint(
    audit_db: str, logins: Logins, seal: Seal, signer: Signer
) -> None:
    for count in BATCHES:
        seal(count)
    with psycopg.connect(logins.url(audit_db, logins.app)) as conn:
        sizes = [cp.size for cp in store.checkpoints(conn)]
        tree = Tree(service.leaves(conn, sizes[-1]))
        roots = {size: tree.root(size) for size in sizes}
        for size in sizes:
            for seq in {0, size // 3, size - 1}:
                body = service.inclusion(conn, seq, size)
                assert signer.verifier.open(body["checkpoint"]).root == roots[size]
                assert body["hashes"] == _b64(tree.inclusion(seq, size))
                proof = [base64.b64decode(h) for h in body["hashes"]]
                verify_inclusion(seq, size, tree.levels[0][seq], proof, roots[size])
            for size1 in sizes[: sizes.index(size) + 1]:
                body = service.consistency(conn, size1, size)
                assert body["hashes"] == _b64(tree.consistency(size1, size))
                proof = [base64.b64decode(h) for h in body["hashes"]]
                verify_consistency(size1, size, proof, roots[size1], roots[size])


def test_the_migration_backfills_the_nodes_the_sealer_writes(audit_db: str, seal: Seal) -> None:
    for count in BATCHES:
        seal(count)
    written = _nodes(audit_db)
    assert written == _expected(audit_db) and len(written) == 300 // 16 + 1
    migrate.downgrade(sqlalchemy_url(audit_db), "0007_file_results")
    with psycopg.connect(audit_db) as conn:
        assert conn.execute("SELECT to_regclass('audit_tree_nodes')").fetchone() == (None,)
    migrate.upgrade(sqlalchemy_url(audit_db))
    assert _nodes(audit_db) == written


def test_nodes_of_entries_sealed_without_them_are_caught_up(
    audit_db: str, seal: Seal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after an upgrade, when the previous release's sealer sealed on after the migration."""
    seal(40)
    with monkeypatch.context() as previous_release:
        previous_release.setattr(sealer_module.tree_nodes, "write", lambda *args: None)
        seal(200)
    assert len(_nodes(audit_db)) == 2  # the 40 the first batch sealed
    seal(5)
    assert _nodes(audit_db) == _expected(audit_db)


def test_a_rolled_back_then_accepted_log_serves_proofs_of_its_new_entries(
    audit_db: str, sealer_url: str, signer: Signer, state: SealerState, seal: Seal
) -> None:
    """Nodes of the rolled-back entries stay (the table is append-only); the re-sealed
    positions' newer rows win."""
    for _ in range(4):
        seal(16)
    roll_back(audit_db, 32)
    with psycopg.connect(audit_db) as conn:
        note = conn.execute("SELECT note FROM audit_checkpoints WHERE size = 32").fetchone()[0]  # type: ignore[index]
    assert Sealer(sealer_url, signer, state).accept_restore(note) == 33
    seal(40)
    with psycopg.connect(audit_db) as conn:
        tree = Tree(service.leaves(conn, 73))
        for seq in range(73):
            assert stored_proofs.inclusion(conn, seq, 73) == tree.inclusion(seq, 73)
        assert service.consistency(conn, 32, 73)["hashes"] == _b64(tree.consistency(32, 73))


def test_a_proof_from_an_altered_node_fails_to_verify(audit_db: str, seal: Seal) -> None:
    """Served as stored, not trusted: only the verifier's check against the checkpoint counts."""
    for _ in range(2):
        seal(32)
    with psycopg.connect(audit_db) as conn:
        tree = Tree(service.leaves(conn, 64))
    with superuser(audit_db) as conn:  # triggers off
        conn.execute(
            "UPDATE audit_tree_nodes SET hash = sha256(hash) WHERE (level, index) = (4, 0)"
        )
        body = service.inclusion(conn, 40, 64)
        proof = [base64.b64decode(h) for h in body["hashes"]]
        with pytest.raises(RootMismatchError):
            verify_inclusion(40, 64, tree.levels[0][40], proof, tree.root(64))
        conn.execute("DELETE FROM audit_tree_nodes WHERE (level, index) = (4, 0)")
        with pytest.raises(StoreError, match=r"tree node \(4, 0\) is missing"):
            service.inclusion(conn, 40, 64)


def test_the_node_table_is_append_only(
    audit_db: str, sealer_url: str, logins: Logins, seal: Seal
) -> None:
    seal(16)
    statements = (
        "UPDATE audit_tree_nodes SET hash = sha256(hash)",
        "DELETE FROM audit_tree_nodes",
        "TRUNCATE audit_tree_nodes",
    )
    for url in (sealer_url, audit_db):  # not granted to the sealer; rejected by the triggers
        for statement in statements:
            with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    insert = "INSERT INTO audit_tree_nodes (level, index, hash) VALUES (4, 9, sha256('x'))"
    for login in (logins.app, logins.auditor):
        with psycopg.connect(logins.url(audit_db, login)) as conn:
            assert conn.execute("SELECT count(*) FROM audit_tree_nodes").fetchone() == (1,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(insert)
    assert len(_nodes(audit_db)) == 1
