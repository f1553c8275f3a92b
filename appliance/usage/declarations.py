"""Quota changes on the audit record: the quotas in force are logged before a worker serves.

The role table is a file the operators edit; the appliance cannot know who changed it, but it
can make sure no change goes unrecorded. At start-up each API worker compares the quotas it
loaded with the newest recorded declaration and, when they differ, stores the new one with a
``change_quotas`` audit event in one statement (the event's ``detail`` carries the SHA-256 of
the canonical declaration, so the stored copy cannot be edited unseen). An advisory lock makes
the workers of every node starting together record one change, not one each.
"""

from __future__ import annotations

import json
import os
import socket
from hashlib import sha256
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy.engine import Engine

from appliance.audit_bridge.interfaces import Action, RowInsert
from appliance.audit_bridge.recorder import AuditRecorder, Subject
from appliance.context import RequestContext
from appliance.db import autocommit

LATEST = "SELECT digest FROM quota_declarations ORDER BY id DESC LIMIT 1"
INSERT = b"INSERT INTO quota_declarations (digest, declared) VALUES (%(digest)s, %(declared)s)"
LOCK = "SELECT pg_advisory_xact_lock(hashtext('quota_declarations'))"


def declaration_digest(declared: list[dict[str, Any]]) -> str:
    """SHA-256 (hex) of the declaration as canonical JSON (sorted keys, no spaces): what an
    auditor recomputes from ``quota_declarations.declared``."""
    canonical = json.dumps(declared, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return sha256(canonical.encode("ascii")).hexdigest()


def record_declarations(
    engine: Engine, audit: AuditRecorder, declared: list[dict[str, Any]]
) -> bool:
    """Store and audit ``declared`` (``RoleMap.quota_declarations()``) unless it is the newest
    declaration already; True when it recorded a change."""
    digest = declaration_digest(declared)
    context = RequestContext(f"startup-{socket.gethostname()}-{os.getpid()}", None, None)
    with autocommit(engine) as connection, connection.transaction():
        connection.execute(LOCK)
        latest = connection.execute(LATEST).fetchone()
        if (latest[0] if latest else declaration_digest([])) == digest:
            return False
        row = RowInsert(INSERT, {"digest": digest, "declared": Jsonb(declared)})
        subject = Subject(detail=f"quotas sha256:{digest} ({len(declared)} rules)")
        audit.record(connection, context, Action.CHANGE_QUOTAS, subject, row)
    return True
