"""The OpenAPI document is valid and describes the request bodies the API validates."""

from __future__ import annotations

import uuid

from flask.testing import FlaskClient
from openapi_spec_validator import validate

from appliance.audit_bridge.declare import declared_action
from appliance.classification.schemas import DocumentIn
from appliance.classification.taxonomy import load_taxonomy
from appliance.web import services_of

PUBLIC = {"/api/v1/openapi.json", "/api/v1/health"}


def test_openapi_document_is_valid_and_matches_the_models(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    validate(spec)
    schemas = spec["components"]["schemas"]
    assert schemas["DocumentIn"]["required"] == ["document_id", "text"]
    assert schemas["DocumentIn"]["additionalProperties"] is False
    assert set(schemas["DocumentIn"]["properties"]) == set(DocumentIn.model_fields)
    documents = schemas["BatchIn"]["properties"]["documents"]
    assert documents["items"]["anyOf"][0] == {"$ref": "#/components/schemas/DocumentIn"}
    assert documents["maxItems"] == services_of(client.application).settings.max_batch_documents
    assert schemas["ReviewIn"]["properties"]["label"]["enum"] == list(load_taxonomy(None).names)
    for path in (
        "/api/v1/classify-document",
        "/api/v1/classify-batch",
        "/api/v1/classifications/{document_id}",
    ):
        assert path in spec["paths"]


SAMPLES = {
    "{document_id}": "MRN-1",
    "{result_id}": str(uuid.uuid4()),
    "{seq}": "0",
    "{job_id}": str(uuid.uuid4()),
}


def test_each_operation_id_is_the_audit_action_of_the_view_serving_it(
    client: FlaskClient,
) -> None:
    """One name for an operation, in the contract and in the audit log."""
    app = client.application
    urls = app.url_map.bind("localhost")
    spec = client.get("/api/v1/openapi.json").get_json()
    for path, operations in spec["paths"].items():
        for template, sample in SAMPLES.items():
            path = path.replace(template, sample)
        for method, operation in operations.items():
            endpoint, _ = urls.match(path, method.upper())
            assert operation["operationId"] == declared_action(app.view_functions[endpoint])
