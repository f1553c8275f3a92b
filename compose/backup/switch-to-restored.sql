-- Step 3 of a restore (docs/operations.md, "Single host"), once pg_restore into docclass_restore
-- has succeeded and appliance, sealer and backup are stopped (a database with sessions cannot be
-- renamed): the restored copy becomes docclass; the old one stays as docclass_before_restore
-- until you drop it. Run as the superuser, on the postgres service:
--   docker compose exec -T -u postgres postgres psql -v ON_ERROR_STOP=1 -d postgres < compose/backup/switch-to-restored.sql
ALTER DATABASE docclass RENAME TO docclass_before_restore;
ALTER DATABASE docclass_restore RENAME TO docclass;
