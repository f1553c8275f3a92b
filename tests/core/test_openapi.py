"""The OpenAPI document is valid and describes the request bodies the API validates."""

from __future__ import annotations

from flask.testing import FlaskClient
from openapi_spec_validator import validate

from appliance.classification.schemas import DocumentIn

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
    assert schemas["BatchIn"]["properties"]["documents"]["items"] == {
        "$ref": "#/components/schemas/DocumentIn"
    }
    for path in (
        "/api/v1/classify-document",
        "/api/v1/classify-batch",
        "/api/v1/classifications/{document_id}",
    ):
        assert path in spec["paths"]
