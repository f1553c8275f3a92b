"""``python -m audit`` is ``audit-tool``."""

from audit.cli import main

main()
