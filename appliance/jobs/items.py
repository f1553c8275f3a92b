"""A job's JSON Lines body as items: each line a document, or that line's own error.

A malformed or invalid line fails alone (the job goes on), as a bad item of ``classify-batch``
does; the lines are validated by the same rule as a single document (``parse_document``).
Blank lines are not items; an item's position is its line number, so an error names the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from appliance.classification.interfaces import Document
from appliance.classification.schemas import parse_document
from appliance.errors import ApplianceError, InvalidRequest, MalformedJSON, PayloadTooLarge
from appliance.text import IDENTIFIER, is_storable
from appliance.validation import decode_json


@dataclass(frozen=True)
class Item:
    position: int
    """The line number, from 1."""
    document_id: str | None
    """The line's ``document_id`` when it has a usable one (also for a failed line)."""
    outcome: Document | ApplianceError


def parse_items(body: bytes, max_text_bytes: int, max_items: int) -> list[Item]:
    """The body's items; 400 without any, 413 past ``max_items``."""
    items: list[Item] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        if len(items) == max_items:
            raise PayloadTooLarge(f"the job has more than {max_items} items")
        items.append(_item(number, line, max_text_bytes))
    if not items:
        raise InvalidRequest("the job has no items: send one JSON document per line")
    return items


def _item(number: int, line: bytes, max_text_bytes: int) -> Item:
    try:
        data = decode_json(line, f"line {number}")
    except MalformedJSON as exc:
        return Item(number, None, exc)
    document_id = data.get("document_id") if isinstance(data, dict) else None
    try:
        return Item(number, _shown_id(document_id), parse_document(data, max_text_bytes))
    except ApplianceError as exc:
        return Item(number, _shown_id(document_id), exc)


def _shown_id(value: Any) -> str | None:
    """A line's document id, kept with its error only when it is one a valid line could have."""
    if not isinstance(value, str) or not 0 < len(value) <= 256 or not is_storable(value):
        return None
    return value if re.fullmatch(IDENTIFIER, value) else None
