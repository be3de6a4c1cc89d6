//! The SQL (both backends) of [`ChildStore`]: children's records.

use async_trait::async_trait;
use sqlx::Row;

use super::{
    Backend, DbRow, append_audit, conflict, db_err, dialect, homes_json, name_key,
    next_policy_version,
};
use crate::domain::{HomeScope, UnixMillis};
use crate::ids::new_id;
use crate::store::{
    Actor, ChildKey, ChildRecord, ChildStore, Page, Paged, StoreError, StoreResult,
};

fn child_from_row(row: &DbRow) -> ChildRecord {
    ChildRecord {
        id: row.get("id"),
        home_id: row.get("home_id"),
        home_name: row.get("home_name"),
        name: row.get("name"),
        date_of_birth: row.get("date_of_birth"),
        created_at: row.get("created_at"),
        devices: u32::try_from(row.get::<i64, _>("devices")).unwrap_or(0),
        archived_at: row.get("archived_at"),
        archive_reason: row.get("archive_reason"),
    }
}

const CHILD_SELECT: &str = "SELECT c.id, c.home_id, h.name AS home_name, c.name, \
     c.date_of_birth, c.created_at, c.archived_at, c.archive_reason, \
     (SELECT COUNT(*) FROM devices d WHERE d.child_id = c.id AND d.status = 'active') AS devices \
     FROM children c JOIN homes h ON h.id = c.home_id";

#[async_trait]
impl ChildStore for Backend {
    async fn add_child(
        &self,
        actor: &Actor,
        home_id: &str,
        name: &str,
        date_of_birth: &str,
        now: UnixMillis,
    ) -> StoreResult<ChildRecord> {
        let id = new_id("chd");
        let mut tx = self.write().await?;
        let version = next_policy_version(&mut tx).await?;
        sqlx::query(
            "INSERT INTO children (id, home_id, name, name_key, date_of_birth, created_at, \
             created_by, policy_version, policy_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(home_id)
        .bind(name)
        .bind(name_key(name))
        .bind(date_of_birth)
        .bind(now)
        .bind(&actor.0)
        .bind(version as i64)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "child.add",
            &id,
            serde_json::json!({ "home": home_id, "name": name, "date_of_birth": date_of_birth }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.find_child(&id).await
    }

    async fn list_children(&self, home_id: Option<&str>) -> StoreResult<Vec<ChildRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{CHILD_SELECT} WHERE ($1 IS NULL OR c.home_id = $2) ORDER BY h.name, c.name"
        )))
        .bind(home_id)
        .bind(home_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(child_from_row).collect())
    }

    async fn list_children_page(
        &self,
        home_id: Option<&str>,
        include_archived: bool,
        homes: Option<&[String]>,
        page: &Page<ChildKey>,
    ) -> StoreResult<Paged<ChildRecord, ChildKey>> {
        // Placeholders are numbered in the order the values are bound below.
        let mut sql = format!("{CHILD_SELECT} WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if home_id.is_some() {
            sql.push_str(&format!(" AND c.home_id = {}", next()));
        }
        if !include_archived {
            sql.push_str(" AND c.archived_at IS NULL");
        }
        if homes.is_some() {
            sql.push_str(&format!(
                " AND c.home_id IN ({})",
                dialect::json_text_array(&next())
            ));
        }
        if page.after.is_some() {
            let (a, b, c) = (next(), next(), next());
            sql.push_str(&format!(" AND (h.name, c.name, c.id) > ({a}, {b}, {c})"));
        }
        sql.push_str(&format!(" ORDER BY h.name, c.name, c.id LIMIT {}", next()));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(h) = home_id {
            q = q.bind(h.to_string());
        }
        if let Some(homes) = homes {
            q = q.bind(homes_json(homes));
        }
        if let Some((home_name, name, id)) = &page.after {
            q = q
                .bind(home_name.clone())
                .bind(name.clone())
                .bind(id.clone());
        }
        let rows = q
            .bind(i64::from(page.size) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(Paged::from_fetched(
            rows.iter().map(child_from_row).collect(),
            page.size,
            |c: &ChildRecord| (c.home_name.clone(), c.name.clone(), c.id.clone()),
        ))
    }

    async fn archive_child(
        &self,
        actor: &Actor,
        child_id: &str,
        reason: &str,
        now: UnixMillis,
    ) -> StoreResult<ChildRecord> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "SELECT archived_at, (SELECT COUNT(*) FROM devices d WHERE d.child_id = c.id \
             AND d.status = 'active') AS devices FROM children c WHERE c.id = $1",
        )
        .bind(child_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound {
            what: "child",
            key: child_id.to_string(),
        })?;
        crate::domain::records::may_archive(
            child_id,
            row.get::<Option<i64>, _>("archived_at").is_some(),
            row.get("devices"),
        )
        .map_err(conflict)?;
        sqlx::query(
            "UPDATE children SET archived_at = $1, archived_by = $2, archive_reason = $3 WHERE id = $4",
        )
        .bind(now)
        .bind(&actor.0)
        .bind(reason)
        .bind(child_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "child.archive",
            child_id,
            serde_json::json!({ "reason": reason }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.find_child(child_id).await
    }

    async fn find_child_within(&self, key: &str, scope: &HomeScope) -> StoreResult<ChildRecord> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{CHILD_SELECT} WHERE c.id = $1 OR c.name_key = $2 OR c.name_key LIKE $3 ORDER BY c.id"
        )))
        .bind(key.trim())
        .bind(name_key(key))
        // Staff say "Amira", not "Amira Khan": a first name that fits one child is enough.
        .bind(format!("{} %", name_key(key).replace(['%', '_'], "")))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        // Children outside the scope are dropped before matching, so they can neither be
        // found nor make a name ambiguous (which would leak their ids).
        let rows: Vec<DbRow> = rows
            .into_iter()
            .filter(|r| scope.covers(&r.get::<String, _>("home_id")))
            .collect();
        if let Some(exact) = rows.iter().find(|r| r.get::<String, _>("id") == key.trim()) {
            return Ok(child_from_row(exact));
        }
        let full: Vec<&DbRow> = rows
            .iter()
            .filter(|r| r.get::<String, _>("name").to_lowercase() == name_key(key))
            .collect();
        if let [one] = full.as_slice() {
            return Ok(child_from_row(one));
        }
        match rows.as_slice() {
            [] => Err(StoreError::NotFound {
                what: "child",
                key: key.to_string(),
            }),
            [one] => Ok(child_from_row(one)),
            many => Err(StoreError::Ambiguous {
                what: "child",
                key: key.to_string(),
                ids: many.iter().map(|r| r.get("id")).collect(),
            }),
        }
    }
}
