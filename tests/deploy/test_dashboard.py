"""The Grafana dashboard (k8s/base/monitoring/docclass-appliance.json): it loads, every panel
reads the ``${datasource}`` variable and has queries, the panels do not overlap, Kubernetes gets
it as the sidecar's ConfigMap, and every metric a panel or an alert rule names is one that
something really exposes: the appliance's /metrics (an app built as the tests build it), the
audit sealer's collectors, the database hosts' textfile scripts, or the exporters listed below."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY
from appliance.identity.tls import TlsExpiryCollector
from appliance.settings import Settings
from harness.identity import identity
from tests.common.apps import app_over
from tests.deploy import harness
from tests.deploy.test_k8s import K8S, find, render

DASHBOARD = K8S / "base" / "monitoring" / "docclass-appliance.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TEXTFILE_SCRIPTS = [
    harness.ANSIBLE_DIR / "roles" / "dr" / "templates" / "docclass-replication-lag.sh.j2",
    harness.ANSIBLE_DIR / "roles" / "backup" / "templates" / "docclass-backup-metrics.py.j2",
]
"""The database hosts' node_exporter textfile metrics (docclass_*): their # TYPE lines."""

EXTERNAL = {
    # vLLM's own /metrics (ServiceMonitor vllm; the compose Prometheus's job vllm).
    "vllm:num_requests_waiting",
    "vllm:num_requests_running",
    "vllm:gpu_cache_usage_perc",
    # cAdvisor, in the kubelet.
    "container_cpu_usage_seconds_total",
    # kube-state-metrics.
    "kube_pod_container_resource_limits",
    # node_exporter (the dr role installs it on the database hosts).
    "node_cpu_seconds_total",
    # Prometheus itself, for every target it scrapes.
    "up",
}
"""Metrics of other programs: the names their documentation gives."""

KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
NAME = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers that are not functions (followed by
    a parenthesis), keywords, label names (inside braces or a grouping's parentheses), durations,
    numbers or Grafana variables ($...)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", expr)  # strings (label values)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges: [5m], [$__rate_interval]
    text = GROUPING.sub(" ", text)  # by (le), on (instance), ...
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # $namespace, ${datasource}
    return {name for name in NAME.findall(text) if name.lower() not in KEYWORDS}


def test_metric_names_are_what_a_query_selects() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, route) (rate(x_seconds_bucket{route=~"a|b",'
            ' status!="5.."}[$__rate_interval]))) > 2.5 and on (instance) absent(up offset 5m)'
            ' / ignoring(job) vllm:num_requests_waiting{namespace=~"$namespace"} * 1e3'
            ' or vector(1)')  # fmt: skip
    assert metric_names(expr) == {"x_seconds_bucket", "up", "vllm:num_requests_waiting"}


def _samples(name: str, kind: str) -> set[str]:
    """The sample names Prometheus stores for a metric family of this type."""
    return {
        "counter": {f"{name}_total", f"{name}_created"},
        "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"},
        "summary": {name, f"{name}_sum", f"{name}_count", f"{name}_created"},
    }.get(kind, {name})


def _collected(collectors: Iterable[Collector]) -> set[str]:
    return {n for collector in collectors for family in collector.collect()
            for n in _samples(family.name, family.type)}  # fmt: skip


@pytest.fixture(scope="module")
def exposed(migrated_database_url: str) -> set[str]:
    """Every sample name the appliance's /metrics shows (an app over the migrated database, as
    the metrics role), its TLS collector's (with files configured), and the sealer's."""
    import audit.metrics

    settings = Settings(database_url=migrated_database_url, vllm_base_url="http://127.0.0.1:9")
    with app_over(settings) as app:
        client = app.test_client()
        client.environ_base[IDENTITY_ENVIRON_KEY] = identity("metrics")  # type: ignore[assignment]
        page = client.get("/metrics")
        assert page.status_code == 200, page.get_data(as_text=True)
        text = page.get_data(as_text=True)
    names = {n for family in text_string_to_metric_families(text)
             for n in _samples(family.name, family.type)}  # fmt: skip
    assert "appliance_job_items_pending" in names  # the queue collector answered
    missing = Path("/nonexistent")
    names |= _collected([TlsExpiryCollector(missing, missing)])
    sealer = [v for v in vars(audit.metrics).values() if isinstance(v, MetricWrapperBase)]
    assert sealer
    return names | _collected(sealer)


def textfile_names() -> set[str]:
    """In the text format node_exporter reads, a counter's or gauge's # TYPE line names its
    sample as it is (no _total added)."""
    names: set[str] = set()
    for script in TEXTFILE_SCRIPTS:
        found = re.findall(r"# TYPE (docclass_\w+) (\w+)", script.read_text())
        assert found, script
        names |= {n for name, kind in found
                  for n in (_samples(name, kind) if kind in ("histogram", "summary") else {name})}
    return names


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' (collapsed) panels included, rows themselves not."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


def unknown_metrics(dashboard: dict[str, Any], known: set[str]) -> list[tuple[str, str]]:
    return sorted({(title, name) for title, expr in queries(dashboard)
                   for name in metric_names(expr) if name not in known})  # fmt: skip


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def test_the_dashboard_reads_the_datasource_variable_in_every_panel(
    dashboard: dict[str, Any],
) -> None:
    assert dashboard["uid"] == "docclass-appliance" and 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["datasource"] == DATASOURCE
    assert variables["namespace"]["allValue"] == ".*"  # also series without the label
    ids = [p["id"] for p in dashboard["panels"]] + [
        p["id"] for row in dashboard["panels"] for p in row.get("panels", [])]  # fmt: skip
    assert len(ids) == len(set(ids))
    shown = list(panels(dashboard))
    assert len(shown) >= 14
    for panel in shown:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
            assert "${datasource}" not in target["expr"]


def test_the_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_the_dashboard_shows_what_the_runbook_lists(dashboard: dict[str, Any]) -> None:
    used = {name for _, expr in queries(dashboard) for name in metric_names(expr)}
    for name in (
        "appliance_http_requests_total", "appliance_http_request_duration_seconds_bucket",
        "appliance_job_items_pending", "appliance_job_queue_chunks",
        "appliance_job_items_finished_total", "appliance_review_queue_size",
        "appliance_model_tokens_total", "appliance_model_cost_total",
        "appliance_classifications_total", "appliance_classification_cache_hits_total",
        "appliance_classification_cache_misses_total", "appliance_quota_denials_total",
        "vllm:num_requests_waiting", "vllm:num_requests_running", "audit_pending_events",
        "audit_checkpoint_timestamp_seconds",
    ):  # fmt: skip
        assert name in used, name
    latency = [expr for _, expr in queries(dashboard) if "duration_seconds_bucket" in expr]
    assert {re.search(r"histogram_quantile\((0\.\d+)", e).group(1) for e in latency  # type: ignore[union-attr]
            } == {"0.5", "0.95", "0.99"}  # fmt: skip


def _rule_exprs() -> list[tuple[str, str]]:
    spec = find(render(K8S / "base"), "PrometheusRule", "docclass")["spec"]
    return [(r.get("alert") or r["record"], r["expr"]) for g in spec["groups"] for r in g["rules"]]


def test_every_metric_in_the_dashboard_and_the_rules_is_exposed(
    dashboard: dict[str, Any], exposed: set[str]
) -> None:
    known = exposed | textfile_names() | EXTERNAL
    assert unknown_metrics(dashboard, known) == []
    rules = [(alert, name) for alert, expr in _rule_exprs() for name in metric_names(expr)
             if name not in known]  # fmt: skip
    assert rules == []


def test_a_misspelt_metric_is_caught(dashboard: dict[str, Any], exposed: set[str]) -> None:
    known = exposed | textfile_names() | EXTERNAL
    text = DASHBOARD.read_text()
    for right, wrong in (("appliance_job_items_finished_total", "appliance_job_items_finished"),
                         ("audit_pending_events", "audit_pending_event"),
                         ("appliance_http_request_duration_seconds_bucket",
                          "appliance_http_request_duration_bucket")):  # fmt: skip
        assert right in text
        broken = json.loads(text.replace(right, wrong, 1))
        assert [name for _, name in unknown_metrics(broken, known)] == [wrong], wrong


def test_kubernetes_gets_the_dashboard_as_the_sidecars_configmap() -> None:
    docs = render(K8S / "base")
    configmap = find(docs, "ConfigMap", "docclass-grafana-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {DASHBOARD.name: DASHBOARD.read_text()}
