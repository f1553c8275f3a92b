#!/usr/bin/env bash
# Nightly logical backups of the single-host (compose) install: pg_dump --format=custom of the
# docclass database as docclass_backup (pg_read_all_data: reads everything, writes nothing),
# into DOCCLASS_BACKUP_DIR, keeping DOCCLASS_BACKUP_KEEP_DAYS days of dumps.
#
#   docclass-backup loop   every day at DOCCLASS_BACKUP_AT (HH:MM, the container's TZ, UTC unless
#                          set); at start, one at once if the folder holds no dump yet
#   docclass-backup once   one backup now; exit status 0 only if the dump is complete
#
# Each dump is written under a temporary name, checked with pg_restore --list, then renamed to
# docclass-<UTC time>.dump; only then are dumps older than the retention deleted (a failed run
# deletes nothing). <dir>/.status says how the last run went ("ok ..." or "failed ..."): the
# service's healthcheck reads it.
# A logical backup: a restore loses what was written since the dump (RPO = the interval). The
# Ansible install's pgBackRest with WAL archiving is what production uses.
#
#   DOCCLASS_BACKUP_PASSWORD_FILE  docclass_backup's password (/run/secrets/postgres_backup_password)
#   PGHOST, PGPORT, PGUSER, PGDATABASE  (postgres, 5432, docclass_backup, docclass)
set -euo pipefail

dir=${DOCCLASS_BACKUP_DIR:-/var/lib/docclass-backup}
keep_days=${DOCCLASS_BACKUP_KEEP_DAYS:-7}
at=${DOCCLASS_BACKUP_AT:-01:30}
password_file=${DOCCLASS_BACKUP_PASSWORD_FILE:-/run/secrets/postgres_backup_password}
export PGHOST=${PGHOST:-postgres} PGPORT=${PGPORT:-5432}
export PGUSER=${PGUSER:-docclass_backup} PGDATABASE=${PGDATABASE:-docclass}
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-30}
umask 077

log() { echo "docclass-backup: $*" >&2; }
die() { log "$*"; exit 2; }

[[ $keep_days =~ ^[1-9][0-9]*$ ]] || die "DOCCLASS_BACKUP_KEEP_DAYS must be a whole number of days >= 1, not '$keep_days'"
[[ $at =~ ^([01][0-9]|2[0-3]):[0-5][0-9]$ ]] || die "DOCCLASS_BACKUP_AT must be HH:MM, not '$at'"
[ -d "$dir" ] && [ -w "$dir" ] || die "$dir is not a writable folder"

status() { printf '%s %s %s\n' "$1" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${2:-}" >"$dir/.status"; }

backup_once() {
  local stamp final partial pgpass
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  final="$dir/docclass-$stamp.dump"
  partial="$dir/.docclass-$stamp.dump.partial"
  pgpass=$(mktemp)
  # shellcheck disable=SC2064  # expand now: the names are local
  trap "rm -f '$pgpass' '$partial'" EXIT
  [ -r "$password_file" ] || { status failed "cannot read $password_file"; die "cannot read $password_file"; }
  # A password file for libpq (':' and '\' escaped), not the environment or the command line.
  printf '*:*:*:%s:%s\n' "$PGUSER" "$(tr -d '\r\n' <"$password_file" | sed -e 's/\\/\\\\/g' -e 's/:/\\:/g')" >"$pgpass"
  log "dumping $PGDATABASE from $PGHOST:$PGPORT as $PGUSER"
  if ! PGPASSFILE=$pgpass pg_dump --format=custom --no-password --file="$partial"; then
    status failed "pg_dump failed"
    die "pg_dump failed: no new dump, none deleted"
  fi
  if ! pg_restore --list "$partial" >/dev/null; then
    status failed "the dump does not read back"
    die "pg_restore --list cannot read the dump: no new dump, none deleted"
  fi
  mv "$partial" "$final"
  # Retention, only after a good dump and never the one just written.
  find "$dir" -maxdepth 1 -type f -name 'docclass-*.dump' ! -name "${final##*/}" \
    -mmin "+$((keep_days * 1440))" -print -delete | sed 's/^/docclass-backup: deleted (retention) /' >&2
  find "$dir" -maxdepth 1 -type f -name '.docclass-*.dump.partial' -mmin +1440 -delete
  status ok "${final##*/}"
  log "wrote ${final##*/} ($(stat -c %s "$final") bytes)"
}

seconds_until_next() {
  local now next
  now=$(date +%s)
  next=$(date -d "today $at" +%s)
  ((next > now)) || next=$(date -d "tomorrow $at" +%s)
  echo $((next - now))
}

loop() {
  # Each run is a process of its own: a failed night is logged and retried the next night.
  if ! compgen -G "$dir/docclass-*.dump" >/dev/null; then
    bash "${BASH_SOURCE[0]}" once || log "the first backup failed; next attempt at $at"
  fi
  while true; do
    local wait_s
    wait_s=$(seconds_until_next)
    log "next backup at $at ($wait_s s), keeping $keep_days days in $dir"
    sleep "$wait_s"
    bash "${BASH_SOURCE[0]}" once || log "backup failed; next attempt at $at tomorrow"
  done
}

case "${1:-loop}" in
  once) backup_once ;;
  loop) loop ;;
  *) echo "usage: $0 [loop|once]" >&2; exit 2 ;;
esac
