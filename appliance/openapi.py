"""The OpenAPI 3.1 document, generated from the pydantic models that validate the requests.

Each operation is one row of ``OPERATIONS``; request and response bodies that have a pydantic
model are documented from it, so the document cannot drift from the validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from appliance.review.schemas import QueueOut, ReviewIn, ReviewOut

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_STATUSES = {
    "400": "Malformed JSON or invalid fields",
    "401": "No verified client certificate",
    "403": "The caller's roles do not allow this endpoint",
    "404": "Unknown resource",
    "413": "Body or text too large",
    "415": "Body is not application/json",
    "502": "The model server answered garbage",
    "503": "The model server, database or audit log is unavailable (see Retry-After)",
    "504": "The model server timed out",
}
OBJECT: dict[str, Any] = {"type": "object"}


def _query(name: str, kind: str = "string", description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": kind},
        "description": description,
    }


def _path(name: str, kind: str = "string") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if kind == "string":
        schema |= {"minLength": 1, "maxLength": 256}
    return {"name": name, "in": "path", "required": True, "schema": schema}


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    summary: str
    roles: str
    ok: type[BaseModel] | None = None
    """The success body's model; None documents a JSON object (or text, see ``ok_text``)."""
    body: type[BaseModel] | None = None
    parameters: list[dict[str, Any]] = field(default_factory=list)
    ok_status: str = "200"
    ok_text: bool = False


OPERATIONS = [
    Operation(
        "/api/v1/classify-document",
        "post",
        "Classify one document",
        "classifier",
        ClassificationOut,
        DocumentIn,
    ),
    Operation(
        "/api/v1/classify-batch",
        "post",
        "Classify several documents",
        "classifier",
        BatchOut,
        BatchIn,
    ),
    Operation(
        "/api/v1/classifications/{document_id}",
        "get",
        "Latest result and history",
        "reader, classifier",
        HistoryOut,
        parameters=[_path("document_id")],
    ),
    Operation(
        "/api/v1/review-queue",
        "get",
        "Results waiting for a human review",
        "reviewer",
        QueueOut,
        parameters=[_query("limit", "integer"), _query("after")],
    ),
    Operation(
        "/api/v1/classifications/{result_id}/review",
        "post",
        "Record a human review",
        "reviewer",
        ReviewOut,
        ReviewIn,
        [_path("result_id")],
        ok_status="201",
    ),
    Operation(
        "/api/v1/audit/events",
        "get",
        "Search sealed audit events",
        "auditor",
        parameters=[_query(name) for name in ("actor", "document_id", "action", "since", "until")]
        + [_query(name, "integer") for name in ("outcome", "limit", "after_seq")],
    ),
    Operation(
        "/api/v1/audit/events/{seq}",
        "get",
        "One sealed audit event",
        "auditor",
        parameters=[_path("seq", "integer")],
    ),
    Operation(
        "/api/v1/audit/events/{seq}/proof",
        "get",
        "RFC 9162 inclusion proof",
        "auditor",
        parameters=[_path("seq", "integer"), _query("tree_size", "integer")],
    ),
    Operation(
        "/api/v1/audit/checkpoints/latest",
        "get",
        "Latest signed checkpoint (C2SP note)",
        "auditor",
        ok_text=True,
    ),
    Operation(
        "/api/v1/audit/consistency",
        "get",
        "RFC 9162 consistency proof",
        "auditor",
        parameters=[_query("from", "integer"), _query("to", "integer")],
    ),
    Operation("/api/v1/audit/verify", "post", "Verify the audit log; integrity report", "auditor"),
]


def _schema(spec: APISpec, model: type[BaseModel]) -> dict[str, str]:
    """Register ``model`` (and the models it nests) as components; return a reference to it."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    for name, nested in schema.pop("$defs", {}).items():
        if name not in spec.components.schemas:
            spec.components.schema(name, nested)
    if model.__name__ not in spec.components.schemas:
        spec.components.schema(model.__name__, schema)
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _content(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"content": {media: {"schema": schema}}}


def _operation(spec: APISpec, op: Operation) -> dict[str, Any]:
    if op.ok_text:
        ok = _content({"type": "string"}, "text/plain")
    else:
        ok = _content(_schema(spec, op.ok) if op.ok else OBJECT)
    error = _content(_schema(spec, ErrorOut))
    operation: dict[str, Any] = {
        "summary": op.summary,
        "description": f"Roles: {op.roles}.",
        "responses": {
            op.ok_status: {"description": "OK", **ok},
            **{code: {"description": text, **error} for code, text in ERROR_STATUSES.items()},
        },
    }
    if op.parameters:
        operation["parameters"] = op.parameters
    if op.body is not None:
        operation["requestBody"] = {"required": True, **_content(_schema(spec, op.body))}
    return operation


def build_spec() -> dict[str, Any]:
    spec = APISpec(title="Document classification appliance", version="1", openapi_version="3.1.0")
    document = _schema(spec, DocumentIn)
    _schema(spec, BatchIn)
    # BatchIn validates its items one by one (so one bad item fails alone); document their shape.
    spec.components.schemas["BatchIn"]["properties"]["documents"]["items"] = document
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(spec, op)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()
