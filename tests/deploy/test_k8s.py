"""Kustomize overlays render, pass kubernetes-validate --strict for the stated Kubernetes version,
custom resources pass the vendored schemas, and the GPU overlays differ where the hardware does."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import http.server
import io
import itertools
import json
import os
import re
import signal
import ssl
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy import harness
from tests.deploy.pki import TestCA

K8S = harness.REPO / "k8s"
# The oldest version we support on vSphere Kubernetes Service; also checked against the newest.
KUBERNETES_VERSIONS = ["1.33.0", "1.37.0"]
OVERLAYS = ["a100", "t4", "t4-fp16"]
CR_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_v1alpha1_triggerauthentication.json",
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
    assert {d["kind"] for d in crs} == {"ScaledObject", "TriggerAuthentication", "ServiceMonitor",
                                        "PrometheusRule"}  # fmt: skip
    for doc in crs:
        proc = _check_cr(doc, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vendored_schemas_reject_a_typo(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    # Copies: the rendered manifests are shared by the module's tests.
    scaled = copy.deepcopy(find(rendered["a100"], "ScaledObject", "vllm"))
    scaled["spec"]["maxReplicas"] = scaled["spec"].pop("maxReplicaCount")
    assert _check_cr(scaled, tmp_path).returncode != 0
    rule = copy.deepcopy(find(rendered["a100"], "PrometheusRule", "docclass"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    assert _check_cr(rule, tmp_path).returncode != 0
    auth = copy.deepcopy(find(rendered["a100"], "TriggerAuthentication", "appliance-worker-queue"))
    assert _check_cr(auth, tmp_path).returncode == 0
    auth["spec"]["secretTargetRef"][0]["secretKey"] = auth["spec"]["secretTargetRef"][0].pop("key")
    assert _check_cr(auth, tmp_path).returncode != 0


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
    env = {e["name"]: e.get("value") for e in vllm_container(rendered["a100"])["env"]}
    for name in ("HOME", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        assert env[name].startswith("/tmp/"), name  # the writable emptyDir


def test_base_is_hardened(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["a100"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = find(docs, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    vllm_in = find(docs, "NetworkPolicy", "vllm-ingress-from-appliance")["spec"]["ingress"]
    assert vllm_in[0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}
        for name in ("appliance", "appliance-worker")]  # fmt: skip
    assert len(policies) >= 5
    for kind, name in (
        ("Deployment", "appliance"),
        ("Deployment", "appliance-worker"),
        ("StatefulSet", "audit-sealer"),
        ("Deployment", "vllm"),
        ("Job", "appliance-migrate"),
        ("Job", "vllm-weights-loader"),
    ):
        pod = find(docs, kind, name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
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


# --- vLLM over TLS with an API key; who may reach it; where its weights come from -------------

VLLM_CERT_NAMES = ["vllm", "vllm.docclass.svc", "vllm.docclass.svc.cluster.local"]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def pod_templates(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each workload's pod template, by "Kind/name"."""
    return {f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"] for d in docs
            if d["kind"] in WORKLOAD_KINDS}  # fmt: skip


def generated(docs: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """A configMap from the kustomize generator (its name has a hash suffix)."""
    [doc] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(
        prefix + "-")]  # fmt: skip
    return doc


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector's verdict on a set of labels ({} selects everything)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, values = expr["key"], expr.get("values", [])
        verdict = {"In": key in labels and labels[key] in values,
                   "NotIn": key not in labels or labels[key] not in values,
                   "Exists": key in labels, "DoesNotExist": key not in labels}[expr["operator"]]
        if not verdict:
            return False
    return True


def mounted_file(
    pod: dict[str, Any], container: dict[str, Any], path: str
) -> tuple[dict[str, Any], str]:
    """The read-only volume (secret or configMap) a container reads `path` from, and the key of
    that secret or configMap the file holds."""
    mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    assert mount.get("readOnly") is True, mount
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    source = volume.get("secret") or volume["configMap"]
    name = path.removeprefix(mount["mountPath"] + "/")
    items = {i["path"]: i["key"] for i in source.get("items", [])}
    assert name in items or not items, (path, volume)  # items project only the keys they list
    return volume, items.get(name, name)


def _policies(docs: list[dict[str, Any]], labels: dict[str, str], kind: str) -> list[Any]:
    """The NetworkPolicies of `kind` (Ingress or Egress) that apply to pods with `labels`."""
    found = []
    for policy in (d["spec"] for d in docs if d["kind"] == "NetworkPolicy"):
        types = policy.get("policyTypes") or ["Ingress"] + (["Egress"] if "egress" in policy
                                                             else [])  # fmt: skip
        if kind in types and selects(policy["podSelector"], labels):
            found.append(policy)
    return found


def _allows_port(ports: list[dict[str, Any]] | None, port: int, named: dict[str, int]) -> bool:
    if not ports:
        return True  # a rule without ports allows them all
    for entry in ports:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        if "port" not in entry:
            return True
        first = named.get(entry["port"]) if isinstance(entry["port"], str) else entry["port"]
        if first is not None and first <= port <= entry.get("endPort", first):
            return True
    return False


def admitted(docs: list[dict[str, Any]], target: str, port: int) -> tuple[set[str], list[Any]]:
    """Who the rendered NetworkPolicies let reach `target`'s pods on TCP `port`: the rendered
    workloads whose pod labels a rule selects, and the peers outside this namespace
    (namespaceSelector, ipBlock, or "anyone" for a rule without sources)."""
    pods = pod_templates(docs)
    namespace = next(d["metadata"]["namespace"] for d in docs if d["kind"] in WORKLOAD_KINDS)
    ns_labels = {d["metadata"]["name"]: {**d["metadata"].get("labels", {}),
                                         "kubernetes.io/metadata.name": d["metadata"]["name"]}
                 for d in docs if d["kind"] == "Namespace"}  # fmt: skip
    spec = pods[target]["spec"]
    named = {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
    inside: set[str] = set()
    outside: list[Any] = []
    for policy in _policies(docs, pods[target]["metadata"]["labels"], "Ingress"):
        for rule in policy.get("ingress", []):
            if not _allows_port(rule.get("ports"), port, named):
                continue
            for peer in rule.get("from") or [None]:
                if peer is None:  # a rule without sources admits everyone
                    outside.append("anyone")
                    inside |= set(pods)
                    continue
                if "ipBlock" in peer:
                    outside.append(peer)
                    continue
                if "namespaceSelector" in peer:
                    outside.append(peer)
                    namespaces = {n for n, labels in ns_labels.items()
                                  if selects(peer["namespaceSelector"], labels)}  # fmt: skip
                else:
                    namespaces = {namespace}
                if namespace in namespaces:
                    inside |= {name for name, pod in pods.items()
                               if selects(peer.get("podSelector", {}), pod["metadata"]["labels"])}
    return inside, outside


PROMETHEUS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_vllm_serves_tls_with_its_key_from_a_secret(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """Every profile keeps the TLS flags (t4 and t4-fp16 replace the whole argument list), the
    certificate from vllm-tls, the key from vllm-api-key, and probes that speak HTTPS."""
    docs = rendered[overlay]
    pod = find(docs, "Deployment", "vllm")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    flags = dict(a.removeprefix("--").split("=", 1) for a in container["args"] if "=" in a)
    for flag, key in (("ssl-certfile", "tls.crt"), ("ssl-keyfile", "tls.key")):
        volume, projected = mounted_file(pod, container, flags[flag])
        assert (volume["secret"]["secretName"], projected) == ("vllm-tls", key)
        mode = volume["secret"]["defaultMode"]
        assert mode & 0o040 and not mode & 0o007, oct(mode)  # for the pod's group, not the world
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # No client certificate demanded (the kubelet's probes have none), no key on the command line.
    assert not {"ssl-cert-reqs", "ssl-ca-certs", "api-key"} & flags.keys()
    assert not any(a.startswith("--api-key") for a in container["args"])
    env = {e["name"]: e for e in container["env"]}
    assert env["VLLM_API_KEY"] == {"name": "VLLM_API_KEY", "valueFrom": {
        "secretKeyRef": {"name": "vllm-api-key", "key": "api-key"}}}
    assert container["ports"] == [{"name": "https", "containerPort": 8000}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert (get["scheme"], get["port"]) == ("HTTPS", "https"), probe
    [port] = find(docs, "Service", "vllm")["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("https", 8000, "https")


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_the_appliance_calls_vllm_over_https_with_a_key_file(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    config = generated(docs, "appliance-config")["data"]
    url = urlsplit(config["APPLIANCE_VLLM_BASE_URL"])
    assert url.scheme == "https" and url.hostname in VLLM_CERT_NAMES, url
    [service_port] = find(docs, "Service", url.hostname.split(".")[0])["spec"]["ports"]
    assert url.port == service_port["port"]
    pod = find(docs, "Deployment", "appliance")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ca, projected = mounted_file(pod, container, config["APPLIANCE_VLLM_TLS_CA"])
    assert (ca["configMap"]["name"], projected) == ("vllm-ca", "ca.crt")
    env = {e["name"]: e for e in container["env"]}
    key, projected = mounted_file(pod, container, env["APPLIANCE_VLLM_API_KEY_FILE"]["value"])
    assert (key["secret"]["secretName"], projected) == ("vllm-api-key", "api-key")
    assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in container["env"])  # files only
    # The migration Job reads appliance-config too, and has no such file to read.
    assert "APPLIANCE_VLLM_API_KEY_FILE" not in config
    # Without its pseudonym key the appliance would not start (raw ids are an explicit opt-out).
    pseudonym_key = env["APPLIANCE_AUDIT_PSEUDONYM_KEY_PATH"]["value"]
    key, projected = mounted_file(pod, container, pseudonym_key)
    assert (key["secret"]["secretName"], projected) == ("audit-pseudonym-key", "key")
    assert "APPLIANCE_AUDIT_RAW_IDENTIFIERS" not in config
    # Without the jobs' key-encryption key the API could not accept a bulk job.
    key, projected = mounted_file(pod, container, env["APPLIANCE_JOB_KEY_PATH"]["value"])
    assert (key["secret"]["secretName"], projected) == ("appliance-job-key", "key")


def test_the_appliance_records_the_digest_of_the_weights_vllm_serves(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Part of the model's identity (a new digest re-asks instead of reusing results): the same
    configMap key that vLLM's init container waits for, in the form the settings accept."""
    docs = rendered["base"]
    pod = find(docs, "Deployment", "appliance")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    source = env["DOCCLASS_WEIGHTS_SHA256"]["valueFrom"]["configMapKeyRef"]
    assert (source["name"], source["key"]) == ("vllm-weights", "sha256")
    assert env["APPLIANCE_MODEL_WEIGHTS_DIGEST"]["value"] == "sha256:$(DOCCLASS_WEIGHTS_SHA256)"
    names = list(env)  # Kubernetes expands $(VAR) only from variables defined before it
    assert names.index("DOCCLASS_WEIGHTS_SHA256") < names.index("APPLIANCE_MODEL_WEIGHTS_DIGEST")
    vllm_pod = find(docs, "Deployment", "vllm")["spec"]["template"]["spec"]
    waits = json.dumps(vllm_pod["initContainers"])
    assert '"name": "vllm-weights"' in waits and '"key": "sha256"' in waits


def test_only_vllm_and_the_appliance_hold_vllms_secrets(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """vLLM's private key is in vLLM's pod alone; the API key in vLLM's, the appliance's and the
    workers'; the sealer, the migration Job and the weights loader get neither."""
    for docs in rendered.values():
        def holders(name: str, docs: list[dict[str, Any]] = docs) -> list[str]:
            return sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs
                          if f'"{name}"' in json.dumps(d))  # fmt: skip
        assert holders("vllm-tls") == ["Deployment/vllm"]
        assert holders("vllm-api-key") == ["Deployment/appliance", "Deployment/appliance-worker",
                                           "Deployment/vllm"]  # fmt: skip
        assert holders("vllm-ca") == ["Deployment/appliance", "Deployment/appliance-worker",
                                      "ServiceMonitor/vllm"]  # fmt: skip
        # The jobs' key decrypts stored texts: the API and the workers hold it, nothing else.
        assert holders("appliance-job-key") == ["Deployment/appliance",
                                                "Deployment/appliance-worker"]  # fmt: skip


def test_vllm_metrics_are_scraped_over_https_checking_its_certificate(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Each ServiceMonitor endpoint scrapes some Service port, and vLLM's only endpoint checks
    vLLM's certificate for a name it holds (not the appliance's CA and client certificate)."""
    docs = rendered["a100"]
    services = [d for d in docs if d["kind"] == "Service"]
    vllm_endpoints = []
    for monitor in (d for d in docs if d["kind"] == "ServiceMonitor"):
        selected = [s for s in services if selects(monitor["spec"]["selector"],
                                                   s["metadata"]["labels"])]  # fmt: skip
        for endpoint in monitor["spec"]["endpoints"]:
            serving = [s["metadata"]["name"] for s in selected
                       if endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}]
            assert serving, (monitor["metadata"]["name"], endpoint)  # it would scrape nothing
            if "vllm" in serving:
                assert serving == ["vllm"]
                vllm_endpoints.append(endpoint)
    [endpoint] = vllm_endpoints
    assert endpoint["scheme"] == "https"
    tls = endpoint["tlsConfig"]
    assert tls["ca"] == {"configMap": {"name": "vllm-ca", "key": "ca.crt"}}
    assert tls["serverName"] in VLLM_CERT_NAMES and not tls.get("insecureSkipVerify")


def test_every_secret_and_configmap_to_create_is_listed_in_a_manifest_header() -> None:
    """Every secret or configMap a pod or ServiceMonitor reads and kustomize does not generate is
    listed in the comment that opens one of the base manifests, and vllm.yaml's names the DNS
    names vLLM's certificate must hold."""
    docs = render(K8S / "base")
    made = {d["metadata"]["name"] for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    referenced: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("secretName", "secretKeyRef", "configMapKeyRef", "configMapRef",
                        "configMap", "secret", "keySecret"):  # fmt: skip
                value = node.get(key)
                if isinstance(value, str):
                    referenced.add(value)
                elif isinstance(value, dict) and isinstance(value.get("name"), str):
                    referenced.add(value["name"])
            for ref in node.get("secretTargetRef", []):  # a KEDA TriggerAuthentication's
                referenced.add(ref["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk([d for d in docs if d["kind"] in WORKLOAD_KINDS | {"ServiceMonitor",
                                                            "TriggerAuthentication"}])
    assert {"vllm-tls", "vllm-api-key", "vllm-ca", "vllm-weights", "appliance-job-key",
            "appliance-keda-db"} <= referenced

    def header(path: Path) -> str:
        lines = path.read_text().splitlines()
        return "\n".join(itertools.takewhile(lambda line: line.startswith("#"), lines))

    headers = "\n".join(header(p) for p in sorted((K8S / "base").glob("*.yaml")))
    missing = sorted(n for n in referenced - made if not re.search(rf"\b{n}\b", headers))
    assert not missing, missing
    vllm_header = header(K8S / "base" / "vllm.yaml")
    assert all(re.search(rf"(?<![\w.]){re.escape(n)}(?![\w.])", vllm_header)
               for n in VLLM_CERT_NAMES)  # fmt: skip


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_only_the_appliance_and_prometheus_reach_vllm(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """vLLM's key guards only /v1, so the NetworkPolicies are what keep other pods from the rest:
    evaluated against the rendered pods' labels, the only workload they admit to vLLM's port is
    the appliance and its bulk job workers, and the only peer from elsewhere is Prometheus in the
    monitoring namespace."""
    docs = rendered[overlay]
    port = vllm_container(docs)["ports"][0]["containerPort"]
    assert admitted(docs, "Deployment/vllm", port) == (
        {"Deployment/appliance", "Deployment/appliance-worker"}, [PROMETHEUS_PEER])
    # The evaluation is not vacuous: opening the appliance's rule to every pod is seen.
    opened = [copy.deepcopy(d) for d in docs]
    find(opened, "NetworkPolicy", "vllm-ingress-from-appliance")["spec"]["ingress"][0]["from"] = [
        {"podSelector": {}}]  # fmt: skip
    inside, _ = admitted(opened, "Deployment/vllm", port)
    assert {"StatefulSet/audit-sealer", "Job/vllm-weights-loader"} <= inside
    del find(opened, "NetworkPolicy", "vllm-ingress-from-appliance")["spec"]["ingress"][0]["from"]
    assert "anyone" in admitted(opened, "Deployment/vllm", port)[1]


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_vllm_has_no_egress_and_the_loader_only_the_artefact_store(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    pods = pod_templates(docs)
    vllm = _policies(docs, pods["Deployment/vllm"]["metadata"]["labels"], "Egress")
    assert vllm and not [rule for policy in vllm for rule in policy.get("egress", [])]
    loader = _policies(docs, pods["Job/vllm-weights-loader"]["metadata"]["labels"], "Egress")
    rules = [rule for policy in loader for rule in policy.get("egress", [])]
    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
           "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    for rule in rules:
        if rule["to"] == [dns]:
            assert {p["port"] for p in rule["ports"]} == {53}
        else:  # the artefact store: addresses the site patches, HTTPS only
            assert rule["to"] and all(set(peer) == {"ipBlock"} for peer in rule["to"]), rule
            assert rule["ports"] == [{"protocol": "TCP", "port": 443}]
    assert len(rules) == 2


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_the_weights_volume_is_read_write_once_and_vllm_one_replica(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """vSphere CSI block volumes offer no ReadOnlyMany; one ReadWriteOnce volume attaches to one
    node, so one vLLM replica (on its one GPU), and the loader runs on that node."""
    docs = rendered[overlay]
    assert find(docs, "PersistentVolumeClaim", "vllm-models")["spec"]["accessModes"] == [
        "ReadWriteOnce"]  # fmt: skip
    assert find(docs, "Deployment", "vllm")["spec"]["replicas"] == 1
    assert find(docs, "ScaledObject", "vllm")["spec"]["maxReplicaCount"] == 1
    loader = find(docs, "Job", "vllm-weights-loader")["spec"]["template"]["spec"]
    [term] = loader["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"], pod_templates(docs)["Deployment/vllm"]["metadata"][
        "labels"])  # fmt: skip


def _loader(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], str]:
    pod = find(docs, "Job", "vllm-weights-loader")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"][:2] == ["sh", "-c"]
    return pod, container, container["command"][2]


def _wait_for_weights(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    pod = find(docs, "Deployment", "vllm")["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["command"][:2] == ["sh", "-c"]
    return init, init["command"][2]


def _claim_mount(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    [volume] = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == "vllm-models"
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    return mount  # type: ignore[no-any-return]


def test_the_loader_checks_the_digest_before_unpacking_and_vllm_waits_for_its_marker(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["a100"]
    pod, container, script = _loader(docs)
    env = {e["name"]: e["valueFrom"]["configMapKeyRef"] for e in container["env"]}
    assert env == {"WEIGHTS_URL": {"name": "vllm-weights", "key": "url"},
                   "WEIGHTS_SHA256": {"name": "vllm-weights", "key": "sha256"}}
    lines = script.splitlines()
    [check] = [i for i, line in enumerate(lines) if "sha256sum -c" in line]
    assert "$WEIGHTS_SHA256" in lines[check]
    [unpack] = [i for i, line in enumerate(lines) if line.lstrip().startswith("tar ")]
    [marker] = re.findall(r"^\s*marker=(\S+)$", script, re.M)
    [written] = [i for i, line in enumerate(lines) if line.strip() == 'mv "$marker.tmp" "$marker"']
    assert check < unpack < written  # checked, then unpacked, then marked
    assert "--proto =https" in script and "huggingface" not in script.lower()
    ca = re.search(r"--cacert (\S+)", script)
    assert ca, script
    volume, projected = mounted_file(pod, container, ca[1])
    assert (volume["configMap"]["name"], projected) == ("vllm-weights", "ca.crt")
    assert not _claim_mount(pod, container).get("readOnly")
    image = container["image"]
    assert image.startswith("registry.hospital.example/mirror/") and not image.endswith(":latest")
    assert ":" in image.rsplit("/", 1)[1]  # pinned by tag through kustomize's images:
    # vLLM's init container waits for that marker, on the same volume, with the same digest.
    vllm_pod = find(docs, "Deployment", "vllm")["spec"]["template"]["spec"]
    init, wait = _wait_for_weights(docs)
    assert init["env"] == [{"name": "WEIGHTS_SHA256", "valueFrom": {
        "configMapKeyRef": {"name": "vllm-weights", "key": "sha256"}}}]
    loader_root = _claim_mount(pod, container)["mountPath"]
    vllm_root = _claim_mount(vllm_pod, init)["mountPath"]
    assert _claim_mount(vllm_pod, init).get("readOnly") is True
    assert vllm_root + marker.removeprefix(loader_root) in wait and "$WEIGHTS_SHA256" in wait


@contextlib.contextmanager
def https_serving(files: dict[str, bytes], folder: Path, requests: list[str]) -> Iterator[str]:
    """A local HTTPS server (certificate for localhost from a throwaway CA at folder/ca.crt)."""
    ca = TestCA("hospital CA")
    issued = ca.issue("localhost", server=True)
    (folder / "ca.crt").write_text(ca.pem)
    (folder / "server.crt").write_text(issued.cert)
    (folder / "server.key").write_text(issued.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.crt", folder / "server.key")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with harness.serving(server, "https", "localhost") as url:
        yield url


def _tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _run(script: str, mounts: dict[str, Path], env: dict[str, str]) -> subprocess.Popen[str]:
    """The container's script, run here with this machine's sh, curl, sha256sum and tar, its
    mount paths moved to `mounts`."""
    for path in sorted(mounts, key=len, reverse=True):
        script = script.replace(path, str(mounts[path]))
    return subprocess.Popen(["sh", "-c", script], env={"PATH": os.environ["PATH"], **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip


def test_the_loader_and_the_wait_run_as_written(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """The loader's and the init container's scripts, run with the real curl against a local
    HTTPS server: a tarball with the wrong digest is not unpacked and leaves no marker; the right
    one replaces the model directory whole and writes the marker; a rerun downloads nothing; vLLM
    waits until the marker holds the digest of its configMap."""
    docs = rendered["a100"]
    pod, container, script = _loader(docs)
    models, www = tmp_path / "models", tmp_path / "www"
    models.mkdir()
    www.mkdir()
    mounts = {m["mountPath"]: tmp_path / m["name"] for m in container["volumeMounts"]}
    assert mounts[_claim_mount(pod, container)["mountPath"]] == models
    tarball = _tarball({"llama-2-7b-chat/config.json": b"{}", "llama-2-7b-chat/model.safetensors":
                        b"weights"})  # fmt: skip
    digest = hashlib.sha256(tarball).hexdigest()
    stale = models / "llama-2-7b-chat" / "old-shard.safetensors"
    stale.parent.mkdir()
    stale.write_bytes(b"older weights")
    requests: list[str] = []

    def load(sha256: str) -> tuple[int, str]:
        proc = _run(script, mounts, {"WEIGHTS_URL": url + "/weights.tar", "WEIGHTS_SHA256": sha256})
        out, _ = proc.communicate(timeout=60)
        return proc.returncode, out

    with https_serving({"/weights.tar": tarball}, www, requests) as url:
        (tmp_path / "artefact-ca").mkdir()
        (tmp_path / "artefact-ca" / "ca.crt").write_bytes((www / "ca.crt").read_bytes())
        rc, out = load("sha256:" + digest)  # the appliance's notation: refused before any request
        assert rc != 0 and not requests, out
        rc, out = load(hashlib.sha256(b"other").hexdigest())
        assert rc != 0 and requests == ["/weights.tar"], out
        assert stale.exists() and not (models / "llama-2-7b-chat" / "config.json").exists()
        assert [p.name for p in models.iterdir()] == ["llama-2-7b-chat"]  # no marker, no tarball
        rc, out = load(digest)
        assert rc == 0, out
        assert (models / "llama-2-7b-chat" / "model.safetensors").read_bytes() == b"weights"
        assert not stale.exists()  # the directory was replaced, not merged
        assert (models / ".weights-sha256").read_text().strip() == digest
        assert sorted(p.name for p in models.iterdir()) == [".weights-sha256", "llama-2-7b-chat"]
        rc, out = load(digest)
        assert rc == 0 and len(requests) == 2, out  # a rerun is a no-op

    vllm_pod = find(docs, "Deployment", "vllm")["spec"]["template"]["spec"]
    init, wait = _wait_for_weights(docs)
    init_mounts = {_claim_mount(vllm_pod, init)["mountPath"]: models}
    done = _run(wait, init_mounts, {"WEIGHTS_SHA256": digest})
    out, _ = done.communicate(timeout=10)
    assert done.returncode == 0, out
    waiting = _run(wait, init_mounts, {"WEIGHTS_SHA256": hashlib.sha256(b"newer").hexdigest()})
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=3)
    finally:
        os.killpg(waiting.pid, signal.SIGKILL)  # its group: sh and its sleep
        waiting.communicate()
    # An empty digest must not pass for the missing marker of an empty volume.
    (tmp_path / "empty").mkdir()
    empty = _run(wait, {_claim_mount(vllm_pod, init)["mountPath"]: tmp_path / "empty"},
                 {"WEIGHTS_SHA256": ""})  # fmt: skip
    empty.communicate(timeout=10)
    assert empty.returncode != 0

    # New weights: the old marker goes first, so a failed or interrupted replacement never
    # passes for complete (not even if the configMap goes back to the old digest).
    with https_serving({"/weights.tar": tarball}, www, requests) as url:
        (tmp_path / "artefact-ca" / "ca.crt").write_bytes((www / "ca.crt").read_bytes())
        rc, out = load(hashlib.sha256(b"newer").hexdigest())
        assert rc != 0 and len(requests) == 3, out
        assert [p.name for p in models.iterdir()] == ["llama-2-7b-chat"]


def test_the_weights_rwx_component_shares_one_volume(tmp_path: Path) -> None:
    """components/weights-rwx on a GPU overlay, rendered from a kustomization of its own: a
    ReadWriteMany volume of the file-services storage class, more than one vLLM replica allowed,
    a loader free to run anywhere, and still valid for both Kubernetes versions."""
    rel = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [f"{rel}/overlays/a100"],
        "components": [f"{rel}/components/weights-rwx"],
    }))
    docs = render(tmp_path)
    pvc = find(docs, "PersistentVolumeClaim", "vllm-models")["spec"]
    assert pvc["accessModes"] == ["ReadWriteMany"]
    assert pvc["storageClassName"] not in (None, "vsan-default-storage-policy")
    assert find(docs, "ScaledObject", "vllm")["spec"]["maxReplicaCount"] > 1
    loader = find(docs, "Job", "vllm-weights-loader")["spec"]["template"]["spec"]
    assert "affinity" not in loader and "tolerations" not in loader
    builtin = [d for d in docs if (d["apiVersion"], d["kind"]) not in CR_SCHEMAS]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(builtin))
    for version in KUBERNETES_VERSIONS:
        proc = subprocess.run(
            [harness.tool("kubernetes-validate"), "--strict", "-k", version, str(manifest)],
            capture_output=True, text=True, check=False, timeout=300,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "ERROR" not in out and "WARN" not in out, out
    for doc in (d for d in docs if (d["apiVersion"], d["kind"]) in CR_SCHEMAS):
        proc = _check_cr(doc, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# --- Bulk job workers: the API's pod without a listener, scaled by KEDA on their queue --------

CHUNK_ITEMS = 16
"""Items per queue row (the default of APPLIANCE_JOB_CHUNK_ITEMS, which no manifest changes)."""
DNS_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}  # fmt: skip


def _env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _pod_and_container(docs: list[dict[str, Any]], name: str) -> tuple[dict[str, Any], Any]:
    pod = find(docs, "Deployment", name)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return pod, container


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_the_worker_runs_the_apis_image_settings_and_secrets(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """`appliance worker` in the API's image, configMap, settings, pod and container security
    context; every file it is told about mounted read-only from the secret the API reads it
    from (its database login, vLLM's key and CA, the pseudonym and job keys); no port, no
    Service, no replicas of its own (KEDA's)."""
    docs = rendered[overlay]
    api_pod, api = _pod_and_container(docs, "appliance")
    pod, worker = _pod_and_container(docs, "appliance-worker")
    assert worker["command"] == ["appliance", "worker"]
    assert worker["image"] == api["image"] and worker["envFrom"] == api["envFrom"]
    for key in ("securityContext", "automountServiceAccountToken", "enableServiceLinks"):
        assert pod[key] == api_pod[key], key
    assert worker["securityContext"] == api["securityContext"]
    assert {"cpu", "memory"} <= worker["resources"]["requests"].keys()
    assert "memory" in worker["resources"]["limits"]
    assert pod["terminationGracePeriodSeconds"] >= 60  # time to finish the chunks in hand
    deployment = find(docs, "Deployment", "appliance-worker")["spec"]
    assert "replicas" not in deployment  # KEDA's: an apply must not reset them
    # The API's own settings, the same, and its concurrency.
    env, api_env = _env_of(worker), _env_of(api)
    assert {name: e for name, e in env.items() if name in api_env} == api_env
    assert set(env) - set(api_env) == {
        "APPLIANCE_WORKER_CONCURRENCY", "APPLIANCE_VLLM_REQUEST_PRIORITY"
    }  # fmt: skip
    assert int(env["APPLIANCE_VLLM_REQUEST_PRIORITY"]["value"]) > 0  # the API's requests first
    names = list(env)
    assert names.index("DOCCLASS_WEIGHTS_SHA256") < names.index("APPLIANCE_MODEL_WEIGHTS_DIGEST")
    config = generated(docs, "appliance-config")["data"]
    files = [e["value"] for e in env.values() if e.get("value", "").startswith("/")]
    assert {"APPLIANCE_DATABASE_URL_FILE", "APPLIANCE_JOB_KEY_PATH"} <= {
        name for name, e in env.items() if e.get("value") in files}  # fmt: skip
    for path in [*files, config["APPLIANCE_VLLM_TLS_CA"]]:
        volume, projected = mounted_file(pod, worker, path)
        api_volume, api_projected = mounted_file(api_pod, api, path)
        assert {k: v for k, v in volume.items() if k != "name"} == {
            k: v for k, v in api_volume.items() if k != "name"} and projected == api_projected
    job_key, projected = mounted_file(pod, worker, env["APPLIANCE_JOB_KEY_PATH"]["value"])
    assert (job_key["secret"]["secretName"], projected) == ("appliance-job-key", "key")
    # appliance-config names a metrics folder: it must exist, writable, or the worker's
    # counters fail at import.
    [metrics] = [m for m in worker["volumeMounts"]
                 if m["mountPath"] == config["PROMETHEUS_MULTIPROC_DIR"]]  # fmt: skip
    assert not metrics.get("readOnly")
    assert "ports" not in worker and not {"livenessProbe", "readinessProbe"} & worker.keys()
    labels = pod_templates(docs)["Deployment/appliance-worker"]["metadata"]["labels"]
    assert not [s for s in docs if s["kind"] == "Service"
                and selects({"matchLabels": s["spec"].get("selector", {})}, labels)]  # fmt: skip


def _egress(docs: list[dict[str, Any]], labels: dict[str, str]) -> set[tuple[str, str, Any]]:
    """Where pods with `labels` may connect: (peer, protocol, port), the peer a rendered
    workload its podSelector selects ("Kind/name"), "dns", an ipBlock's CIDR, a podSelector no
    rendered workload matches (as JSON), or "anywhere"."""
    pods = pod_templates(docs)
    found: set[tuple[str, str, Any]] = set()
    for policy in _policies(docs, labels, "Egress"):
        for rule in policy.get("egress", []):
            ports = [(p.get("protocol", "TCP"), p.get("port", "any"))
                     for p in rule.get("ports") or [{}]]  # fmt: skip
            for peer in rule.get("to") or [None]:
                if peer is None:
                    peers = {"anywhere"}
                elif peer == DNS_PEER:
                    peers = {"dns"}
                elif "ipBlock" in peer:
                    peers = {peer["ipBlock"]["cidr"]}
                elif "namespaceSelector" in peer:
                    peers = {json.dumps(peer, sort_keys=True)}
                else:
                    peers = {name for name, pod in pods.items()
                             if selects(peer["podSelector"], pod["metadata"]["labels"])} or {
                        json.dumps(peer["podSelector"], sort_keys=True)}  # fmt: skip
                found |= {(p, protocol, port) for p in peers for protocol, port in ports}
    return found


def _ingress_rules(docs: list[dict[str, Any]], labels: dict[str, str]) -> list[Any]:
    return [rule for policy in _policies(docs, labels, "Ingress")
            for rule in policy.get("ingress", [])]  # fmt: skip


def _worker_reaches(docs: list[dict[str, Any]]) -> set[tuple[str, str, Any]]:
    return _egress(docs, pod_templates(docs)["Deployment/appliance-worker"]["metadata"]["labels"])


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_the_worker_reaches_postgresql_and_vllm_only_and_nothing_reaches_it(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """Egress: vLLM's port, the PostgreSQL peers the sealer has (the site's CIDRs or an
    in-cluster server), DNS; nothing else. Ingress: deny-all alone."""
    docs = rendered[overlay]
    pods = pod_templates(docs)
    sealer = _egress(docs, pods["StatefulSet/audit-sealer"]["metadata"]["labels"])
    postgresql = {peer for peer in sealer if peer[1:] == ("TCP", 5432)}
    assert postgresql
    vllm_port = vllm_container(docs)["ports"][0]["containerPort"]
    expected = postgresql | {("Deployment/vllm", "TCP", vllm_port), ("dns", "UDP", 53),
                             ("dns", "TCP", 53)}  # fmt: skip
    assert _worker_reaches(docs) == expected
    labels = pods["Deployment/appliance-worker"]["metadata"]["labels"]
    assert _policies(docs, labels, "Ingress") and _ingress_rules(docs, labels) == []
    # Not vacuous: a rule more for the API and workers, or a scrape rule selecting the workers,
    # is seen.
    opened = [copy.deepcopy(d) for d in docs]
    find(opened, "NetworkPolicy", "appliance-egress")["spec"]["egress"].append(
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]})
    assert _worker_reaches(opened) == expected | {("0.0.0.0/0", "TCP", 443)}
    scrape = find(opened, "NetworkPolicy", "allow-prometheus-scrape")["spec"]["podSelector"]
    scrape["matchExpressions"][0]["values"].append("appliance-worker")
    assert _ingress_rules(opened, labels) != []


def test_keda_scales_the_workers_on_their_queue(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The postgresql scaler counts the bulk-jobs chunks waiting or in hand, with the connection
    from a secret only; each worker is given its concurrency's worth (64 items); 0 or 1 at rest."""
    for docs in rendered.values():
        scaled = find(docs, "ScaledObject", "appliance-worker")["spec"]
        target = scaled["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"], target["name"]) == (
            "apps/v1", "Deployment", "appliance-worker")  # fmt: skip
        assert scaled["minReplicaCount"] in (0, 1) and scaled["maxReplicaCount"] == 8
        [trigger] = scaled["triggers"]
        assert trigger["type"] == "postgresql"
        metadata = trigger["metadata"]
        query = " ".join(metadata["query"].split())
        assert query.startswith("SELECT count(*) FROM procrastinate_jobs WHERE ")
        for condition in ("queue_name = 'bulk-jobs'", "status IN ('todo', 'doing')"):
            assert condition in query
        assert not {"connection", "connectionFromEnv", "host", "userName", "password",
                    "passwordFromEnv"} & metadata.keys()  # fmt: skip
        _, worker = _pod_and_container(docs, "appliance-worker")
        concurrency = int(_env_of(worker)["APPLIANCE_WORKER_CONCURRENCY"]["value"])
        assert float(metadata["targetQueryValue"]) == concurrency
        assert float(metadata["targetQueryValue"]) * CHUNK_ITEMS == 64
        reference = trigger["authenticationRef"]
        assert reference.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
        auth = find(docs, "TriggerAuthentication", reference["name"])["spec"]
        assert auth == {"secretTargetRef": [
            {"parameter": "connection", "name": "appliance-keda-db", "key": "connection"}]}


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_vllm_schedules_by_priority_so_job_items_yield(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """The workers send a priority (the API none): vLLM must be started to honour it, and
    refuses a priority unless it is (every overlay replaces vLLM's arguments)."""
    _, vllm = _pod_and_container(rendered[overlay], "vllm")
    assert "--scheduling-policy=priority" in vllm["args"]
