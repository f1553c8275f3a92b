"""Fixtures of the deployment tests: a local two-site deployment made by ansible-playbook.

``deployment`` builds, once per session: a throwaway CA, an ansible-vault with generated secrets
(its password file is generated too), an inventory whose hosts are all this machine
(``ansible_connection: local``) — a PostgreSQL primary and a DR replica (two scratch clusters made
by the postgresql role with pg_createcluster), an appliance host, and two GPU hosts (A100 and T4)
whose units are rendered but never started — and runs site.yml. Everything it made is removed at
the end, also when a test fails: clusters, the drill cluster, the service account, files.
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.fake_vllm import running_fake_vllm
from tests.deploy import harness
from tests.deploy.pki import Issued, TestCA

ARCHIVE_TIMEOUT_S = 10
"""Shorter than the 60 s default, so the archive RPO test is quick."""

REQUIRED_COMMANDS = ["pg_createcluster", "pg_dropcluster", "pgbackrest", "runuser", "psql"]


@dataclass
class Deployment:
    base: Path
    inventory: Path
    ca: TestCA
    client: Issued
    user: str
    sealer_user: str
    migrate_user: str
    witness_user: str
    witness_port: int
    vllm_url: str
    primary: str
    replica: str
    primary_port: int
    replica_port: int
    app_port: int
    drill_port: int
    passwords: dict[str, str]
    has_app: bool
    has_audit_tool: bool
    first_run: harness.PlaybookRun | None = None
    vault_content: dict[str, Any] = field(default_factory=dict)
    inventory_data: dict[str, Any] = field(default_factory=dict)

    def write_inventory(self) -> None:
        """(Re)write hosts.yml and the encrypted vault from inventory_data and vault_content."""
        _vault(self.base, self.vault_content)
        (self.inventory / "hosts.yml").write_text(yaml.safe_dump(self.inventory_data))

    @property
    def ca_file(self) -> Path:
        return self.base / "pki" / "ca.pem"

    def playbook(self, name: str, *args: str) -> harness.PlaybookRun:
        return harness.run_playbook(self.base, self.inventory, name, *args)

    def app_dsn(self, port: int, user: str = "docclass_app") -> str:
        return (
            f"host=127.0.0.1 port={port} dbname=docclass user={user} "
            f"password={self.passwords[user]} sslmode=verify-full sslrootcert={self.ca_file}"
        )


def _capabilities() -> tuple[bool, bool]:
    """(appliance CLI with packaged migrations, audit-tool) as far as the repo has them today."""
    pyproject = (harness.REPO / "pyproject.toml").read_text()
    has_app = (
        (harness.REPO / "appliance" / "cli.py").exists()
        and (harness.REPO / "appliance" / "wsgi.py").exists()
        and '"migrations*"' in pyproject
        and any((harness.REPO / "migrations" / "versions").glob("0*.py"))
    )
    has_audit = (harness.REPO / "audit" / "cli.py").exists() and (
        harness.VENV_BIN / "audit-tool"
    ).exists()
    return has_app, has_audit


def _snapshot_source(target: Path) -> None:
    """A frozen copy of the package sources (the checkout keeps changing under other work)."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (harness.REPO / name).exists():
            shutil.copy2(harness.REPO / name, target / name)
    for package in ("appliance", "audit", "migrations"):
        if (harness.REPO / package).is_dir():
            shutil.copytree(harness.REPO / package, target / package,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _vault(base: Path, content: dict[str, object]) -> Path:
    """Encrypt the secrets with a password generated now (never stored in the repo)."""
    password_file = base / "vault-pass"
    password_file.write_text(secrets.token_urlsafe(32) + "\n")
    password_file.chmod(0o600)
    target = base / "inventory" / "group_vars" / "all" / "vault.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(content))
    subprocess.run(
        [harness.tool("ansible-vault"), "encrypt", "--vault-password-file", str(password_file),
         str(target)],
        check=True, capture_output=True, env=harness.ansible_env(base),
    )
    assert target.read_text().startswith("$ANSIBLE_VAULT;"), "vault file was not encrypted"
    return target


def _audit_keys(base: Path, origin: str) -> tuple[str, str]:
    out = base / "keys" / "audit"
    out.parent.mkdir()
    subprocess.run(
        [str(harness.VENV_BIN / "audit-tool"), "keygen", "--name", origin, "--out", str(out)],
        check=True, capture_output=True,
    )
    return out.with_suffix(".pem").read_text(), out.with_suffix(".vkey").read_text()


def _inventory(
    d: Deployment, ca: TestCA, server: Issued, clients: dict[str, Issued], vkey: str
) -> dict[str, object]:
    b = d.base
    units = str(b / "systemd") + "/{{ inventory_hostname }}"
    pg_common = {
        "pki_certificates": [{
            "name": "postgresql-server", "cert": server.cert,
            "key": "{{ vault_pki_keys['postgresql'] }}", "owner": "root", "group": "postgres",
        }],
        "postgresql_install_packages": False,
        "backup_install_packages": False,
        "postgresql_listen_addresses": ["127.0.0.1"],
        "postgresql_advertise_host": "127.0.0.1",
        "postgresql_shared_buffers_mb": 64,
        "postgresql_effective_cache_size_mb": 256,
        "postgresql_maintenance_work_mem_mb": 64,
        "postgresql_max_connections": 40,
        "postgresql_max_wal_size": "256MB",
        "postgresql_max_slot_wal_keep_size": "1GB",
        "postgresql_archive_mode": "on",
        "postgresql_archive_command": "{{ backup_archive_command }}",
        "postgresql_archive_timeout_s": ARCHIVE_TIMEOUT_S,
        "backup_config_file": str(b / "pgbackrest") + "/{{ inventory_hostname }}/pgbackrest.conf",
        "backup_log_path": str(b / "pgbackrest" / "log"),
        "backup_lock_path": str(b / "pgbackrest" / "lock"),
        "backup_spool_path": str(b / "pgbackrest" / "spool"),
        "backup_report_dir": str(b / "pgbackrest" / "reports"),
        "backup_repositories": [
            {"path": str(b / "pgbackrest" / "repo1"), "retention_full": 2,
             "cipher_pass": "{{ vault_backup_cipher_passes['repo1'] }}"},
            {"path": str(b / "pgbackrest" / "repo2"), "retention_full": 4,
             "cipher_pass": "{{ vault_backup_cipher_passes['repo2'] }}"},
        ],
        "backup_process_max": 1,
        "backup_systemd_unit_dir": units,
        "backup_drill_dir": str(b / "drill"),
        "backup_drill_port": d.drill_port,
        "backup_drill_audit_tool": str(b / "opt" / "venv" / "bin" / "audit-tool"),
        "backup_drill_audit_public_key": str(b / "etc" / "audit-verifier.vkey"),
        "backup_drill_timeout_s": 300,
        # Monitoring on both database hosts, each with its own files (one machine here).
        "dr_lag_script": str(b / "bin") + "/{{ inventory_hostname }}/docclass-replication-lag",
        "dr_textfile_dir": str(b / "textfile") + "/{{ inventory_hostname }}",
        "dr_systemd_unit_dir": units,
        "dr_install_node_exporter": False,
    }
    local = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    gpu_common = {
        "vllm_install": False, "vllm_check_gpu": False, "vllm_model_dir": str(b / "model"),
        "vllm_venv": str(b / "vllm-venv"), "vllm_user": d.user, "vllm_group": d.user,
        "vllm_home": str(b / "state"), "vllm_systemd_unit_dir": units,
        "vllm_config_dir": str(b / "etc" / "vllm") + "/{{ inventory_hostname }}",
        "vllm_api_key": "{{ vault_vllm_api_key }}",
        "pki_certificates": [{
            "name": "vllm-server", "cert": server.cert,
            "key": "{{ vault_pki_keys['appliance'] }}", "owner": "root", "group": d.user,
        }],
    }
    return {"all": {
        "vars": {
            **local,
            "pki_dir": str(b / "pki"), "pki_dir_group": "postgres",
            "pki_ca_bundle": ca.pem, "pki_crl": ca.crl(), "pki_min_validity_days": 7,
            "common_install_packages": False, "common_manage_sysctl": False,
            "common_manage_time_sync": False, "common_service_user": d.user,
            "common_service_group": d.user, "common_service_home": str(b / "state"),
            "postgresql_passwords": "{{ vault_postgresql_passwords }}",
            "postgresql_database": "docclass",
            "postgresql_apply_grants": d.has_app,
        },
        "children": {
            "appliance": {"hosts": {"app-local": {
                "pki_certificates": [{
                    "name": "appliance-server", "cert": server.cert,
                    "key": "{{ vault_pki_keys['appliance'] }}", "owner": "root", "group": d.user,
                }],
                "appliance_package_spec": str(b / "src"),
                "appliance_install_dir": str(b / "opt"),
                "appliance_config_dir": str(b / "etc" / "appliance"),
                "appliance_systemd_unit_dir": units,
                "appliance_bind": f"127.0.0.1:{d.app_port}",
                "appliance_workers": 1, "appliance_threads": 4,
                "appliance_sealer_user": d.sealer_user,
                "appliance_migrate_user": d.migrate_user,
                "appliance_sealer_state_dir": str(b / "sealer-state"),
                "appliance_sealer_client_cert": clients["sealer"].cert,
                "appliance_sealer_client_key": "{{ vault_sealer_client_key }}",
                "appliance_vllm_base_url": d.vllm_url,
                "appliance_vllm_model": "smollm2-135m",
                "appliance_vllm_client_cert": clients["vllm"].cert,
                "appliance_vllm_client_key": "{{ vault_vllm_client_key }}",
                "appliance_vllm_api_key": "{{ vault_vllm_api_key }}",
                "appliance_audit_origin": "docclass-appliance/deploy-test",
                "appliance_audit_signing_key": "{{ vault_audit_signing_key }}",
                "appliance_audit_verifier_key": vkey,
                "appliance_roles_rules": [
                    {"uri": "spiffe://hospital/svc/deploy-test", "roles": ["classifier"]}],
                "appliance_run_migrations": d.has_app,
            }}},
            # The witness, on this machine too (in production: the DR site), running the
            # appliance release the appliance role installed.
            "witness": {"hosts": {"witness-local": {
                "witness_user": d.witness_user,
                "witness_state_dir": str(b / "witness-state"),
                "witness_config_dir": str(b / "etc" / "witness"),
                "witness_port": d.witness_port,
                "witness_bind": f"127.0.0.1:{d.witness_port}",
                "witness_advertise_host": "localhost",
                "witness_tls_cert": server.cert,
                "witness_tls_key": "{{ vault_pki_keys['appliance'] }}",
                "witness_client_ca": str(b / "pki" / "ca.pem"),
                "witness_logs": [{"vkey": vkey, "origin": "docclass-appliance/deploy-test"}],
                "witness_venv": str(b / "opt" / "venv"),
                "witness_systemd_unit_dir": str(b / "systemd" / "witness-local"),
            }}},
            "vllm_gpu": {"hosts": {
                "gpu-a100": {**gpu_common, "vllm_gpu_profile": "a100"},
                "gpu-t4": {**gpu_common, "vllm_gpu_profile": "t4"},
            }},
            # The restore drill's own host (restore-drill.yml's default when the group has one),
            # restoring from repo2 as a site B drill host would.
            "backup_drill": {"vars": pg_common, "hosts": {"drill-local": {
                "backup_drill_repo": 2,
                "appliance_package_spec": str(b / "src"),
                "appliance_install_dir": str(b / "opt"),
                "appliance_config_dir": str(b / "etc" / "appliance"),
                "appliance_audit_verifier_key": vkey,
            }}},
            "postgresql": {"vars": pg_common, "children": {
                "postgresql_primary": {"hosts": {"db-primary": {
                    "postgresql_cluster_name": d.primary, "postgresql_port": d.primary_port,
                    "postgresql_manage_objects": True, "backup_is_primary": True,
                }}},
                "postgresql_replica": {"hosts": {"db-replica": {
                    "postgresql_cluster_name": d.replica, "postgresql_port": d.replica_port,
                    # Its own PKI directory, as on a separate host (rotate-certs reloads it).
                    "pki_dir": str(b / "pki-replica"),
                    "postgresql_manage_objects": False, "backup_is_primary": False,
                    "dr_passfile": str(b / "pgpass-replication"),
                }}},
            }},
        },
    }}


def _cleanup(d: Deployment) -> None:
    if os.environ.get("DEPLOY_TEST_KEEP"):  # debugging only: leaves clusters and files behind
        print(f"kept {d.base} and clusters {d.primary}, {d.replica}; user {d.user}")
        return
    harness.stop_pg_ctl(d.base / "drill")
    for name in (d.primary, d.replica):
        harness.drop_cluster(name)
    for account in (d.user, d.sealer_user, d.migrate_user, d.witness_user):
        subprocess.run(["userdel", account], capture_output=True, check=False)
        subprocess.run(["groupdel", account], capture_output=True, check=False)
    shutil.rmtree(d.base, ignore_errors=True)


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    """The deployment, its API pointed at the scripted upstream (so it can warm up), which is
    served as the vllm role serves vLLM: TLS, client certificates required, an API key."""
    ca = TestCA()
    api_key = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as folder:
        tls = _server_context(ca, Path(folder))
        with running_fake_vllm(tls=tls, api_key=api_key) as upstream:
            url = upstream.url.replace("127.0.0.1", "localhost")  # the name its certificate has
            yield from _deployment(url, ca, api_key)


def _server_context(ca: TestCA, folder: Path) -> ssl.SSLContext:
    issued = ca.issue("localhost", server=True)
    (folder / "vllm.crt").write_text(issued.cert)
    (folder / "vllm.key").write_text(issued.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "vllm.crt", folder / "vllm.key")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca.pem)
    return context


def _deployment(vllm_url: str, ca: TestCA, vllm_api_key: str) -> Iterator[Deployment]:
    with harness.leaving_other_clusters_alone(
        REQUIRED_COMMANDS, "the deployment tests run ansible against this machine"
    ):
        base = Path(tempfile.mkdtemp(prefix="docclass-deploy-"))
        base.chmod(0o755)
        pid = os.getpid()
        has_app, has_audit = _capabilities()
        d = Deployment(
            base=base, inventory=base / "inventory", ca=ca, client=None,  # type: ignore[arg-type]
            user=f"dct{pid}u", sealer_user=f"dct{pid}s", migrate_user=f"dct{pid}m",
            witness_user=f"dct{pid}w", witness_port=harness.free_port(),
            vllm_url=vllm_url, primary=f"dct{pid}_p", replica=f"dct{pid}_r",
            primary_port=harness.free_port(), replica_port=harness.free_port(),
            app_port=harness.free_port(), drill_port=harness.free_port(),
            passwords={name: secrets.token_urlsafe(24) for name in (
                "docclass_owner", "docclass_app", "docclass_auditor", "docclass_sealer",
                "docclass_replicator", "docclass_monitor")},
            has_app=has_app, has_audit_tool=has_audit,
        )
        try:
            _snapshot_source(base / "src")
            for sub in ("state", "model", "vllm-venv/bin", "bin/db-primary", "bin/db-replica",
                        "client"):
                (base / sub).mkdir(parents=True)
            hosts = ("app-local", "db-primary", "db-replica", "gpu-a100", "gpu-t4", "witness-local",
                     "drill-local")
            for host in hosts:
                (base / "systemd" / host).mkdir(parents=True)
            (base / "model" / "config.json").write_text("{}\n")
            stub = base / "vllm-venv" / "bin" / "vllm"
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
            # The service account exists before the parallel plays run (they only check it).
            subprocess.run(
                ["useradd", "--system", "--user-group", "--home-dir", str(base / "state"),
                 "--no-create-home", "--shell", "/usr/sbin/nologin", "--password", "!", d.user],
                check=True, capture_output=True,
            )
            server = d.ca.issue("localhost", server=True)
            d.client = d.ca.issue("deploy-test", server=False, uri="spiffe://hospital/svc/deploy-test")
            sealer = d.ca.issue("audit-sealer", server=False, uri="spiffe://hospital/svc/audit-sealer")
            vllm_client = d.ca.issue("appliance-to-vllm", server=False)
            (base / "client" / "client.crt").write_text(d.client.cert)
            (base / "client" / "client.key").write_text(d.client.key)
            origin = "docclass-appliance/deploy-test"
            signing, vkey = _audit_keys(base, origin) if has_audit else ("", "")
            d.vault_content = {
                "vault_postgresql_passwords": d.passwords,
                "vault_backup_cipher_passes": {"repo1": secrets.token_urlsafe(40),
                                               "repo2": secrets.token_urlsafe(40)},
                "vault_pki_keys": {"postgresql": server.key, "appliance": server.key},
                "vault_audit_signing_key": signing,
                "vault_sealer_client_key": sealer.key,
                "vault_vllm_client_key": vllm_client.key,
                "vault_vllm_api_key": vllm_api_key,
            }
            d.inventory_data = _inventory(
                d, d.ca, server, {"sealer": sealer, "vllm": vllm_client}, vkey
            )
            d.write_inventory()
            d.first_run = d.playbook("site")
            yield d
        finally:
            _cleanup(d)
