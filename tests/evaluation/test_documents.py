"""Reading local files for ``appliance classify``: text, PDF text layer, DOCX, and failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.evaluation.documents import DocumentReadError, EmptyDocument, extract_text
from tests.evaluation.files import write_docx, write_pdf


def test_plain_text_pdf_and_docx(tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("\ufeffProgress note: afebrile, continue antibiotics.", encoding="utf-8")
    assert extract_text(note) == "Progress note: afebrile, continue antibiotics."
    pdf = write_pdf(tmp_path / "labs.pdf", "CBC: WBC 6.1, Hb 13.2, platelets 250.")
    assert "CBC: WBC 6.1, Hb 13.2, platelets 250." in extract_text(pdf)
    document = write_docx(
        tmp_path / "bill.DOCX", ["Statement of account", "Balance due"], [["CPT 99213", "$140"]]
    )
    assert extract_text(document).split("\n") == [
        "Statement of account",
        "Balance due",
        "CPT 99213\t$140",
    ]


@pytest.mark.parametrize(
    ("name", "content", "error", "message"),
    [
        ("empty.txt", b"", EmptyDocument, "no text"),
        ("blank.txt", b"  \n\t ", EmptyDocument, "no text"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), DocumentReadError, "not UTF-8 text"),
        ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00", DocumentReadError, "binary file"),
        (
            "broken.pdf",
            b"%PDF-1.4 this is not really a pdf",
            DocumentReadError,
            "not a readable PDF",
        ),
        ("broken.docx", b"PK\x03\x04 not a zip", DocumentReadError, "not a readable DOCX"),
    ],
)
def test_unreadable_and_empty_files(
    tmp_path: Path, name: str, content: bytes, error: type[Exception], message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error, match=message) as raised:
        extract_text(path)
    assert type(raised.value) is error


def test_scan_without_text_layer_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(EmptyDocument, match="without a text layer"):
        extract_text(write_pdf(tmp_path / "scan.pdf", None))
    with pytest.raises(EmptyDocument):
        extract_text(write_docx(tmp_path / "empty.docx", []))
    with pytest.raises(DocumentReadError, match="cannot open"):
        extract_text(tmp_path / "missing.txt")
    with pytest.raises(DocumentReadError, match="cannot open"):
        extract_text(tmp_path)


def test_too_large_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("x" * 11)
    assert extract_text(path, max_file_bytes=11) == "x" * 11
    with pytest.raises(DocumentReadError, match="file is 11 bytes, want at most 10"):
        extract_text(path, max_file_bytes=10)
