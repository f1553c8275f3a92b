"""Offline verification needs no database driver: an auditor can check an export file with
the verification modules alone."""

from __future__ import annotations

import subprocess
import sys


def test_verification_imports_no_database_driver() -> None:
    code = (
        "import sys, audit.integrity, audit.export_file, audit.verify, audit.rfc6962,"
        " audit.receipt;"
        "assert 'psycopg' not in sys.modules, 'psycopg was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
