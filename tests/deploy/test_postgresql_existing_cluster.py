"""The postgresql role and a cluster that exists before it runs.

On Debian the postgresql-15 package creates the cluster 15/main at install, without data checksums.
Each test makes such a cluster the way the package does (pg_createcluster, no --data-checksums,
started), named with the harness prefix, and runs only the role's install tasks against it
(include_role tasks_from install on localhost): refused with what differs and the ways out,
replaced only when empty and running, adopted as it is with a warning. Does not use the session
``deployment`` fixture; every cluster made here is dropped in a finally.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import harness

pytestmark = pytest.mark.slow

COMMANDS = ["pg_createcluster", "pg_dropcluster", "pg_lsclusters", "pg_ctlcluster", "runuser",
            "psql"]
PLAYBOOK = """\
- name: Only the postgresql role's install tasks
  hosts: all
  gather_facts: false
  vars_files: [vars.yml]
  tasks:
    - name: Install
      ansible.builtin.include_role:
        name: postgresql
        tasks_from: install
    - name: Report
      ansible.builtin.debug:
        msg: "data directory after the role: {{ postgresql_data_dir | default('(unset)') }}"
"""


@dataclass
class Scratch:
    base: Path
    name: str
    port: int

    @property
    def default_data_dir(self) -> str:
        return f"/var/lib/postgresql/{harness.PG_VERSION}/{self.name}"

    def run(self, **variables: Any) -> harness.PlaybookRun:
        """Run the install tasks with these variables (play vars_files, as group_vars would set
        them: below set_fact, unlike -e)."""
        (self.base / "vars.yml").write_text(yaml.safe_dump(variables))
        return harness.run_playbook(self.base, self.base / "inventory.yml",
                                    str(self.base / "install"), timeout=300)

    def info(self) -> dict[str, Any]:
        listing = json.loads(subprocess.run(["pg_lsclusters", "--json"], capture_output=True,
                                            text=True, check=True).stdout or "[]")
        found = [c for c in listing
                 if c["cluster"] == self.name and str(c["version"]) == harness.PG_VERSION]
        assert len(found) == 1, f"cluster {self.name} not listed: {listing}"
        cluster: dict[str, Any] = found[0]
        return cluster


def _words(text: str) -> str:
    """The output with all whitespace runs as one space (the result format wraps messages)."""
    return " ".join(text.split())


def _assert_refused(run: harness.PlaybookRun, message: str) -> str:
    """The play ran and failed on localhost with message; returns the output as words."""
    out = _words(run.output)
    assert run.rc != 0 and run.recap.get("localhost", {}).get("failed") == 1, run.output[-3000:]
    assert message in out, run.output[-3000:]
    return out


def checksum_version(data_dir: str) -> int:
    proc = subprocess.run(
        ["runuser", "-u", "postgres", "--", "env", "LC_ALL=C",
         f"/usr/lib/postgresql/{harness.PG_VERSION}/bin/pg_controldata", "-D", data_dir],
        capture_output=True, text=True, check=True, timeout=60,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("Data page checksum version:"):
            return int(line.split(":", 1)[1])
    raise AssertionError(f"no checksum version in pg_controldata output:\n{proc.stdout}")


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    """A started cluster made as Debian's postgresql-15 postinst makes 15/main."""
    with harness.leaving_other_clusters_alone(
        COMMANDS, "these tests create PostgreSQL clusters with pg_createcluster"
    ):
        base = Path(tempfile.mkdtemp(prefix="docclass-pgexisting-"))
        base.chmod(0o755)  # postgres creates a data directory below it in some tests
        s = Scratch(base=base, name=f"{harness.CLUSTER_PREFIX}{os.getpid()}_main",
                    port=harness.free_port())
        try:
            (base / "vault-pass").write_text(secrets.token_urlsafe(32) + "\n")  # no vault is used
            (base / "vault-pass").chmod(0o600)
            (base / "install.yml").write_text(PLAYBOOK)
            (base / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
                "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
                "postgresql_install_packages": False,
                "postgresql_cluster_name": s.name, "postgresql_port": s.port,
            }}}}))
            subprocess.run(
                ["pg_createcluster", harness.PG_VERSION, s.name, "--port", str(s.port), "--start"],
                check=True, capture_output=True, text=True, timeout=300,
            )
            info = s.info()
            assert info["pgdata"] == s.default_data_dir and info["running"] == 1, info
            assert checksum_version(info["pgdata"]) == 0, "the package's cluster has no checksums"
            yield s
        finally:
            harness.drop_cluster(s.name)
            shutil.rmtree(base, ignore_errors=True)


def _assert_untouched(s: Scratch) -> None:
    info = s.info()
    assert info["pgdata"] == s.default_data_dir, info
    assert info["running"] == 1, info
    assert int(info["port"]) == s.port, info
    assert checksum_version(info["pgdata"]) == 0


def test_refuses_an_existing_cluster_that_differs(scratch: Scratch) -> None:
    s = scratch
    version_name = f"{harness.PG_VERSION}/{s.name}"
    # The package's cluster in the default data directory: only the checksums differ.
    out = _assert_refused(s.run(), f"PostgreSQL cluster {version_name} already exists")
    assert "data checksums are off (the role creates clusters with --data-checksums)" in out
    assert "its data directory is" not in out
    assert f"`pg_dropcluster --stop {harness.PG_VERSION} {s.name}` and rerun" in out
    assert "set postgresql_replace_empty_default_cluster: true" in out
    assert "set postgresql_adopt_existing_cluster: true" in out
    _assert_untouched(s)

    # A custom data directory, which the old role silently ignored: named in the refusal.
    wanted = s.base / "data"
    out = _assert_refused(
        s.run(postgresql_data_dir=str(wanted)),
        f"its data directory is {s.default_data_dir}, not {wanted} (postgresql_data_dir)")
    assert "data checksums are off" in out
    assert not wanted.exists()
    _assert_untouched(s)

    _assert_refused(s.run(postgresql_replace_empty_default_cluster=True,
                          postgresql_adopt_existing_cluster=True), "set at most one of them")
    _assert_untouched(s)


def test_replaces_the_empty_package_cluster(scratch: Scratch) -> None:
    s = scratch
    wanted = s.base / "data"
    run = s.run(postgresql_replace_empty_default_cluster=True, postgresql_data_dir=str(wanted))
    harness.assert_ok(run)
    info = s.info()
    assert info["pgdata"] == str(wanted), info
    assert int(info["port"]) == s.port, info
    assert checksum_version(info["pgdata"]) != 0
    assert not Path(s.default_data_dir).exists(), "the old cluster's data directory is left"
    # The recreated cluster is what the role wants: used as it is, nothing changes.
    again = s.run(postgresql_replace_empty_default_cluster=True, postgresql_data_dir=str(wanted))
    harness.assert_ok(again)
    assert again.changed == {"localhost": 0}, again.output[-3000:]
    assert s.info()["pgdata"] == str(wanted)


def test_refuses_to_replace_a_cluster_that_holds_a_database(scratch: Scratch) -> None:
    s = scratch
    harness.psql(s.port, "CREATE DATABASE someones_data")
    _assert_refused(s.run(postgresql_replace_empty_default_cluster=True),
                    "is not the package's empty default cluster, it holds database someones_data")
    _assert_untouched(s)
    assert harness.psql(s.port, "SELECT count(*) FROM pg_database WHERE datname = 'someones_data'"
                        ) == "1"


def test_refuses_to_replace_a_cluster_that_is_not_running(scratch: Scratch) -> None:
    s = scratch
    subprocess.run(["pg_ctlcluster", harness.PG_VERSION, s.name, "stop"], check=True,
                   capture_output=True, timeout=120)
    _assert_refused(s.run(postgresql_replace_empty_default_cluster=True),
                    f"PostgreSQL cluster {harness.PG_VERSION}/{s.name} is not running, so the"
                    " role cannot check that it is empty")
    info = s.info()
    assert info["pgdata"] == s.default_data_dir and info["running"] == 0, info
    assert checksum_version(info["pgdata"]) == 0


def test_adopts_the_existing_cluster_with_a_warning(scratch: Scratch) -> None:
    s = scratch
    wanted = s.base / "data"
    # On another port the rest of the role could not reach it: not adopted.
    other_port = harness.free_port()
    _assert_refused(s.run(postgresql_adopt_existing_cluster=True, postgresql_port=other_port),
                    f"it listens on port {s.port}, not {other_port}; set postgresql_port:"
                    f" {s.port} to adopt it")
    _assert_untouched(s)

    for attempt in range(2):
        run = s.run(postgresql_adopt_existing_cluster=True, postgresql_data_dir=str(wanted))
        harness.assert_ok(run)
        out = _words(run.output)
        assert (f"WARNING: adopting the existing PostgreSQL cluster {harness.PG_VERSION}/{s.name}"
                " as it is" in out), run.output[-3000:]
        assert "Data checksums off" in out
        assert f"data directory {s.default_data_dir} (used as postgresql_data_dir" in out
        assert f"data directory after the role: {s.default_data_dir}" in out
        assert run.changed == {"localhost": 0}, f"attempt {attempt}: {run.output[-3000:]}"
        assert not wanted.exists()
        _assert_untouched(s)
