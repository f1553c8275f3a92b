"""The audit log as site.yml installs it: the sealer, as its own account, submits its
checkpoints to the witness the playbook placed (its own account, key and TLS), stores the
cosignature, and an auditor's verify with the witness passes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.deploy import harness
from tests.deploy.conftest import Deployment


def _env(*files: Path) -> dict[str, str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for path in files:
        env |= harness.read_env_file(path)
    return env


def test_the_sealer_is_witnessed_over_mutual_tls(deployment: Deployment) -> None:
    d = deployment
    if not (d.has_app and d.has_audit_tool):
        raise AssertionError("the deployment has no appliance or audit-tool")
    unit = harness.parse_unit(d.base / "systemd" / "witness-local" / "docclass-witness.service")
    assert unit["User"] == [d.witness_user]
    command = ["runuser", "-u", d.witness_user, "--", *unit["ExecStart"][0].split()]
    witness = subprocess.Popen(command, cwd=unit["WorkingDirectory"][0], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)  # fmt: skip
    try:
        harness.wait_for(lambda: harness.port_open(d.witness_port), 30, "the witness listening")
        harness.psql(d.primary_port, (
            "INSERT INTO audit_pending (event_id, event, occurred_at, action, outcome_status)"
            " SELECT u, convert_to(format('{\"action\":\"witness_probe\",\"event_id\":\"%s\","
            "\"occurred_at\":\"2026-12-01T00:00:00.000000Z\",\"outcome_status\":200,"
            "\"request_id\":\"probe\",\"v\":1}', u), 'UTF8'), now(), 'witness_probe', 200"
            " FROM gen_random_uuid() AS u"
        ), db="docclass")  # fmt: skip
        config = d.base / "etc" / "appliance"
        sealed = subprocess.run(
            ["runuser", "-u", d.sealer_user, "--",
             str(d.base / "opt" / "venv" / "bin" / "audit-tool"), "seal", "--once"],
            env=_env(config / "common.env", config / "sealer" / "sealer.env",
                     config / "sealer" / "witnesses.env"),
            cwd=d.base / "sealer-state", capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert sealed.returncode == 0, sealed.stderr
        stored = harness.psql(d.primary_port, (
            "SELECT count(*) FROM audit_cosignatures c JOIN"
            " (SELECT max(size) AS size FROM audit_checkpoints) AS newest USING (size)"
        ), db="docclass")  # fmt: skip
        assert stored == "1", sealed.stderr
        auditor = (f"postgresql://docclass_auditor:{d.passwords['docclass_auditor']}@127.0.0.1:"
                   f"{d.primary_port}/docclass?sslmode=verify-full&sslrootcert={d.ca_file}")
        verified = subprocess.run(
            [str(harness.VENV_BIN / "audit-tool"), "verify", "--json", "--database-url", auditor,
             "--public-key", str(d.base / "etc" / "audit-verifier.vkey"),
             "--witness", str(config / "sealer" / "witness-1.vkey"), "--witness-grace", "0",
             "--witness-url", f"https://localhost:{d.witness_port}", "--witness-ca", str(d.ca_file),
             "--witness-cert", str(d.base / "client" / "client.crt"),
             "--witness-cert-key", str(d.base / "client" / "client.key")],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert json.loads(verified.stdout)["witnessed"]["quorum"] == 1
    finally:
        witness.terminate()
        witness.communicate(timeout=15)
