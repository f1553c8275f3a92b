"""The alert rules behave as the runbook says: promtool's rule unit tests against the rendered
PrometheusRule (the rules file a non-Kubernetes Prometheus loads is its ``spec``): the committed
k8s/base/monitoring/rules.test.yaml, and cases built here."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import harness
from tests.deploy.test_k8s import K8S, find, render


def _alerts_firing(tmp_path: Path, series: dict[str, str], alert: str, at: str) -> bool:
    """Whether ``alert`` fires at ``at`` given ``series`` (name -> promtool values)."""
    rules = tmp_path / "rules.yaml"
    rule = find(render(K8S / "base"), "PrometheusRule", "docclass")
    rules.write_text(yaml.safe_dump(rule["spec"]))
    case: dict[str, Any] = {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": []}],
    }
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [str(rules)], "tests": [case]}))
    proc = subprocess.run([harness.tool("promtool"), "test", "rules", str(tests)],
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    if proc.returncode == 0:
        return False  # it matched "no alerts"
    output = proc.stdout + proc.stderr
    assert "exp:" in output, output  # the expectation failed, rather than the rules file

    return True


HEALTHY = {
    "docclass_replication_streaming": "1x30",
    "docclass_replication_lag_seconds": "0x30",
    "docclass_replication_standbys_streaming": "1x30",
    "docclass_replication_standby_replay_lag_seconds": "0x30",
    "docclass_archive_push_queue_bytes": "0x30",
    "docclass_archive_push_queue_max_bytes": "17179869184x30",
    "docclass_archive_failed_count": "0x30",
}


def test_a_healthy_pair_raises_nothing(tmp_path: Path) -> None:
    for alert in ("DocclassReplicationLagHigh", "DocclassReplicationMetricsAbsent",
                  "DocclassArchivePushQueueFilling", "DocclassWalArchivingFailing"):
        assert not _alerts_firing(tmp_path, HEALTHY, alert, "20m"), alert


def test_a_standby_that_sends_no_metrics_at_all_is_an_alert(tmp_path: Path) -> None:
    """The standby host is gone: its series vanish, and the primary sees no standby."""
    without_standby = {k: v for k, v in HEALTHY.items() if k not in (
        "docclass_replication_streaming", "docclass_replication_lag_seconds")}
    assert _alerts_firing(tmp_path, without_standby, "DocclassReplicationMetricsAbsent", "20m")
    gone = without_standby | {"docclass_replication_standbys_streaming": "0x30"}
    assert _alerts_firing(tmp_path, gone, "DocclassReplicationLagHigh", "20m")


def test_the_archive_queue_alerts_before_wal_is_dropped(tmp_path: Path) -> None:
    filling = HEALTHY | {"docclass_archive_push_queue_bytes": "9663676416x30"}  # 9 of 16 GiB
    assert _alerts_firing(tmp_path, filling, "DocclassArchivePushQueueFilling", "20m")
    failing = HEALTHY | {"docclass_archive_failed_count": "0+1x30"}
    assert _alerts_firing(tmp_path, failing, "DocclassWalArchivingFailing", "20m")


# --- The committed promtool tests (k8s/base/monitoring/rules.test.yaml) -----------------------

RULE_TESTS = K8S / "base" / "monitoring" / "rules.test.yaml"
RULES_NAME = "docclass.rules.yaml"
"""What the committed test file calls the rules file (beside it)."""
TESTED = {
    "DocclassHttpErrorsHigh", "DocclassClassifyLatencyHigh", "DocclassPodCpuHigh",
    "DocclassHostCpuHigh", "DocclassCacheHitRateLow", "DocclassBackupTooOld",
    "DocclassBackupMetricsAbsent", "DocclassCrlExpiresSoon", "DocclassAuditBacklog",
    "DocclassAuditCheckpointStale",
}  # fmt: skip
"""The alerts the committed file must show both firing and not firing."""
OPERATIONS = harness.REPO / "docs" / "operations.md"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return find(render(K8S / "base"), "PrometheusRule", "docclass")["spec"]  # type: ignore[no-any-return]


def _rule(spec: dict[str, Any], alert: str) -> dict[str, Any]:
    [rule] = [r for g in spec["groups"] for r in g["rules"] if r.get("alert") == alert]
    return rule  # type: ignore[no-any-return]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([harness.tool("promtool"), *args], capture_output=True, text=True,
                          check=False, timeout=300)  # fmt: skip


def _rule_tests(folder: Path, spec: dict[str, Any], tests: dict[str, Any] | None = None) -> Path:
    """The rules next to the committed test file (or ``tests`` in its place), in ``folder``."""
    (folder / RULES_NAME).write_text(yaml.safe_dump(spec))
    target = folder / RULE_TESTS.name
    if tests is None:
        shutil.copy(RULE_TESTS, target)
    else:
        target.write_text(yaml.safe_dump(tests))
    return target


def test_the_committed_rule_tests_pass(spec: dict[str, Any], tmp_path: Path) -> None:
    tests = _rule_tests(tmp_path, spec)
    checked = _promtool("check", "rules", str(tmp_path / RULES_NAME))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    proc = _promtool("test", "rules", str(tests))
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_the_rule_tests_show_each_alert_firing_and_not(spec: dict[str, Any]) -> None:
    committed = yaml.safe_load(RULE_TESTS.read_text())
    assert committed["rule_files"] == [RULES_NAME]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in committed["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert not TESTED - firing and not TESTED - quiet, (TESTED - firing, TESTED - quiet)
    for alert in firing | quiet:
        _rule(spec, alert)  # each is a rule of the PrometheusRule


@pytest.mark.parametrize(("alert", "old", "new"), [
    ("DocclassClassifyLatencyHigh", "> 2.5", "> 25"),  # would never fire
    ("DocclassCacheHitRateLow", "> 100", "> 10"),  # would fire on too little traffic
    ("DocclassBackupTooOld", "48 * 3600", "52 * 3600"),
])  # fmt: skip
def test_the_rule_tests_fail_on_a_changed_threshold(
    spec: dict[str, Any], tmp_path: Path, alert: str, old: str, new: str
) -> None:
    """Only the committed cases that name the alert, run against the rules with its threshold
    moved: promtool reports that alert."""
    broken = copy.deepcopy(spec)
    rule = _rule(broken, alert)
    assert old in rule["expr"]
    rule["expr"] = rule["expr"].replace(old, new)
    committed = yaml.safe_load(RULE_TESTS.read_text())
    committed["tests"] = [case for case in committed["tests"]
                          if any(c["alertname"] == alert for c in case["alert_rule_test"])]
    assert committed["tests"]
    proc = _promtool("test", "rules", str(_rule_tests(tmp_path, broken, committed)))
    assert proc.returncode != 0, proc.stdout
    assert f"alertname: {alert}" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def _documented_slo_patch() -> dict[str, Any]:
    """The overlay snippet docs/operations.md gives for the latency SLO."""
    blocks = re.findall(r"```yaml\n(.*?)```", OPERATIONS.read_text(), re.S)
    [block] = [b for b in blocks if "DocclassClassifyLatencyHigh" in b and "op: test" in b]
    return yaml.safe_load(block)  # type: ignore[no-any-return]


def _overlay(tmp_path: Path, patches: list[Any]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "base", tmp_path)], "patches": patches}))
    return subprocess.run(["kubectl", "kustomize", str(tmp_path)], capture_output=True,
                          text=True, check=False, timeout=120)  # fmt: skip


def test_the_documented_slo_patch_moves_only_the_threshold(
    spec: dict[str, Any], tmp_path: Path
) -> None:
    """The operations guide's overlay patch applies to the base as it is (its test op names the
    rule at the index it replaces) and changes the SLO from 2.5 s to its value, nothing else."""
    patches = _documented_slo_patch()["patches"]
    proc = _overlay(tmp_path, patches)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    patched = _rule(find(docs, "PrometheusRule", "docclass")["spec"], "DocclassClassifyLatencyHigh")
    base = _rule(spec, "DocclassClassifyLatencyHigh")

    def threshold(expr: str) -> tuple[str, float]:
        match = re.fullmatch(r"(.*\)\)\)) > ([0-9.]+)", " ".join(expr.split()))
        assert match, expr
        return match.group(1), float(match.group(2))

    assert threshold(base["expr"])[1] == 2.5
    assert threshold(patched["expr"])[0] == threshold(base["expr"])[0]
    assert threshold(patched["expr"])[1] != 2.5
    assert {k: v for k, v in patched.items() if k != "expr"} == {
        k: v for k, v in base.items() if k != "expr"}  # fmt: skip
    # Pointed at another rule, the patch is refused rather than replacing that rule's expression.
    moved = copy.deepcopy(patches)
    moved[0]["patch"] = re.sub(r"/rules/(\d+)/", lambda m: f"/rules/{int(m.group(1)) - 1}/",
                               moved[0]["patch"])  # fmt: skip
    refused = _overlay(tmp_path, moved)
    assert refused.returncode != 0 and "test failed" in refused.stderr, refused.stderr
