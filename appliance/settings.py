"""All configuration in one place: environment variables prefixed ``APPLIANCE_``.

Secrets never live in the repo: any setting can be given as ``APPLIANCE_<NAME>_FILE`` naming a file
whose content is the value (the database URL carries a password in production).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "APPLIANCE_"


class ModelPrice(BaseModel):
    """What one model's tokens cost, in the operator's currency: a price per 1,000 prompt and
    completion tokens (a hosted model's list price), or the hourly cost of the hardware serving
    it with the tokens per second it was measured to process (docs/sizing.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_1k_prompt_tokens: float | None = Field(default=None, ge=0)
    per_1k_completion_tokens: float | None = Field(default=None, ge=0)
    hourly: float | None = Field(default=None, ge=0)
    tokens_per_second: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> ModelPrice:
        per_token = (self.per_1k_prompt_tokens, self.per_1k_completion_tokens)
        per_hour = (self.hourly, self.tokens_per_second)
        given = (sum(v is not None for v in per_token), sum(v is not None for v in per_hour))
        if given not in ((2, 0), (0, 2)):
            raise ValueError(
                "give per_1k_prompt_tokens and per_1k_completion_tokens, or hourly and "
                "tokens_per_second"
            )
        return self

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        if self.hourly is not None and self.tokens_per_second is not None:
            seconds = (prompt_tokens + completion_tokens) / self.tokens_per_second
            return self.hourly * seconds / 3600
        assert self.per_1k_prompt_tokens is not None and self.per_1k_completion_tokens is not None
        return (
            prompt_tokens * self.per_1k_prompt_tokens
            + completion_tokens * self.per_1k_completion_tokens
        ) / 1000


class Settings(BaseSettings):
    """Typed settings with safe local defaults (local PostgreSQL, local CPU vLLM)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/appliance"
    database_pool_size: int = Field(default=10, ge=1)
    database_pool_timeout_s: float = Field(default=5.0, gt=0)

    model_backend: Literal["vllm"] = "vllm"
    """Which model backend answers (see ``appliance.backends``)."""
    model_weights_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    """Digest of the served weights, recorded as part of the model's identity (vLLM does not
    report one)."""

    model_costs: dict[str, ModelPrice] = Field(default_factory=dict)
    """Price by served model name (JSON), for the cost of each result and the cost metrics;
    a model without a price has no cost recorded."""

    vllm_base_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://")
    vllm_model: str = "smollm2-135m"
    vllm_api_key: str | None = None
    """Bearer key vLLM was started with (``--api-key``): give it as ``APPLIANCE_VLLM_API_KEY_FILE``,
    never in the environment itself."""
    vllm_tls_ca: Path | None = None
    """CA bundle that verifies an ``https://`` vLLM's server certificate (default: the system's)."""
    vllm_tls_cert: Path | None = None
    vllm_tls_key: Path | None = None
    """Client certificate and key the appliance presents to a vLLM that verifies clients."""
    vllm_allow_plaintext: bool = False
    """Document text crosses the network to vLLM: plain ``http://`` to any host but this one's
    loopback is refused unless this is set (a single-host install's internal network)."""
    vllm_connect_timeout_s: float = Field(default=2.0, gt=0)
    vllm_read_timeout_s: float = Field(default=60.0, gt=0)
    vllm_max_retries: int = Field(default=2, ge=0, le=10)
    vllm_request_priority: int = Field(default=0, ge=0, le=1000)
    """vLLM's scheduling priority of this process's requests, lower first, when vLLM runs with
    ``--scheduling-policy priority``: bulk job workers send a higher number than the API (which
    sends 0), so an interactive call waiting in vLLM overtakes queued job items."""
    vllm_max_concurrency: int = Field(default=32, ge=1)
    """Requests in flight to vLLM from one worker process (the batch endpoint's fan-out)."""

    taxonomy_path: Path | None = None
    """YAML or JSON taxonomy; None means the built-in default of five classes."""
    cascade_path: Path | None = None
    """YAML list of model stages asked in order (``appliance.cascade.config``); None: the LLM
    alone."""
    review_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    max_text_bytes: int = Field(default=1_048_576, ge=1)
    max_batch_documents: int = Field(default=64, ge=1)
    max_document_tokens: int = Field(default=1500, ge=16)
    """Token budget for the document part of the prompt; longer documents are truncated."""

    file_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    """Largest file ``classify-file`` and ``appliance classify`` read (413 past it)."""
    file_max_pages: int = Field(default=200, ge=1)
    file_max_page_pixels: int = Field(default=40_000_000, ge=1)
    """Largest image or rendered page (A4 at 600 DPI is 35 Mpx): past it, a decompression bomb."""
    file_max_expanded_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    """Largest total a DOCX (a zip) may unpack to: past it, a zip bomb."""
    file_first_pages: int = Field(default=3, ge=1)
    """Mode ``document`` classifies a file from its first this many pages."""
    text_layer_min_chars: int = Field(default=20, ge=1)
    """A PDF page whose text layer has fewer non-space characters is read with OCR."""
    ocr_language: str = Field(default="eng", pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$")
    """Tesseract language(s), e.g. ``eng`` or ``eng+deu`` (their Debian packages installed)."""
    ocr_dpi: int = Field(default=200, ge=72, le=600)
    ocr_page_timeout_s: float = Field(default=60.0, gt=0)
    ocr_workers: int | None = Field(default=None, ge=1)
    """Pages read by OCR at once in one worker process; default: one per CPU core (each
    Tesseract runs single-threaded, which is faster per page here than its own threads)."""

    bind: str = "127.0.0.1:8443"
    workers: int = Field(default=2, ge=1)
    threads: int = Field(default=16, ge=1)
    graceful_timeout_s: int = Field(default=30, ge=1)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_crl: Path | None = None
    roles_path: Path | None = None

    audit_verifier_key_path: Path | None = None
    """Checkpoint verifier key (``.vkey`` from ``audit-tool keygen``) for ``POST /audit/verify``.
    The signing key belongs to the sealer alone (``audit-tool seal``), never to the API."""
    audit_pseudonym_key_path: Path | None = None
    """HMAC-SHA-256 key (at least 16 bytes) that turns document ids and content hashes into
    pseudonyms before they reach the six-year log; every install path generates one."""
    audit_raw_identifiers: bool = False
    """Opt out of pseudonyms: without a key the appliance refuses to start unless this is set,
    and then logs raw document ids and content hashes (``check-config`` says so)."""
    audit_origin: str = "docclass-appliance/audit"
    audit_verify_max_entries: int = Field(default=500_000, ge=1)
    """Entries one ``POST /api/v1/audit/verify`` checks at most: each request continues a full
    pass over the log from where the previous one stopped (``audit.verify_pass``)."""

    job_max_items: int = Field(default=100_000, ge=1)
    """Items one bulk job (``POST /api/v1/jobs``) may hold; past it, 413."""
    job_max_request_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    """Largest JSON Lines body of one job submission; past it, 413."""
    job_key_path: Path | None = None
    """Key-encryption key (32 random bytes as 64 hex characters) that wraps each job's data key:
    item texts wait for their worker encrypted, and the database alone cannot decrypt them.
    Needed by the API (to accept jobs) and the workers; every install generates one."""
    job_chunk_items: int = Field(default=16, ge=1, le=1000)
    """Items per queue job: a worker takes a chunk at a time."""
    job_callback_allowed_urls: list[str] = Field(default_factory=list)
    """URL prefixes a job's completion callback may go to (JSON list; ``https://`` only); a
    callback URL outside them is refused with 400. Empty: no callbacks."""
    job_callback_hmac_key_path: Path | None = None
    """Key (at least 16 bytes) of the HMAC-SHA-256 signature over each callback's body."""
    job_callback_tls_cert: Path | None = None
    job_callback_tls_key: Path | None = None
    """The appliance's client certificate and key: callbacks go over mutual TLS."""
    job_callback_tls_ca: Path | None = None
    """CA bundle that verifies the receivers' server certificates (default: the system's)."""
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    """Chunks one ``appliance worker`` process works on at once: its calls in flight to vLLM."""
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_address: str = "127.0.0.1"
    """Where a worker serves its own metrics (item latency) to Prometheus; no port: none. No
    document, job or caller is in them (the queue's figures are on the API's /metrics)."""
    worker_heartbeat_s: float = Field(default=10.0, gt=0)
    worker_stalled_after_s: float = Field(default=30.0, gt=0)
    """A worker silent this long is presumed dead; its chunks are given to others."""
    worker_in_flight_when_interactive: int = Field(default=0, ge=0)
    """A worker's model calls in flight while the API has interactive ones (or had within
    ``worker_interactive_grace_s``): 0 pauses jobs for them (``appliance.jobs.yielding``)."""
    worker_interactive_grace_s: float = Field(default=10.0, gt=0)
    """How long after the API's last interactive call workers still hold back: long enough to
    span the gaps of a steady trickle of calls (each would otherwise meet a full batch)."""
    worker_chunk_timeout_s: float = Field(default=900.0, gt=0)
    """A chunk still running after this long is given to another worker too: its end was not
    recorded (running it twice stores nothing twice, it only costs the model calls)."""

    log_level: str = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, values: Any) -> Any:
        """``APPLIANCE_X_FILE=/run/secrets/x`` supplies X, unless X itself is set."""
        if not isinstance(values, dict):
            return values
        for name in cls.model_fields:
            file_var = f"{ENV_PREFIX}{name.upper()}_FILE"
            if name not in values and file_var in os.environ:
                values[name] = Path(os.environ[file_var]).read_text(encoding="utf-8").strip()
        return values

    @model_validator(mode="after")
    def _vllm_transport_is_protected(self) -> Settings:
        """Fail closed at start: no document text in clear across the network by accident."""
        url = urlsplit(self.vllm_base_url)
        in_clear = url.scheme == "http" and not _is_loopback(url.hostname)
        if in_clear and not self.vllm_allow_plaintext:
            raise ValueError(
                f"vllm_base_url {self.vllm_base_url} sends document text unencrypted: use "
                "https:// (with APPLIANCE_VLLM_TLS_CA) or set APPLIANCE_VLLM_ALLOW_PLAINTEXT=true"
            )
        if (self.vllm_tls_cert is None) != (self.vllm_tls_key is None):
            raise ValueError("vllm_tls_cert and vllm_tls_key are set together or not at all")
        return self

    @property
    def max_request_bytes(self) -> int:
        """Body limit of the single-document endpoint: the text limit plus room for the JSON."""
        return self.max_text_bytes + 64 * 1024

    @property
    def max_batch_request_bytes(self) -> int:
        return min(self.max_text_bytes * self.max_batch_documents, 64 * 1024 * 1024) + 64 * 1024


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
