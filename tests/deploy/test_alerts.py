"""The alert rules behave as the runbook says: promtool's rule unit tests against the rendered
PrometheusRule (the rules file a non-Kubernetes Prometheus loads is its ``spec``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

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
