"""Prometheus metrics, aggregated across gunicorn workers.

Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` is set before workers start (see gunicorn_conf.py),
each worker writes its own files there, and the /metrics view merges them. Labels carry route
templates and label names only: never document ids.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter(
    "appliance_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
REQUEST_LATENCY = Histogram(
    "appliance_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_LATENCY = Histogram(
    "appliance_upstream_request_duration_seconds",
    "Time for one call to the vLLM server, retries included",
    ["endpoint", "outcome"],
    buckets=LATENCY_BUCKETS,
)
CLASSIFICATIONS = Counter(
    "appliance_classifications_total", "Documents classified", ["label", "source"]
)
CONFIDENCE = Histogram(
    "appliance_classification_confidence",
    "Confidence of the chosen label",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
REVIEWS = Counter(
    "appliance_reviews_total",
    "Human reviews, by the model's label and the reviewer's (a live confusion matrix)",
    ["model_label", "review_label"],
)
TLS_HANDSHAKE_FAILURES = Counter(
    "appliance_tls_handshake_failures_total",
    "TLS handshakes refused, by reason (revoked, expired, unknown_ca, no_certificate, ...)",
    ["reason"],
)
CACHE_HITS = Counter(
    "appliance_classification_cache_hits_total", "Classifications answered from stored results"
)
CACHE_MISSES = Counter(
    "appliance_classification_cache_misses_total",
    "Classifications with no stored result to reuse (the model was asked)",
)
MODEL_TOKENS = Counter(
    "appliance_model_tokens_total",
    "Tokens the model server counted, by model and kind (prompt, completion)",
    ["model", "kind"],
)
MODEL_COST = Counter(
    "appliance_model_cost_total",
    "Cost of model calls in the configured currency (APPLIANCE_MODEL_COSTS), by model",
    ["model"],
)
CASCADE_STAGE_ANSWERS = Counter(
    "appliance_cascade_stage_answers_total",
    "Documents a cascade stage was asked about, by stage and whether its answer was kept"
    " (kept, escalated to the next stage)",
    ["stage", "outcome"],
)
QUOTA_DENIALS = Counter(
    "appliance_quota_denials_total",
    "Requests refused over a quota, by what ran out (documents, tokens) and the window",
    ["measure", "window"],
)


def exposition(*collectors: Collector) -> tuple[bytes, str]:
    """The metrics page: merged across workers when running under gunicorn, plus ``collectors``
    read at scrape time (such as certificate and CRL expiry)."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(REGISTRY)  # a registry is itself a collector
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
