"""Which API hosts run, evaluated on the example inventory with the appliance role's defaults:
the DR site's stay stopped until failover.yml makes its database the primary, and the bulk job
workers run where the API does. (The units are
never started by systemd on this machine, so this is the part that can be checked here.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from tests.deploy import harness

PLAYBOOK = """\
- hosts: appliance
  connection: local
  gather_facts: false
  vars_files: [{defaults}]
  tasks:
    - ansible.builtin.copy:
        content: >-
          {{{{ [appliance_api_enabled | bool, appliance_worker_enabled | bool] | to_json }}}}
        dest: "{out}/{{{{ inventory_hostname }}}}"
      delegate_to: localhost
"""


def _running(tmp_path: Path, *extra: str) -> dict[str, list[bool]]:
    """[API enabled, worker enabled] by host."""
    out = tmp_path / "out"
    out.mkdir()
    playbook = tmp_path / "api-enabled.yml"
    playbook.write_text(PLAYBOOK.format(
        defaults=harness.ANSIBLE_DIR / "roles" / "appliance" / "defaults" / "main.yml", out=out))
    inventory = harness.ANSIBLE_DIR / "inventories" / "example" / "hosts.yml"
    proc = subprocess.run(
        [harness.tool("ansible-playbook"), "-i", str(inventory), str(playbook), *extra],
        cwd=harness.ANSIBLE_DIR, env=harness.ansible_env(tmp_path), capture_output=True,
        text=True, check=False, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {path.name: json.loads(path.read_text()) for path in out.iterdir()}


def _serving(tmp_path: Path, *extra: str) -> dict[str, bool]:
    running = _running(tmp_path, *extra)
    # The workers follow the API: where the API is stopped its database is the standby.
    assert all(api == worker for api, worker in running.values()), running
    return {host: api for host, (api, _) in running.items()}


def test_only_the_primary_sites_api_hosts_serve(tmp_path: Path) -> None:
    assert _serving(tmp_path) == {
        "app01.site-a.hospital.example": True, "app02.site-a.hospital.example": True,
        "app01.site-b.hospital.example": False}


def test_after_a_failover_the_dr_sites_api_hosts_serve(tmp_path: Path) -> None:
    assert _serving(tmp_path, "-e", "appliance_active_site=site_dr") == {
        "app01.site-a.hospital.example": False, "app02.site-a.hospital.example": False,
        "app01.site-b.hospital.example": True}


def test_the_appliance_play_rolls_one_host_at_a_time() -> None:
    plays = yaml.safe_load((harness.ANSIBLE_DIR / "site.yml").read_text())
    [appliance] = [play for play in plays if play.get("name") == "Appliance"]
    assert appliance["serial"] == 1 and appliance["max_fail_percentage"] == 0
