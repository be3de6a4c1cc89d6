-- Plan revisions and risk assessments are kept in a versioned form (issue 15), so renaming a
-- field in the controller's code can never make a stored record unreadable.
--
-- format_version 1: `document` is the domain's JSON, as written before this migration.
-- format_version 2: `document` is the base64 of the protobuf encoding of the typed message
-- (haven.admin.v1.PlacementPlan or RiskAssessment, proto/haven/admin/v1/plan.proto); the
-- child, author, time and revision number are the columns beside it.
--
-- Rewriting JSON as protobuf is more than SQL can do: the controller rewrites format 1 rows
-- in one transaction when it opens the database (store/sqlite/documents.rs::upgrade), and
-- leaves as it is any row that would not read back exactly the same.

ALTER TABLE risk_assessments ADD COLUMN format_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE plan_revisions ADD COLUMN format_version INTEGER NOT NULL DEFAULT 1;
