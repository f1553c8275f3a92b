#!/usr/bin/env bash
# The backup service's login (compose/backup/docclass-backup.sh): docclass_backup, a member of
# pg_read_all_data (SELECT on every table and sequence, USAGE on every schema: what pg_dump needs)
# and nothing else: no superuser, no CREATEROLE, no write on any table. Its password comes from
# the secret file postgres_backup_password.
# The postgres image runs this once, after 10-docclass-logins.sh, on an empty data directory. It
# is idempotent, so on an install made before the backup service existed run it once by hand:
#   docker compose exec -u postgres postgres bash /docker-entrypoint-initdb.d/20-docclass-backup-login.sh
#   DOCCLASS_SECRETS: the folder with the password file (default /run/secrets)
set -euo pipefail
secrets=${DOCCLASS_SECRETS:-/run/secrets}
password=$(tr -d '\r\n' <"$secrets/postgres_backup_password")
[ -n "$password" ] || { echo "$secrets/postgres_backup_password is empty" >&2; exit 1; }

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v backup_password="$password" <<'SQL'
SELECT 'CREATE ROLE docclass_backup LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'docclass_backup')
\gexec
ALTER ROLE docclass_backup LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'backup_password';
GRANT pg_read_all_data TO docclass_backup;
GRANT CONNECT ON DATABASE docclass TO docclass_backup;
SQL
