//! The SQL (both backends) storing the web filter's category lists and each home's exceptions (WB1, WB4).

use async_trait::async_trait;
use sqlx::Row;

use super::{Backend, Db, DbRow, append_audit, as_u64, db_err, next_policy_version};
use crate::domain::UnixMillis;
use crate::domain::filter_lists::VERSIONS_KEPT;
use crate::store::{
    Actor, FilterListRecord, FilterStore, ImportedList, NewFilterList, StoreError, StoreResult,
    WebExceptionRecord,
};

const LIST_COLUMNS: &str = "category, version, domains, skipped, source, licence, sha256, \
     CAST(length(compiled) AS BIGINT) AS compiled_bytes, imported_at, imported_by";

fn list_from_row(row: &DbRow) -> FilterListRecord {
    FilterListRecord {
        category: row.get("category"),
        version: as_u64(row.get("version")),
        domains: as_u64(row.get("domains")),
        skipped: as_u64(row.get("skipped")),
        source: row.get("source"),
        licence: row.get("licence"),
        sha256: row.get("sha256"),
        compiled_bytes: as_u64(row.get("compiled_bytes")),
        imported_at: row.get("imported_at"),
        imported_by: row.get("imported_by"),
    }
}

fn exception_from_row(row: &DbRow) -> WebExceptionRecord {
    WebExceptionRecord {
        home_id: row.get("home_id"),
        domain: row.get("domain"),
        kind: row.get("kind"),
        added_at: row.get("added_at"),
        added_by: row.get("added_by"),
    }
}

/// Takes a new policy version for one home (its devices' web rules changed).
async fn bump_home(
    tx: &mut sqlx::Transaction<'static, Db>,
    home_id: &str,
    now: UnixMillis,
) -> StoreResult<u64> {
    let version = next_policy_version(tx).await?;
    let done =
        sqlx::query("UPDATE homes SET policy_version = $1, policy_changed_at = $2 WHERE id = $3")
            .bind(version as i64)
            .bind(now)
            .bind(home_id)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            what: "home",
            key: home_id.to_string(),
        });
    }
    Ok(version)
}

#[async_trait]
impl FilterStore for Backend {
    async fn import_filter_list(
        &self,
        actor: &Actor,
        list: NewFilterList<'_>,
        now: UnixMillis,
    ) -> StoreResult<ImportedList> {
        let mut tx = self.write().await?;
        let last: Option<i64> =
            sqlx::query("SELECT MAX(version) AS v FROM filter_lists WHERE category = $1")
                .bind(list.category)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?
                .get("v");
        let version = last.map_or(1, |v| as_u64(v) + 1);
        sqlx::query(
            "INSERT INTO filter_lists (category, version, domains, skipped, source, licence, \
             sha256, compiled, imported_at, imported_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(list.category)
        .bind(version as i64)
        .bind(list.domains as i64)
        .bind(list.skipped as i64)
        .bind(list.source)
        .bind(list.licence)
        .bind(list.sha256)
        .bind(list.compiled)
        .bind(now)
        .bind(&actor.0)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("DELETE FROM filter_lists WHERE category = $1 AND version <= $2")
            .bind(list.category)
            .bind(version as i64 - VERSIONS_KEPT as i64)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // A category's first list changes what every profile blocks: every home's devices get
        // a new policy naming it.
        let policy_version = if last.is_none() {
            let version = next_policy_version(&mut tx).await?;
            sqlx::query("UPDATE homes SET policy_version = $1, policy_changed_at = $2")
                .bind(version as i64)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            Some(version)
        } else {
            None
        };
        append_audit(
            &mut tx,
            actor,
            "filter.list.import",
            list.category,
            serde_json::json!({
                "version": version,
                "domains": list.domains,
                "skipped": list.skipped,
                "source": list.source,
                "licence": list.licence,
                "sha256": list.sha256,
                "policy_version": policy_version,
            }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(ImportedList {
            list: FilterListRecord {
                category: list.category.to_string(),
                version,
                domains: list.domains,
                skipped: list.skipped,
                source: list.source.to_string(),
                licence: list.licence.to_string(),
                sha256: list.sha256.to_string(),
                compiled_bytes: list.compiled.len() as u64,
                imported_at: now,
                imported_by: actor.0.clone(),
            },
            policy_version,
        })
    }

    async fn filter_lists(&self) -> StoreResult<Vec<FilterListRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LIST_COLUMNS} FROM filter_lists f WHERE version = \
             (SELECT MAX(version) FROM filter_lists g WHERE g.category = f.category) \
             ORDER BY category"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(list_from_row).collect())
    }

    async fn filter_list_bytes(
        &self,
        category: &str,
        version: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        let row =
            sqlx::query("SELECT compiled FROM filter_lists WHERE category = $1 AND version = $2")
                .bind(category)
                .bind(version as i64)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(row.map(|r| r.get("compiled")))
    }

    async fn set_web_exception(
        &self,
        actor: &Actor,
        home_id: &str,
        domain: &str,
        kind: &str,
        now: UnixMillis,
    ) -> StoreResult<(WebExceptionRecord, u64)> {
        let mut tx = self.write().await?;
        let home = sqlx::query("SELECT id FROM homes WHERE id = $1")
            .bind(home_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if home.is_none() {
            return Err(StoreError::NotFound {
                what: "home",
                key: home_id.to_string(),
            });
        }
        let before: Option<String> =
            sqlx::query("SELECT kind FROM home_web_exceptions WHERE home_id = $1 AND domain = $2")
                .bind(home_id)
                .bind(domain)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .map(|r| r.get("kind"));
        if before.as_deref() == Some(kind) {
            return Err(StoreError::Conflict(format!(
                "{domain} is already on this home's {kind} list: nothing to change"
            )));
        }
        sqlx::query(
            "INSERT INTO home_web_exceptions (home_id, domain, kind, added_at, added_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (home_id, domain) DO UPDATE SET \
             kind = excluded.kind, added_at = excluded.added_at, added_by = excluded.added_by",
        )
        .bind(home_id)
        .bind(domain)
        .bind(kind)
        .bind(now)
        .bind(&actor.0)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let version = bump_home(&mut tx, home_id, now).await?;
        append_audit(
            &mut tx,
            actor,
            "home.web_exception.set",
            home_id,
            serde_json::json!({ "domain": domain, "kind": kind, "was": before }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok((
            WebExceptionRecord {
                home_id: home_id.to_string(),
                domain: domain.to_string(),
                kind: kind.to_string(),
                added_at: now,
                added_by: actor.0.clone(),
            },
            version,
        ))
    }

    async fn remove_web_exception(
        &self,
        actor: &Actor,
        home_id: &str,
        domain: &str,
        now: UnixMillis,
    ) -> StoreResult<(WebExceptionRecord, u64)> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "SELECT home_id, domain, kind, added_at, added_by FROM home_web_exceptions \
             WHERE home_id = $1 AND domain = $2",
        )
        .bind(home_id)
        .bind(domain)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound {
            what: "web exception",
            key: domain.to_string(),
        })?;
        let removed = exception_from_row(&row);
        sqlx::query("DELETE FROM home_web_exceptions WHERE home_id = $1 AND domain = $2")
            .bind(home_id)
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let version = bump_home(&mut tx, home_id, now).await?;
        append_audit(
            &mut tx,
            actor,
            "home.web_exception.remove",
            home_id,
            serde_json::json!({ "domain": domain, "kind": removed.kind, "added_by": removed.added_by }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok((removed, version))
    }

    async fn web_exceptions(&self, home_id: &str) -> StoreResult<Vec<WebExceptionRecord>> {
        let rows = sqlx::query(
            "SELECT home_id, domain, kind, added_at, added_by FROM home_web_exceptions \
             WHERE home_id = $1 ORDER BY domain",
        )
        .bind(home_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(exception_from_row).collect())
    }
}
