//! The SQL (both backends) of [`HomeStore`] and [`ProtectedContactStore`]: homes and the contacts a home
//! protects.

use async_trait::async_trait;
use sqlx::Row;

use super::{Backend, Db, DbRow, append_audit, db_err, name_key, next_policy_version};
use crate::domain::UnixMillis;
use crate::domain::policy::ProtectedContact;
use crate::ids::new_id;
use crate::store::{Actor, HomeRecord, HomeStore, ProtectedContactStore, StoreError, StoreResult};

fn home_from_row(row: &DbRow) -> HomeRecord {
    HomeRecord {
        id: row.get("id"),
        name: row.get("name"),
        time_zone: row.get("time_zone"),
        created_at: row.get("created_at"),
        children: u32::try_from(row.get::<i64, _>("children")).unwrap_or(0),
    }
}

const HOME_SELECT: &str = "SELECT h.id, h.name, h.time_zone, h.created_at, \
     (SELECT COUNT(*) FROM children c WHERE c.home_id = h.id) AS children FROM homes h";

#[async_trait]
impl HomeStore for Backend {
    async fn add_home(
        &self,
        actor: &Actor,
        name: &str,
        time_zone: &str,
        now: UnixMillis,
    ) -> StoreResult<HomeRecord> {
        let id = new_id("home");
        let mut tx = self.write().await?;
        let exists = sqlx::query("SELECT id FROM homes WHERE name_key = $1")
            .bind(name_key(name))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if let Some(row) = exists {
            return Err(StoreError::Conflict(format!(
                "a home called {name:?} already exists ({}): choose another name",
                row.get::<String, _>("id")
            )));
        }
        sqlx::query(
            "INSERT INTO homes (id, name, name_key, time_zone, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(name)
        .bind(name_key(name))
        .bind(time_zone)
        .bind(now)
        .bind(&actor.0)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "home.add",
            &id,
            serde_json::json!({ "name": name, "time_zone": time_zone }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(HomeRecord {
            id,
            name: name.to_string(),
            time_zone: time_zone.to_string(),
            created_at: now,
            children: 0,
        })
    }

    async fn list_homes(&self) -> StoreResult<Vec<HomeRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{HOME_SELECT} ORDER BY h.name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(home_from_row).collect())
    }

    async fn find_home(&self, key: &str) -> StoreResult<HomeRecord> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{HOME_SELECT} WHERE h.id = $1 OR h.name_key = $2"
        )))
        .bind(key.trim())
        .bind(name_key(key))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.first()
            .map(home_from_row)
            .ok_or_else(|| StoreError::NotFound {
                what: "home",
                key: key.to_string(),
            })
    }
}

fn contact_from_row(row: &DbRow) -> ProtectedContact {
    ProtectedContact {
        id: row.get("id"),
        home_id: row.get("home_id"),
        child_id: row.get("child_id"),
        name: row.get("name"),
        address: row.get("address"),
        added_by: row.get("added_by"),
        added_at: row.get("added_at"),
    }
}

pub(super) async fn contacts_of_home<'e, E>(
    exec: E,
    home_id: &str,
) -> StoreResult<Vec<ProtectedContact>>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    let rows = sqlx::query(
        "SELECT id, home_id, child_id, name, address, added_by, added_at FROM protected_contacts \
         WHERE home_id = $1 AND removed_at IS NULL ORDER BY child_id IS NOT NULL, name, address",
    )
    .bind(home_id)
    .fetch_all(exec)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(contact_from_row).collect())
}

#[async_trait]
impl ProtectedContactStore for Backend {
    async fn add_protected_contact(
        &self,
        actor: &Actor,
        home_id: &str,
        child_id: Option<&str>,
        name: &str,
        address: &str,
        now: UnixMillis,
    ) -> StoreResult<(ProtectedContact, u64)> {
        let id = new_id("pc");
        let mut tx = self.write().await?;
        // A number protected for the whole home already covers every child in it.
        let existing = sqlx::query(
            "SELECT name, child_id FROM protected_contacts WHERE home_id = $1 AND address = $2 \
             AND (child_id IS NULL OR child_id = $3) AND removed_at IS NULL",
        )
        .bind(home_id)
        .bind(address)
        .bind(child_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some(row) = existing {
            let whose = match row.get::<Option<String>, _>("child_id") {
                Some(_) => "this child",
                None => "this home",
            };
            return Err(StoreError::Conflict(format!(
                "{address} is already a protected contact of {whose} (as {:?})",
                row.get::<String, _>("name")
            )));
        }
        sqlx::query(
            "INSERT INTO protected_contacts (id, home_id, child_id, name, address, added_at, \
             added_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(home_id)
        .bind(child_id)
        .bind(name)
        .bind(address)
        .bind(now)
        .bind(&actor.0)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let version = next_policy_version(&mut tx).await?;
        sqlx::query("UPDATE homes SET policy_version = $1, policy_changed_at = $2 WHERE id = $3")
            .bind(version as i64)
            .bind(now)
            .bind(home_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "home.protected_contact.add",
            home_id,
            serde_json::json!({ "contact": id, "child": child_id, "name": name, "address": address }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok((
            ProtectedContact {
                id,
                home_id: home_id.to_string(),
                child_id: child_id.map(str::to_string),
                name: name.to_string(),
                address: address.to_string(),
                added_by: actor.0.clone(),
                added_at: now,
            },
            version,
        ))
    }

    async fn list_protected_contacts(&self, home_id: &str) -> StoreResult<Vec<ProtectedContact>> {
        contacts_of_home(&self.pool, home_id).await
    }

    async fn remove_protected_contact(
        &self,
        actor: &Actor,
        home_id: &str,
        contact_id: &str,
        reason: &str,
        now: UnixMillis,
    ) -> StoreResult<(ProtectedContact, u64)> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "SELECT id, home_id, child_id, name, address, added_by, added_at FROM \
             protected_contacts WHERE id = $1 AND home_id = $2 AND removed_at IS NULL",
        )
        .bind(contact_id)
        .bind(home_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound {
            what: "protected contact",
            key: contact_id.to_string(),
        })?;
        let contact = contact_from_row(&row);
        sqlx::query(
            "UPDATE protected_contacts SET removed_at = $1, removed_by = $2, removed_reason = $3 \
             WHERE id = $4",
        )
        .bind(now)
        .bind(&actor.0)
        .bind(reason)
        .bind(contact_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let version = next_policy_version(&mut tx).await?;
        sqlx::query("UPDATE homes SET policy_version = $1, policy_changed_at = $2 WHERE id = $3")
            .bind(version as i64)
            .bind(now)
            .bind(home_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "home.protected_contact.remove",
            home_id,
            serde_json::json!({ "contact": contact.id, "child": contact.child_id, "name": contact.name, "address": contact.address, "reason": reason }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok((contact, version))
    }
}
