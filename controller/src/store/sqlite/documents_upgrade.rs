//! The one-time rewrite of plan revisions and risk assessments kept in the old form (the
//! domain's JSON) into the versioned one, on a real SQLite file written as the old controller
//! wrote it. (PostgreSQL databases were never written in the old form.)

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use super::super::documents::{Upgraded, upgrade};
    use crate::domain::UnixMillis;
    use crate::domain::plan::PlanRevision;
    use crate::domain::risk::{sample_draft, validate_risk_assessment};
    use crate::service::plan_wire::{read_stored_assessment, read_stored_plan};
    use crate::store::{Actor, PlanStore};
    use crate::store::{ChildStore, HomeStore};
    use sqlx::Row;

    fn manager() -> Actor {
        Actor("stf-m".into())
    }

    /// A revision as the controller wrote it before issue 15: the domain's JSON.
    fn old_revision(child_id: &str, number: u32, made_at: UnixMillis) -> PlanRevision {
        let template = crate::cli::plans::PLAN_TEMPLATE.replace("ra-REPLACE-ME", "ra-old");
        let plan = crate::cli::documents::plan_from_text(&template).unwrap();
        let draft = crate::service::plan_wire::plan_from_wire(
            "plan",
            &plan,
            child_id,
            &manager().0,
            made_at,
        )
        .unwrap();
        let mut r = PlanRevision::next(None, draft);
        r.number = number;
        r
    }

    async fn format_versions(store: &SqliteStore) -> Vec<i64> {
        sqlx::query(
            "SELECT format_version FROM plan_revisions UNION ALL \
             SELECT format_version FROM risk_assessments",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    // A database holding documents in the old form: opening it rewrites them in the versioned
    // form, in one go, and each reads back the same; opening it again changes nothing; a row
    // that would not come back the same is left as it was, and still read.
    #[tokio::test]
    async fn old_documents_are_rewritten_in_the_versioned_form_when_the_database_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haven.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let home = store
            .add_home(&manager(), "Oak", "Europe/London", 1)
            .await
            .unwrap();
        let child = store
            .add_child(&manager(), &home.id, "Amira", "2012-01-01", 2)
            .await
            .unwrap();
        let today = jiff::civil::date(2026, 11, 28);
        let mut draft = sample_draft("ra-old", &child.id);
        draft.author = manager().0;
        draft.made_at = 30;
        let assessment = validate_risk_assessment(&draft, today).unwrap();
        let first = old_revision(&child.id, 1, 40);
        // A reason that is not one of the four had no effect on a revision that restricted
        // nothing, and has no typed form: that row must be kept as written.
        let mut odd = old_revision(&child.id, 2, 50);
        odd.grounds.protective_reason = Some("because".into());
        // Written as the old controller wrote them.
        sqlx::query(
            "INSERT INTO risk_assessments (id, child_id, made_at, made_by, document) \
             VALUES (?, ?, 30, ?, ?)",
        )
        .bind(&assessment.id)
        .bind(&child.id)
        .bind(manager().0)
        .bind(serde_json::to_string(&assessment).unwrap())
        .execute(&store.pool)
        .await
        .unwrap();
        for r in [&first, &odd] {
            sqlx::query(
                "INSERT INTO plan_revisions (child_id, number, made_at, made_by, document) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&child.id)
            .bind(i64::from(r.number))
            .bind(r.made_at)
            .bind(&r.made_by)
            .bind(serde_json::to_string(r).unwrap())
            .execute(&store.pool)
            .await
            .unwrap();
        }
        assert_eq!(format_versions(&store).await, vec![1, 1, 1]);
        store.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        let mut versions = format_versions(&store).await;
        versions.sort();
        assert_eq!(
            versions,
            vec![1, 2, 2],
            "the odd revision stays in the old form"
        );
        let revisions = store.plan_revisions(&child.id).await.unwrap();
        assert!(!revisions[0].document.starts_with('{'));
        assert!(revisions[1].document.starts_with('{'), "left as written");
        for (doc, expected) in revisions.iter().zip([&first, &odd]) {
            let read = read_stored_plan(
                &doc.document,
                doc.number,
                &doc.child_id,
                &doc.made_by,
                doc.made_at,
            )
            .unwrap();
            assert_eq!(&read, expected);
        }
        let stored = &store.risk_assessments(&child.id).await.unwrap()[0];
        let read = read_stored_assessment(
            &stored.document,
            &stored.id,
            &stored.child_id,
            &stored.made_by,
            stored.made_at,
        )
        .unwrap();
        assert_eq!(read, assessment);
        // Idempotent: nothing more to rewrite, nothing changes.
        let before: Vec<String> = revisions.iter().map(|d| d.document.clone()).collect();
        assert_eq!(
            upgrade(&store).await.unwrap(),
            Upgraded {
                rewritten: 0,
                left: 1
            }
        );
        let after: Vec<String> = store
            .plan_revisions(&child.id)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.document)
            .collect();
        assert_eq!(before, after);
        store.close().await;
    }
}
