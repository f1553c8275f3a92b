"""``POST /api/v1/classify-file`` on a real database with real OCR and the scripted upstream:
modes, a packet split into its documents, dedupe, the audit event, and every bad file refused
with its status and code and nothing stored."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from werkzeug import formparser
from werkzeug.datastructures import FileStorage
from werkzeug.test import TestResponse, encode_multipart

from appliance.intake.formats import FileKind
from harness import documents
from harness.documents import INVOICE, LAB_REPORT, LETTER
from harness.fake_vllm import FakeVllm
from tests.common.doubles import RecordingSink
from tests.core.test_classify import stored_rows

URL = "/api/v1/classify-file"
PDF, TIFF, DOCX = "application/pdf", "image/tiff", FileKind.DOCX.value
# The scripted model: a word on the page decides its label (codes A..E: the taxonomy's order).
RULES = {"cardiology": "A", "laboratory": "D", "invoice": "B"}


def post(
    client: FlaskClient, data: bytes, media_type: str, query: str = "document_id=f-1"
) -> TestResponse:
    return client.post(f"{URL}?{query}", data=data, headers={"Content-Type": media_type})


@pytest.fixture
def scripted(fake_vllm: FakeVllm) -> FakeVllm:
    for word, code in RULES.items():
        fake_vllm.answer_when(word, code)
    return fake_vllm


def test_a_scanned_packet_is_split_into_its_three_documents(
    client: FlaskClient, scripted: FakeVllm, audit_sink: RecordingSink
) -> None:
    """Letter (2 pages, the second says "Page 2 of 2" and nothing the rules know), lab report,
    invoice (2 pages): five faxed pages, three segments."""
    pages = [
        LETTER,
        ["Page 2 of 2", "Please call the clinic with any questions."],
        LAB_REPORT,
        INVOICE,
        ["Page 2 of 2", "Payment by card or bank transfer.", "Invoice 2026-0413"],
    ]
    data = documents.fax_tiff(pages)
    response = post(client, data, TIFF, "document_id=packet-7&mode=split")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert [(s["first_page"], s["last_page"], s["label"]) for s in body["segments"]] == [
        (1, 2, "CLINICAL_NOTES"), (3, 3, "TEST_RESULTS"), (4, 5, "BILLING")]  # fmt: skip
    assert body["file"] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "media_type": TIFF, "page_count": 5}  # fmt: skip
    assert [page["source"] for page in body["pages"]] == ["ocr"] * 5
    assert body["mode"] == "split" and body["cached"] is False
    event = audit_sink.events[-1]
    assert event.action == "classify_file" and event.result_id == body["result_id"]
    assert event.file is not None
    assert (event.file.sha256, event.file.page_count, event.file.ocr_pages, event.file.mode) == (
        body["file"]["sha256"], 5, 5, "split")  # fmt: skip
    assert "cardiology" not in repr(audit_sink.events).casefold()


def test_pages_mode_labels_every_page(client: FlaskClient, scripted: FakeVllm) -> None:
    data = documents.text_pdf([LETTER, LAB_REPORT, LAB_REPORT])
    body = post(client, data, PDF, "document_id=p-1&mode=pages").get_json()
    assert [(s["first_page"], s["last_page"], s["label"]) for s in body["segments"]] == [
        (1, 1, "CLINICAL_NOTES"), (2, 2, "TEST_RESULTS"), (3, 3, "TEST_RESULTS")]  # fmt: skip
    assert [page["source"] for page in body["pages"]] == ["text_layer"] * 3
    assert body["classification"] == "TEST_RESULTS"  # two of three pages


def test_document_mode_reads_only_the_first_pages(
    make_client: Callable[..., FlaskClient], scripted: FakeVllm
) -> None:
    client = make_client(file_first_pages=1)
    data = documents.text_pdf([INVOICE, LAB_REPORT, LAB_REPORT])
    body = post(client, data, PDF).get_json()
    assert body["classification"] == "BILLING"
    assert [page["number"] for page in body["pages"]] == [1]
    assert body["file"]["page_count"] == 3
    whole = {"first_page": 1, "last_page": 3, "label": "BILLING", "scores": body["scores"]}
    assert body["segments"] == [whole | {"confidence": body["confidence"]}]


def test_the_same_file_is_answered_from_the_store(
    client: FlaskClient, scripted: FakeVllm, clean_database: str
) -> None:
    data = documents.docx_file(INVOICE)
    first = post(client, data, DOCX).get_json()
    calls = scripted.count("/v1/chat/completions")
    again = post(client, data, DOCX).get_json()
    other = post(client, data, DOCX, "document_id=f-2").get_json()
    assert scripted.count("/v1/chat/completions") == calls
    assert again["cached"] and again["result_id"] == first["result_id"]
    assert other["cached"] and other["result_id"] != first["result_id"]
    assert other["segments"] == first["segments"] and other["file"] == first["file"]
    assert stored_rows(clean_database) == 2


def test_the_same_text_as_a_file_is_answered_from_the_store(
    client: FlaskClient, scripted: FakeVllm
) -> None:
    text = "\n".join(INVOICE)
    client.post("/api/v1/classify-document", json={"document_id": "t-1", "text": text})
    calls = scripted.count("/v1/chat/completions")
    body = post(client, text.encode(), "text/plain").get_json()
    assert scripted.count("/v1/chat/completions") == calls
    assert body["classification"] == "BILLING" and body["pages"][0]["source"] == "text"
    assert body["cached"] is True


BAD_FILES: dict[str, tuple[Callable[[], bytes], str, str, int, str]] = {
    "too large": (lambda: b"x" * 3000, "text/plain", "document_id=b", 413, "payload_too_large"),
    "too many pages": (lambda: documents.text_pdf([LETTER] * 4), PDF, "document_id=b", 413,
                       "too_many_pages"),
    "pixel bomb": (documents.pixel_bomb, "image/png", "document_id=b", 413, "too_many_pixels"),
    "zip bomb": (documents.zip_bomb_docx, DOCX, "document_id=b", 413, "expands_too_far"),
    "encrypted": (documents.password_protected_pdf, PDF, "document_id=b", 422,
                  "encrypted_document"),
    "corrupt": (lambda: b"%PDF-1.7\n" + b"\x13" * 400, PDF, "document_id=b", 422,
                "unreadable_document"),
    "blank scan": (lambda: documents.image_file([], "PNG"), "image/png", "document_id=b", 422,
                   "empty_document"),
    "type mismatch": (lambda: documents.text_pdf([LETTER]), "image/png", "document_id=b", 415,
                      "media_type_mismatch"),
    "unsupported type": (lambda: b"GIF89a", "image/gif", "document_id=b", 415,
                         "unsupported_media_type"),
    "no document id": (lambda: b"text", "text/plain", "mode=split", 400, "invalid_request"),
    "unknown mode": (lambda: b"text", "text/plain", "document_id=b&mode=all", 400,
                     "invalid_request"),
    "ocr too slow": (lambda: documents.image_file(LETTER, "PNG"), "image/png", "document_id=b",
                     422, "ocr_timeout"),
}  # fmt: skip


READ_BUT_REFUSED = {
    "too many pages", "pixel bomb", "zip bomb", "encrypted", "corrupt", "blank scan",
    "ocr too slow",
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_refused_with_its_code_and_nothing_is_stored(
    make_client: Callable[..., FlaskClient],
    scripted: FakeVllm,
    audit_sink: RecordingSink,
    clean_database: str,
    case: str,
) -> None:
    make, media_type, query, status, code = BAD_FILES[case]
    client = make_client(file_max_bytes=2_000_000 if case != "too large" else 2000,
                         file_max_pages=3,
                         ocr_page_timeout_s=0.01 if case == "ocr too slow" else 60)  # fmt: skip
    data = make()
    response = post(client, data, media_type, query)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    assert stored_rows(clean_database) == 0
    assert scripted.count("/v1/chat/completions") == 0
    event = audit_sink.events[-1]
    assert event.outcome_status == status
    if case in READ_BUT_REFUSED:  # the event names the file, never what is in it
        assert event.file is not None and event.file.sha256 == hashlib.sha256(data).hexdigest()
        assert event.file.page_count is None


def multipart(client: FlaskClient, fields: dict[str, object]) -> TestResponse:
    """Encoded in memory here too (the test client would spool a large body to a file)."""
    boundary, body = encode_multipart(fields)
    return client.post(URL, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def test_a_multipart_upload_is_read_in_memory_and_classified(
    client: FlaskClient, scripted: FakeVllm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As browsers and ``curl -F`` send files. werkzeug spools a part over 500 KB to a
    temporary file; here any temporary file the form parser asks for fails the test."""

    def no_disk(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload went to a temporary file")

    monkeypatch.setattr(formparser, "SpooledTemporaryFile", no_disk)
    data = documents.scanned_pdf([INVOICE])
    assert len(data) > 500_000
    upload = FileStorage(io.BytesIO(data), "scan.pdf", content_type="application/octet-stream")
    response = multipart(client, {"file": upload, "document_id": "m-1", "mode": "split"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["document_id"] == "m-1" and body["mode"] == "split"
    assert body["file"]["media_type"] == PDF and body["classification"] == "BILLING"


@pytest.mark.parametrize("part", [None, "document"], ids=["no file", "misnamed part"])
def test_a_multipart_form_without_its_file_part_is_400(
    client: FlaskClient, part: str | None
) -> None:
    fields: dict[str, object] = {"document_id": "m-1"}
    if part is not None:
        fields[part] = FileStorage(io.BytesIO(b"x"), "a.txt", content_type="text/plain")
    response = multipart(client, fields)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"
