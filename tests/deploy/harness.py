"""Helpers for the deployment tests: run ansible, talk to scratch clusters, clean up.

Every PostgreSQL cluster the tests create is named ``dct<pid>_<suffix>`` so that a later session
can find and drop clusters left behind by a killed run (see ``drop_stale_clusters``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
# The environment running pytest has the .[deploy] tools (ansible, ansible-lint, ...).
VENV_BIN = Path(sys.executable).parent
PG_VERSION = "15"
CLUSTER_PREFIX = "dct"
PLAYBOOKS = ["site", "backup", "restore-drill", "dr-setup", "failover", "rotate-certs"]

RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def tool(name: str) -> str:
    """Path of a CLI from the project's venv (ansible, ansible-lint, ...) or PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install the project with .[deploy]")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PlaybookRun:
    rc: int
    output: str
    recap: dict[str, dict[str, int]]

    @property
    def changed(self) -> dict[str, int]:
        return {host: counts["changed"] for host, counts in self.recap.items()}


def ansible_env(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
        ANSIBLE_BECOME_METHOD="su",
        ANSIBLE_LOCAL_TEMP=str(base / "ansible-tmp"),
        ANSIBLE_REMOTE_TEMP=str(base / "ansible-tmp"),
        ANSIBLE_HOME=str(base / "ansible-home"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
    )
    env.pop("PYTHONPATH", None)
    return env


def run_playbook(
    base: Path, inventory: Path, playbook: str, *args: str, timeout: int = 600
) -> PlaybookRun:
    """Run one playbook from ansible/; the full output goes to base/logs for post-mortems."""
    command = [
        tool("ansible-playbook"),
        "-i", str(inventory),
        "--vault-password-file", str(base / "vault-pass"),
        str(ANSIBLE_DIR / f"{playbook}.yml"),
        *args,
    ]
    started = time.monotonic()
    proc = subprocess.run(
        command, cwd=ANSIBLE_DIR, env=ansible_env(base), capture_output=True, text=True,
        timeout=timeout, check=False,
    )
    elapsed = time.monotonic() - started
    if os.environ.get("DEPLOY_TEST_TIMINGS"):  # where docs/operations.md's numbers come from
        with open(os.environ["DEPLOY_TEST_TIMINGS"], "a") as timings:
            timings.write(f"{playbook} {' '.join(args)} rc={proc.returncode} {elapsed:.1f}s\n")
    output = proc.stdout + proc.stderr
    logs = base / "logs"
    logs.mkdir(exist_ok=True)
    (logs / f"{playbook}-{time.time_ns()}.log").write_text(output)
    recap = {
        m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)),
                     "unreachable": int(m.group(4)), "failed": int(m.group(5))}
        for m in RECAP.finditer(output)
    }
    return PlaybookRun(proc.returncode, output, recap)


def assert_ok(run: PlaybookRun) -> None:
    assert run.rc == 0 and run.recap, (
        f"ansible-playbook failed (rc={run.rc}):\n{run.output[-6000:]}"
    )
    bad = {h: c for h, c in run.recap.items() if c["failed"] or c["unreachable"]}
    assert not bad, f"failed hosts {bad}:\n{run.output[-6000:]}"


def psql(port: int, sql: str, db: str = "postgres", host: str = "/var/run/postgresql") -> str:
    """Run SQL as the postgres superuser over the Unix socket; return unaligned output."""
    proc = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
         "-h", host, "-p", str(port), "-d", db, "-c", sql],
        capture_output=True, text=True, check=False, timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"psql on port {port} failed: {proc.stderr}")
    return proc.stdout.strip()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # keep polling; report the last error
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def cluster_names() -> list[str]:
    proc = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    )
    rows = [line.split() for line in proc.stdout.splitlines()]
    return [row[1] for row in rows if row[:1] == [PG_VERSION]]


def drop_cluster(name: str) -> None:
    """Stop and drop one of our clusters (never anything not named with our prefix)."""
    if not name.startswith(CLUSTER_PREFIX):
        raise ValueError(f"refusing to drop cluster {name!r}: not created by the deploy tests")
    subprocess.run(["pg_dropcluster", "--stop", PG_VERSION, name],
                   capture_output=True, check=False, timeout=120)
    # pg_dropcluster leaves files it did not create (our conf.d drop-in) and the log behind.
    shutil.rmtree(f"/etc/postgresql/{PG_VERSION}/{name}", ignore_errors=True)
    Path(f"/var/log/postgresql/postgresql-{PG_VERSION}-{name}.log").unlink(missing_ok=True)


def foreign_clusters() -> dict[str, tuple[str, bool]]:
    """Clusters these tests did not create: name -> (data directory, PG_VERSION present)."""
    listing = json.loads(subprocess.run(["pg_lsclusters", "--json"], capture_output=True,
                                        text=True, check=True).stdout or "[]")
    return {
        c["cluster"]: (c["pgdata"], Path(c["pgdata"], "PG_VERSION").exists())
        for c in listing if not c["cluster"].startswith(CLUSTER_PREFIX)
    }


@contextlib.contextmanager
def leaving_other_clusters_alone(commands: list[str], purpose: str) -> Iterator[None]:
    """For tests that make PostgreSQL clusters: root and ``commands`` present, clusters of killed
    earlier runs dropped; afterwards, every cluster not made by these tests exactly as it was."""
    if os.geteuid() != 0:
        pytest.fail(f"{purpose} and need root")
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pytest.fail(f"missing commands {missing}: install scripts/system-packages.txt")
    drop_stale_clusters()
    before = foreign_clusters()
    yield
    assert foreign_clusters() == before, "a cluster not made by these tests changed"


@contextlib.contextmanager
def serving(server: socketserver.BaseServer, scheme: str = "http", host: str = "127.0.0.1"
            ) -> Iterator[str]:
    """Run ``server`` (bound to a loopback port) in a thread; yield its base URL; stop it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def drop_stale_clusters() -> None:
    """Drop dct<pid>_* clusters whose creating test process is gone."""
    for name in cluster_names():
        match = re.fullmatch(rf"{CLUSTER_PREFIX}(\d+)_\w+", name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            drop_cluster(name)


def stop_pg_ctl(data_dir: Path) -> None:
    """Stop a cluster started with pg_ctl (the restore drill's) if one runs there."""
    if (data_dir / "postmaster.pid").exists():
        subprocess.run(
            ["runuser", "-u", "postgres", "--", f"/usr/lib/postgresql/{PG_VERSION}/bin/pg_ctl",
             "-D", str(data_dir), "-m", "immediate", "stop"],
            capture_output=True, check=False, timeout=60,
        )


def parse_unit(path: Path) -> dict[str, list[str]]:
    """Keys of the [Service] section of a systemd unit (repeated keys kept in order)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False
