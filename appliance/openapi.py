"""The OpenAPI 3 document, generated from the pydantic models that validate the requests."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from pydantic import BaseModel

from appliance.classification.schemas import (
    BatchIn,
    BatchOut,
    ClassificationOut,
    DocumentIn,
    ErrorOut,
    HistoryOut,
)

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_STATUSES = {
    "400": "Malformed JSON or invalid fields",
    "401": "No verified client certificate",
    "403": "The caller's roles do not allow this endpoint",
    "413": "Body or text too large",
    "415": "Body is not application/json",
    "502": "The model server answered garbage",
    "503": "The model server, database or audit log is unavailable (see Retry-After)",
    "504": "The model server timed out",
}


def _schema(spec: APISpec, model: type[BaseModel]) -> dict[str, str]:
    """Register ``model`` (and the models it nests) as components; return a reference to it."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    for name, nested in schema.pop("$defs", {}).items():
        if name not in spec.components.schemas:
            spec.components.schema(name, nested)
    if model.__name__ not in spec.components.schemas:
        spec.components.schema(model.__name__, schema)
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _json(ref: dict[str, str]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": ref}}}


def _operation(
    spec: APISpec, summary: str, roles: str, ok: type[BaseModel], body: type[BaseModel] | None
) -> dict[str, Any]:
    error = _schema(spec, ErrorOut)
    operation: dict[str, Any] = {
        "summary": summary,
        "description": f"Roles: {roles}.",
        "responses": {"200": {"description": "OK", **_json(_schema(spec, ok))}}
        | {
            status: {"description": text, **_json(error)} for status, text in ERROR_STATUSES.items()
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(_schema(spec, body))}
    return operation


def build_spec() -> dict[str, Any]:
    spec = APISpec(title="Document classification appliance", version="1", openapi_version="3.1.0")
    document = _schema(spec, DocumentIn)
    _schema(spec, BatchIn)
    # BatchIn validates its items one by one (so one bad item fails alone); document their shape.
    spec.components.schemas["BatchIn"]["properties"]["documents"]["items"] = document
    spec.path(
        path="/api/v1/classify-document",
        operations={
            "post": _operation(
                spec, "Classify one document", "classifier", ClassificationOut, DocumentIn
            )
        },
    )
    spec.path(
        path="/api/v1/classify-batch",
        operations={
            "post": _operation(spec, "Classify several documents", "classifier", BatchOut, BatchIn)
        },
    )
    spec.path(
        path="/api/v1/classifications/{document_id}",
        parameters=[
            {
                "name": "document_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 256},
            }
        ],
        operations={
            "get": _operation(
                spec, "Latest result and history", "reader, classifier", HistoryOut, None
            )
        },
    )
    return spec.to_dict()
