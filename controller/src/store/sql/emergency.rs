//! The SQL (both backends) of [`LockdownStore`], [`SanctionStore`] and [`ObligationStore`]: lockdowns,
//! sanctions and the obligations they open.

use async_trait::async_trait;
use sqlx::{Row, Transaction};

use super::{
    Backend, Db, DbRow, append_audit, as_u64, conflict, db_err, dialect, homes_json,
    next_policy_version,
};
use crate::domain::UnixMillis;
use crate::domain::sanction::{self, SanctionRecord};
use crate::store::{
    Actor, LockdownKey, LockdownRecord, LockdownStore, NewLockdown, NewObligation, NewSanction,
    ObligationRecord, ObligationStore, Page, Paged, SanctionKey, SanctionRow, SanctionStore,
    StoreError, StoreResult,
};

const LOCKDOWN_SELECT: &str = "SELECT l.id, l.target_kind, l.home_id, h.name AS home_name, \
     l.child_id, c.name AS child_name, l.device_id, l.reason, l.channels, l.note, l.until_at, \
     l.review_at, l.ofsted_advice, l.started_at, l.started_by, l.started_by_name, \
     l.policy_version, l.lifted_at, l.lifted_by, l.lift_note, l.lifted_version \
     FROM lockdowns l JOIN homes h ON h.id = l.home_id LEFT JOIN children c ON c.id = l.child_id";

fn split_channels(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

fn lockdown_from_row(row: &DbRow) -> LockdownRecord {
    LockdownRecord {
        id: row.get("id"),
        target_kind: row.get("target_kind"),
        home_id: row.get("home_id"),
        home_name: row.get("home_name"),
        child_id: row.get("child_id"),
        child_name: row.get("child_name"),
        device_id: row.get("device_id"),
        reason: row.get("reason"),
        channels: split_channels(&row.get::<String, _>("channels")),
        note: row.get("note"),
        until: row.get("until_at"),
        review_at: row.get("review_at"),
        ofsted_advice: row.get("ofsted_advice"),
        started_at: row.get("started_at"),
        started_by: row.get("started_by"),
        started_by_name: row.get("started_by_name"),
        policy_version: as_u64(row.get::<i64, _>("policy_version")),
        lifted_at: row.get("lifted_at"),
        lifted_by: row.get("lifted_by"),
        lift_note: row.get("lift_note"),
        lifted_version: row.get::<Option<i64>, _>("lifted_version").map(as_u64),
    }
}

/// A lockdown in force, as the policy compiler reads it.
fn active_from_row(row: &DbRow) -> Option<crate::domain::emergency::ActiveLockdown> {
    use crate::domain::emergency::{ActiveLockdown, LockChannel, LockdownTarget};
    let kind: String = row.get("target_kind");
    let target = match kind.as_str() {
        "home" => LockdownTarget::Home(row.get("home_id")),
        "child" => LockdownTarget::Child(row.get::<Option<String>, _>("child_id")?),
        "device" => LockdownTarget::Device(row.get::<Option<String>, _>("device_id")?),
        _ => return None,
    };
    // A channel this version does not know is ignored, never widened into "nothing locked".
    let channels = split_channels(&row.get::<String, _>("channels"))
        .iter()
        .filter_map(|c| LockChannel::parse(c).ok())
        .collect::<Vec<_>>();
    // A restriction of letters or visits only (S1) is a record: no device enforces it.
    if channels.is_empty() {
        return None;
    }
    Some(ActiveLockdown {
        id: row.get("id"),
        target,
        channels,
        until: row.get("until_at"),
        started_at: row.get("started_at"),
    })
}

pub(super) async fn active_lockdowns_in_home<'e, E>(
    exec: E,
    home_id: &str,
) -> StoreResult<Vec<crate::domain::emergency::ActiveLockdown>>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    let rows = sqlx::query(
        "SELECT id, target_kind, home_id, child_id, device_id, channels, until_at, started_at \
         FROM lockdowns WHERE home_id = $1 AND lifted_at IS NULL ORDER BY started_at, id",
    )
    .bind(home_id)
    .fetch_all(exec)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().filter_map(active_from_row).collect())
}

/// Gives a lockdown's target a new policy version, so its devices get the change.
async fn bump_target(
    tx: &mut Transaction<'static, Db>,
    kind: &str,
    home_id: &str,
    child_id: Option<&str>,
    device_id: Option<&str>,
    now: UnixMillis,
) -> StoreResult<u64> {
    let version = next_policy_version(tx).await?;
    let (table, id) = match kind {
        "home" => ("homes", Some(home_id)),
        "child" => ("children", child_id),
        _ => ("devices", device_id),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET policy_version = $1, policy_changed_at = $2 WHERE id = $3"
    )))
    .bind(version as i64)
    .bind(now)
    .bind(id.unwrap_or_default())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(version)
}

/// Writes the sanctions and obligations a plan revision opens, inside its transaction.
pub(super) async fn insert_opened(
    tx: &mut Transaction<'static, Db>,
    child_id: &str,
    revision: i64,
    sanctions: &[NewSanction],
    obligations: &[NewObligation],
    now: UnixMillis,
) -> StoreResult<()> {
    if sanctions.is_empty() && obligations.is_empty() {
        return Ok(());
    }
    let home_id: String = sqlx::query("SELECT home_id FROM children WHERE id = $1")
        .bind(child_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?
        .get("home_id");
    for s in sanctions {
        sqlx::query(
            "INSERT INTO sanctions (id, child_id, home_id, opened_at, record, plan_revision) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id)
        .bind(&s.child_id)
        .bind(&home_id)
        .bind(now)
        .bind(&s.record)
        .bind(revision)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    for o in obligations {
        sqlx::query(
            "INSERT INTO obligations (id, kind, sanction_id, child_id, home_id, opened_at, \
             due_at, plan_revision) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&o.id)
        .bind(&o.kind)
        .bind(&o.sanction_id)
        .bind(&o.child_id)
        .bind(&home_id)
        .bind(now)
        .bind(o.due_at)
        .bind(revision)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

#[async_trait]
impl LockdownStore for Backend {
    async fn start_lockdown(
        &self,
        actor: &Actor,
        lockdown: &NewLockdown,
        sanctions: &[NewSanction],
        obligations: &[NewObligation],
        now: UnixMillis,
    ) -> StoreResult<LockdownRecord> {
        use crate::domain::emergency::LockdownTarget;
        let mut tx = self.write().await?;
        let (child_id, device_id): (Option<String>, Option<String>) = match &lockdown.target {
            LockdownTarget::Home(_) => (None, None),
            LockdownTarget::Child(c) => (Some(c.clone()), None),
            LockdownTarget::Device(d) => {
                let child: Option<String> =
                    sqlx::query("SELECT child_id FROM devices WHERE id = $1")
                        .bind(d)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?
                        .map(|r| r.get("child_id"));
                let child = child.ok_or_else(|| StoreError::NotFound {
                    what: "device",
                    key: d.clone(),
                })?;
                (Some(child), Some(d.clone()))
            }
        };
        let kind = lockdown.target.kind();
        let version = bump_target(
            &mut tx,
            kind,
            &lockdown.home_id,
            child_id.as_deref(),
            device_id.as_deref(),
            now,
        )
        .await?;
        let order = &lockdown.order;
        let channels: Vec<&str> = order.withdrawn();
        sqlx::query(
            "INSERT INTO lockdowns (id, target_kind, home_id, child_id, device_id, reason, \
             channels, note, until_at, review_at, ofsted_advice, started_at, started_by, \
             started_by_name, policy_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&lockdown.id)
        .bind(kind)
        .bind(&lockdown.home_id)
        .bind(&child_id)
        .bind(&device_id)
        .bind(order.reason.as_str())
        .bind(channels.join(","))
        .bind(&order.note)
        .bind(order.until)
        .bind(order.review_at)
        .bind(&order.ofsted_advice)
        .bind(now)
        .bind(&actor.0)
        .bind(&lockdown.started_by_name)
        .bind(version as i64)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        for s in sanctions {
            sqlx::query(
                "INSERT INTO sanctions (id, lockdown_id, child_id, home_id, opened_at, record) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&s.id)
            .bind(&lockdown.id)
            .bind(&s.child_id)
            .bind(&lockdown.home_id)
            .bind(now)
            .bind(&s.record)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        for o in obligations {
            sqlx::query(
                "INSERT INTO obligations (id, kind, lockdown_id, sanction_id, child_id, home_id, \
                 opened_at, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&o.id)
            .bind(&o.kind)
            .bind(&lockdown.id)
            .bind(&o.sanction_id)
            .bind(&o.child_id)
            .bind(&lockdown.home_id)
            .bind(now)
            .bind(o.due_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        append_audit(
            &mut tx,
            actor,
            "lockdown.start",
            &lockdown.id,
            serde_json::json!({
                "target": kind,
                "home": lockdown.home_id,
                "child": child_id,
                "device": device_id,
                "reason": order.reason.as_str(),
                "channels": channels,
                "note": order.note,
                "until": order.until,
                "review_at": order.review_at,
                "ofsted_advice": order.ofsted_advice,
                "policy_version": version,
                "sanctions": sanctions.iter().map(|s| &s.id).collect::<Vec<_>>(),
                "obligations": obligations.iter().map(|o| serde_json::json!({
                    "id": o.id, "kind": o.kind, "child": o.child_id, "due_at": o.due_at,
                })).collect::<Vec<_>>(),
            }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.find_lockdown(&lockdown.id).await
    }

    async fn lift_lockdown(
        &self,
        actor: &Actor,
        id: &str,
        note: &str,
        now: UnixMillis,
    ) -> StoreResult<LockdownRecord> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "SELECT l.target_kind, l.home_id, l.child_id, l.device_id, l.lifted_at, l.started_at, \
             h.time_zone FROM lockdowns l JOIN homes h ON h.id = l.home_id WHERE l.id = $1",
        )
        .bind(id.trim())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound {
            what: "lockdown",
            key: id.to_string(),
        })?;
        if let Some(at) = row.get::<Option<i64>, _>("lifted_at") {
            return Err(StoreError::Conflict(format!(
                "lockdown {} was already lifted (at {}): nothing was changed",
                id.trim(),
                jiff::Timestamp::from_millisecond(at)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            )));
        }
        let kind: String = row.get("target_kind");
        let home_id: String = row.get("home_id");
        let child_id: Option<String> = row.get("child_id");
        let device_id: Option<String> = row.get("device_id");
        let version = bump_target(
            &mut tx,
            &kind,
            &home_id,
            child_id.as_deref(),
            device_id.as_deref(),
            now,
        )
        .await?;
        sqlx::query(
            "UPDATE lockdowns SET lifted_at = $1, lifted_by = $2, lift_note = $3, lifted_version = $4 \
             WHERE id = $5",
        )
        .bind(now)
        .bind(&actor.0)
        .bind(note)
        .bind(version as i64)
        .bind(id.trim())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        // RM5: the sanction records say how long the measure actually lasted.
        let started_at: i64 = row.get("started_at");
        let time_zone: String = row.get("time_zone");
        let opened = sqlx::query("SELECT id, record FROM sanctions WHERE lockdown_id = $1")
            .bind(id.trim())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let mut durations = Vec::new();
        for r in opened {
            let sanction_id: String = r.get("id");
            let record: SanctionRecord =
                serde_json::from_str(&r.get::<String, _>("record")).unwrap_or_default();
            let actual = sanction::with_actual_duration(&record, started_at, now, &time_zone);
            let json = serde_json::to_string(&actual).map_err(|e| {
                StoreError::Database(format!("could not write the sanction record: {e}"))
            })?;
            sqlx::query("UPDATE sanctions SET record = $1 WHERE id = $2")
                .bind(json)
                .bind(&sanction_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            durations
                .push(serde_json::json!({ "sanction": sanction_id, "duration": actual.duration }));
        }
        append_audit(
            &mut tx,
            actor,
            "lockdown.lift",
            id.trim(),
            serde_json::json!({ "note": note, "policy_version": version, "sanctions": durations }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.find_lockdown(id).await
    }

    async fn find_lockdown(&self, id: &str) -> StoreResult<LockdownRecord> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{LOCKDOWN_SELECT} WHERE l.id = $1"
        )))
        .bind(id.trim())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref()
            .map(lockdown_from_row)
            .ok_or_else(|| StoreError::NotFound {
                what: "lockdown",
                key: id.to_string(),
            })
    }

    async fn lockdowns(
        &self,
        home_id: Option<&str>,
        include_lifted: bool,
    ) -> StoreResult<Vec<LockdownRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{LOCKDOWN_SELECT} WHERE ($1 IS NULL OR l.home_id = $2) \
             AND ($3 OR l.lifted_at IS NULL) ORDER BY l.started_at DESC, l.id"
        )))
        .bind(home_id)
        .bind(home_id)
        .bind(include_lifted)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(lockdown_from_row).collect())
    }

    async fn lockdowns_page(
        &self,
        home_id: Option<&str>,
        include_lifted: bool,
        homes: Option<&[String]>,
        page: &Page<LockdownKey>,
    ) -> StoreResult<Paged<LockdownRecord, LockdownKey>> {
        // Placeholders are numbered in the order the values are bound below.
        let mut sql = format!("{LOCKDOWN_SELECT} WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if home_id.is_some() {
            sql.push_str(&format!(" AND l.home_id = {}", next()));
        }
        if !include_lifted {
            sql.push_str(" AND l.lifted_at IS NULL");
        }
        if homes.is_some() {
            sql.push_str(&format!(
                " AND l.home_id IN ({})",
                dialect::json_text_array(&next())
            ));
        }
        if page.after.is_some() {
            // Newest first, ties by id: the two directions differ, so no row-value compare.
            // `started_at <=` is implied by the rest; it lets an index on the time help.
            let (from, at, at_again, id) = (next(), next(), next(), next());
            sql.push_str(&format!(
                " AND l.started_at <= {from} \
                 AND (l.started_at < {at} OR (l.started_at = {at_again} AND l.id > {id}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY l.started_at DESC, l.id LIMIT {}",
            next()
        ));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(h) = home_id {
            q = q.bind(h.to_string());
        }
        if let Some(homes) = homes {
            q = q.bind(homes_json(homes));
        }
        if let Some((started_at, id)) = &page.after {
            q = q
                .bind(*started_at)
                .bind(*started_at)
                .bind(*started_at)
                .bind(id.clone());
        }
        let rows = q
            .bind(i64::from(page.size) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(Paged::from_fetched(
            rows.iter().map(lockdown_from_row).collect(),
            page.size,
            |l: &LockdownRecord| (l.started_at, l.id.clone()),
        ))
    }

    async fn record_ofsted_advice(
        &self,
        actor: &Actor,
        id: &str,
        advice: &str,
        now: UnixMillis,
    ) -> StoreResult<LockdownRecord> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE lockdowns SET ofsted_advice = $1 WHERE id = $2")
            .bind(advice)
            .bind(id.trim())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "lockdown",
                key: id.to_string(),
            });
        }
        append_audit(
            &mut tx,
            actor,
            "lockdown.ofsted_advice",
            id.trim(),
            serde_json::json!({ "advice": advice }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.find_lockdown(id).await
    }
}

const SANCTION_SELECT: &str = "SELECT s.id, COALESCE(s.lockdown_id, '') AS lockdown_id, \
     s.child_id, c.name AS child_name, \
     s.home_id, s.opened_at, s.record, s.completed_at, s.completed_by, s.signed_off_at, \
     s.signed_off_by, s.sign_off_note, s.discussed_at, s.discussed_by, s.child_views, \
     s.plan_revision, s.spoke_with_imposer FROM sanctions s JOIN children c ON c.id = s.child_id";

fn sanction_from_row(row: &DbRow) -> SanctionRow {
    SanctionRow {
        id: row.get("id"),
        lockdown_id: row.get("lockdown_id"),
        child_id: row.get("child_id"),
        child_name: row.get("child_name"),
        home_id: row.get("home_id"),
        opened_at: row.get("opened_at"),
        record: row.get("record"),
        completed_at: row.get("completed_at"),
        completed_by: row.get("completed_by"),
        signed_off_at: row.get("signed_off_at"),
        signed_off_by: row.get("signed_off_by"),
        sign_off_note: row.get("sign_off_note"),
        discussed_at: row.get("discussed_at"),
        discussed_by: row.get("discussed_by"),
        child_views: row.get("child_views"),
        plan_revision: row.get("plan_revision"),
        spoke_with_imposer: row.get("spoke_with_imposer"),
    }
}

/// What has been done to a stored sanction, for the domain's transitions.
fn steps(s: &SanctionRow) -> sanction::SanctionSteps {
    sanction::SanctionSteps {
        completed: s.completed_at.is_some(),
        signed_off: s.signed_off_at.is_some(),
        discussed: s.discussed_at.is_some(),
    }
}

/// Closes a sanction's obligation of `kind` (if open) inside the caller's transaction.
async fn close_sanction_obligation(
    tx: &mut Transaction<'static, Db>,
    actor: &Actor,
    sanction_id: &str,
    kind: &str,
    now: UnixMillis,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE obligations SET closed_at = $1, closed_by = $2, done_at = $3 \
         WHERE sanction_id = $4 AND kind = $5 AND closed_at IS NULL",
    )
    .bind(now)
    .bind(&actor.0)
    .bind(now)
    .bind(sanction_id)
    .bind(kind)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

impl Backend {
    /// Reads a sanction for a change inside a transaction; NotFound if there is none.
    async fn sanction_in(tx: &mut Transaction<'static, Db>, id: &str) -> StoreResult<SanctionRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SANCTION_SELECT} WHERE s.id = $1"
        )))
        .bind(id.trim())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
        row.as_ref()
            .map(sanction_from_row)
            .ok_or_else(|| StoreError::NotFound {
                what: "sanction",
                key: id.to_string(),
            })
    }
}

#[async_trait]
impl SanctionStore for Backend {
    async fn sanctions_page(
        &self,
        home_id: Option<&str>,
        homes: Option<&[String]>,
        page: &Page<SanctionKey>,
    ) -> StoreResult<Paged<SanctionRow, SanctionKey>> {
        // Placeholders are numbered in the order the values are bound below.
        let mut sql = format!("{SANCTION_SELECT} WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if home_id.is_some() {
            sql.push_str(&format!(" AND s.home_id = {}", next()));
        }
        if homes.is_some() {
            sql.push_str(&format!(
                " AND s.home_id IN ({})",
                dialect::json_text_array(&next())
            ));
        }
        if page.after.is_some() {
            // Newest first, ties by id: the two directions differ, so no row-value compare.
            // `opened_at <=` is implied by the rest; it lets the index on the time help.
            let (from, at, at_again, id) = (next(), next(), next(), next());
            sql.push_str(&format!(
                " AND s.opened_at <= {from} \
                 AND (s.opened_at < {at} OR (s.opened_at = {at_again} AND s.id > {id}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY s.opened_at DESC, s.id LIMIT {}",
            next()
        ));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(h) = home_id {
            q = q.bind(h.to_string());
        }
        if let Some(homes) = homes {
            q = q.bind(homes_json(homes));
        }
        if let Some((opened_at, id)) = &page.after {
            q = q
                .bind(*opened_at)
                .bind(*opened_at)
                .bind(*opened_at)
                .bind(id.clone());
        }
        let rows = q
            .bind(i64::from(page.size) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(Paged::from_fetched(
            rows.iter().map(sanction_from_row).collect(),
            page.size,
            |s: &SanctionRow| (s.opened_at, s.id.clone()),
        ))
    }

    async fn find_sanction(&self, id: &str) -> StoreResult<SanctionRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SANCTION_SELECT} WHERE s.id = $1"
        )))
        .bind(id.trim())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref()
            .map(sanction_from_row)
            .ok_or_else(|| StoreError::NotFound {
                what: "sanction",
                key: id.to_string(),
            })
    }

    async fn complete_sanction(
        &self,
        actor: &Actor,
        id: &str,
        record: &str,
        now: UnixMillis,
    ) -> StoreResult<SanctionRow> {
        let mut tx = self.write().await?;
        let s = Self::sanction_in(&mut tx, id).await?;
        sanction::may_complete(&s.id, steps(&s)).map_err(conflict)?;
        sqlx::query(
            "UPDATE sanctions SET record = $1, completed_at = $2, completed_by = $3 WHERE id = $4",
        )
        .bind(record)
        .bind(now)
        .bind(&actor.0)
        .bind(&s.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        close_sanction_obligation(&mut tx, actor, &s.id, "complete-sanction-record", now).await?;
        append_audit(
            &mut tx,
            actor,
            "sanction.complete",
            &s.id,
            serde_json::from_str(record).unwrap_or(serde_json::Value::Null),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.find_sanction(&s.id).await
    }

    async fn sign_off_sanction(
        &self,
        actor: &Actor,
        id: &str,
        note: &str,
        spoke_with_imposer: &str,
        now: UnixMillis,
    ) -> StoreResult<SanctionRow> {
        let mut tx = self.write().await?;
        let s = Self::sanction_in(&mut tx, id).await?;
        let spoke = sanction::sign_off(&s.id, steps(&s), spoke_with_imposer).map_err(conflict)?;
        sqlx::query(
            "UPDATE sanctions SET signed_off_at = $1, signed_off_by = $2, sign_off_note = $3, \
             spoke_with_imposer = $4 WHERE id = $5",
        )
        .bind(now)
        .bind(&actor.0)
        .bind(note)
        .bind(&spoke)
        .bind(&s.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        close_sanction_obligation(&mut tx, actor, &s.id, "manager-sign-off", now).await?;
        append_audit(
            &mut tx,
            actor,
            "sanction.sign_off",
            &s.id,
            serde_json::json!({ "note": note, "spoke_with_imposer": spoke }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.find_sanction(&s.id).await
    }

    async fn record_sanction_discussion(
        &self,
        actor: &Actor,
        id: &str,
        views: &str,
        now: UnixMillis,
    ) -> StoreResult<SanctionRow> {
        let mut tx = self.write().await?;
        let s = Self::sanction_in(&mut tx, id).await?;
        sanction::may_record_discussion(&s.id, steps(&s)).map_err(conflict)?;
        sqlx::query(
            "UPDATE sanctions SET discussed_at = $1, discussed_by = $2, child_views = $3 WHERE id = $4",
        )
        .bind(now)
        .bind(&actor.0)
        .bind(views)
        .bind(&s.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        close_sanction_obligation(&mut tx, actor, &s.id, "discuss-with-child", now).await?;
        append_audit(
            &mut tx,
            actor,
            "sanction.discussed",
            &s.id,
            serde_json::json!({ "child_views": views }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.find_sanction(&s.id).await
    }
}

const OBLIGATION_SELECT: &str = "SELECT o.id, o.kind, COALESCE(o.lockdown_id, '') AS lockdown_id, \
     o.sanction_id, o.child_id, \
     c.name AS child_name, o.home_id, o.opened_at, o.due_at, o.closed_at, o.closed_by, \
     o.done_by, o.how, o.done_at, o.note, o.plan_revision FROM obligations o JOIN children c ON c.id = o.child_id";

fn obligation_from_row(row: &DbRow) -> ObligationRecord {
    ObligationRecord {
        id: row.get("id"),
        kind: row.get("kind"),
        lockdown_id: row.get("lockdown_id"),
        sanction_id: row.get("sanction_id"),
        child_id: row.get("child_id"),
        child_name: row.get("child_name"),
        home_id: row.get("home_id"),
        opened_at: row.get("opened_at"),
        due_at: row.get("due_at"),
        closed_at: row.get("closed_at"),
        closed_by: row.get("closed_by"),
        done_by: row.get("done_by"),
        how: row.get("how"),
        done_at: row.get("done_at"),
        note: row.get("note"),
        plan_revision: row.get("plan_revision"),
    }
}

#[async_trait]
impl ObligationStore for Backend {
    async fn obligations(
        &self,
        home_id: Option<&str>,
        open_only: bool,
    ) -> StoreResult<Vec<ObligationRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{OBLIGATION_SELECT} WHERE ($1 IS NULL OR o.home_id = $2) \
             AND (NOT $3 OR o.closed_at IS NULL) ORDER BY o.due_at, o.id"
        )))
        .bind(home_id)
        .bind(home_id)
        .bind(open_only)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(obligation_from_row).collect())
    }

    async fn find_obligation(&self, id: &str) -> StoreResult<ObligationRecord> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{OBLIGATION_SELECT} WHERE o.id = $1"
        )))
        .bind(id.trim())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref()
            .map(obligation_from_row)
            .ok_or_else(|| StoreError::NotFound {
                what: "obligation",
                key: id.to_string(),
            })
    }

    async fn record_notification(
        &self,
        actor: &Actor,
        id: &str,
        by: &str,
        how: &str,
        at: UnixMillis,
        note: &str,
        now: UnixMillis,
    ) -> StoreResult<ObligationRecord> {
        let mut tx = self.write().await?;
        let row = sqlx::query("SELECT kind, closed_at FROM obligations WHERE id = $1")
            .bind(id.trim())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or_else(|| StoreError::NotFound {
                what: "obligation",
                key: id.to_string(),
            })?;
        if row.get::<Option<i64>, _>("closed_at").is_some() {
            return Err(StoreError::Conflict(format!(
                "obligation {} is already closed: nothing was changed",
                id.trim()
            )));
        }
        let kind: String = row.get("kind");
        if kind != "notify-social-worker" {
            return Err(StoreError::Conflict(format!(
                "obligation {} is not a notification ({kind}): it closes when the sanction record is completed, signed off or discussed (`haven sanction --help`)",
                id.trim()
            )));
        }
        sqlx::query(
            "UPDATE obligations SET closed_at = $1, closed_by = $2, done_by = $3, how = $4, \
             done_at = $5, note = $6 WHERE id = $7",
        )
        .bind(now)
        .bind(&actor.0)
        .bind(by)
        .bind(how)
        .bind(at)
        .bind(note)
        .bind(id.trim())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "obligation.notified",
            id.trim(),
            serde_json::json!({ "by": by, "how": how, "at": at, "note": note }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.find_obligation(id).await
    }
}
