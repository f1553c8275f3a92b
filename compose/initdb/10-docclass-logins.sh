#!/usr/bin/env bash
# Run once by the postgres image when it initialises an empty data directory (mounted at
# /docker-entrypoint-initdb.d/), as the image's superuser. Creates what production has: the
# schema owner (CREATEROLE, not a superuser) owning the docclass database, and one login per
# service in the group role the migrations grant to. Passwords come from the secret files.
#   DOCCLASS_SECRETS: the folder with them (default /run/secrets)
set -euo pipefail
secrets=${DOCCLASS_SECRETS:-/run/secrets}
password() { tr -d '\r\n' <"$secrets/$1"; }

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v owner_password="$(password postgres_owner_password)" \
  -v app_password="$(password postgres_app_password)" \
  -v sealer_password="$(password postgres_sealer_password)" \
  -v auditor_password="$(password postgres_auditor_password)" <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', name)
  FROM unnest(ARRAY['appliance_app', 'appliance_sealer', 'appliance_auditor']) AS name
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name)
\gexec
CREATE ROLE docclass_owner LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOREPLICATION
  PASSWORD :'owner_password';
CREATE ROLE docclass_app LOGIN NOSUPERUSER PASSWORD :'app_password' IN ROLE appliance_app;
CREATE ROLE docclass_sealer LOGIN NOSUPERUSER PASSWORD :'sealer_password' IN ROLE appliance_sealer;
CREATE ROLE docclass_auditor LOGIN NOSUPERUSER PASSWORD :'auditor_password' IN ROLE appliance_auditor;
CREATE DATABASE docclass OWNER docclass_owner ENCODING 'UTF8' TEMPLATE template0;
REVOKE CONNECT, TEMPORARY ON DATABASE docclass FROM PUBLIC;
GRANT CONNECT ON DATABASE docclass TO docclass_owner, docclass_app, docclass_sealer, docclass_auditor;
SQL
