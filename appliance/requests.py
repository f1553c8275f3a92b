"""Reading requests the same way everywhere: body content type, size limit, JSON, schema; query
parameters with the bounds the OpenAPI document states."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from appliance.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from appliance.text import storable
from appliance.validation import decode_json


class InMemoryUploads(Request):
    """Flask's request, but a multipart upload is kept in memory (bounded by the body limit)
    instead of werkzeug's temporary file past 500 KB: a patient's file never reaches a disk."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return io.BytesIO()


def uploaded_file(request: Request, max_bytes: int) -> tuple[bytes, str, dict[str, str]]:
    """A multipart body's one file part (named ``file``): its bytes, its media type, and the
    form's other fields. 413 past ``max_bytes``; 400 without exactly that one file."""
    request.max_content_length = max_bytes + 64 * 1024  # room for the fields and boundaries
    try:
        files, fields = request.files, request.form.to_dict()
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"the file is larger than {max_bytes} bytes") from exc
    if list(files) != ["file"] or len(files.getlist("file")) != 1:
        raise InvalidRequest("send the file as the one multipart part named 'file'")
    data = files["file"].read()
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the file is larger than {max_bytes} bytes")
    return data, files["file"].mimetype, fields


def body_bytes(request: Request, max_bytes: int) -> bytes:
    """The raw body; 413 past ``max_bytes``."""
    request.max_content_length = max_bytes
    try:
        return request.get_data(cache=False)
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes") from exc


def json_body(request: Request, max_bytes: int) -> Any:
    """The decoded JSON body; 415 unless it is ``application/json``, 413 past ``max_bytes``."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    return decode_json(body_bytes(request, max_bytes))


def storable_parameter(name: str, value: str) -> str:
    """A path or query value the appliance stores or queries with; 400 if it cannot be."""
    try:
        return storable(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name}: {exc}") from exc


@dataclass(frozen=True)
class IntegerQuery:
    """An integer query parameter: the view reads it and the OpenAPI document states it from
    this one definition, so the two cannot disagree on its bounds."""

    name: str
    minimum: int
    maximum: int | None = None
    default: int | None = None
    description: str = ""

    def read(self, args: Mapping[str, str]) -> int | None:
        """The value in ``args``, the default when absent; 400 when not an integer in bounds
        (an empty value too: ``limit=`` is a mistake, not a request for the default)."""
        raw = args.get(self.name)
        if raw is None:
            return self.default
        try:
            value = int(raw)
        except ValueError as exc:
            raise InvalidRequest(f"{self.name}: got {raw!r}, want an integer") from exc
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            bounds = f"{self.minimum}..{'' if self.maximum is None else self.maximum}"
            raise InvalidRequest(f"{self.name}: got {value}, want {bounds}")
        return value

    def require(self, args: Mapping[str, str]) -> int:
        """The value in ``args`` (or the default); 400 when there is neither."""
        value = self.read(args)
        if value is None:
            raise InvalidRequest(f"{self.name} is required")
        return value

    def openapi(self, *, required: bool = False) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer", "minimum": self.minimum}
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.default is not None:
            schema["default"] = self.default
        parameter = {"name": self.name, "in": "query", "required": required, "schema": schema}
        return parameter | ({"description": self.description} if self.description else {})
