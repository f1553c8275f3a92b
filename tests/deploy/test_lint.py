"""ansible-playbook --syntax-check and ansible-lint --offline --profile production on every
playbook and role; both must be able to fail (checked on a broken copy)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy import harness


def _run(args: list[str], cwd: Path, base: Path) -> subprocess.CompletedProcess[str]:
    env = harness.ansible_env(base)
    env["ANSIBLE_CONFIG"] = str(cwd / "ansible.cfg")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=600)


def test_syntax_check_every_playbook(tmp_path: Path) -> None:
    playbooks = [f"{name}.yml" for name in harness.PLAYBOOKS]
    assert sorted(p.name for p in harness.ANSIBLE_DIR.glob("*.yml")) == sorted(playbooks)
    proc = _run([harness.tool("ansible-playbook"), "--syntax-check", *playbooks],
                harness.ANSIBLE_DIR, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_ansible_lint_production_profile(tmp_path: Path) -> None:
    command = [harness.tool("ansible-lint"), "--offline", "--profile", "production", "-f", "pep8"]
    proc = _run(command, harness.ANSIBLE_DIR, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


def test_syntax_check_fails_on_a_broken_playbook(tmp_path: Path) -> None:
    copy = tmp_path / "ansible"
    shutil.copytree(harness.ANSIBLE_DIR, copy)
    site = copy / "site.yml"
    site.write_text(site.read_text().replace("  roles:\n", "  roels:\n", 1))
    proc = _run([harness.tool("ansible-playbook"), "--syntax-check", "site.yml"], copy, tmp_path)
    assert proc.returncode != 0


def test_example_inventory_has_both_sites_and_all_groups(tmp_path: Path) -> None:
    proc = _run([harness.tool("ansible-inventory"), "-i", "inventories/example/hosts.yml",
                 "--graph"], harness.ANSIBLE_DIR, tmp_path)
    assert proc.returncode == 0, proc.stderr
    for group in ("appliance", "vllm_gpu", "postgresql_primary", "postgresql_replica",
                  "site_primary", "site_dr"):
        assert f"@{group}:" in proc.stdout, proc.stdout
    assert (harness.ANSIBLE_DIR / "inventories/example/group_vars/all/vault.yml.example").exists()
    assert not (harness.ANSIBLE_DIR / "inventories/example/group_vars/all/vault.yml").exists()
