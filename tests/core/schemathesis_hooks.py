"""Schemathesis hooks for the contract test: how to put a generated JSON Lines body on the wire
(``SCHEMATHESIS_HOOKS`` names this module)."""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson", "application/jsonl")
def json_lines(context: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    """The body as its bytes: a generated string as it is (lone surrogates kept, so the API
    sees invalid UTF-8 lines too), anything else as one JSON line."""
    text = value if isinstance(value, str) else json.dumps(value)
    return {"data": text.encode("utf-8", "surrogatepass")}
