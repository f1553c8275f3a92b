"""backup.yml then restore-drill.yml on the session deployment: encrypted repositories at both
sites, WAL archived, the latest backup plus archived WAL restored into a scratch cluster that does
not archive, row counts checked and the audit chain verified, the scratch cluster removed."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import harness
from tests.deploy.conftest import ARCHIVE_TIMEOUT_S, Deployment

pytestmark = pytest.mark.slow
ROWS_AT_BACKUP = 100
ROWS_AFTER = 5


def _wait_archived(port: int) -> None:
    """Switch WAL and wait until the segment holding everything so far is archived."""
    walfile = harness.psql(port, "SELECT pg_walfile_name(pg_switch_wal())")
    harness.wait_for(
        lambda: harness.psql(port, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        >= walfile, 180, f"archiving of {walfile}")


def _reports(d: Deployment, name: str) -> dict[str, object]:
    return json.loads((d.base / "pgbackrest" / "reports" / name).read_text())  # type: ignore[no-any-return]


def _seal_pending(d: Deployment) -> int:
    """Run the installed sealer once, as its own account with its environment."""
    config = d.base / "etc" / "appliance"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env |= harness.read_env_file(config / "common.env")
    env |= harness.read_env_file(config / "sealer" / "sealer.env")
    proc = subprocess.run(
        ["runuser", "-u", d.sealer_user, "--",
         str(d.base / "opt" / "venv" / "bin" / "audit-tool"), "seal", "--once"],
        env=env, cwd=d.base / "sealer-state", capture_output=True, text=True,
        check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return int(harness.psql(d.primary_port, "SELECT count(*) FROM audit_entries", db="docclass"))


def test_backup_then_restore_drill(deployment: Deployment) -> None:
    d = deployment
    sealed = _seal_pending(d) if d.has_app and d.has_audit_tool else None
    harness.psql(d.primary_port, (
        "CREATE TABLE drill_probe (id int PRIMARY KEY, note text NOT NULL); "
        f"INSERT INTO drill_probe SELECT g, 'row ' || g FROM generate_series(1, {ROWS_AT_BACKUP}) g"
    ), db="docclass")

    started = time.time()
    run = d.playbook("backup", "-e", "backup_type=full")
    harness.assert_ok(run)
    recorded = _reports(d, "last-backup.json")
    assert recorded["counts"]["public.drill_probe"] == ROWS_AT_BACKUP  # type: ignore[index]

    info = json.loads(subprocess.run(
        ["runuser", "-u", "postgres", "--", "pgbackrest",
         f"--config={d.base}/pgbackrest/db-primary/pgbackrest.conf", "--stanza=docclass",
         "--output=json", "info"], capture_output=True, text=True, check=True).stdout)
    repos = {b["database"]["repo-key"] for b in info[0]["backup"] if b["type"] == "full"}
    assert repos == {1, 2}, info
    _check_backup_metrics(d, info, started)
    for repo in ("repo1", "repo2"):
        catalogue = d.base / "pgbackrest" / repo / "backup" / "docclass" / "backup.info"
        assert catalogue.read_bytes().startswith(b"Salted__"), f"{repo} is not encrypted"

    # Written after the backup: only archived WAL can bring these rows back.
    harness.psql(d.primary_port, (
        f"INSERT INTO drill_probe SELECT g, 'late ' || g FROM "
        f"generate_series({ROWS_AT_BACKUP + 1}, {ROWS_AT_BACKUP + ROWS_AFTER}) g"), db="docclass")
    _wait_archived(d.primary_port)

    run = d.playbook("restore-drill")
    harness.assert_ok(run)
    report = _reports(d, "last-drill.json")
    assert report["restored_counts"]["public.drill_probe"] == ROWS_AT_BACKUP + ROWS_AFTER  # type: ignore[index]
    if sealed is not None:
        verify = report["audit_verify"]
        assert isinstance(verify, dict), verify
        assert verify["status"] == "ok" and verify["entries"] == sealed, verify
    assert not (d.base / "drill").exists(), "scratch cluster left behind"
    assert subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(d.drill_port)],
                          capture_output=True, check=False).returncode != 0


def _backup_metrics(d: Deployment, host: str) -> Path:
    return d.base / "textfile" / host / "docclass_backup.prom"


def _check_backup_metrics(d: Deployment, info: list[dict[str, Any]], started: float) -> None:
    """backup.yml left node_exporter the newest backup of each repository: the stop time
    pgBackRest records, of the backup just taken; a standby writes none (and removes a file
    left from when it was the primary)."""
    text = _backup_metrics(d, "db-primary").read_text()
    assert "# TYPE docclass_backup_last_success_timestamp_seconds gauge" in text, text
    series = re.findall(r'^docclass_backup_last_success_timestamp_seconds\{repo="(\d+)"\} (\S+)$',
                        text, re.M)  # fmt: skip
    values = {repo: float(value) for repo, value in series}
    newest = {str(repo): max(b["timestamp"]["stop"] for b in info[0]["backup"]
                             if b["database"]["repo-key"] == repo) for repo in (1, 2)}  # fmt: skip
    assert values == newest, (values, newest)
    for stop in values.values():
        assert started - 5 <= stop <= time.time() + 5, (stop, started)
    for host in ("db-primary", "db-replica"):
        units = d.base / "systemd" / host
        assert (units / "docclass-backup-metrics.timer").is_file()
        service = harness.parse_unit(units / "docclass-backup-metrics.service")
        assert service["ExecStart"] == [str(d.base / "bin" / host / "docclass-backup-metrics")]
        backup = harness.parse_unit(units / "pgbackrest-docclass-repo1-incr.service")
        assert backup["ExecStartPost"] == [f"-{service['ExecStart'][0]}"]
    stale = _backup_metrics(d, "db-replica")
    stale.write_text("docclass_backup_last_success_timestamp_seconds{repo=\"1\"} 1\n")
    proc = subprocess.run(["runuser", "-u", "postgres", "--",
                           str(d.base / "bin" / "db-replica" / "docclass-backup-metrics")],
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not stale.exists(), "a standby reports backups"


def test_point_in_time_restore_stops_at_the_target_time(deployment: Deployment) -> None:
    """The operator-error case: a bad DELETE after the target time is not in the copy restored
    to that time, and the restore time is recorded as the measured RTO. (A table of its own,
    created after the last backup, so later drills still compare the recorded counts.)"""
    d = deployment
    harness.psql(d.primary_port, "CREATE TABLE pitr_probe (id int PRIMARY KEY); "
                 "INSERT INTO pitr_probe SELECT generate_series(1, 10)", db="docclass")
    target = harness.psql(d.primary_port, "SELECT clock_timestamp()::text")
    time.sleep(1.5)
    harness.psql(d.primary_port, "DELETE FROM pitr_probe WHERE id <= 4", db="docclass")
    _wait_archived(d.primary_port)

    run = d.playbook("restore-drill", "-e", f"backup_drill_target_time='{target}'")
    harness.assert_ok(run)
    report = _reports(d, "last-drill.json")
    assert report["target_time"] == target
    assert report["restored_counts"]["public.pitr_probe"] == 10  # type: ignore[index]
    assert 0 < float(report["restore_seconds"]) < 300  # type: ignore[arg-type]
    live = harness.psql(d.primary_port, "SELECT count(*) FROM pitr_probe", db="docclass")
    assert live == "6", "the primary itself is untouched"


def test_the_drill_fails_without_verifying_the_audit_log(deployment: Deployment) -> None:
    """A drill host without the verifier key: before, the drill passed with "not run"."""
    run = deployment.playbook("restore-drill", "-e", "backup_drill_audit_public_key=/nonexistent")
    assert run.rc != 0 and "verifies the restored audit log" in run.output, run.output[-2000:]
    assert not (deployment.base / "drill").exists(), "scratch cluster left behind"


def test_a_quiet_primary_archives_its_last_write_within_archive_timeout(
    deployment: Deployment,
) -> None:
    """No segment switch asked for: the timeout alone closes the segment and it is archived.
    (Without archive_timeout the write would wait for 16 MB more WAL.)"""
    port = deployment.primary_port
    assert harness.psql(port, "SHOW archive_timeout") == f"{ARCHIVE_TIMEOUT_S}s"
    harness.psql(port, "SELECT pg_logical_emit_message(false, 'rpo-probe', 'a write')")
    walfile = harness.psql(port, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    started = time.monotonic()
    harness.wait_for(
        lambda: harness.psql(port, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        >= walfile, 3 * ARCHIVE_TIMEOUT_S + 10, f"archiving of {walfile} without a switch")
    assert time.monotonic() - started <= 2 * ARCHIVE_TIMEOUT_S + 10


def test_backup_runs_only_on_the_current_primary_one_repository_at_a_time(
    deployment: Deployment,
) -> None:
    """The timers exist on every database host (a failover makes the replica the primary), but
    a run on a standby is skipped by its ExecCondition; the repositories' runs share a lock."""
    conditions = {}
    for host in ("db-primary", "db-replica"):
        unit = harness.parse_unit(
            deployment.base / "systemd" / host / "pgbackrest-docclass-repo1-full.service"
        )
        [condition] = unit["ExecCondition"]
        [start] = unit["ExecStart"]
        assert start.startswith("/usr/bin/flock ") and "/pgbackrest " in start
        argv = shlex.split(condition)
        conditions[host] = subprocess.run(["runuser", "-u", "postgres", "--", *argv],
                                          capture_output=True, check=False).returncode  # fmt: skip
    assert conditions == {"db-primary": 0, "db-replica": 1}


def test_preflight_refuses_an_off_site_repository_that_is_not_mounted(
    deployment: Deployment, tmp_path: Path
) -> None:
    """repo2's directory exists but nothing is mounted on it: backups would stay on site A."""
    d = deployment
    pg_vars = d.inventory_data["all"]["children"]["postgresql"]["vars"]
    repositories = [dict(repo) for repo in pg_vars["backup_repositories"]]
    repositories[1]["mount_point"] = str(Path(repositories[1]["path"]).parent)
    check = tmp_path / "preflight"
    check.with_suffix(".yml").write_text(
        "- hosts: postgresql_primary\n  tasks:\n    - ansible.builtin.include_role:\n"
        "        name: backup\n        tasks_from: preflight\n"
    )
    run = d.playbook(str(check), "-e", json.dumps({"backup_repositories": repositories}))
    assert run.rc != 0
    assert "is not a mount point" in run.output
    repositories[1]["mount_point"] = "/"  # a mount point: accepted
    assert d.playbook(str(check), "-e", json.dumps({"backup_repositories": repositories})).rc == 0


def test_drill_refuses_a_leftover_scratch_cluster(deployment: Deployment) -> None:
    leftover = deployment.base / "drill"
    leftover.mkdir()
    (leftover / "PG_VERSION").write_text("15\n")
    try:
        run = deployment.playbook("restore-drill")
        assert run.rc != 0 and "holds a cluster" in run.output, run.output[-3000:]
    finally:
        (leftover / "PG_VERSION").unlink()
        leftover.rmdir()
