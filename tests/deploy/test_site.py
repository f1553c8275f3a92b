"""site.yml for real on this machine: PostgreSQL over TLS + scram, least-privilege roles, the
appliance installed and answering its health check, units that systemd accepts, and a second run
that changes nothing. Tests run in file order on one session deployment (see conftest.py)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.deploy import harness
from tests.deploy.conftest import Deployment
from tests.deploy.test_k8s import K8S, render

pytestmark = pytest.mark.slow


def test_site_playbook_succeeds(deployment: Deployment) -> None:
    run = deployment.first_run
    assert run is not None
    harness.assert_ok(run)
    assert set(run.recap) == {
        "app-local", "db-primary", "db-replica", "gpu-a100", "gpu-t4", "witness-local",
        "drill-local",
    }


def test_postgresql_requires_tls_and_scram(deployment: Deployment) -> None:
    port = deployment.primary_port
    with psycopg.connect(deployment.app_dsn(port)) as conn:
        row = conn.execute(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
        assert row is not None and row[0] is True, row
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
    stored = harness.psql(port, "SELECT rolpassword FROM pg_authid WHERE rolname = 'docclass_app'")
    assert stored.startswith("SCRAM-SHA-256$"), "password not stored as a SCRAM verifier"
    plain = deployment.app_dsn(port).replace("sslmode=verify-full", "sslmode=disable")
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry|rejects connection"):
        psycopg.connect(plain).close()
    wrong = deployment.app_dsn(port).replace(deployment.passwords["docclass_app"], "wrong-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong).close()


def test_login_roles_are_least_privilege(deployment: Deployment) -> None:
    port = deployment.primary_port
    flags = harness.psql(port, (
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles "
        "WHERE rolname LIKE 'docclass_%' ORDER BY 1"
    ))
    rows = {line.split("|")[0]: line.split("|")[1:] for line in flags.splitlines()}
    assert rows["docclass_app"] == ["f", "f", "f", "f"]
    assert rows["docclass_auditor"] == ["f", "f", "f", "f"]
    assert rows["docclass_replicator"] == ["f", "f", "f", "t"]
    assert rows["docclass_owner"][0] == "f"
    public = harness.psql(port, "SELECT has_database_privilege('public', 'docclass', 'CONNECT')")
    assert public == "f", "PUBLIC can still connect to the appliance database"
    if deployment.has_app:
        members = harness.psql(port, (
            "SELECT r.rolname || '>' || g.rolname FROM pg_auth_members m "
            "JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid "
            "WHERE r.rolname LIKE 'docclass_%' ORDER BY 1"
        )).splitlines()
        for expected in ("docclass_app>appliance_app", "docclass_auditor>appliance_auditor",
                         "docclass_sealer>appliance_sealer"):
            assert expected in members, members


def test_rendered_units_pass_systemd_analyze_verify(deployment: Deployment) -> None:
    units = sorted((deployment.base / "systemd").glob("*/*.service")) + sorted(
        (deployment.base / "systemd").glob("*/*.timer"))
    names = {u.name for u in units}
    assert {"docclass-appliance.service", "docclass-worker.service",
            "docclass-audit-sealer.service", "vllm.service", "docclass-replication-lag.service",
            "docclass-replication-lag.timer"} <= names, names
    assert any(n.endswith("-repo2-incr.timer") for n in names), names
    for unit in units:
        # One unit per call: timers are checked together with their service's directory.
        proc = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", "--recursive-errors=no", str(unit)],
            capture_output=True, text=True, check=False, cwd=unit.parent,
            env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit.parent}:"},
        )
        assert proc.returncode == 0, f"{unit}: {proc.stderr}"
        problems = [line for line in proc.stderr.splitlines() if str(unit.name) in line]
        assert not problems, f"{unit}: {problems}"


def test_vllm_units_differ_by_gpu(deployment: Deployment) -> None:
    a100 = harness.parse_unit(deployment.base / "systemd" / "gpu-a100" / "vllm.service")
    t4 = harness.parse_unit(deployment.base / "systemd" / "gpu-t4" / "vllm.service")
    a100_cmd, t4_cmd = a100["ExecStart"][0], t4["ExecStart"][0]
    assert "--dtype bfloat16" in a100_cmd and "--max-model-len 4096" in a100_cmd
    assert "--dtype half" in t4_cmd and "--max-model-len 4096" in t4_cmd
    assert "--quantization awq" in t4_cmd and "--quantization" not in a100_cmd
    assert "PrivateDevices" not in t4, "vLLM needs /dev/nvidia*"


def test_vllm_serves_tls_requires_client_certificates_and_an_api_key(
    deployment: Deployment,
) -> None:
    unit = harness.parse_unit(deployment.base / "systemd" / "gpu-a100" / "vllm.service")
    argv = unit["ExecStart"][0].split()
    flags = dict(zip(argv, [*argv[1:], ""], strict=True))
    pki = deployment.base / "pki"
    assert flags["--ssl-certfile"] == str(pki / "vllm-server.crt")
    assert flags["--ssl-keyfile"] == str(pki / "vllm-server.key")
    assert flags["--ssl-ca-certs"] == str(pki / "ca.pem")
    assert flags["--ssl-cert-reqs"] == "2"  # ssl.CERT_REQUIRED
    assert not any("api-key" in arg or deployment.vault_content["vault_vllm_api_key"] in arg
                   for arg in argv), "the API key must not be on the command line"
    env_file = Path(unit["EnvironmentFile"][0])
    assert harness.read_env_file(env_file) == {
        "VLLM_API_KEY": deployment.vault_content["vault_vllm_api_key"]}
    mode = env_file.stat()
    assert (mode.st_uid, mode.st_gid, mode.st_mode & 0o777) == (0, 0, 0o600)
    assert not _can_read(deployment.user, env_file), "vLLM's account reads it via systemd only"


def _https_get(deployment: Deployment, path: str) -> tuple[int, dict[str, object]]:
    return _https_request(deployment, "GET", path)


def _https_request(
    deployment: Deployment, method: str, path: str, body: dict[str, str] | None = None,
    raw: tuple[bytes, str] | None = None,
) -> tuple[int, dict[str, object]]:  # fmt: skip
    """One request over mTLS as the deploy-test client: a JSON `body`, or a `raw` body and its
    content type."""
    context = ssl.create_default_context(cafile=str(deployment.ca_file))
    context.load_cert_chain(deployment.base / "client" / "client.crt",
                            deployment.base / "client" / "client.key")
    conn = http.client.HTTPSConnection(
        "127.0.0.1", deployment.app_port, context=context, timeout=10
    )
    try:
        if raw is not None:
            conn.request(method, path, raw[0], {"Content-Type": raw[1]})
        elif body is None:
            conn.request(method, path)
        else:
            conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _unit_env(unit: dict[str, list[str]]) -> dict[str, str]:
    """The environment systemd gives the unit's process: its EnvironmentFile= files in order."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for env_file in unit["EnvironmentFile"]:
        env.update(harness.read_env_file(Path(env_file.removeprefix("-"))))
    return env


@contextlib.contextmanager
def _running_api(deployment: Deployment) -> Iterator[subprocess.Popen[bytes]]:
    """The installed API unit's commands, run as its account with its environment (systemd does
    not run here); stopped on leaving."""
    unit = harness.parse_unit(deployment.base / "systemd" / "app-local" /
                              "docclass-appliance.service")  # fmt: skip
    env = _unit_env(unit)
    metrics = deployment.base / "state" / "metrics"
    metrics.mkdir(exist_ok=True)
    os.chown(metrics, *_uid_gid(deployment.user))
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    pre = unit["ExecStartPre"][0].split()
    check = subprocess.run(["runuser", "-u", deployment.user, "--", *pre],
                           env=env, capture_output=True, text=True, check=False, timeout=60)
    assert check.returncode == 0, check.stderr
    command = unit["ExecStart"][0].split()
    proc = subprocess.Popen(["runuser", "-u", deployment.user, "--", *command], env=env,
                            cwd=unit["WorkingDirectory"][0], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        harness.wait_for(lambda: _https_get(deployment, "/health/live"), 60,
                         "/health/live over mTLS")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_installed_service_command_answers_health(deployment: Deployment) -> None:
    unit_dir = deployment.base / "systemd" / "app-local"
    unit = harness.parse_unit(unit_dir / "docclass-appliance.service")
    assert unit["User"] == [deployment.user]
    if not deployment.has_app:
        pytest.skip("appliance CLI/wsgi/migrations not in the repo yet")
    with _running_api(deployment) as proc:
        status, body = _https_get(deployment, "/health/live")
        assert status == 200 and body == {"status": "ok"}, body
        status, body = _https_get(deployment, "/health/ready")
        # vLLM is not running here, so ready is 503; the database check must pass over TLS.
        assert body["checks"]["database"] is True, body  # type: ignore[index]
        # The deployed roles table gives this client "classifier" only: default deny elsewhere
        # (the denial is also an audit event, sealed and verified by the backup test).
        status, body = _https_get(deployment, "/api/v1/review-queue")
        assert status == 403, body
        # Started: schema at head (read as the least-privilege app login) and warmed up.
        status, body = harness.wait_for(
            lambda: _ok(_https_get(deployment, "/health/startup")), 60, "/health/startup 200"
        )
        assert body == {"status": "ok", "checks": {"migrations_at_head": True, "warmed_up": True}}
        # The scripted vLLM takes only TLS with the API's client certificate and the API key:
        # a classification proves the role wired all three.
        status, body = _https_request(deployment, "POST", "/api/v1/classify-document",
                                      {"document_id": "DEPLOY-1", "text": "Lab report."})
        assert status == 200 and body["model"] == "smollm2-135m", body
    assert proc.returncode is not None


def _ok(answer: tuple[int, dict[str, object]]) -> tuple[int, dict[str, object]]:
    """For ``wait_for``: the answer once it is a 200, else an error to keep waiting on."""
    if answer[0] != 200:
        raise AssertionError(f"not yet: {answer}")
    return answer


def _can_read(user: str, path: Path) -> bool:
    proc = subprocess.run(["runuser", "-u", user, "--", "cat", str(path)],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0


def test_each_process_reads_only_its_own_secrets(deployment: Deployment) -> None:
    """Code execution in the API must not reach the checkpoint signing key, the sealer's or the
    schema owner's database credentials (issue 12)."""
    d = deployment
    config = d.base / "etc" / "appliance"
    api_secrets = [config / "api" / "api-database-url", config / "api" / "audit-pseudonym.key"]
    sealer_secrets = [config / "sealer" / "audit-signing-key.pem",
                      config / "sealer" / "sealer-database-url"]
    for path in api_secrets + sealer_secrets:
        assert path.exists(), path
    # No pseudonym key in the inventory: one was generated on the controller and installed.
    installed = config / "api" / "audit-pseudonym.key"
    generated = (d.inventory / "credentials" / "audit-pseudonym.key").read_text().strip()
    assert len(generated) == 64 and installed.read_text() == generated
    common = harness.read_env_file(config / "common.env")
    assert common["APPLIANCE_AUDIT_PSEUDONYM_KEY_PATH"] == str(installed)
    assert [p for p in sealer_secrets if _can_read(d.user, p)] == []
    assert [p for p in api_secrets if _can_read(d.sealer_user, p)] == []
    assert all(_can_read(d.user, p) for p in api_secrets)
    assert all(_can_read(d.sealer_user, p) for p in sealer_secrets)
    assert not _can_read(d.user, d.base / "sealer-state")  # its state directory too
    # The owner's password is on no file of the installation (only in the encrypted vault).
    owner_password = d.passwords["docclass_owner"].encode()
    holding = [
        path for path in (d.base / "etc").rglob("*")
        if path.is_file() and owner_password in path.read_bytes()
    ]
    assert holding == []
    units = d.base / "systemd" / "app-local"
    sealer_unit = harness.parse_unit(units / "docclass-audit-sealer.service")
    assert sealer_unit["User"] == [d.sealer_user]


HARDENING = harness.ANSIBLE_DIR / "templates" / "hardening.j2"
QUEUE_DEPTH = next(
    d for d in render(K8S / "base") if d["kind"] == "ScaledObject"
    and d["metadata"]["name"] == "appliance-worker")["spec"]["triggers"][0]["metadata"]["query"]
"""The query KEDA scales the workers on (k8s/base/autoscaling.yaml)."""


def test_the_worker_unit_runs_as_the_api_with_the_job_key(deployment: Deployment) -> None:
    """docclass-worker.service: `appliance worker` as the API's account, restarted always,
    sandboxed like the API and the sealer; its environment names the API's database login and
    vLLM key; the job key generated on the controller is installed for the API's group only and
    named in common.env (the API reads it there too)."""
    d = deployment
    units = d.base / "systemd" / "app-local"
    config = d.base / "etc" / "appliance"
    unit = harness.parse_unit(units / "docclass-worker.service")
    api = harness.parse_unit(units / "docclass-appliance.service")
    assert (unit["User"], unit["Group"]) == (api["User"], api["Group"]) == ([d.user], [d.user])
    assert unit["ExecStart"] == [f"{d.base}/opt/venv/bin/appliance worker"]
    assert unit["Restart"] == ["always"] and int(unit["TimeoutStopSec"][0]) >= 60
    assert unit["EnvironmentFile"] == [str(config / "common.env"), str(config / "worker.env")]
    assert "ExecReload" not in unit and "RuntimeDirectory" not in unit
    hardening = [line for line in HARDENING.read_text().splitlines()
                 if line and not line.startswith("#")]  # fmt: skip
    rendered = (units / "docclass-worker.service").read_text().splitlines()
    assert [line for line in hardening if line not in rendered] == []
    worker_env = harness.read_env_file(config / "worker.env")
    api_env = harness.read_env_file(config / "api.env")
    for name in ("APPLIANCE_DATABASE_URL_FILE", "APPLIANCE_VLLM_API_KEY_FILE",
                 "APPLIANCE_VLLM_TLS_CERT", "APPLIANCE_VLLM_TLS_KEY"):  # fmt: skip
        assert worker_env[name] == api_env[name], name
    assert worker_env["APPLIANCE_WORKER_CONCURRENCY"] == "4"
    assert "PROMETHEUS_MULTIPROC_DIR" not in worker_env  # no gunicorn makes it for a worker
    # The job key: 64 hex characters generated once for the inventory, installed root-owned,
    # readable by the API's (and workers') group only.
    installed = config / "api" / "job.key"
    generated = (d.inventory / "credentials" / "job.key").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", generated) and installed.read_text() == generated
    _, gid = _uid_gid(d.user)
    for path in (installed, config / "worker.env"):
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, gid, 0o640), path
    assert harness.read_env_file(config / "common.env")["APPLIANCE_JOB_KEY_PATH"] == str(installed)
    assert _can_read(d.user, installed) and not _can_read(d.sealer_user, installed)


def _queue_depth(deployment: Deployment) -> int:
    with psycopg.connect(deployment.app_dsn(deployment.primary_port)) as conn:
        row = conn.execute(QUEUE_DEPTH).fetchone()
    assert row is not None
    return int(row[0])


def _job(deployment: Deployment, job_id: object) -> dict[str, object]:
    status, body = _https_get(deployment, f"/api/v1/jobs/{job_id}")
    assert status == 200, body
    return body


def test_the_installed_worker_classifies_a_bulk_job(deployment: Deployment) -> None:
    """A job submitted to the installed API waits in the queue (as KEDA's query counts it, read
    as the app's login) until the installed worker command, as its account with its unit's
    environment, classifies every item through the scripted vLLM; SIGTERM then stops it
    cleanly."""
    d = deployment
    if not d.has_app:
        pytest.skip("appliance CLI/wsgi/migrations not in the repo yet")
    unit = harness.parse_unit(d.base / "systemd" / "app-local" / "docclass-worker.service")
    items = 20  # two chunks of 16
    body = "".join(json.dumps({"document_id": f"BULK-{i}", "text": f"Lab report {i}."}) + "\n"
                   for i in range(items)).encode()  # fmt: skip
    with _running_api(d):
        before = _queue_depth(d)
        status, job = _https_request(d, "POST", "/api/v1/jobs", raw=(body, "application/x-ndjson"))
        assert status == 202, job
        assert _queue_depth(d) == before + 2
        uid, gid = _uid_gid(d.user)
        worker = subprocess.Popen(
            unit["ExecStart"][0].split(), env=_unit_env(unit), cwd=unit["WorkingDirectory"][0],
            user=uid, group=gid, extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            done = harness.wait_for(
                lambda: (j := _job(d, job["job_id"]))["state"] in ("done", "failed") and j,
                120, "the job to end")  # fmt: skip
            assert done["state"] == "done" and done["counts"]["done"] == items, done
            assert _queue_depth(d) == before
            status, page = _https_get(d, f"/api/v1/jobs/{job['job_id']}/results?limit=1000")
            results = page["items"]
            assert status == 200 and isinstance(results, list) and len(results) == items, page
            answered = {(r["state"], r["result"]["model"]) for r in results}
            assert answered == {("done", "smollm2-135m")}, results
            assert worker.poll() is None  # still waiting for work
            worker.send_signal(signal.SIGTERM)
            out, _ = worker.communicate(timeout=60)
            assert worker.returncode == 0, out.decode(errors="replace")[-3000:]
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()


def _uid_gid(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def test_second_site_run_changes_nothing(deployment: Deployment) -> None:
    run = deployment.playbook("site")
    harness.assert_ok(run)
    changed = run.changed
    assert set(changed.values()) == {0}, f"not idempotent: {changed}\n{_changed_tasks(run)}"


def _changed_tasks(run: harness.PlaybookRun) -> str:
    lines = run.output.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("changed:"):
            task = next((lines[j] for j in range(i, -1, -1) if lines[j].startswith("TASK")), "?")
            out.append(f"{task} -> {line}")
    return "\n".join(out)
