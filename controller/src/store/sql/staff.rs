//! The SQL (both backends) of [`StaffStore`]: staff accounts, their tokens and the homes they work in.

use async_trait::async_trait;
use sqlx::Row;

use super::{Backend, Db, DbRow, append_audit, as_u64, conflict, db_err, name_key};
use crate::domain::{Role, UnixMillis};
use crate::ids::new_id;
use crate::store::{
    Actor, NewStaff, Page, Paged, StaffKey, StaffRecord, StaffStore, StoreError, StoreResult,
};

/// How often a token's "last used" time is brought up to date.
const LAST_USED_EVERY_MS: UnixMillis = 60_000;

fn staff_from_row(row: &DbRow) -> StaffRecord {
    StaffRecord {
        id: row.get("id"),
        name: row.get("name"),
        role: row.get::<String, _>("role").parse().unwrap_or(Role::Staff),
        token_hint: row.get("token_hint"),
        created_at: row.get("created_at"),
        created_by: row.get("created_by"),
        revoked_at: row.get("revoked_at"),
        last_used_at: row.get("last_used_at"),
        homes: row
            .get::<Option<String>, _>("homes")
            .map(|h| {
                let mut homes: Vec<String> = h.split(',').map(str::to_string).collect();
                homes.sort();
                homes
            })
            .unwrap_or_default(),
        token_expires_at: row.try_get("token_expires_at").ok().flatten(),
    }
}

async fn insert_staff_home(
    tx: &mut sqlx::Transaction<'_, Db>,
    staff_id: &str,
    home_id: &str,
    actor: &Actor,
    now: UnixMillis,
) -> StoreResult<()> {
    let found = sqlx::query("SELECT 1 FROM homes WHERE id = $1")
        .bind(home_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
    if found.is_none() {
        return Err(StoreError::NotFound {
            what: "home",
            key: home_id.to_string(),
        });
    }
    sqlx::query(
        "INSERT INTO staff_homes (staff_id, home_id, added_at, added_by) VALUES ($1, $2, $3, $4)",
    )
    .bind(staff_id)
    .bind(home_id)
    .bind(now)
    .bind(&actor.0)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl StaffStore for Backend {
    async fn add_staff(
        &self,
        actor: &Actor,
        member: NewStaff<'_>,
        now: UnixMillis,
    ) -> StoreResult<StaffRecord> {
        let NewStaff {
            name,
            role,
            homes,
            token_hash,
            token_hint,
            token_expires_at,
        } = member;
        let id = new_id("stf");
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO staff (id, name, role, token_hash, token_hint, created_at, created_by, \
             token_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(name)
        .bind(role.as_str())
        .bind(token_hash)
        .bind(token_hint)
        .bind(now)
        .bind(&actor.0)
        .bind(token_expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut homes = homes.to_vec();
        homes.sort();
        homes.dedup();
        for home in &homes {
            insert_staff_home(&mut tx, &id, home, actor, now).await?;
        }
        append_audit(
            &mut tx,
            actor,
            "staff.add",
            &id,
            serde_json::json!({ "name": name, "role": role.as_str(), "homes": homes }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(StaffRecord {
            id,
            name: name.to_string(),
            role,
            homes,
            token_hint: token_hint.to_string(),
            created_at: now,
            created_by: actor.0.clone(),
            revoked_at: None,
            last_used_at: None,
            token_expires_at: Some(token_expires_at),
        })
    }

    async fn rotate_staff_token(
        &self,
        actor: &Actor,
        staff_id: &str,
        token_hash: &str,
        token_hint: &str,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<StaffRecord> {
        let mut tx = self.write().await?;
        let changed = sqlx::query(
            "UPDATE staff SET token_hash = $1, token_hint = $2, token_expires_at = $3 \
             WHERE id = $4 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(token_hint)
        .bind(expires_at)
        .bind(staff_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: "member of staff",
                key: staff_id.to_string(),
            });
        }
        append_audit(
            &mut tx,
            actor,
            "staff.token.rotate",
            staff_id,
            serde_json::json!({ "token_hint": token_hint, "expires_at": expires_at }),
            now,
        )
        .await?;
        let row = sqlx::query(
            "SELECT id, name, role, token_hint, created_at, created_by, revoked_at, last_used_at, \
             token_expires_at, \
             (SELECT string_agg(home_id, ',') FROM staff_homes h WHERE h.staff_id = staff.id) AS homes \
             FROM staff WHERE id = $1",
        )
        .bind(staff_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let member = staff_from_row(&row);
        tx.commit().await.map_err(db_err)?;
        Ok(member)
    }

    async fn staff_by_token(
        &self,
        token_hash: &str,
        now: UnixMillis,
    ) -> StoreResult<Option<StaffRecord>> {
        let row = sqlx::query(
            "SELECT id, name, role, token_hint, created_at, created_by, revoked_at, last_used_at, \
             token_expires_at, \
             (SELECT string_agg(home_id, ',') FROM staff_homes h WHERE h.staff_id = staff.id) AS homes \
             FROM staff WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(mut member) = row.as_ref().map(staff_from_row) else {
            return Ok(None);
        };
        // "Last used" only helps tell tokens apart, so it is written at most once a minute:
        // reading records must not be a database write that queues behind devices' reports.
        if member
            .last_used_at
            .is_none_or(|t| now.saturating_sub(t) >= LAST_USED_EVERY_MS)
        {
            // Through the write queue like every other write, so it never waits in SQLite's
            // sleeping busy handler while a staff request is being answered.
            let mut tx = self.write().await?;
            sqlx::query("UPDATE staff SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&member.id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            member.last_used_at = Some(now);
        }
        Ok(Some(member))
    }

    async fn list_staff(&self, include_revoked: bool) -> StoreResult<Vec<StaffRecord>> {
        let rows = sqlx::query(
            "SELECT id, name, role, token_hint, created_at, created_by, revoked_at, last_used_at, \
             token_expires_at, \
             (SELECT string_agg(home_id, ',') FROM staff_homes h WHERE h.staff_id = staff.id) AS homes \
             FROM staff WHERE ($1 OR revoked_at IS NULL) ORDER BY created_at, id",
        )
        .bind(include_revoked)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(staff_from_row).collect())
    }

    async fn list_staff_page(
        &self,
        include_revoked: bool,
        page: &Page<StaffKey>,
    ) -> StoreResult<Paged<StaffRecord, StaffKey>> {
        // Before the first page the cursor is before everyone (no id is empty).
        let (at, id) = page.after.clone().unwrap_or((i64::MIN, String::new()));
        let rows = sqlx::query(
            "SELECT id, name, role, token_hint, created_at, created_by, revoked_at, last_used_at, \
             token_expires_at, \
             (SELECT string_agg(home_id, ',') FROM staff_homes h WHERE h.staff_id = staff.id) AS homes \
             FROM staff WHERE ($1 OR revoked_at IS NULL) AND (created_at, id) > ($2, $3) \
             ORDER BY created_at, id LIMIT $4",
        )
        .bind(include_revoked)
        .bind(at)
        .bind(id)
        .bind(i64::from(page.size) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(Paged::from_fetched(
            rows.iter().map(staff_from_row).collect(),
            page.size,
            |s: &StaffRecord| (s.created_at, s.id.clone()),
        ))
    }

    async fn revoke_staff(
        &self,
        actor: &Actor,
        key: &str,
        now: UnixMillis,
    ) -> StoreResult<StaffRecord> {
        let mut tx = self.write().await?;
        let rows = sqlx::query(
            "SELECT id, name, role, token_hint, created_at, created_by, revoked_at, last_used_at, \
             token_expires_at, \
             (SELECT string_agg(home_id, ',') FROM staff_homes h WHERE h.staff_id = staff.id) AS homes \
             FROM staff WHERE revoked_at IS NULL AND (id = $1 OR lower(name) = $2)",
        )
        .bind(key)
        .bind(name_key(key))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let member = match rows.as_slice() {
            [] => {
                return Err(StoreError::NotFound {
                    what: "staff",
                    key: key.to_string(),
                });
            }
            [one] => staff_from_row(one),
            many => {
                return Err(StoreError::Ambiguous {
                    what: "staff member",
                    key: key.to_string(),
                    ids: many.iter().map(|r| r.get("id")).collect(),
                });
            }
        };
        if member.role == Role::Admin {
            let admins: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM staff WHERE role = 'admin' AND revoked_at IS NULL",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?
            .get("n");
            crate::domain::role::may_revoke(member.role, as_u64(admins)).map_err(conflict)?;
        }
        sqlx::query("UPDATE staff SET revoked_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&member.id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "staff.revoke",
            &member.id,
            serde_json::json!({ "name": member.name }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(StaffRecord {
            revoked_at: Some(now),
            ..member
        })
    }

    async fn count_staff(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM staff")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?
            .get("n");
        Ok(as_u64(n))
    }

    async fn add_staff_to_home(
        &self,
        actor: &Actor,
        staff_id: &str,
        home_id: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let already = sqlx::query("SELECT 1 FROM staff_homes WHERE staff_id = $1 AND home_id = $2")
            .bind(staff_id)
            .bind(home_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if already.is_some() {
            return Err(StoreError::Conflict(
                "this member of staff already works in that home".into(),
            ));
        }
        insert_staff_home(&mut tx, staff_id, home_id, actor, now).await?;
        append_audit(
            &mut tx,
            actor,
            "staff.home.add",
            staff_id,
            serde_json::json!({ "home": home_id }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)
    }
}
