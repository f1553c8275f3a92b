"""The cheap stage's encoder folder, made once by ``scripts/encoder-model.sh`` (cached outside
the clone; quick when there)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.tls import REPO

SCRIPT = REPO / "scripts" / "encoder-model.sh"


def encoder_folder() -> Path:
    done = subprocess.run([str(SCRIPT), "setup"], check=True, capture_output=True, text=True)
    return Path(done.stdout.strip().splitlines()[-1])
