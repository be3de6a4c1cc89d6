-- Plan revisions and risk assessments are kept in a versioned form (issue 15); see
-- migrations/sqlite/0021_documents_versioned.sql. format_version 2 is the base64 of the
-- protobuf encoding of the typed message; 1 is the domain's JSON, which a PostgreSQL
-- database never held, but the column is the same on both backends.

ALTER TABLE risk_assessments ADD COLUMN format_version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE plan_revisions ADD COLUMN format_version BIGINT NOT NULL DEFAULT 1;
