"""docker-compose's backup service, run for real: compose/initdb's logins on a fresh cluster, the
schema and some rows, then compose/backup/docclass-backup.sh as docclass_backup (no Docker
engine here, so the script runs as the backup image would run it), and the documented restore
into a new database (compose/backup/*.sql, pg_restore as the schema owner)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine

from appliance import migrate
from appliance.classification.interfaces import Document
from appliance.context import RequestContext
from appliance.services import build_services
from appliance.settings import Settings
from audit.sealer import Sealer
from audit.sealer_state import SealerState
from audit.signer import Signer
from harness import postgres
from tests.common.doubles import ScriptedBackend
from tests.deploy import harness
from tests.deploy.test_compose_database import initialise, run_init_script

BACKUP = harness.REPO / "compose" / "backup" / "docclass-backup.sh"
RESTORE_SQL = harness.REPO / "compose" / "backup" / "restore-database.sql"
SWITCH_SQL = harness.REPO / "compose" / "backup" / "switch-to-restored.sql"
DUMP = re.compile(r"^docclass-\d{8}T\d{6}Z\.dump$")
DAY_S = 86400


class Stack:
    """The throwaway cluster, its logins and the secret files, as compose would have them."""

    def __init__(self, cluster: postgres.Cluster, secrets: Path, urls: dict[str, str]) -> None:
        self.cluster = cluster
        self.secrets = secrets
        self.urls = urls
        self.host, self.port = cluster.url.split("@", 1)[1].split("/", 1)[0].split(":")

    def password(self, login: str) -> str:
        return (self.secrets / f"postgres_{login}_password").read_text().strip()

    def backup(self, folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """The backup script as the backup service runs it (its environment from compose)."""
        return subprocess.run(
            ["bash", str(BACKUP), *args], env=self.backup_env(folder, **env),
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip

    def backup_env(self, folder: Path, **env: str) -> dict[str, str]:
        return {
            "PATH": f"{self.cluster.bindir}:/usr/bin:/bin", "TZ": "UTC",
            "PGHOST": self.host, "PGPORT": self.port, "PGDATABASE": "docclass",
            "PGUSER": "docclass_backup", "DOCCLASS_BACKUP_DIR": str(folder),
            "DOCCLASS_BACKUP_PASSWORD_FILE": str(self.secrets / "postgres_backup_password"),
            "DOCCLASS_BACKUP_KEEP_DAYS": "7", "DOCCLASS_BACKUP_AT": "01:30", **env,
        }  # fmt: skip

    def superuser_psql(self, sql_file: Path) -> None:
        """``docker compose exec -T -u postgres postgres psql -v ON_ERROR_STOP=1 -d postgres
        < file``."""
        with sql_file.open() as stdin:
            subprocess.run(
                [str(self.cluster.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                 "-d", self.cluster.url], stdin=stdin, check=True, capture_output=True,
                timeout=60,
            )  # fmt: skip

    def counts(self, database: str) -> dict[str, int]:
        """Rows per table of the schema, counted as the superuser."""
        with psycopg.connect(postgres.with_database(self.cluster.url, database)) as conn:
            query = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            tables = [r[0] for r in conn.execute(query)]
            return {
                t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # type: ignore[index]
                for t in tables
            }


def add_rows(urls: dict[str, str], documents: int, sealer_state: Path | None = None) -> None:
    """What the services write: results and audit events (the app), checkpoints (the sealer,
    given its state file)."""
    services = build_services(
        Settings(database_url=postgres.sqlalchemy_url(urls["app"]), database_pool_size=2),
        backend=ScriptedBackend({"A": 0.9, "B": 0.1}),
    )
    try:
        for i in range(documents):
            services.classification.classify(
                Document(f"backup-{time.time_ns()}-{i}", "Progress note."),
                RequestContext(f"r{i}", None, None),
            )
    finally:
        services.close()
    if sealer_state is None:
        return
    signer = Signer("compose/audit", "compose/audit", Ed25519PrivateKey.generate())
    sealer = Sealer(urls["sealer"], signer, SealerState(sealer_state))
    assert sealer.run_once() == documents
    sealer.close()


def require_passwords(cluster: postgres.Cluster) -> None:
    """The image's authentication (``--auth-host=scram-sha-256``) for every login but the
    superuser the tests administer with: the logins' passwords are checked, as in compose."""
    (cluster.datadir / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    cluster.restart()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with postgres.private_cluster() as cluster:
        require_passwords(cluster)
        secrets = tmp_path_factory.mktemp("compose-secrets")
        urls = initialise(cluster.url, secrets)
        migrate.upgrade(postgres.sqlalchemy_url(urls["owner"]))
        add_rows(urls, 5, tmp_path_factory.mktemp("sealer") / "sealer.state")
        yield Stack(cluster, secrets, urls)


def dumps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if DUMP.match(p.name))


def test_the_backup_login_reads_everything_and_writes_nothing(stack: Stack) -> None:
    with psycopg.connect(stack.cluster.url) as conn:
        role = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = 'docclass_backup'").fetchone()  # fmt: skip
        groups = {r[0] for r in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = 'docclass_backup'"
        )}  # fmt: skip
    assert role == (False, False, False, False, False)
    assert groups == {"pg_read_all_data"}
    with psycopg.connect(stack.urls["backup"]) as conn:
        assert conn.execute("SELECT count(*) FROM classification_results").fetchone() == (5,)
        for statement in (
            "DELETE FROM classification_results",
            "UPDATE audit_chain_head SET seq = 0",
            "CREATE TABLE public.x (i int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()


def test_the_backup_login_script_is_idempotent(stack: Stack, tmp_path: Path) -> None:
    """On an install made before the backup service, the operator runs it by hand: again is fine,
    and it sets the password the secret file holds now."""
    script = harness.REPO / "compose" / "initdb" / "20-docclass-backup-login.sh"
    rotated = "rotated-Pass:word\\x"  # ':' and '\' need escaping in the script's password file
    (stack.secrets / "postgres_backup_password").write_text(rotated + "\n")
    run_init_script(stack.cluster.url, script, stack.secrets)
    with psycopg.connect(host=stack.host, port=stack.port, dbname="docclass",
                         user="docclass_backup", password=rotated) as conn:  # fmt: skip
        assert conn.execute("SELECT current_user").fetchone() == ("docclass_backup",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(stack.urls["backup"]).close()  # the old password is refused
    stack.urls["backup"] = stack.urls["backup"].replace(
        stack.urls["backup"].split("@")[0].rpartition(":")[2], quote(rotated, safe=""), 1
    )
    assert stack.backup(tmp_path, "once").returncode == 0  # the backups use the new one


def test_a_backup_restores_into_a_fresh_database(stack: Stack, tmp_path: Path) -> None:
    proc = stack.backup(tmp_path, "once")
    assert proc.returncode == 0, proc.stderr
    [dump] = dumps(tmp_path)
    assert (tmp_path / ".status").read_text().startswith("ok ")
    assert dump in (tmp_path / ".status").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert (tmp_path / dump).stat().st_mode & 0o077 == 0  # only its owner reads it
    before = stack.counts("docclass")
    assert before["classification_results"] == 5 and before["audit_entries"] >= 5
    assert before["audit_checkpoints"] >= 1
    add_rows(stack.urls, 2)  # written after the dump: not in it

    # The documented restore: a fresh database, pg_restore as the owner, then the switch.
    stack.superuser_psql(RESTORE_SQL)
    restore = subprocess.run(
        [str(stack.cluster.bindir / "pg_restore"), f"--host={stack.host}", f"--port={stack.port}",
         "--username=docclass_owner", "--dbname=docclass_restore", "--exit-on-error",
         "--single-transaction", str(tmp_path / dump)],
        env={"PATH": "/usr/bin:/bin", "PGPASSWORD": stack.password("owner")},
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert restore.returncode == 0, restore.stderr
    assert stack.counts("docclass_restore") == before
    assert stack.counts("docclass")["classification_results"] == 7
    stack.superuser_psql(SWITCH_SQL)
    assert stack.counts("docclass") == before
    # The services work on the restored database as their own logins.
    engine = create_engine(postgres.sqlalchemy_url(stack.urls["app"]))
    try:
        assert migrate.is_at_head(engine)
    finally:
        engine.dispose()
    add_rows(stack.urls, 1)
    assert stack.counts("docclass")["classification_results"] == 6
    # ... and the backup login backs up the restored database.
    assert stack.backup(tmp_path, "once").returncode == 0


def test_without_its_grant_the_backup_fails_and_deletes_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    old = tmp_path / "docclass-20000101T013000Z.dump"
    old.write_bytes(b"an old dump")
    os.utime(old, (time.time() - 30 * DAY_S,) * 2)
    with psycopg.connect(stack.cluster.url, autocommit=True) as conn:
        conn.execute("REVOKE pg_read_all_data FROM docclass_backup")
    try:
        proc = stack.backup(tmp_path, "once")
    finally:
        with psycopg.connect(stack.cluster.url, autocommit=True) as conn:
            conn.execute("GRANT pg_read_all_data TO docclass_backup")
    assert proc.returncode != 0
    assert "permission denied" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".status", old.name]
    assert (tmp_path / ".status").read_text().startswith("failed ")


def test_retention_keeps_the_configured_days(stack: Stack, tmp_path: Path) -> None:
    now = time.time()
    ages = {"docclass-20000101T013000Z.dump": 10, "docclass-20000102T013000Z.dump": 8,
            "docclass-20000104T013000Z.dump": 6, "docclass-20000109T013000Z.dump": 1,
            "notes.txt": 30}  # fmt: skip
    for name, days in ages.items():
        (tmp_path / name).write_text(name)
        os.utime(tmp_path / name, (now - days * DAY_S,) * 2)
    proc = stack.backup(tmp_path, "once", DOCCLASS_BACKUP_KEEP_DAYS="7")
    assert proc.returncode == 0, proc.stderr
    kept = sorted(p.name for p in tmp_path.iterdir())
    new = [n for n in dumps(tmp_path) if n not in ages]
    assert len(new) == 1
    assert kept == sorted([".status", "notes.txt", "docclass-20000104T013000Z.dump",
                           "docclass-20000109T013000Z.dump", *new])  # fmt: skip
    assert "deleted (retention)" in proc.stderr


@pytest.mark.parametrize(
    ("setting", "value"),
    [("DOCCLASS_BACKUP_KEEP_DAYS", "0"), ("DOCCLASS_BACKUP_KEEP_DAYS", "7d"),
     ("DOCCLASS_BACKUP_AT", "1:30"), ("DOCCLASS_BACKUP_AT", "24:00")],
)  # fmt: skip
def test_bad_settings_are_refused_before_anything_is_done(
    stack: Stack, tmp_path: Path, setting: str, value: str
) -> None:
    proc = stack.backup(tmp_path, "once", **{setting: value})
    assert proc.returncode == 2 and setting in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_loop_backs_up_at_once_when_there_is_no_dump_then_waits(
    stack: Stack, tmp_path: Path
) -> None:
    at = (datetime.now(UTC) + timedelta(hours=2)).strftime("%H:%M")
    process = subprocess.Popen(
        ["bash", str(BACKUP), "loop"], env=stack.backup_env(tmp_path, DOCCLASS_BACKUP_AT=at),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        harness.wait_for(lambda: (tmp_path / ".status").exists(), 60, "the first backup")
        assert (tmp_path / ".status").read_text().startswith("ok ")
        assert len(dumps(tmp_path)) == 1
        time.sleep(0.5)
        assert process.poll() is None  # still running: asleep until the next night
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert re.search(rf"next backup at {at} \((\d+) s\)", stderr), stderr
    seconds = int(re.search(r"\((\d+) s\)", stderr).group(1))  # type: ignore[union-attr]
    assert 7000 < seconds <= 7200
