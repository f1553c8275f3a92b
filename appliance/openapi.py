"""The OpenAPI 3.1 document, generated from the pydantic models that validate the requests.

Each operation is one row of ``OPERATIONS``; request and response bodies that have a pydantic
model are documented from it, so the document cannot drift from the validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from pydantic import BaseModel

from appliance.audit_bridge import views as audit_views
from appliance.audit_bridge.interfaces import Action
from appliance.classification.file_schemas import FileClassificationOut, FileParams
from appliance.classification.schemas import (
    BatchIn,
    BatchOut,
    ClassificationOut,
    DocumentIn,
    ErrorOut,
)
from appliance.intake.formats import MEDIA_TYPES, UNKNOWN
from appliance.jobs import views as job_views
from appliance.jobs.schemas import JobOut, JobResultsOut
from appliance.review import views as review_views
from appliance.review.schemas import HistoryOut, QueueOut, ReviewIn, ReviewOut
from appliance.text import IDENTIFIER
from appliance.usage.schemas import QuotaUsageOut

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_STATUSES = {
    "400": "Malformed JSON or invalid fields",
    "401": "No verified client certificate",
    "403": "The caller's roles do not allow this endpoint",
    "404": "Unknown resource",
    "409": "Not ready yet (a receipt before its audit event is signed): retry after Retry-After",
    "413": "Body or text too large",
    "415": "Body is not application/json (a job: not JSON Lines; a file: not of an accepted"
    " media type, or not what its media type says)",
    "422": "The file cannot be read: corrupt, password-protected, no text on its pages, or a"
    " page over the OCR time limit; or an Idempotency-Key reused with another body",
    "429": "A quota of the caller's is used up for this minute or day: retry after Retry-After"
    " (GET /api/v1/usage shows the windows)",
    "502": "The model server answered garbage",
    "503": "The model server, database or audit log is unavailable (see Retry-After)",
    "504": "The model server timed out",
}
OBJECT: dict[str, Any] = {"type": "object"}


def _query(name: str, string_format: str | None = None, description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if string_format is not None:
        schema["format"] = string_format
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


DOCUMENT_ID = _path(
    "document_id", {"type": "string", "minLength": 1, "maxLength": 256, "pattern": IDENTIFIER}
) | {
    "description": "May hold slashes, sent as they are or as %2F: so this operation also reads "
    "the document <result_id>/review, whose URL is that of a review's POST."
}
RESULT_ID = _path("result_id", {"type": "string", "format": "uuid"})
SEQ = _path("seq", {"type": "integer", "minimum": 0})
JOB_ID = _path("job_id", {"type": "string", "format": "uuid"})


def _query_model(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Query parameters from a pydantic model's fields (the model validates them)."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        if "$ref" in prop:  # an enum: inline it, a parameter cannot point at components
            prop = {**schema["$defs"][prop["$ref"].rsplit("/", 1)[1]], **prop}
            del prop["$ref"]
        described = {"description": prop.pop("description")} if "description" in prop else {}
        prop.pop("title", None)
        if prop.get("default", "") is None:  # optional: absent, as a query string says it
            del prop["default"]
            prop |= next(branch for branch in prop.pop("anyOf") if branch != {"type": "null"})
        entry = {"name": name, "in": "query", "required": name in required, "schema": prop}
        parameters.append(entry | described)
    return parameters


def _link(to: Action, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link: ``parameters`` of operation ``to`` from runtime expressions."""
    return {"operationId": to.value, "parameters": parameters}


RESULT_LINKS = {
    "history": _link(Action.READ_CLASSIFICATION, document_id="$response.body#/document_id"),
    "review": _link(Action.REVIEW_CLASSIFICATION, result_id="$response.body#/result_id"),
}


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    action: Action
    """The operation's name in the audit log, and its ``operationId``."""
    summary: str
    roles: str
    ok: type[BaseModel] | None = None
    """The success body's model; None documents a JSON object (or text, see ``ok_text``)."""
    body: type[BaseModel] | None = None
    parameters: list[dict[str, Any]] = field(default_factory=list)
    files: tuple[str, ...] = ()
    """Media types of a raw file body (instead of a JSON ``body``)."""
    lines_of: type[BaseModel] | None = None
    """A JSON Lines body, each line one of these (instead of a JSON ``body``)."""
    ok_status: str = "200"
    ok_text: bool = False
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    """OpenAPI links from the success answer to the operations it gives the ids for."""


OPERATIONS = [
    Operation(
        "/api/v1/classify-document",
        "post",
        Action.CLASSIFY_DOCUMENT,
        "Classify one document",
        "classifier",
        ClassificationOut,
        DocumentIn,
        links=RESULT_LINKS,
    ),
    Operation(
        "/api/v1/classify-batch",
        "post",
        Action.CLASSIFY_BATCH,
        "Classify several documents",
        "classifier",
        BatchOut,
        BatchIn,
    ),
    Operation(
        "/api/v1/classify-file",
        "post",
        Action.CLASSIFY_FILE,
        "Classify a file: PDF, TIFF, PNG, JPEG, DOCX or text; per page and split into documents",
        "classifier",
        FileClassificationOut,
        parameters=_query_model(FileParams),
        files=MEDIA_TYPES,
        links=RESULT_LINKS,
    ),
    Operation(
        "/api/v1/classifications/{document_id}",
        "get",
        Action.READ_CLASSIFICATION,
        "Latest result and history",
        "reader, classifier",
        HistoryOut,
        parameters=[DOCUMENT_ID],
    ),
    Operation(
        "/api/v1/classifications/{result_id}/receipt",
        "get",
        Action.READ_RECEIPT,
        "Offline-verifiable receipt of a classification's audit event (C2SP tlog-proof:"
        " the entry bytes, an inclusion proof, the signed checkpoint; 409 until signed)",
        "reader, classifier, auditor",
        parameters=[RESULT_ID],
        ok_text=True,
    ),
    Operation(
        "/api/v1/review-queue",
        "get",
        Action.READ_REVIEW_QUEUE,
        "Results waiting for a human review",
        "reviewer",
        QueueOut,
        parameters=[
            review_views.QUEUE_LIMIT.openapi(),
            _query("after", "uuid", "next_after of the previous page"),
        ],
    ),
    Operation(
        "/api/v1/classifications/{result_id}/review",
        "post",
        Action.REVIEW_CLASSIFICATION,
        "Record a human review",
        "reviewer",
        ReviewOut,
        ReviewIn,
        [RESULT_ID],
        ok_status="201",
        links={"history": RESULT_LINKS["history"]},
    ),
    Operation(
        "/api/v1/jobs",
        "post",
        Action.SUBMIT_JOB,
        "Submit a bulk job: JSON Lines, one document per line; processed by the workers."
        " A repeated Idempotency-Key with the same body answers the same job.",
        "classifier",
        JobOut,
        parameters=[
            _query(
                "callback_url",
                "uri",
                "https:// URL (from the configured allow-list) told when the job ends, over"
                " mutual TLS, signed (X-Appliance-Signature)",
            ),
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": job_views.IDEMPOTENCY_KEY.pattern},
            }
        ],
        lines_of=DocumentIn,
        ok_status="202",
        links={
            "status": _link(Action.READ_JOB, job_id="$response.body#/job_id"),
            "results": _link(Action.READ_JOB_RESULTS, job_id="$response.body#/job_id"),
            "cancel": _link(Action.CANCEL_JOB, job_id="$response.body#/job_id"),
        },
    ),
    Operation(
        "/api/v1/jobs/{job_id}",
        "get",
        Action.READ_JOB,
        "A job's state, counts, throughput and time left",
        "classifier (its own jobs), auditor",
        JobOut,
        parameters=[JOB_ID],
    ),
    Operation(
        "/api/v1/jobs/{job_id}/results",
        "get",
        Action.READ_JOB_RESULTS,
        "A page of a job's items with their results or errors, in line order",
        "classifier (its own jobs), auditor",
        JobResultsOut,
        parameters=[
            JOB_ID,
            job_views.RESULTS_AFTER.openapi(),
            job_views.RESULTS_LIMIT.openapi(),
        ],
    ),
    Operation(
        "/api/v1/jobs/{job_id}/cancel",
        "post",
        Action.CANCEL_JOB,
        "Cancel a job's unfinished items (and drop their stored texts)",
        "classifier (its own jobs)",
        JobOut,
        parameters=[JOB_ID],
    ),
    Operation(
        "/api/v1/usage",
        "get",
        Action.READ_USAGE,
        "The current minute and day windows of the caller's quotas (admin: everyone's)",
        "classifier (its own), admin (everyone's)",
        QuotaUsageOut,
    ),
    Operation(
        "/api/v1/audit/events",
        "get",
        Action.AUDIT_SEARCH,
        "Search sealed audit events",
        "auditor",
        parameters=[_query(name) for name in audit_views.SEARCH_TEXT]
        + [_query(name, "date-time") for name in audit_views.SEARCH_TIMES]
        + [q.openapi() for q in (audit_views.OUTCOME, audit_views.LIMIT, audit_views.AFTER_SEQ)],
        links={
            "event": _link(Action.AUDIT_READ_EVENT, seq="$response.body#/events/0/seq"),
            "proof": _link(Action.AUDIT_INCLUSION_PROOF, seq="$response.body#/events/0/seq"),
        },
    ),
    Operation(
        "/api/v1/audit/events/{seq}",
        "get",
        Action.AUDIT_READ_EVENT,
        "One sealed audit event",
        "auditor",
        parameters=[SEQ],
    ),
    Operation(
        "/api/v1/audit/events/{seq}/proof",
        "get",
        Action.AUDIT_INCLUSION_PROOF,
        "RFC 9162 inclusion proof",
        "auditor",
        parameters=[SEQ, audit_views.TREE_SIZE.openapi()],
    ),
    Operation(
        "/api/v1/audit/checkpoints/latest",
        "get",
        Action.AUDIT_READ_CHECKPOINT,
        "Latest signed checkpoint (C2SP note)",
        "auditor",
        ok_text=True,
    ),
    Operation(
        "/api/v1/audit/consistency",
        "get",
        Action.AUDIT_CONSISTENCY_PROOF,
        "RFC 9162 consistency proof",
        "auditor",
        parameters=[
            audit_views.FROM_SIZE.openapi(required=True),
            audit_views.TO_SIZE.openapi(required=True),
        ],
    ),
    Operation(
        "/api/v1/audit/verify",
        "post",
        Action.AUDIT_VERIFY,
        "Verify the audit log; integrity report",
        "auditor",
    ),
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
        "operationId": op.action.value,
        "summary": op.summary,
        "description": f"Roles: {op.roles}.",
        "responses": {
            op.ok_status: {"description": "OK", **ok} | ({"links": op.links} if op.links else {}),
            **{code: {"description": text, **error} for code, text in ERROR_STATUSES.items()},
        },
    }
    if op.parameters:
        operation["parameters"] = op.parameters
    if op.body is not None:
        operation["requestBody"] = {"required": True, **_content(_schema(spec, op.body))}
    if op.lines_of is not None:
        lines = {
            "type": "string",
            "description": f"JSON Lines: each line one {op.lines_of.__name__}. A line that is"
            " not one becomes that item's error, and the others are classified.",
        }
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": lines} for media in job_views.JSON_LINES},
        }
        _schema(spec, op.lines_of)
    if op.files:
        binary = {"type": "string", "format": "binary"}
        form = {
            "type": "object",
            "required": ["file"],
            "properties": {"file": binary} | {p["name"]: p["schema"] for p in op.parameters},
            "description": "The parameters may be form fields instead of query parameters.",
        }
        operation["requestBody"] = {
            "required": True,
            "description": "The file itself, its media type what its content is"
            " (application/octet-stream: the content decides); or a multipart form with the"
            " file as its part 'file'.",
            "content": {media: {"schema": binary} for media in [*op.files, UNKNOWN]}
            | {"multipart/form-data": {"schema": form}},
        }
    return operation


def build_spec(labels: Sequence[str], max_batch_documents: int) -> dict[str, Any]:
    """The document for this installation: its taxonomy's ``labels`` and its batch limit."""
    spec = APISpec(title="Document classification appliance", version="1", openapi_version="3.1.0")
    document = _schema(spec, DocumentIn)
    _schema(spec, BatchIn)
    # BatchIn validates its items one by one (see BatchIn): any item is accepted, and answered
    # with its result or its own error. ``anyOf`` says both: the shape to send, and that
    # anything else fails alone rather than the batch.
    documents = spec.components.schemas["BatchIn"]["properties"]["documents"]
    documents["maxItems"] = max_batch_documents
    documents["items"] = {
        "anyOf": [document, {}],
        "description": "A DocumentIn. Each item is validated on its own: one that is not a valid"
        " DocumentIn gets its own error in results, and the others are classified.",
    }
    _schema(spec, ReviewIn)
    spec.components.schemas["ReviewIn"]["properties"]["label"]["enum"] = list(labels)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(spec, op)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()
