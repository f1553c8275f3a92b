-- Step 1 of a restore from a docclass-backup dump (docs/operations.md, "Single host"): a fresh,
-- empty database docclass_restore, owned and guarded like compose/initdb's docclass (a dump has
-- the schema's grants but not the database's). Run as the superuser, on the postgres service:
--   docker compose exec -T -u postgres postgres psql -v ON_ERROR_STOP=1 -d postgres < compose/backup/restore-database.sql
CREATE DATABASE docclass_restore OWNER docclass_owner ENCODING 'UTF8' TEMPLATE template0;
REVOKE CONNECT, TEMPORARY ON DATABASE docclass_restore FROM PUBLIC;
GRANT CONNECT ON DATABASE docclass_restore
  TO docclass_owner, docclass_app, docclass_sealer, docclass_auditor, docclass_backup;
