"""File intake benchmarks: pages/s from PDF text layers and by OCR, the appliance's overhead over
bare Tesseract on the same pages, and peak memory for a 100-page scan.

    python -m benchmarks.bench_intake [--ocr-pages 12] [--rounds 3]

Side by side in one run, rounds alternating: the appliance's page reader (PDFium renders a page
at 200 DPI, Tesseract reads it, two at a time on two cores) against bare Tesseract on the same
pages already rendered to files, two single-threaded processes at a time as DESIGN.md found
best. Peak memory is measured in a child process reading a 100-page image-only PDF. Results
replace the section between the markers in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pypdfium2 as pdfium  # type: ignore[import-untyped]

from appliance.intake.extract import PageReader
from appliance.intake.formats import FileKind
from appliance.intake.limits import Limits
from appliance.intake.ocr import TesseractOcr
from appliance.settings import Settings
from benchmarks.report import machine_line, write_section
from harness import documents
from harness.documents import INVOICE, LAB_REPORT, LETTER

PAGES = [LETTER * 6, LAB_REPORT * 6, INVOICE * 6]  # about 24 lines a page, as letters have
WORKERS = 2


def reader() -> PageReader:
    settings = Settings()
    ocr = TesseractOcr(settings.ocr_language, settings.ocr_page_timeout_s)
    return PageReader(Limits.from_settings(settings), ocr, WORKERS)


def timed_read(pages: PageReader, data: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    count = sum(1 for _ in pages.read(data, FileKind.PDF))
    return time.perf_counter() - started, count


def rendered(data: bytes, folder: Path, dpi: int) -> list[Path]:
    """The PDF's pages as PNM files, rendered as the appliance renders them."""
    document = pdfium.PdfDocument(data)
    paths = []
    for index in range(len(document)):
        path = folder / f"page-{index}.pgm"
        document[index].render(scale=dpi / 72, grayscale=True).to_pil().save(path, "PPM")
        paths.append(path)
    document.close()
    return paths


def bare_tesseract(paths: list[Path], language: str) -> float:
    """Tesseract on each file, single-threaded, ``WORKERS`` processes at a time."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def one(path: Path) -> None:
        subprocess.run(["tesseract", str(path), "stdout", "-l", language], env=env, check=True,
                       capture_output=True)  # fmt: skip

    started = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, paths))
    return time.perf_counter() - started


def peak_memory_mb(pdf: Path) -> float:
    """Peak RSS of a fresh process reading every page of ``pdf`` (its ``VmHWM``: unlike
    ``ru_maxrss`` it does not carry over the parent's size through fork and exec)."""
    code = (
        "import sys\n"
        "from benchmarks.bench_intake import reader\n"
        "from appliance.intake.formats import FileKind\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "pages = sum(1 for _ in reader().read(data, FileKind.PDF))\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
        "print(pages, status)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code, str(pdf)], capture_output=True, text=True,
                          check=True, cwd=root)  # fmt: skip
    pages, kib = done.stdout.split()
    assert int(pages) == 100, done.stdout
    return int(kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ocr-pages", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = Settings()
    pages = reader()

    text_pdf = documents.text_pdf([PAGES[n % 3] for n in range(100)])
    text_rounds = [timed_read(pages, text_pdf) for _ in range(args.rounds)]
    text_rate = statistics.median(count / seconds for seconds, count in text_rounds)

    scans = documents.scanned_pdf([PAGES[n % 3] for n in range(args.ocr_pages)])
    ours, bare = [], []
    with tempfile.TemporaryDirectory() as folder:
        files = rendered(scans, Path(folder), settings.ocr_dpi)
        for _ in range(args.rounds):  # alternating, so both see the same machine
            ours.append(timed_read(pages, scans)[0])
            bare.append(bare_tesseract(files, settings.ocr_language))
        hundred = Path(folder) / "hundred.pdf"
        hundred.write_bytes(documents.scanned_pdf([PAGES[n % 3] for n in range(100)]))
        hundred_mb = hundred.stat().st_size / 1e6
        appliance_mb = peak_memory_mb(hundred)
    pages.close()
    ocr_rate = args.ocr_pages / statistics.median(ours)
    bare_rate = args.ocr_pages / statistics.median(bare)
    overhead = statistics.median(ours) / statistics.median(bare) - 1

    n = args.ocr_pages
    section = f"""## File intake (`benchmarks/bench_intake.py`)

{machine_line()} {_tesseract()}.
Generated A4 pages of about 24 lines; scans at {settings.ocr_dpi} DPI with noise and a slight
rotation. Median of {args.rounds} rounds; OCR rounds alternate between the two paths.

| what | pages | pages/s | target |
|---|---|---|---|
| PDF text layer (100-page PDF) | 100 | {text_rate:.0f} | >= 50 |
| OCR by the appliance (render + Tesseract, {WORKERS} at a time) | {n} | {ocr_rate:.2f} | >= 1.5 |
| bare Tesseract on the same pages, pre-rendered, {WORKERS} at a time | {n} | {bare_rate:.2f} | |

Overhead of the appliance over bare Tesseract: **{overhead * 100:+.1f}%** (target within 10%).
Peak memory reading a 100-page scanned PDF ({hundred_mb:.0f} MB): **{appliance_mb:.0f} MB** in
the appliance process, the file's bytes included (target < 500 MB; pages are rendered one at a
time, at most {2 * WORKERS + 1} page images alive; each Tesseract is a process of its own).
"""
    write_section("bench_intake", section.splitlines())
    print(section)


def _tesseract() -> str:
    done = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()[0]


if __name__ == "__main__":
    main()
