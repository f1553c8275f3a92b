"""DR on the session deployment: the replica streams through its slot, a row written on the
primary is read on the replica, lag is reported, then failover.yml fences the primary, promotes
the replica, repoints the appliance, and the promoted server takes writes. Runs last."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.deploy import harness
from tests.deploy.conftest import Deployment

pytestmark = pytest.mark.slow


def _owner(d: Deployment, port: int) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(d.app_dsn(port, user="docclass_owner"), autocommit=True)


def test_replica_streams_from_the_primary(deployment: Deployment) -> None:
    d = deployment
    assert harness.psql(d.replica_port, "SELECT pg_is_in_recovery()") == "t"
    slot = harness.psql(d.primary_port,
                        "SELECT active FROM pg_replication_slots WHERE slot_name = 'dr_db_replica'")
    assert slot == "t", "replication slot missing or inactive"
    marker = str(uuid.uuid4())
    with _owner(d, d.primary_port) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS dr_probe (marker text PRIMARY KEY)")
        conn.execute("INSERT INTO dr_probe VALUES (%s)", (marker,))
    harness.wait_for(
        lambda: harness.psql(
            d.replica_port, f"SELECT count(*) FROM dr_probe WHERE marker = '{marker}'",
            db="docclass") == "1",
        5, "the row on the replica")
    with _owner(d, d.replica_port) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("INSERT INTO dr_probe VALUES ('written on the standby')")


def _monitor(d: Deployment, host: str) -> tuple[int, dict[str, float]]:
    """Run a database host's monitoring script; its exit status and the metrics it wrote."""
    script = d.base / "bin" / host / "docclass-replication-lag"
    proc = subprocess.run(["runuser", "-u", "postgres", "--", str(script)], capture_output=True,
                          text=True, check=False, timeout=30)
    metrics = (d.base / "textfile" / host / "docclass_replication.prom").read_text()
    values = dict(line.split() for line in metrics.splitlines() if not line.startswith("#"))
    return proc.returncode, {name: float(value) for name, value in values.items()}


def test_lag_monitoring_reports_streaming_from_both_ends(deployment: Deployment) -> None:
    status, standby = _monitor(deployment, "db-replica")
    assert status == 0, standby
    assert standby["docclass_postgresql_in_recovery"] == 1
    assert standby["docclass_replication_streaming"] == 1
    assert 0 <= standby["docclass_replication_lag_seconds"] < 5
    status, primary = _monitor(deployment, "db-primary")
    assert status == 0, primary
    assert primary["docclass_postgresql_in_recovery"] == 0
    assert primary["docclass_replication_standbys_streaming"] == 1
    assert 0 <= primary["docclass_replication_standby_behind_bytes"] < 16 * 1024 * 1024
    assert primary["docclass_archive_push_queue_max_bytes"] == 16 * 1024**3
    assert primary["docclass_archive_push_queue_bytes"] >= 0


def test_failover_refuses_to_promote_while_the_old_primary_cannot_be_fenced(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The old primary unreachable (site A cut off): without -e old_primary_confirmed_down the
    replica is not promoted and the appliance not repointed."""
    d = deployment
    inventory = copy.deepcopy(d.inventory_data)
    primary = inventory["all"]["children"]["postgresql"]["children"]["postgresql_primary"]
    primary["hosts"]["db-primary"] |= {
        "ansible_connection": "ssh", "ansible_host": "127.0.0.1",
        "ansible_port": harness.free_port(), "ansible_user": "nobody",
        "ansible_ssh_common_args": "-o ConnectTimeout=3 -o BatchMode=yes",
    }  # fmt: skip
    cut_off = tmp_path / "inventory"
    shutil.copytree(d.inventory / "group_vars", cut_off / "group_vars")  # the vault
    (cut_off / "hosts.yml").write_text(yaml.safe_dump(inventory))
    run = harness.run_playbook(d.base, cut_off, "failover")
    assert run.rc != 0 and "could not be fenced" in run.output, run.output[-3000:]
    assert harness.psql(d.replica_port, "SELECT pg_is_in_recovery()") == "t"
    url = (d.base / "etc" / "appliance" / "api" / "api-database-url").read_text()
    assert f"@127.0.0.1:{d.primary_port}/docclass" in url


def test_switchover_refuses_a_replica_that_has_not_replayed_everything(
    deployment: Deployment,
) -> None:
    """Replay paused on the replica, a write on the primary: the planned switchover measures
    the WAL gap after the clean stop and refuses; the primary stays fenced for the next run."""
    d = deployment
    harness.psql(d.replica_port, "SELECT pg_wal_replay_pause()")
    try:
        with _owner(d, d.primary_port) as conn:
            conn.execute("INSERT INTO dr_probe VALUES ('written while replay is paused')")
        run = d.playbook("failover", "-e", "failover_replay_wait_s=3")
        assert run.rc != 0 and "has not replayed all" in run.output, run.output[-3000:]
        gap = re.search(r"WAL gap: (\d+) bytes", run.output)
        assert gap and int(gap.group(1)) > 0, run.output[-3000:]
        assert harness.psql(d.replica_port, "SELECT pg_is_in_recovery()") == "t"
    finally:
        harness.psql(d.replica_port, "SELECT pg_wal_replay_resume()")


def _generated_wants(tmp_path: Path) -> list[str]:
    """What Debian's systemd generator would start at the next boot or daemon-reload."""
    out = tmp_path / "generator"
    out.mkdir()
    subprocess.run(["/lib/systemd/system-generators/postgresql-generator", str(out)], check=True)
    return sorted(p.name for p in (out / "postgresql.service.wants").iterdir())


def test_failover_promotes_the_replica_and_repoints_the_appliance(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    run = d.playbook("failover")
    harness.assert_ok(run)
    assert "WAL gap: 0 bytes" in run.output, run.output[-3000:]  # replayed to the very end
    wants = _generated_wants(tmp_path)
    assert f"postgresql@15-{d.primary}.service" not in wants, "the generator would start it"
    assert f"postgresql@15-{d.replica}.service" in wants
    listed = subprocess.run(["pg_lsclusters", "-h", "15", d.primary], capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    assert listed[3] == "down", "old primary still running (not fenced)"
    start_conf = Path(f"/etc/postgresql/15/{d.primary}/start.conf")
    assert start_conf.read_text().strip() == "disabled"  # Debian's generator skips it at boot
    started = subprocess.run(["pg_ctlcluster", "15", d.primary, "start"], capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert started.returncode != 0 and "disabled" in started.stderr, "a fenced primary started"
    assert harness.psql(d.replica_port, "SELECT pg_is_in_recovery()") == "f"
    # The promoted server's monitoring now reports as a primary, and sees no standby.
    status, promoted = _monitor(d, "db-replica")
    assert promoted["docclass_postgresql_in_recovery"] == 0
    assert promoted["docclass_replication_standbys_streaming"] == 0 and status == 2
    url = (d.base / "etc" / "appliance" / "api" / "api-database-url").read_text()
    assert f"@127.0.0.1:{d.replica_port}/docclass" in url, "appliance still on the old primary"
    marker = str(uuid.uuid4())
    with _owner(d, d.replica_port) as conn:
        conn.execute("INSERT INTO dr_probe VALUES (%s)", (marker,))
        assert conn.execute("SELECT count(*) FROM dr_probe").fetchone()[0] >= 2  # type: ignore[index]
    if d.has_app:
        with psycopg.connect(d.app_dsn(d.replica_port)) as conn:
            conn.execute("SELECT 1")
