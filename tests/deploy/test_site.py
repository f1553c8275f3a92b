"""site.yml for real on this machine: PostgreSQL over TLS + scram, least-privilege roles, the
appliance installed and answering its health check, units that systemd accepts, and a second run
that changes nothing. Tests run in file order on one session deployment (see conftest.py)."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.deploy import harness
from tests.deploy.conftest import Deployment

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
    assert {"docclass-appliance.service", "docclass-audit-sealer.service", "vllm.service",
            "docclass-replication-lag.service", "docclass-replication-lag.timer"} <= names, names
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
    deployment: Deployment, method: str, path: str, body: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    context = ssl.create_default_context(cafile=str(deployment.ca_file))
    context.load_cert_chain(deployment.base / "client" / "client.crt",
                            deployment.base / "client" / "client.key")
    conn = http.client.HTTPSConnection(
        "127.0.0.1", deployment.app_port, context=context, timeout=10
    )
    try:
        if body is None:
            conn.request(method, path)
        else:
            conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_installed_service_command_answers_health(deployment: Deployment) -> None:
    unit_dir = deployment.base / "systemd" / "app-local"
    unit = harness.parse_unit(unit_dir / "docclass-appliance.service")
    assert unit["User"] == [deployment.user]
    if not deployment.has_app:
        pytest.skip("appliance CLI/wsgi/migrations not in the repo yet")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for env_file in unit["EnvironmentFile"]:
        env.update(harness.read_env_file(Path(env_file)))
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
        status, body = harness.wait_for(lambda: _https_get(deployment, "/health/live"), 60,
                                        "/health/live over mTLS")
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
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
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
