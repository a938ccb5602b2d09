-- Least-privilege roles for the Touchpoints store on PostgreSQL: what
-- `touchpoints db setup-roles` does, for a DBA who prefers psql. Safe to run again.
--
-- Run as a superuser, connected to the store's database (its schema `public` holds the store):
--
--   psql "postgresql://postgres@db:5432/touchpoints" -v owner=touchpoints_owner \
--        -v app=touchpoints_app -v owner_password="$OWNER_PASSWORD" \
--        -v app_password="$APP_PASSWORD" -f docs/examples/roles.sql
--
-- then set TOUCHPOINTS_MIGRATION_DATABASE_URL to the owner's URL and TOUCHPOINTS_DATABASE_URL
-- to the app's. The owner migrates; the app role owns nothing, so it cannot ALTER, DROP or
-- disable the audit trigger, and on `audit` it may only SELECT and INSERT. After every
-- migration the owner sets each table's exact rights again (flows/store/roles.py), for every
-- role its default privileges name (set below). See docs/operations.md, "Database roles".

\set ON_ERROR_STOP on
BEGIN;

-- 1. the two roles: they log in, and are nothing more
SELECT format('CREATE ROLE %I', r) FROM unnest(ARRAY[:'owner', :'app']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
      PASSWORD :'owner_password';
ALTER ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
      PASSWORD :'app_password';
-- the app role is a member of no other role (it could act as the owner through one)
SELECT format('REVOKE %I FROM %I', r.rolname, :'app')
  FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
 WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = :'app') \gexec

-- 2. the database and the schema: only the owner creates objects
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), :'owner') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'app') \gexec
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM :"app";
GRANT USAGE, CREATE ON SCHEMA public TO :"owner";
GRANT USAGE ON SCHEMA public TO :"app";

-- 3. the owner owns everything: tables (their sequences follow), other sequences, functions
SELECT format('ALTER TABLE public.%I OWNER TO %I', c.relname, :'owner')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('ALTER SEQUENCE public.%I OWNER TO %I', c.relname, :'owner')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind = 'S'
   AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'owner')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public'
   AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = :'owner') \gexec

-- 4. tables a later migration makes: SELECT, INSERT at once (the exact rights follow it)
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
      GRANT SELECT, INSERT ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
      GRANT USAGE, SELECT ON SEQUENCES TO :"app";

-- 5. the app role's exact rights (flows/store/roles.py APP_RIGHTS); never TRUNCATE
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM :"app";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM :"app";
SELECT format('GRANT %s ON public.%I TO %I',
              CASE tablename WHEN 'audit' THEN 'SELECT, INSERT'
                             WHEN 'alembic_version' THEN 'SELECT'
                             WHEN 'holds' THEN 'SELECT, INSERT, UPDATE, DELETE'
                             ELSE 'SELECT, INSERT, UPDATE' END,
              tablename, :'app')
  FROM pg_tables WHERE schemaname = 'public' \gexec
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app";

COMMIT;
