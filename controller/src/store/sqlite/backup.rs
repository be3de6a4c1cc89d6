//! What a backup and a restore need from the SQLite file itself: a consistent copy taken while
//! the controller writes, and moving the policy counter past anything devices may already hold.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};

use super::{SqliteStore, db_err};
use crate::store::{StoreError, StoreResult};

/// Copies the database at `db` into the new file `dest` as one consistent snapshot.
///
/// `VACUUM INTO` reads inside one read transaction, so the copy is the database as it stood at
/// one instant even while `haven serve` keeps writing (WAL readers never block the writer, nor
/// the writer them). The copy is checked with `PRAGMA quick_check` before it is trusted.
pub async fn snapshot_into(db: &Path, dest: &Path) -> StoreResult<()> {
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(db_err)?;
    let dest_text = dest
        .to_str()
        .ok_or_else(|| StoreError::Database("the backup folder's path is not UTF-8".into()))?;
    sqlx::query("VACUUM INTO ?")
        .bind(dest_text)
        .execute(&mut conn)
        .await
        .map_err(db_err)?;
    conn.close().await.map_err(db_err)?;
    check_file(dest).await
}

/// `PRAGMA quick_check` on a database file nobody else has open: "ok", or what is wrong.
pub async fn check_file(db: &Path) -> StoreResult<()> {
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(false)
        .connect()
        .await
        .map_err(db_err)?;
    let row = sqlx::query("PRAGMA quick_check")
        .fetch_one(&mut conn)
        .await
        .map_err(db_err)?;
    let verdict: String = row.try_get(0).map_err(db_err)?;
    conn.close().await.map_err(db_err)?;
    if verdict != "ok" {
        return Err(StoreError::Database(format!(
            "the database file is damaged: {verdict}"
        )));
    }
    Ok(())
}

impl SqliteStore {
    /// Moves the policy counter `by` versions forward, and returns the new value.
    ///
    /// Used once on a database restored from a backup: the lost controller may have issued
    /// versions after the backup was taken, and devices ignore any policy older than the one
    /// they hold — without this, a lockdown from the restored controller would be ignored by
    /// every device until the counter caught up. Versions up to the new value count as issued
    /// (`PolicyStore::highest_policy_version`), so devices that hold one are believed, not
    /// recorded as tampering. Operational state, like the counter itself: not an audited record.
    pub async fn advance_policy_versions(&self, by: u64) -> StoreResult<u64> {
        let by = i64::try_from(by).map_err(|_| StoreError::Database("too large a step".into()))?;
        let row = sqlx::query(
            "UPDATE sequences SET value = value + ? WHERE name = 'policy' RETURNING value",
        )
        .bind(by)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        let value: i64 = row.try_get("value").map_err(db_err)?;
        Ok(u64::try_from(value).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PolicyStore;

    #[tokio::test]
    async fn a_snapshot_is_a_working_database_and_the_counter_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("haven.db");
        let store = SqliteStore::open(&db).await.unwrap();
        let copy = dir.path().join("copy.db");
        // Taken while the source is open, as it is under `haven serve`.
        snapshot_into(&db, &copy).await.unwrap();
        store.close().await;
        let restored = SqliteStore::open(&copy).await.unwrap();
        let before = restored.highest_policy_version().await.unwrap();
        let after = restored.advance_policy_versions(1_000).await.unwrap();
        assert_eq!(after, before + 1_000);
        assert_eq!(restored.highest_policy_version().await.unwrap(), after);
        restored.close().await;
    }

    #[tokio::test]
    async fn a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bad.db");
        std::fs::write(&db, b"SQLite format 3\0 but not really a database at all").unwrap();
        assert!(check_file(&db).await.is_err());
    }
}
