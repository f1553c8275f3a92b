"""Strings from callers that the appliance hashes, stores or logs: what JSON allows but UTF-8 and
PostgreSQL do not is refused at the edge, with a 400 naming the field.

JSON's ``\\ud800`` escapes decode to lone surrogates, which cannot be encoded as UTF-8 (hashing
or sending the text fails); PostgreSQL text cannot hold NUL. Found after the model call, either
would fail the request late (or fail its audit write, a false "audit unavailable").
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field


def encodable(value: str) -> str:
    """``value`` if it is valid Unicode (no lone surrogates); else ``ValueError``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode: a lone surrogate at position {exc.start}") from exc
    return value


def storable(value: str) -> str:
    """``value`` if it can be stored as PostgreSQL text: valid Unicode and no NUL."""
    if "\x00" in encodable(value):
        raise ValueError("NUL characters are not allowed")
    return value


def is_storable(value: str) -> bool:
    try:
        storable(value)
    except ValueError:
        return False
    return True


NO_NUL = r"^[^\x00]*$"
"""PostgreSQL text cannot hold NUL: a pattern the OpenAPI document states and pydantic checks."""
IDENTIFIER = r"^[^\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+$"
"""Ids that logs, audit entries and screens show as they are: no control characters, no
invisible or direction-changing format characters (a displayed id must be the stored id). The
same regular expression works in pydantic (Rust), Python and the OpenAPI document (ECMA-262)."""

Encodable = Annotated[str, AfterValidator(encodable)]
"""A string the appliance hashes or sends on, but does not store (document text)."""
Storable = Annotated[str, Field(pattern=NO_NUL), AfterValidator(encodable)]
"""A string the appliance stores or puts in audit events (user ids, notes)."""
Identifier = Annotated[str, Field(pattern=IDENTIFIER), AfterValidator(encodable)]
"""A stored id that people read (document ids)."""
