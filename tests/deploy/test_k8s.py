"""Kustomize overlays render, pass kubernetes-validate --strict for the stated Kubernetes version,
custom resources pass the vendored schemas, and the GPU overlays differ where the hardware does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import harness

K8S = harness.REPO / "k8s"
# The oldest version we support on vSphere Kubernetes Service; also checked against the newest.
KUBERNETES_VERSIONS = ["1.33.0", "1.37.0"]
OVERLAYS = ["a100", "t4", "t4-fp16"]
CR_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
}


def render(path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def vllm_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = find(docs, "Deployment", "vllm")["spec"]["template"]["spec"]
    return pod["containers"][0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS} | {
        "base": render(K8S / "base")}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_builtin_kinds_pass_strict_validation(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, version: str, tmp_path: Path
) -> None:
    builtin = [d for d in rendered[overlay] if (d["apiVersion"], d["kind"]) not in CR_SCHEMAS]
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(builtin))
    proc = subprocess.run(
        [harness.tool("kubernetes-validate"), "--strict", "-k", version, str(manifest)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ERROR" not in out and "WARN" not in out, out
    assert out.count("passed") == len(builtin), out


def test_strict_validation_catches_a_misspelled_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
        "spec": {"selector": {"a": "b"}, "ports": [{"port": 80, "targetPrt": 8080}]},
    }))
    proc = subprocess.run([harness.tool("kubernetes-validate"), "--strict", "-k",
                           KUBERNETES_VERSIONS[0], str(bad)], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode != 0, proc.stdout


def _check_cr(doc: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    schema = K8S / "schemas" / CR_SCHEMAS[(doc["apiVersion"], doc["kind"])]
    instance = tmp_path / f"{doc['kind']}-{doc['metadata']['name']}.yaml"
    instance.write_text(yaml.safe_dump(doc))
    return subprocess.run([harness.tool("check-jsonschema"), "--schemafile", str(schema),
                           str(instance)], capture_output=True, text=True, check=False,
                          timeout=120)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_vendored_schemas(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path
) -> None:
    crs = [d for d in rendered[overlay] if (d["apiVersion"], d["kind"]) in CR_SCHEMAS]
    assert {d["kind"] for d in crs} == {"ScaledObject", "ServiceMonitor", "PrometheusRule"}
    for doc in crs:
        proc = _check_cr(doc, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vendored_schemas_reject_a_typo(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    scaled = find(rendered["a100"], "ScaledObject", "vllm")
    scaled["spec"]["maxReplicas"] = scaled["spec"].pop("maxReplicaCount")
    assert _check_cr(scaled, tmp_path).returncode != 0
    rule = find(rendered["a100"], "PrometheusRule", "docclass")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    assert _check_cr(rule, tmp_path).returncode != 0


def test_gpu_overlays_differ_where_the_hardware_needs_it(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    a100, t4, fp16 = (vllm_container(rendered[n]) for n in OVERLAYS)
    assert "--dtype=bfloat16" in a100["args"] and "--max-model-len=4096" in a100["args"]
    assert "--quantization=awq" in t4["args"] and "--dtype=half" in t4["args"]  # T4's default
    assert t4["args"][0] == "/models/llama-2-7b-chat-awq"
    assert "--dtype=half" in fp16["args"] and "--max-model-len=2048" in fp16["args"]
    assert not any(a.startswith("--quantization") for a in a100["args"] + fp16["args"])
    families = {}
    for name in OVERLAYS:
        pod = find(rendered[name], "Deployment", "vllm")["spec"]["template"]["spec"]
        [term] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"]  # fmt: skip
        families[name] = {e["key"]: e["values"] for e in term["matchExpressions"]}
        assert "nodeSelector" not in pod  # no exact product string
    assert families["a100"]["nvidia.com/gpu.family"] == ["ampere", "hopper"]
    assert families["t4"] == families["t4-fp16"]
    assert families["t4"]["nvidia.com/gpu.family"] == ["turing"]
    for container in (a100, t4, fp16):
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


GIB = 2**30
WEIGHTS_GIB = {"fp16": 12.6, "awq": 3.9}  # Llama-2-7B's checkpoints
KV_BYTES_PER_TOKEN = 2 * 32 * 4096 * 2  # K and V, 32 layers, hidden 4096, 2 bytes


@pytest.mark.parametrize("overlay", ["t4", "t4-fp16"])
def test_a_t4_profile_leaves_kv_cache_for_a_whole_sequence(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """The arithmetic of docs/operations.md: (15 GiB x utilisation - weights) of KV cache must
    hold at least one sequence of --max-model-len tokens."""
    args = dict(a.removeprefix("--").split("=", 1) for a in vllm_container(rendered[overlay])
                ["args"] if "=" in a)  # fmt: skip
    weights = WEIGHTS_GIB["awq" if args.get("quantization") == "awq" else "fp16"]
    kv_tokens = (15 * float(args["gpu-memory-utilization"]) - weights) * GIB / KV_BYTES_PER_TOKEN
    assert kv_tokens >= int(args["max-model-len"]), kv_tokens


def test_vllm_is_recreated_and_caches_in_its_writable_volume(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """A rolling update's surge pod would wait for a second GPU on a one-GPU node."""
    deployment = find(rendered["a100"], "Deployment", "vllm")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = {e["name"]: e["value"] for e in vllm_container(rendered["a100"])["env"]}
    for name in ("HOME", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        assert env[name].startswith("/tmp/"), name  # the writable emptyDir


def test_base_is_hardened(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["a100"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = find(docs, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    vllm_in = find(docs, "NetworkPolicy", "vllm-ingress-from-appliance")["spec"]["ingress"]
    assert vllm_in[0]["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "appliance"}}}]
    assert len(policies) >= 5
    for kind, name in (
        ("Deployment", "appliance"),
        ("StatefulSet", "audit-sealer"),
        ("Deployment", "vllm"),
    ):
        pod = find(docs, kind, name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
    vllm = find(docs, "Deployment", "vllm")["spec"]["template"]["spec"]
    shm = next(v for v in vllm["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert vllm["containers"][0]["startupProbe"]["failureThreshold"] * 10 >= 600
    pvc = find(docs, "PersistentVolumeClaim", "vllm-models")
    assert pvc["spec"]["storageClassName"] == "vsan-default-storage-policy"
    appliance = find(docs, "Deployment", "appliance")["spec"]["template"]["spec"]
    mounts = {m["name"] for m in appliance["containers"][0]["volumeMounts"]}
    assert {"tls", "crl", "db"} <= mounts
    assert find(docs, "PodDisruptionBudget", "appliance")["spec"]["minAvailable"] == 1


def test_the_one_sealer_keeps_its_state_on_its_own_volume(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The sealer's last signed checkpoint must survive a restart and live outside the
    database: one pod, a volume of its own, the state path on that volume."""
    for docs in rendered.values():
        sealer = find(docs, "StatefulSet", "audit-sealer")["spec"]
        assert sealer["replicas"] == 1
        assert [t["metadata"]["name"] for t in sealer["volumeClaimTemplates"]] == ["state"]
        container = sealer["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mount = next(m for m in container["volumeMounts"] if m["name"] == "state")
        assert env["APPLIANCE_AUDIT_SEALER_STATE_PATH"].startswith(mount["mountPath"] + "/")
        assert not mount.get("readOnly", False)


def test_only_the_migration_job_holds_the_owners_credentials(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The API pods must not be given the schema owner's secret, not even for an init
    container: it goes to the one-shot migration Job alone (issue 12)."""
    for docs in rendered.values():
        holders = sorted(
            f"{doc['kind']}/{doc['metadata']['name']}"
            for doc in docs
            if "appliance-db-owner" in json.dumps(doc)
        )
        assert holders == ["Job/appliance-migrate"]
        api = find(docs, "Deployment", "appliance")["spec"]["template"]["spec"]
        assert "initContainers" not in api


def test_alert_rules_pass_promtool(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """The PrometheusRule's expressions parse as PromQL (a schema cannot tell)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(find(rendered["base"], "PrometheusRule", "docclass")["spec"]))
    promtool = harness.tool("promtool")
    proc = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                          text=True, check=False, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = rules.read_text().replace("> 0", "> > 0", 1)
    rules.write_text(broken)
    assert subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                          check=False, timeout=60).returncode != 0  # fmt: skip
