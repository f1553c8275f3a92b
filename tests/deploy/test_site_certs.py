"""rotate-certs.yml: a renewed PostgreSQL server certificate (new key from the vault) is installed
and served after the reload, and clients that verify the chain and host name still connect."""

from __future__ import annotations

import re
import subprocess

import psycopg
import pytest
from cryptography import x509

from tests.deploy import harness
from tests.deploy.conftest import Deployment

pytestmark = pytest.mark.slow
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def served_serial(port: int) -> int:
    proc = subprocess.run(
        ["openssl", "s_client", "-starttls", "postgres", "-connect", f"127.0.0.1:{port}"],
        input="", capture_output=True, text=True, check=False, timeout=30,
    )
    match = PEM.search(proc.stdout)
    assert match, proc.stdout + proc.stderr
    return int(x509.load_pem_x509_certificate(match.group(0).encode()).serial_number)


def test_rotate_certs_installs_and_serves_the_new_certificate(deployment: Deployment) -> None:
    d = deployment
    before = served_serial(d.primary_port)
    renewed = d.ca.issue("localhost", server=True)
    pg_vars = d.inventory_data["all"]["children"]["postgresql"]["vars"]
    pg_vars["pki_certificates"][0]["cert"] = renewed.cert
    d.vault_content["vault_pki_keys"]["postgresql"] = renewed.key
    d.write_inventory()

    run = d.playbook("rotate-certs")
    harness.assert_ok(run)
    assert run.changed["db-primary"] > 0 and run.changed["app-local"] == 0, run.changed
    assert (d.base / "pki" / "postgresql-server.crt").read_text().strip() == renewed.cert.strip()
    after = harness.wait_for(lambda: served_serial(d.primary_port) == renewed.serial, 20,
                             "the renewed certificate on the primary")
    assert after and before != renewed.serial
    assert served_serial(d.replica_port) == renewed.serial
    with psycopg.connect(d.app_dsn(d.primary_port)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
