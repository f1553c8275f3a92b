"""Tesseract (Debian's ``tesseract-ocr``), run as its own ``tesseract`` program, one page per
call: the page image goes in on stdin (uncompressed PNM) and the text comes back on stdout.

Why the program and not a binding: the in-process binding (tesserocr) ships its own build of
Tesseract, not Debian's; the wrapper (pytesseract) writes every page image to a temporary file
and can only pass ``OMP_THREAD_LIMIT`` by changing the whole process's environment, which every
other child process then inherits. Here nothing touches the disk, and each call gets the one
setting it needs: a single thread (with its own OpenMP threads Tesseract was five times slower
per page on these machines, see ../shared/DESIGN.md); run one call per core instead.
"""

from __future__ import annotations

import io
import os
import subprocess

from PIL import Image

from appliance.errors import OcrTimeout, ServiceUnavailable


class TesseractOcr:
    def __init__(self, language: str, timeout_s: float, command: str = "tesseract") -> None:
        self.language = language
        self.timeout_s = timeout_s
        self._command = command
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def read(self, image: Image.Image, page: int) -> str:
        """The text Tesseract reads on ``image`` (page ``page``, for error messages)."""
        pnm = io.BytesIO()
        image.save(pnm, "PPM")
        args = [self._command, "stdin", "stdout", "-l", self.language]
        try:
            done = subprocess.run(args, input=pnm.getvalue(), capture_output=True, env=self._env,
                                  timeout=self.timeout_s, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as exc:  # the child is killed
            raise OcrTimeout(f"OCR of page {page} took over {self.timeout_s:g} s") from exc
        except OSError as exc:
            raise ServiceUnavailable(f"OCR is unavailable ({exc.strerror})") from exc
        if done.returncode != 0:  # its message may name the language data; never page content
            reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise ServiceUnavailable(f"OCR failed (tesseract: {reason[0][:200]})")
        return done.stdout.decode("utf-8", errors="replace")

    def version(self) -> str:
        """Tesseract's version line, part of what a stored result depends on."""
        try:
            done = subprocess.run([self._command, "--version"], capture_output=True, timeout=30,
                                  check=True)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServiceUnavailable("OCR is unavailable (tesseract is not installed)") from exc
        return done.stdout.decode(errors="replace").splitlines()[0].strip()
