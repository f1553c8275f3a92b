"""Reading request bodies the same way everywhere: content type, size limit, JSON, schema."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import Request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from appliance.errors import InvalidRequest, MalformedJSON, PayloadTooLarge, UnsupportedMediaType
from appliance.text import storable

M = TypeVar("M", bound=BaseModel)


def json_body(request: Request, max_bytes: int) -> Any:
    """The decoded JSON body; 415 unless it is ``application/json``, 413 past ``max_bytes``."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    request.max_content_length = max_bytes
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes") from exc
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedJSON("the body is not valid UTF-8 JSON") from exc
    except RecursionError as exc:
        raise MalformedJSON("the body's JSON is nested too deeply") from exc


def storable_parameter(name: str, value: str) -> str:
    """A path or query value the appliance stores or queries with; 400 if it cannot be."""
    try:
        return storable(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name}: {exc}") from exc


def validate(model: type[M], data: Any) -> M:
    """Validate against a pydantic model; the 400 names the offending fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise InvalidRequest(problems) from exc
