"""A job's completion callback: an allow-listed HTTPS URL, told the job ended, over mutual TLS.

The body holds the job's id, state and counts, never an item's text or document id. It is
signed with HMAC-SHA-256 over ``<timestamp>.<body>`` (``X-Appliance-Timestamp``,
``X-Appliance-Signature: sha256=<hex>``), so a receiver can check who sent it and refuse a replay
of an old one. Delivery is a queue task (``worker.register_tasks``), retried with backoff; each
attempt is audited with the receiver's answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from appliance.errors import InvalidRequest
from appliance.settings import Settings
from audit.pseudonym import load_key

SIGNATURE_HEADER = "X-Appliance-Signature"
TIMESTAMP_HEADER = "X-Appliance-Timestamp"


class CallbackNotAllowed(InvalidRequest):
    code = "callback_not_allowed"


def allowed_callback(url: str, allowed_prefixes: list[str]) -> str:
    """``url`` if it is ``https://`` and starts with an allowed prefix at a path boundary (so
    ``https://a/hooks`` allows ``https://a/hooks/x``, not ``https://a/hooksmith``); else 400."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.fragment:
        raise CallbackNotAllowed("callback_url: want an https:// URL without credentials")
    for prefix in allowed_prefixes:
        base = prefix.rstrip("/")
        if url == base or url.startswith(base + "/") or url.startswith(base + "?"):
            return url
    raise CallbackNotAllowed("callback_url is not in the appliance's allow-list of callbacks")


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Appliance-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def callback_body(job: dict[str, Any]) -> bytes:
    """The callback's body: the job as ``GET /api/v1/jobs/<id>`` shows it (ids and counts)."""
    return json.dumps(job, sort_keys=True, separators=(",", ":")).encode("ascii")


class CallbackSender:
    """Posts signed callbacks with the appliance's client certificate."""

    def __init__(self, settings: Settings) -> None:
        if settings.job_callback_hmac_key_path is None:
            raise CallbackNotAllowed("callbacks need APPLIANCE_JOB_CALLBACK_HMAC_KEY_PATH")
        self._key = load_key(settings.job_callback_hmac_key_path, "callback signing key")
        tls = ssl.create_default_context(
            cafile=str(settings.job_callback_tls_ca) if settings.job_callback_tls_ca else None
        )
        if settings.job_callback_tls_cert is not None:
            key_path = settings.job_callback_tls_key
            tls.load_cert_chain(str(settings.job_callback_tls_cert), str(key_path or ""))
        self._client = httpx.Client(verify=tls, timeout=10.0, follow_redirects=False)

    def send(self, url: str, body: bytes) -> int:
        """The receiver's HTTP status; ``httpx.HTTPError`` when there was no answer."""
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self._key, timestamp, body),
        }
        return self._client.post(url, content=body, headers=headers).status_code

    def close(self) -> None:
        self._client.close()
