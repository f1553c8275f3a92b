"""scripts/quickstart.sh's steps for bulk jobs, run by bash from the script itself with stand-ins
for the appliance's commands: the job key it generates (like the pseudonym key), the environment
the API and the worker start with, the worker started after the migrations, and `stop` ending
the worker (SIGTERM) with the other processes it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.deploy import harness

SCRIPT = harness.REPO / "scripts" / "quickstart.sh"
STUB = """#!/bin/sh
# Stand-in for the appliance's commands: records each call; the long-running ones record their
# environment and wait for SIGTERM.
echo "$(basename "$0") $*" >>"$STUB_OUT/calls"
case "$1" in
  serve|worker|seal)
    trap 'echo "$1" >>"$STUB_OUT/stopped"; exit 0' TERM
    env >"$STUB_OUT/env-$1.tmp" && mv "$STUB_OUT/env-$1.tmp" "$STUB_OUT/env-$1"  # trap set first
    while :; do sleep 0.1; done ;;
esac
"""


def _functions(tmp_path: Path) -> Path:
    """The script without its command dispatch (its last lines), so that bash can source its
    functions; lib.sh is found where the script finds it."""
    text = SCRIPT.read_text()
    head, dispatch, _ = text.rpartition('\ncase "${1:-}" in\n')
    assert dispatch, "the script's command dispatch moved"
    assert '$(dirname "${BASH_SOURCE[0]}")' in head
    head = head.replace('$(dirname "${BASH_SOURCE[0]}")', str(SCRIPT.parent))
    path = tmp_path / "quickstart-functions.sh"
    path.write_text(head + "\n")
    return path


def _bash(tmp_path: Path, steps: str) -> subprocess.CompletedProcess[str]:
    state, stub_out = tmp_path / "var", tmp_path / "out"
    (state / "pki").mkdir(parents=True, exist_ok=True)
    stub_out.mkdir(exist_ok=True)
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True, exist_ok=True)
    for name in ("appliance", "audit-tool"):
        (venv / name).write_text(STUB)
        (venv / name).chmod(0o755)
    script = f"""
source {_functions(tmp_path)}
STATE={state}; PKI={state}/pki; VENV={venv.parent}
log() {{ :; }}
api() {{ return 0; }}  # the stand-in API is "started" at once
{steps}
"""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "STUB_OUT": str(stub_out),
           "APPLIANCE_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/appliance",
           "APPLIANCE_VLLM_BASE_URL": "http://127.0.0.1:1"}
    proc = subprocess.Popen(["bash", "-c", script], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its group: bash and the stand-ins
        out, _ = proc.communicate()
        pytest.fail(f"the script's steps did not end: {out}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_the_job_key_is_generated_once_like_the_pseudonym_key(tmp_path: Path) -> None:
    proc = _bash(tmp_path, "audit_pseudonym_key; job_key; cp $PKI/job.key $STATE/first; job_key")
    assert proc.returncode == 0, proc.stdout
    pki = tmp_path / "var" / "pki"
    key = (pki / "job.key").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", key), key  # openssl rand -hex 32
    assert (tmp_path / "var" / "first").read_text() == key  # kept, not made again
    modes = {p.name: p.stat().st_mode & 0o777 for p in (pki / "job.key",
                                                         pki / "audit-pseudonym.key")}  # fmt: skip
    assert modes == {"job.key": 0o600, "audit-pseudonym.key": 0o600}
    assert key != (pki / "audit-pseudonym.key").read_text()


def test_the_worker_starts_with_the_apis_keys_and_stops_with_the_rest(tmp_path: Path) -> None:
    steps = """
audit_pseudonym_key; job_key
start_appliance
for _ in $(seq 100); do
  ready=yes
  for name in worker serve seal; do [ -s "$STUB_OUT/env-$name" ] || ready=""; done
  [ -n "$ready" ] && break
  sleep 0.1
done
ls "$STATE"/*.pid >"$STUB_OUT/pids"
stop
wait  # the stand-ins this shell started: each must have been told to stop
"""
    proc = _bash(tmp_path, steps)
    assert proc.returncode == 0, proc.stdout
    out, pki = tmp_path / "out", tmp_path / "var" / "pki"
    calls = (out / "calls").read_text().splitlines()
    assert calls.index("appliance db upgrade") < calls.index("appliance worker"), calls
    assert "worker.pid" in (out / "pids").read_text()
    worker, api = _env(out / "env-worker"), _env(out / "env-serve")
    for env in (worker, api):
        assert env["APPLIANCE_JOB_KEY_PATH"] == str(pki / "job.key")
        assert env["APPLIANCE_AUDIT_PSEUDONYM_KEY_PATH"] == str(pki / "audit-pseudonym.key")
    for name in ("APPLIANCE_DATABASE_URL", "APPLIANCE_VLLM_BASE_URL"):
        assert worker[name] == api[name], name
    assert sorted((out / "stopped").read_text().split()) == ["seal", "serve", "worker"]
    assert not list((tmp_path / "var").glob("*.pid"))
