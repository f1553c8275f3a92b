"""The composition root: every long-lived object the appliance needs, built once, without Flask.

``build_services(settings)`` wires the database engine, the model backend, the audit recorder
and the domain services together. The HTTP API (``appliance.app.create_app``), the CLI, the
evaluation runner, background workers, tests and benchmarks all start from a ``Services``; tests
replace the model backend or the audit sink through the keyword arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.engine import Engine

from appliance.audit_bridge.interfaces import AuditSink
from appliance.audit_bridge.recorder import AuditRecorder, Clock, utc_now
from appliance.audit_bridge.services import AuditReader, PostgresAuditSink, load_pseudonym_key
from appliance.backends import build_backend
from appliance.backends.interfaces import ModelBackend
from appliance.cascade.config import build_cascade, load_cascade_config
from appliance.classification.files import FileClassificationService
from appliance.classification.labeller import DocumentLabeller, Labeller
from appliance.classification.services import ClassificationService
from appliance.classification.taxonomy import Taxonomy, load_taxonomy
from appliance.db import make_engine
from appliance.health.startup import StartupState
from appliance.identity.roles import RoleMap, load_role_map
from appliance.intake.extract import PageReader
from appliance.intake.limits import Limits
from appliance.intake.ocr import TesseractOcr
from appliance.jobs.crypto import load_job_key
from appliance.jobs.queue import Deferrer
from appliance.jobs.services import JobService
from appliance.jobs.yielding import (
    AnnouncingBackend,
    InteractiveBeacon,
    InteractiveGate,
    YieldingBackend,
)
from appliance.review.services import ReviewService
from appliance.settings import Settings
from appliance.usage.declarations import record_declarations
from appliance.usage.metering import Meter
from appliance.usage.quotas import QuotaService


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    taxonomy: Taxonomy
    backend: ModelBackend
    audit: AuditRecorder
    classification: ClassificationService
    files: FileClassificationService
    pages: PageReader
    review: ReviewService
    jobs: JobService
    audit_reader: AuditReader
    startup: StartupState
    roles: RoleMap
    """The role table: roles and quotas by certificate (the identity middleware's)."""

    def close(self) -> None:
        """Release the model backend's and the database's connections, and the OCR threads
        (quota settlements written first)."""
        self.classification.quotas.flush()
        self.pages.close()
        self.backend.close()
        self.engine.dispose()


def _with_traffic(
    backend: ModelBackend,
    traffic: Literal["interactive", "bulk"] | None,
    engine: Engine,
    settings: Settings,
) -> ModelBackend:
    if traffic == "interactive":
        return AnnouncingBackend(backend, InteractiveBeacon(engine))
    if traffic == "bulk":
        gate = InteractiveGate(
            engine, settings.worker_in_flight_when_interactive, settings.worker_interactive_grace_s
        )
        return YieldingBackend(backend, gate)
    return backend


def configured_labeller(
    settings: Settings, backend: ModelBackend, taxonomy: Taxonomy
) -> DocumentLabeller:
    """The LLM's labeller, or the configured cascade in front of it."""
    llm = Labeller(backend, taxonomy, settings.max_document_tokens)
    if settings.cascade_path is None:
        return llm
    return build_cascade(load_cascade_config(settings.cascade_path), llm, taxonomy)


def build_services(
    settings: Settings,
    *,
    backend: ModelBackend | None = None,
    audit_sink: AuditSink | None = None,
    clock: Clock = utc_now,
    traffic: Literal["interactive", "bulk"] | None = None,
    labeller: DocumentLabeller | None = None,
) -> Services:
    """Everything wired from ``settings``. ``backend`` replaces the configured model backend,
    ``labeller`` the one-model labeller over it (a cascade) and ``audit_sink`` the PostgreSQL
    audit sink (tests); ``clock`` stamps results and events and places quota windows.
    ``traffic``: the API's model calls announce themselves, bulk job workers' yield to them
    (``appliance.jobs.yielding``); None for tools and tests, which do neither."""
    engine = make_engine(settings)
    roles = load_role_map(settings.roles_path)
    taxonomy = load_taxonomy(settings.taxonomy_path)
    backend = _with_traffic(backend or build_backend(settings), traffic, engine, settings)
    key = load_pseudonym_key(settings)
    recorder = AuditRecorder(audit_sink or PostgresAuditSink(engine, key), clock)
    labeller = labeller or configured_labeller(settings, backend, taxonomy)
    quotas = QuotaService(engine, roles.quotas_by_rule(), clock)
    classification = ClassificationService(
        engine=engine,
        labeller=labeller,
        taxonomy_version=taxonomy.version,
        review_threshold=settings.review_threshold,
        label_thresholds=taxonomy.review_thresholds,
        audit=recorder,
        max_concurrency=settings.vllm_max_concurrency,
        quotas=quotas,
        meter=Meter(settings.model_costs),
        clock=clock,
    )
    job_key = load_job_key(settings.job_key_path) if settings.job_key_path else None
    audit_reader = AuditReader(engine, settings, key)
    pages = PageReader(
        Limits.from_settings(settings),
        TesseractOcr(settings.ocr_language, settings.ocr_page_timeout_s),
        settings.ocr_workers or os.cpu_count() or 1,
    )
    files = FileClassificationService(
        classification, labeller, pages, recorder, settings.file_first_pages,
        settings.vllm_max_concurrency,
    )  # fmt: skip
    return Services(
        settings=settings,
        engine=engine,
        taxonomy=taxonomy,
        backend=backend,
        audit=recorder,
        classification=classification,
        files=files,
        pages=pages,
        review=ReviewService(engine, taxonomy, recorder, clock),
        jobs=JobService(
            engine,
            Deferrer(),
            recorder,
            job_key,
            settings.job_chunk_items,
            audit_reader.resource,
            quotas,
            clock,
        ),
        audit_reader=audit_reader,
        startup=StartupState(
            engine,
            labeller,
            lambda: record_declarations(engine, recorder, roles.quota_declarations()),
        ),
        roles=roles,
    )
