//! The SQL (both backends) of [`EnrollmentStore`], [`DeviceStore`] and [`PolicyStore`]: enrollment codes,
//! devices and policy versions.

use async_trait::async_trait;
use sqlx::Row;

use super::emergency::active_lockdowns_in_home;
use super::homes::contacts_of_home;
use super::{
    Backend, DbRow, append_audit, as_u64, db_err, dialect, homes_json, next_policy_version,
};
use crate::domain::enrollment::CodeState;
use crate::domain::policy::protected_for_child;
use crate::domain::{DeviceStatus, UnixMillis};
use crate::ids::new_id;
use crate::store::{
    Actor, ChildPolicyInput, DeviceKey, DeviceRecord, DeviceReport, DeviceStore, EnrollmentRecord,
    EnrollmentStore, HomePolicyInputs, NewDevice, Page, Paged, PolicyData, PolicyStore,
    ReachedDevice, StoreError, StoreResult,
};

/// An enrollment code with what decides whether it still works: its own cancellation, its
/// maker's account and its child's record.
const ENROLLMENT_SELECT: &str = "SELECT e.id, e.child_id, c.name AS child_name, c.home_id, \
     e.hint, e.created_at, e.created_by, e.expires_at, e.used_at, e.device_id, e.cancelled_at, \
     s.revoked_at AS creator_revoked_at, c.archived_at AS child_archived_at \
     FROM enrollments e JOIN children c ON c.id = e.child_id \
     LEFT JOIN staff s ON s.id = e.created_by";

fn enrollment_from_row(row: &DbRow, now: UnixMillis) -> EnrollmentRecord {
    use crate::domain::enrollment::CodeLife;
    let used_at: Option<UnixMillis> = row.get("used_at");
    let expires_at: UnixMillis = row.get("expires_at");
    let cancelled_at: Option<UnixMillis> = row.get("cancelled_at");
    let life = CodeLife {
        cancelled: cancelled_at.is_some(),
        creator_revoked: row
            .get::<Option<UnixMillis>, _>("creator_revoked_at")
            .is_some(),
        child_archived: row
            .get::<Option<UnixMillis>, _>("child_archived_at")
            .is_some(),
    };
    EnrollmentRecord {
        id: row.get::<Option<String>, _>("id").unwrap_or_default(),
        child_id: row.get("child_id"),
        child_name: row.get("child_name"),
        home_id: row.get("home_id"),
        hint: row.get("hint"),
        created_at: row.get("created_at"),
        created_by: row.get("created_by"),
        expires_at,
        used_at,
        device_id: row.get("device_id"),
        cancelled_at,
        state: CodeState::judge(used_at, expires_at, life, now),
    }
}

const DEVICE_SELECT: &str = "SELECT d.id, d.child_id, c.name AS child_name, c.home_id, \
     d.status, d.cert_fingerprint, d.enrolled_at, d.last_seen_at, d.inventory, \
     d.applied_version, d.applied_at, d.apply_error, d.revoked_at, d.revoked_reason, \
     d.guards, d.policy_version AS dv, d.policy_changed_at AS dat, \
     c.policy_version AS cv, c.policy_changed_at AS cat, \
     h.policy_version AS hv, h.policy_changed_at AS hat \
     FROM devices d JOIN children c ON c.id = d.child_id JOIN homes h ON h.id = c.home_id";

/// A device's policy version is the newest change to anything that shapes its policy: its
/// home, its child, or the device itself.
fn desired_of(row: &DbRow) -> (u64, UnixMillis) {
    [("dv", "dat"), ("cv", "cat"), ("hv", "hat")]
        .iter()
        .map(|(v, at)| (as_u64(row.get::<i64, _>(*v)), row.get::<i64, _>(*at)))
        .max_by_key(|(v, _)| *v)
        .unwrap_or((0, 0))
}

fn device_from_row(row: &DbRow) -> DeviceRecord {
    let (desired_version, desired_at) = desired_of(row);
    DeviceRecord {
        id: row.get("id"),
        child_id: row.get("child_id"),
        child_name: row.get("child_name"),
        home_id: row.get("home_id"),
        status: row.get("status"),
        cert_fingerprint: row.get("cert_fingerprint"),
        enrolled_at: row.get("enrolled_at"),
        last_seen_at: row.get("last_seen_at"),
        inventory: row.get("inventory"),
        desired_version,
        desired_at,
        applied_version: as_u64(row.get::<i64, _>("applied_version")),
        applied_at: row.get("applied_at"),
        apply_error: row.get("apply_error"),
        revoked_at: row.get("revoked_at"),
        revoked_reason: row.get("revoked_reason"),
        guards: row.get("guards"),
    }
}

#[async_trait]
impl EnrollmentStore for Backend {
    async fn create_enrollment_with(
        &self,
        actor: &Actor,
        child_id: &str,
        code_hash: &str,
        id: &str,
        hint: &str,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let id = if id.is_empty() {
            new_id("enr")
        } else {
            id.to_string()
        };
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO enrollments (code_hash, child_id, created_at, created_by, expires_at, \
             id, hint) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(code_hash)
        .bind(child_id)
        .bind(now)
        .bind(&actor.0)
        .bind(expires_at)
        .bind(&id)
        .bind(hint)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "device.enrollment.create",
            child_id,
            serde_json::json!({ "code": id, "expires_at": expires_at }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)
    }

    async fn list_enrollments(
        &self,
        child_id: Option<&str>,
        now: UnixMillis,
    ) -> StoreResult<Vec<EnrollmentRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ENROLLMENT_SELECT} WHERE ($1 IS NULL OR e.child_id = $2) ORDER BY e.created_at DESC"
        )))
        .bind(child_id)
        .bind(child_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(|r| enrollment_from_row(r, now)).collect())
    }

    async fn cancel_enrollment(
        &self,
        actor: &Actor,
        id: &str,
        now: UnixMillis,
    ) -> StoreResult<EnrollmentRecord> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ENROLLMENT_SELECT} WHERE e.id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound {
            what: "enrollment code",
            key: id.to_string(),
        })?;
        let record = enrollment_from_row(&row, now);
        if record.used_at.is_some() || record.cancelled_at.is_some() {
            return Err(StoreError::Conflict(format!(
                "enrollment code {id} is already {}: there is nothing to cancel",
                record.state.word()
            )));
        }
        sqlx::query("UPDATE enrollments SET cancelled_at = $1, cancelled_by = $2 WHERE id = $3")
            .bind(now)
            .bind(&actor.0)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "device.enrollment.cancel",
            &record.child_id,
            serde_json::json!({ "code": id }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(EnrollmentRecord {
            cancelled_at: Some(now),
            state: crate::domain::enrollment::CodeState::Cancelled,
            ..record
        })
    }

    async fn check_enrollment(
        &self,
        code_hash: &str,
        now: UnixMillis,
    ) -> StoreResult<(String, CodeState)> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ENROLLMENT_SELECT} WHERE e.code_hash = $1"
        )))
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::CodeUnusable(None))?;
        let record = enrollment_from_row(&row, now);
        Ok((record.child_id, record.state))
    }

    async fn redeem_enrollment(
        &self,
        code_hash: &str,
        device: NewDevice,
        now: UnixMillis,
    ) -> StoreResult<DeviceRecord> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ENROLLMENT_SELECT} WHERE e.code_hash = $1"
        )))
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::CodeUnusable(None))?;
        let record = enrollment_from_row(&row, now);
        if record.state != CodeState::Usable {
            return Err(StoreError::CodeUnusable(Some(record.state)));
        }
        let child_id = record.child_id;
        let version = next_policy_version(&mut tx).await?;
        sqlx::query(
            "INSERT INTO devices (id, child_id, cert_fingerprint, status, enrolled_at, inventory, \
             policy_version, policy_changed_at) VALUES ($1, $2, $3, 'active', $4, $5, $6, $7)",
        )
        .bind(&device.id)
        .bind(&child_id)
        .bind(&device.cert_fingerprint)
        .bind(now)
        .bind(&device.inventory)
        .bind(version as i64)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("UPDATE enrollments SET used_at = $1, device_id = $2 WHERE code_hash = $3")
            .bind(now)
            .bind(&device.id)
            .bind(code_hash)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        append_audit(
            &mut tx,
            &Actor::device(&device.id),
            "device.enroll",
            &device.id,
            serde_json::json!({ "child": child_id, "certificate": device.cert_fingerprint }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.find_device(&device.id).await
    }
}

#[async_trait]
impl DeviceStore for Backend {
    async fn list_devices(
        &self,
        child_id: Option<&str>,
        include_revoked: bool,
    ) -> StoreResult<Vec<DeviceRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEVICE_SELECT} WHERE ($1 IS NULL OR d.child_id = $2) \
             AND ($3 OR d.status = 'active') ORDER BY c.name, d.enrolled_at"
        )))
        .bind(child_id)
        .bind(child_id)
        .bind(include_revoked)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(device_from_row).collect())
    }

    async fn devices_reached(
        &self,
        home_id: &str,
        child_id: Option<&str>,
        device_id: Option<&str>,
    ) -> StoreResult<Vec<ReachedDevice>> {
        let rows = sqlx::query(
            "SELECT d.id, c.name AS child_name, d.applied_version \
             FROM devices d JOIN children c ON c.id = d.child_id \
             WHERE c.home_id = $1 AND d.status = 'active' \
             AND ($2 IS NULL OR d.child_id = $3) AND ($4 IS NULL OR d.id = $5) \
             ORDER BY c.name, d.enrolled_at",
        )
        .bind(home_id)
        .bind(child_id)
        .bind(child_id)
        .bind(device_id)
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|row| ReachedDevice {
                id: row.get("id"),
                child_name: row.get("child_name"),
                applied_version: as_u64(row.get::<i64, _>("applied_version")),
            })
            .collect())
    }

    async fn list_devices_page(
        &self,
        child_id: Option<&str>,
        include_revoked: bool,
        homes: Option<&[String]>,
        page: &Page<DeviceKey>,
    ) -> StoreResult<Paged<DeviceRecord, DeviceKey>> {
        // Placeholders are numbered in the order the values are bound below.
        let mut sql = format!("{DEVICE_SELECT} WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if child_id.is_some() {
            sql.push_str(&format!(" AND d.child_id = {}", next()));
        }
        if !include_revoked {
            sql.push_str(" AND d.status = 'active'");
        }
        if homes.is_some() {
            sql.push_str(&format!(
                " AND c.home_id IN ({})",
                dialect::json_text_array(&next())
            ));
        }
        if page.after.is_some() {
            let (a, b, c) = (next(), next(), next());
            sql.push_str(&format!(
                " AND (c.name, d.enrolled_at, d.id) > ({a}, {b}, {c})"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY c.name, d.enrolled_at, d.id LIMIT {}",
            next()
        ));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(c) = child_id {
            q = q.bind(c.to_string());
        }
        if let Some(homes) = homes {
            q = q.bind(homes_json(homes));
        }
        if let Some((child_name, enrolled_at, id)) = &page.after {
            q = q
                .bind(child_name.clone())
                .bind(*enrolled_at)
                .bind(id.clone());
        }
        let rows = q
            .bind(i64::from(page.size) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(Paged::from_fetched(
            rows.iter().map(device_from_row).collect(),
            page.size,
            |d: &DeviceRecord| (d.child_name.clone(), d.enrolled_at, d.id.clone()),
        ))
    }

    async fn find_device(&self, key: &str) -> StoreResult<DeviceRecord> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEVICE_SELECT} WHERE d.id = $1"
        )))
        .bind(key.trim())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref()
            .map(device_from_row)
            .ok_or_else(|| StoreError::NotFound {
                what: "device",
                key: key.to_string(),
            })
    }

    async fn device_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<DeviceRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEVICE_SELECT} WHERE d.cert_fingerprint = $1"
        )))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.as_ref().map(device_from_row))
    }

    async fn revoke_device(
        &self,
        actor: &Actor,
        device_id: &str,
        reason: &str,
        now: UnixMillis,
    ) -> StoreResult<DeviceRecord> {
        let mut tx = self.write().await?;
        let status: Option<String> = sqlx::query("SELECT status FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .map(|r| r.get("status"));
        match status.as_deref().and_then(DeviceStatus::parse) {
            None => {
                return Err(StoreError::NotFound {
                    what: "device",
                    key: device_id.to_string(),
                });
            }
            Some(DeviceStatus::Revoked) => {
                return Err(StoreError::Conflict(format!(
                    "device {device_id} was already revoked"
                )));
            }
            Some(DeviceStatus::Active) => {}
        }
        sqlx::query(
            "UPDATE devices SET status = 'revoked', revoked_at = $1, revoked_by = $2, \
             revoked_reason = $3 WHERE id = $4",
        )
        .bind(now)
        .bind(&actor.0)
        .bind(reason)
        .bind(device_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "device.revoke",
            device_id,
            serde_json::json!({ "reason": reason }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.find_device(device_id).await
    }

    async fn record_device_reports(&self, reports: &[DeviceReport]) -> StoreResult<()> {
        // One statement per report (it was two): each statement is a round trip to the
        // database's thread, and a lockdown's 10,000 acknowledgements are written while it is
        // still spreading (issue 14). Every SET expression reads the row as it was, so the
        // applied version only moves forward. (One statement for a whole batch, the reports
        // as a JSON array joined with `UPDATE … FROM`, was tried: SQLite scanned the table
        // for every report and it took three times as long.)
        let newer = "$7 IS NOT NULL AND applied_version <= $7";
        let sql = format!(
            "UPDATE devices SET last_seen_at = CASE WHEN COALESCE(last_seen_at, 0) > $1 \
             THEN last_seen_at ELSE $1 END, \
             inventory = COALESCE($2, inventory), guards = COALESCE($3, guards), \
             guards_at = CASE WHEN $4 IS NULL THEN guards_at ELSE $5 END, \
             applied_version = CASE WHEN {newer} THEN $7 ELSE applied_version END, \
             applied_at = CASE WHEN {newer} THEN $8 ELSE applied_at END, \
             apply_error = CASE WHEN {newer} THEN $9 ELSE apply_error END \
             WHERE id = $6"
        );
        let mut tx = self.write().await?;
        for r in reports {
            // Checked against what was issued before it gets here; never store what does not
            // fit (a wrapped negative would compare as "older" forever).
            let applied = r
                .applied
                .as_ref()
                .and_then(|(v, error, at)| i64::try_from(*v).ok().map(|v| (v, error, *at)));
            let version = applied.as_ref().map(|(v, _, _)| *v);
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(r.seen_at)
                .bind(&r.inventory)
                .bind(&r.guards)
                .bind(&r.guards)
                .bind(r.seen_at)
                .bind(&r.device_id)
                .bind(version)
                .bind(applied.as_ref().map(|(_, _, at)| *at))
                .bind(applied.as_ref().and_then(|(_, error, _)| error.as_deref()))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }
}

#[async_trait]
impl PolicyStore for Backend {
    async fn home_policy_inputs(&self, home_id: &str) -> StoreResult<HomePolicyInputs> {
        let protected_contacts = contacts_of_home(&self.pool, home_id).await?;
        let children = sqlx::query(
            "SELECT c.id, c.name, (SELECT p.document FROM plan_revisions p \
             WHERE p.child_id = c.id ORDER BY p.number DESC LIMIT 1) AS plan \
             FROM children c WHERE c.home_id = $1",
        )
        .bind(home_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| ChildPolicyInput {
            child_id: r.get("id"),
            name: r.get("name"),
            plan: r.get("plan"),
        })
        .collect();
        Ok(HomePolicyInputs {
            protected_contacts,
            children,
            lockdowns: active_lockdowns_in_home(&self.pool, home_id).await?,
        })
    }

    async fn highest_policy_version(&self) -> StoreResult<u64> {
        let row = sqlx::query("SELECT value FROM sequences WHERE name = 'policy'")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(as_u64(row.get::<i64, _>("value")))
    }

    async fn policy_data_for_device(&self, device_id: &str) -> StoreResult<Option<PolicyData>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEVICE_SELECT} WHERE d.id = $1 AND d.status = 'active'"
        )))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let home_id: String = row.get("home_id");
        let (version, changed_at) = desired_of(&row);
        let child_id: String = row.get("child_id");
        let plan: Option<String> = sqlx::query(
            "SELECT document FROM plan_revisions WHERE child_id = $1 ORDER BY number DESC LIMIT 1",
        )
        .bind(&child_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(|r| r.get("document"));
        let device_id: String = row.get("id");
        let lockdowns = active_lockdowns_in_home(&self.pool, &home_id)
            .await?
            .into_iter()
            .filter(|l| l.applies_to(&home_id, &child_id, &device_id))
            .collect();
        Ok(Some(PolicyData {
            device_id,
            version,
            changed_at,
            child_name: row.get("child_name"),
            protected_contacts: protected_for_child(
                &contacts_of_home(&self.pool, &home_id).await?,
                &child_id,
            ),
            plan,
            lockdowns,
        }))
    }
}
