"""Decoding and validating what callers send, without the web framework: the views, the batch
and the bulk jobs' lines (decoded in the service layer) share these rules."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from appliance.errors import InvalidRequest, MalformedJSON

M = TypeVar("M", bound=BaseModel)


def decode_json(raw: bytes, what: str = "the body") -> Any:
    """``raw`` as JSON; ``MalformedJSON`` naming ``what`` (the body, or a job's line)."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedJSON(f"{what} is not valid UTF-8 JSON") from exc
    except RecursionError as exc:
        raise MalformedJSON(f"{what}: its JSON is nested too deeply") from exc


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
