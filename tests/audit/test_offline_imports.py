"""What each audit tool loads: offline verification needs no database driver (an auditor can
check an export file or a receipt with the verification modules alone), and the command line
does not pay for the report's plots."""

from __future__ import annotations

import subprocess
import sys


def _imports(modules: str, absent: list[str]) -> None:
    """Import ``modules`` in a fresh interpreter; none of ``absent`` may have been loaded."""
    checks = "".join(
        f"assert {name!r} not in sys.modules, '{name} was imported';" for name in absent
    )
    code = f"import sys, {modules};{checks}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_verification_imports_no_database_driver() -> None:
    _imports(
        "audit.integrity, audit.export_file, audit.verify, audit.rfc6962, audit.receipt",
        ["psycopg"],
    )


def test_cli_does_not_import_matplotlib() -> None:
    """matplotlib loads only to draw the HTML report's plots."""
    _imports("audit.cli, audit.report_html", ["matplotlib", "appliance", "flask"])
