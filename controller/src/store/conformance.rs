//! The behaviour every storage backend must show, one scenario a function. A new backend is
//! done when every scenario passes against it.
//!
//! `conformance_tests!` expands each scenario into its own `#[tokio::test]` for one backend
//! (see `store/tests.rs`, which runs them against SQLite and PostgreSQL); the module is public
//! behind the `conformance` feature so a backend's tests elsewhere can do the same. Each
//! scenario gets a fresh, empty store from the backend's [`Fresh`]; a backend that is not
//! there (no PostgreSQL answering) makes its tests print `SKIPPED: <reason>` and pass.

use super::*;
use crate::domain::audit::verify_chain;

/// A backend under test: gives fresh, empty stores, and cleans up after them when dropped
/// (also when a scenario panics).
pub trait Fresh {
    type Store: Store;
    fn fresh(&self) -> impl std::future::Future<Output = Self::Store>;
}

/// Expands each scenario of the suite into a `#[tokio::test]`, in the module where it is
/// invoked. `$start` is an async expression giving `Option<impl Fresh>` (`None`: skip).
#[macro_export]
macro_rules! conformance_tests {
    ($start:expr) => {
        $crate::conformance_tests!(@each $start;
            homes_are_unique_and_found_by_id_or_name,
            children_with_the_same_name_are_told_apart,
            an_enrollment_code_enrolls_one_device_once,
            policy_versions_grow_with_each_change,
            revoked_devices_and_staff_stay_on_record,
            a_lockdown_reaches_the_active_devices_of_its_target_only,
            violations_are_counted_once,
            violations_are_listed_newest_first_and_filtered,
            unknown_contacts_open_one_grouped_manager_task,
            every_change_is_in_an_intact_audit_chain,
            plan_revisions_are_numbered_kept_and_never_overwritten,
            reports_wait_for_a_manager_and_approvals_are_registered,
            a_childs_request_is_kept_once_and_answered_once,
            a_child_who_left_is_archived_not_deleted,
            staff_belong_to_homes_and_find_only_their_children,
            a_protected_contact_can_belong_to_one_child,
            a_lockdown_is_written_whole_lifted_once_and_kept,
            a_failed_lockdown_writes_nothing,
            a_removed_protected_contact_is_kept_and_can_be_added_again,
            a_rotated_token_replaces_the_old_one,
            enrollment_codes_are_listed_cancelled_and_die_with_their_maker,
            a_revision_opens_its_sanction_and_obligations_with_it,
            checkpoints_are_kept_whole_oldest_first,
            reads_are_listed_per_child_newest_first,
            filter_lists_are_versioned_and_the_first_of_a_category_reaches_every_home,
            a_homes_web_exceptions_are_set_changed_removed_and_audited,
            d7_a_renewed_certificate_finds_the_same_device_and_replaces_the_old_one_at_first_use,
            every_store_method_is_covered,
            children_and_devices_are_paged_each_once_in_order,
            violations_are_paged_newest_first_each_once,
            reads_and_sanctions_are_paged_newest_first_each_once,
            lockdowns_and_manager_tasks_are_paged_each_once,
            staff_and_plan_history_are_paged_each_once,
            concurrent_writers_keep_one_gap_free_audit_chain
        );
        $crate::conformance_tests!(@fresh $start;
            records_agree_with_the_trail_after_every_kind_of_write
        );
    };
    (@each $start:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                use $crate::store::conformance::Fresh as _;
                let Some(backend) = $start.await else { return };
                let store = backend.fresh().await;
                $crate::store::conformance::$name(&store).await;
            }
        )*
    };
    (@fresh $start:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(backend) = $start.await else { return };
                $crate::store::conformance::$name(&backend).await;
            }
        )*
    };
}

// clause R36: every write leaves records and audit entries that agree (`domain::trail`): the
// scenarios above, each on a fresh store, then the comparison.
pub async fn records_agree_with_the_trail_after_every_kind_of_write(backend: &impl Fresh) {
    let fresh = || backend.fresh();
    async fn agrees(s: &impl Store, scenario: &str) {
        let entries = s.audit_entries(0, 100_000).await.unwrap();
        let facts = s.record_facts().await.unwrap();
        assert!(!facts.facts.is_empty(), "{scenario}");
        assert_eq!(
            crate::domain::trail::first_disagreement(&entries, &facts),
            None,
            "{scenario}"
        );
    }
    let s = fresh().await;
    a_lockdown_is_written_whole_lifted_once_and_kept(&s).await;
    agrees(&s, "lockdown").await;
    let s = fresh().await;
    a_revision_opens_its_sanction_and_obligations_with_it(&s).await;
    agrees(&s, "plan revision opening a sanction").await;
    let s = fresh().await;
    revoked_devices_and_staff_stay_on_record(&s).await;
    agrees(&s, "revocations").await;
    let s = fresh().await;
    reports_wait_for_a_manager_and_approvals_are_registered(&s).await;
    agrees(&s, "reports and approvals").await;
    let s = fresh().await;
    a_child_who_left_is_archived_not_deleted(&s).await;
    agrees(&s, "archived child").await;
    let s = fresh().await;
    unknown_contacts_open_one_grouped_manager_task(&s).await;
    agrees(&s, "manager tasks").await;
    let s = fresh().await;
    plan_revisions_are_numbered_kept_and_never_overwritten(&s).await;
    agrees(&s, "plan revisions").await;
    let s = fresh().await;
    a_rotated_token_replaces_the_old_one(&s).await;
    agrees(&s, "staff").await;
    let s = fresh().await;
    violations_are_counted_once(&s).await;
    agrees(&s, "violations").await;
    let s = fresh().await;
    a_childs_request_is_kept_once_and_answered_once(&s).await;
    agrees(&s, "children's requests").await;
}

pub async fn checkpoints_are_kept_whole_oldest_first(s: &impl Store) {
    use crate::domain::checkpoint::Checkpoint;
    assert!(s.checkpoints().await.unwrap().is_empty());
    let c = |seq: i64, at: i64| Checkpoint {
        entry_seq: seq,
        entry_hash: format!("hash-{seq}"),
        entries: u64::try_from(seq).unwrap(),
        at,
        key_id: "0123456789abcdef".into(),
        signature: "ab".repeat(64),
    };
    s.save_checkpoint(&c(7, 200)).await.unwrap();
    s.save_checkpoint(&c(3, 100)).await.unwrap();
    assert_eq!(s.checkpoints().await.unwrap(), vec![c(3, 100), c(7, 200)]);
}

pub async fn reads_are_listed_per_child_newest_first(s: &impl Store) {
    use crate::domain::reads::Read;
    let h = home(s, "Oak").await;
    let jo = s
        .add_staff(
            &admin(),
            staff("Jo", Role::Staff, std::slice::from_ref(&h.id), "h-jo"),
            3,
        )
        .await
        .unwrap();
    let read = |at: i64, child: &str, what: &str| Read {
        at,
        staff_id: jo.id.clone(),
        child_id: child.into(),
        what: what.into(),
    };
    s.record_reads(&[]).await.unwrap();
    s.record_reads(&[
        read(10, "chd-a", "plan history"),
        read(30, "chd-a", "violations"),
        read(20, "chd-b", "violations"),
    ])
    .await
    .unwrap();
    let a = s
        .reads_of_child("chd-a", 0, &Page::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(
        a.iter().map(|r| r.read.what.as_str()).collect::<Vec<_>>(),
        ["violations", "plan history"]
    );
    assert_eq!(a[0].staff_name, "Jo");
    assert_eq!(
        s.reads_of_child("chd-a", 11, &Page::first(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        s.reads_of_child("chd-a", 0, &Page::first(1))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(
        s.reads_of_child("chd-c", 0, &Page::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

fn compiled_list(names: &str) -> (Vec<u8>, String) {
    let c = haven_proto::domain_list::compile(names.as_bytes());
    let sha = haven_proto::domain_list::sha256_hex(&c.bytes);
    (c.bytes, sha)
}

// WB4: each import is a new version kept as one blob; the one before stays (for changes) and
// older ones go; a category's first list gives every home a new policy version.
pub async fn filter_lists_are_versioned_and_the_first_of_a_category_reaches_every_home(
    s: &impl Store,
) {
    home(s, "Oak").await;
    let elm = home(s, "Elm").await;
    let c = s
        .add_child(&admin(), &elm.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let device = enrolled(s, &c.id, "code", "fp").await;
    let import = |names: &'static str, category: &'static str| async move {
        let (bytes, sha) = compiled_list(names);
        s.import_filter_list(
            &admin(),
            NewFilterList {
                category,
                source: "test lists",
                licence: "CC0",
                compiled: &bytes,
                sha256: &sha,
                domains: names.lines().count() as u64,
                skipped: 0,
            },
            10,
        )
        .await
        .unwrap()
    };
    assert!(s.filter_lists().await.unwrap().is_empty());
    let first = import("bets.example\n", "gambling").await;
    assert_eq!(first.list.version, 1);
    let v = first
        .policy_version
        .expect("a new category changes every home's policy");
    assert_eq!(s.find_device(&device.id).await.unwrap().desired_version, v);
    assert_eq!(s.highest_policy_version().await.unwrap(), v);
    let second = import("bets.example\ncasino.example\n", "gambling").await;
    assert_eq!(second.list.version, 2);
    assert_eq!(
        second.policy_version, None,
        "same categories: no policy change"
    );
    let third = import("casino.example\n", "gambling").await;
    assert_eq!(third.list.version, 3);
    import("adult.example\n", "adult").await;
    let lists = s.filter_lists().await.unwrap();
    let summary: Vec<(&str, u64)> = lists
        .iter()
        .map(|l| (l.category.as_str(), l.version))
        .collect();
    assert_eq!(summary, [("adult", 1), ("gambling", 3)]);
    let gambling = &lists[1];
    assert_eq!(gambling.source, "test lists");
    assert_eq!(gambling.licence, "CC0");
    assert_eq!(gambling.imported_by, "stf-admin");
    let (bytes, sha) = compiled_list("casino.example\n");
    assert_eq!(gambling.sha256, sha);
    assert_eq!(gambling.compiled_bytes, bytes.len() as u64);
    assert_eq!(
        s.filter_list_bytes("gambling", 3).await.unwrap(),
        Some(bytes)
    );
    assert!(
        s.filter_list_bytes("gambling", 2).await.unwrap().is_some(),
        "previous kept"
    );
    assert!(
        s.filter_list_bytes("gambling", 1).await.unwrap().is_none(),
        "older dropped"
    );
    let entries = s.audit_entries(0, 100).await.unwrap();
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "filter.list.import")
            .count(),
        4
    );
    assert_eq!(verify_chain(&entries), Ok(entries.len() as u64));
}

// WB4: a home's exceptions are one per domain; a change takes a new policy version for the
// home; removing an unknown one is "not found" and writes nothing.
pub async fn a_homes_web_exceptions_are_set_changed_removed_and_audited(s: &impl Store) {
    let oak = home(s, "Oak").await;
    let elm = home(s, "Elm").await;
    let manager = Actor("stf-m".into());
    let (e, v1) = s
        .set_web_exception(&manager, &oak.id, "games.example", "allow", 20)
        .await
        .unwrap();
    assert_eq!(e.kind, "allow");
    assert_eq!(e.added_by, "stf-m");
    assert!(matches!(
        s.set_web_exception(&manager, &oak.id, "games.example", "allow", 21)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let (_, v2) = s
        .set_web_exception(&manager, &oak.id, "games.example", "deny", 22)
        .await
        .unwrap();
    assert!(v2 > v1);
    s.set_web_exception(&manager, &oak.id, "a.example", "allow", 23)
        .await
        .unwrap();
    let list = s.web_exceptions(&oak.id).await.unwrap();
    let got: Vec<(&str, &str)> = list
        .iter()
        .map(|e| (e.domain.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(got, [("a.example", "allow"), ("games.example", "deny")]);
    assert!(s.web_exceptions(&elm.id).await.unwrap().is_empty());
    let (removed, v3) = s
        .remove_web_exception(&manager, &oak.id, "games.example", 24)
        .await
        .unwrap();
    assert_eq!(removed.kind, "deny");
    assert!(v3 > v2);
    let before = s.audit_entries(0, 100).await.unwrap().len();
    assert!(matches!(
        s.remove_web_exception(&manager, &elm.id, "a.example", 25)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let missing = s
        .set_web_exception(&manager, "hom-missing", "x.example", "deny", 26)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    assert!(s.web_exceptions("hom-missing").await.unwrap().is_empty());
    let entries = s.audit_entries(0, 100).await.unwrap();
    assert_eq!(entries.len(), before, "a refused change writes nothing");
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.starts_with("home.web_exception"))
            .count(),
        4
    );
}

// Issue 12 (RM5): a revision that reduces telephone access writes its sanction and obligations
// in the same transaction, marked with the revision's number and no lockdown; a stale revision
// writes none of them.
pub async fn a_revision_opens_its_sanction_and_obligations_with_it(s: &impl Store) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let manager = Actor("stf-m".into());
    s.add_plan_revision(&manager, &c.id, 0, "{\"r\":1}", 40)
        .await
        .unwrap();
    let opened = Opened {
        sanctions: vec![NewSanction {
            id: "snc-p".into(),
            child_id: c.id.clone(),
            record: "{\"measure\":\"calls with Nan withdrawn\"}".into(),
        }],
        obligations: vec![
            NewObligation {
                id: "obl-p1".into(),
                kind: "notify-social-worker".into(),
                child_id: c.id.clone(),
                sanction_id: None,
                due_at: 100,
            },
            NewObligation {
                id: "obl-p2".into(),
                kind: "complete-sanction-record".into(),
                child_id: c.id.clone(),
                sanction_id: Some("snc-p".into()),
                due_at: 90,
            },
        ],
    };
    assert!(matches!(
        s.add_plan_revision_opening(&manager, &c.id, 0, "{\"r\":\"stale\"}", &opened, 41)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        s.sanctions_page(None, None, &Page::first(1000))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let (second, _) = s
        .add_plan_revision_opening(&manager, &c.id, 1, "{\"r\":2}", &opened, 42)
        .await
        .unwrap();
    assert_eq!(second.number, 2);
    let snc = s.find_sanction("snc-p").await.unwrap();
    assert_eq!(snc.plan_revision, Some(2));
    assert_eq!(snc.lockdown_id, "");
    assert_eq!(snc.home_id, h.id);
    let owed = s.obligations(Some(&h.id), true).await.unwrap();
    assert_eq!(owed.len(), 2);
    assert!(
        owed.iter()
            .all(|o| o.plan_revision == Some(2) && o.lockdown_id.is_empty())
    );
}

// Issue 3: staff see the children of their own homes only; a child elsewhere is not found
// and never makes a name ambiguous.
pub async fn staff_belong_to_homes_and_find_only_their_children(s: &impl Store) {
    let oak = home(s, "Oak").await;
    let elm = home(s, "Elm").await;
    let amira_oak = s
        .add_child(&admin(), &oak.id, "Amira Khan", "2012-01-01", 2)
        .await
        .unwrap();
    let amira_elm = s
        .add_child(&admin(), &elm.id, "Amira Jones", "2011-01-01", 3)
        .await
        .unwrap();
    let jo = s
        .add_staff(
            &admin(),
            staff("Jo", Role::Staff, std::slice::from_ref(&oak.id), "h-jo"),
            4,
        )
        .await
        .unwrap();
    assert_eq!(jo.homes, vec![oak.id.clone()]);
    let by_token = s.staff_by_token("h-jo", 5).await.unwrap().unwrap();
    assert_eq!(by_token.homes, vec![oak.id.clone()]);
    let scope = HomeScope::for_member(Role::Staff, by_token.homes);
    assert_eq!(
        s.find_child_within("amira", &scope).await.unwrap().id,
        amira_oak.id,
        "the child in another home does not make the name ambiguous"
    );
    assert!(matches!(
        s.find_child_within(&amira_elm.id, &scope).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.find_child("amira").await,
        Err(StoreError::Ambiguous { .. })
    ));
    s.add_staff_to_home(&admin(), &jo.id, &elm.id, 6)
        .await
        .unwrap();
    assert!(matches!(
        s.add_staff_to_home(&admin(), &jo.id, &elm.id, 7).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.add_staff_to_home(&admin(), &jo.id, "home-missing", 7)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let listed = s.list_staff(false).await.unwrap();
    let jo_now = listed.iter().find(|m| m.id == jo.id).unwrap();
    assert_eq!(jo_now.homes.len(), 2);
}

// R19: a child's own social worker is protected for that child only.
pub async fn a_protected_contact_can_belong_to_one_child(s: &impl Store) {
    let h = home(s, "Oak").await;
    let amira = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let ben = s
        .add_child(&admin(), &h.id, "Ben", "2013-01-01", 3)
        .await
        .unwrap();
    let d = enrolled(s, &amira.id, "code-a", "fp-a").await;
    let e = enrolled(s, &ben.id, "code-b", "fp-b").await;
    s.add_protected_contact(&admin(), &h.id, None, "Childline", "08001111", 10)
        .await
        .unwrap();
    s.add_protected_contact(
        &admin(),
        &h.id,
        Some(&amira.id),
        "Amira's social worker",
        "+447700900001",
        11,
    )
    .await
    .unwrap();
    assert!(matches!(
        s.add_protected_contact(
            &admin(),
            &h.id,
            Some(&ben.id),
            "Childline again",
            "08001111",
            12
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    let for_amira = s.policy_data_for_device(&d.id).await.unwrap().unwrap();
    assert_eq!(for_amira.protected_contacts.len(), 2);
    let for_ben = s.policy_data_for_device(&e.id).await.unwrap().unwrap();
    assert_eq!(for_ben.protected_contacts.len(), 1);
    assert_eq!(s.list_protected_contacts(&h.id).await.unwrap().len(), 2);
}

// clause R19: a home's own protected contact can be taken off its list (a social worker who
// moved on); the record is kept and audited, the devices get a new policy, and the same number
// can be added again later.
pub async fn a_removed_protected_contact_is_kept_and_can_be_added_again(s: &impl Store) {
    let h = home(s, "Oak").await;
    let amira = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let d = enrolled(s, &amira.id, "code-a", "fp-a").await;
    let (sw, added) = s
        .add_protected_contact(
            &admin(),
            &h.id,
            Some(&amira.id),
            "Old SW",
            "+447700900001",
            10,
        )
        .await
        .unwrap();
    let (removed, version) = s
        .remove_protected_contact(&admin(), &h.id, &sw.id, "moved to another team", 11)
        .await
        .unwrap();
    assert_eq!(removed.id, sw.id);
    assert!(version > added);
    assert!(s.list_protected_contacts(&h.id).await.unwrap().is_empty());
    let data = s.policy_data_for_device(&d.id).await.unwrap().unwrap();
    assert!(data.protected_contacts.is_empty());
    assert!(matches!(
        s.remove_protected_contact(&admin(), &h.id, &sw.id, "again", 12)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    s.add_protected_contact(
        &admin(),
        &h.id,
        Some(&amira.id),
        "New SW",
        "+447700900001",
        13,
    )
    .await
    .unwrap();
    assert_eq!(s.list_protected_contacts(&h.id).await.unwrap().len(), 1);
    let audit = s.audit_entries(0, 1000).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "home.protected_contact.remove")
    );
}

fn new_lockdown(
    id: &str,
    target: crate::domain::emergency::LockdownTarget,
    home_id: &str,
) -> NewLockdown {
    use crate::domain::emergency::*;
    NewLockdown {
        id: id.into(),
        target,
        home_id: home_id.into(),
        order: validate_lockdown(
            &LockdownDraft {
                reason: "injury-to-others".into(),
                channels: vec!["calls".into(), "web".into()],
                note: "threats at 01:50".into(),
                until: Some(10_000),
                ..Default::default()
            },
            50,
        )
        .unwrap(),
        started_by_name: "Sam Carer".into(),
    }
}

fn obligations_for(child_id: &str, sanction: &str) -> Vec<NewObligation> {
    [
        ("obl-n", "notify-social-worker", None),
        ("obl-c", "complete-sanction-record", Some(sanction)),
        ("obl-s", "manager-sign-off", Some(sanction)),
        ("obl-d", "discuss-with-child", Some(sanction)),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (id, kind, s))| NewObligation {
        id: id.into(),
        kind: kind.into(),
        child_id: child_id.into(),
        sanction_id: s.map(str::to_string),
        due_at: 1_000 + i as i64,
    })
    .collect()
}

// clauses RM3, RM4, RM5, KP1, D8: a lockdown, its sanction and its obligations are written
// together, reach the device's policy inputs, are lifted once, and are kept afterwards.
pub async fn a_lockdown_is_written_whole_lifted_once_and_kept(s: &impl Store) {
    use crate::domain::emergency::LockdownTarget;
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let d = enrolled(s, &c.id, "code", "fp").await;
    let d2 = enrolled(s, &c.id, "code2", "fp2").await;
    let carer = Actor("stf-carer".into());
    let before = s.policy_data_for_device(&d.id).await.unwrap().unwrap();
    let l = s
        .start_lockdown(
            &carer,
            &new_lockdown("lck-1", LockdownTarget::Device(d.id.clone()), &h.id),
            &[NewSanction {
                id: "snc-1".into(),
                child_id: c.id.clone(),
                record: "{}".into(),
            }],
            &obligations_for(&c.id, "snc-1"),
            60,
        )
        .await
        .unwrap();
    assert_eq!(l.child_name.as_deref(), Some("Amira"));
    assert_eq!(l.channels, ["calls", "web"]);
    assert_eq!(l.started_by, "stf-carer");
    assert!(l.policy_version > before.version);
    let data = s.policy_data_for_device(&d.id).await.unwrap().unwrap();
    assert_eq!(data.version, l.policy_version);
    assert_eq!(data.lockdowns.len(), 1);
    // A device lockdown is that device's only.
    let other = s.policy_data_for_device(&d2.id).await.unwrap().unwrap();
    assert!(other.lockdowns.is_empty());
    assert_eq!(other.version, before.version.max(other.version));
    assert_eq!(
        s.home_policy_inputs(&h.id).await.unwrap().lockdowns.len(),
        1
    );
    assert_eq!(s.lockdowns(Some(&h.id), false).await.unwrap().len(), 1);
    assert_eq!(s.obligations(None, true).await.unwrap().len(), 4);

    // RM4: a notification closes once; a sanction obligation is not a notification.
    s.record_notification(&carer, "obl-n", "Sam", "phone", 70, "", 80)
        .await
        .unwrap();
    assert!(matches!(
        s.record_notification(&carer, "obl-n", "Sam", "phone", 70, "", 81)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.record_notification(&carer, "obl-c", "Sam", "phone", 70, "", 81)
            .await,
        Err(StoreError::Conflict(_))
    ));
    // RM5: sign-off waits for the completed record; each step closes its obligation.
    let manager = Actor("stf-m".into());
    assert!(matches!(
        s.sign_off_sanction(&manager, "snc-1", "", "Sam, 3 Dec", 90)
            .await,
        Err(StoreError::Conflict(_))
    ));
    s.complete_sanction(&carer, "snc-1", "{\"location\":\"lounge\"}", 91)
        .await
        .unwrap();
    // RM5: the manager spoke to the person who imposed it.
    assert!(matches!(
        s.sign_off_sanction(&manager, "snc-1", "accurate", " ", 92)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let signed = s
        .sign_off_sanction(&manager, "snc-1", "accurate", "Sam, 3 Dec", 92)
        .await
        .unwrap();
    assert_eq!(signed.spoke_with_imposer.as_deref(), Some("Sam, 3 Dec"));
    let done = s
        .record_sanction_discussion(&carer, "snc-1", "she thought it was fair", 93)
        .await
        .unwrap();
    assert_eq!(done.child_views.as_deref(), Some("she thought it was fair"));
    assert!(s.obligations(None, true).await.unwrap().is_empty());
    assert_eq!(
        s.sanctions_page(Some(&h.id), None, &Page::first(1000))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // RM6
    let noted = s
        .record_ofsted_advice(&carer, "lck-1", "duty inspector: notify police", 95)
        .await
        .unwrap();
    assert_eq!(
        noted.ofsted_advice.as_deref(),
        Some("duty inspector: notify police")
    );

    let lifted = s
        .lift_lockdown(&carer, "lck-1", "calm now", 100)
        .await
        .unwrap();
    assert!(lifted.lifted_version.unwrap() > l.policy_version);
    let data = s.policy_data_for_device(&d.id).await.unwrap().unwrap();
    assert!(data.lockdowns.is_empty());
    assert_eq!(data.version, lifted.lifted_version.unwrap());
    assert!(matches!(
        s.lift_lockdown(&carer, "lck-1", "again", 101).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.lockdowns(None, false).await.unwrap().is_empty());
    assert_eq!(s.lockdowns(None, true).await.unwrap().len(), 1);
    let entries = s.audit_entries(0, 1000).await.unwrap();
    assert!(verify_chain(&entries).is_ok());
    assert!(entries.iter().any(|e| e.action == "lockdown.start"));
    assert!(entries.iter().any(|e| e.action == "lockdown.lift"));
}

// clause RM5: never half-written — a lockdown whose sanction cannot be written is not written.
pub async fn a_failed_lockdown_writes_nothing(s: &impl Store) {
    use crate::domain::emergency::LockdownTarget;
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let audit_before = s.audit_entries(0, 1000).await.unwrap().len();
    let result = s
        .start_lockdown(
            &admin(),
            &new_lockdown("lck-x", LockdownTarget::Child(c.id.clone()), &h.id),
            &[NewSanction {
                id: "snc-x".into(),
                child_id: "chd-nobody".into(),
                record: "{}".into(),
            }],
            &obligations_for(&c.id, "snc-x"),
            60,
        )
        .await;
    assert!(result.is_err());
    assert!(s.lockdowns(None, true).await.unwrap().is_empty());
    assert!(s.obligations(None, false).await.unwrap().is_empty());
    assert!(
        s.sanctions_page(None, None, &Page::first(1000))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(s.audit_entries(0, 1000).await.unwrap().len(), audit_before);
    assert!(matches!(
        s.find_lockdown("lck-x").await,
        Err(StoreError::NotFound { .. })
    ));
}

// clause R36: nothing is deleted; a child who left is archived with their records.
pub async fn a_child_who_left_is_archived_not_deleted(s: &impl Store) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let d = enrolled(s, &c.id, "code", "fp").await;
    assert!(matches!(
        s.archive_child(&admin(), &c.id, "moved", 30).await,
        Err(StoreError::Conflict(_))
    ));
    s.revoke_device(&admin(), &d.id, "left with her", 31)
        .await
        .unwrap();
    let archived = s
        .archive_child(&admin(), &c.id, "moved to foster care", 32)
        .await
        .unwrap();
    assert_eq!(archived.archived_at, Some(32));
    assert!(matches!(
        s.archive_child(&admin(), &c.id, "again", 33).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.find_child(&c.id).await.unwrap().archive_reason.as_deref(),
        Some("moved to foster care")
    );
    assert_eq!(s.list_devices(Some(&c.id), true).await.unwrap().len(), 1);
}

// clause R7
pub async fn a_childs_request_is_kept_once_and_answered_once(s: &impl Store) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let d = enrolled(s, &c.id, "code", "fp").await;
    assert!(
        s.record_child_request(&d.id, "req-1", "Can I call Nan?", 5, 6)
            .await
            .unwrap()
    );
    assert!(
        !s.record_child_request(&d.id, "req-1", "Can I call Nan?", 5, 7)
            .await
            .unwrap()
    );
    assert_eq!(s.child_requests(Some(&c.id), true).await.unwrap().len(), 1);
    let manager = Actor("stf-m".into());
    let a = s
        .answer_child_request(&manager, "req-1", "agreed", "Sundays at 5pm", 9)
        .await
        .unwrap();
    assert_eq!(a.child_name, "Amira");
    assert!(matches!(
        s.answer_child_request(&manager, "req-1", "not agreed", "x", 10)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.child_requests(None, true).await.unwrap().len(), 0);
    assert_eq!(s.answers_for_device(&d.id).await.unwrap().len(), 1);
    let found = s.find_child_request("req-1").await.unwrap();
    assert_eq!(
        (found.home_id, found.decision.as_deref()),
        (h.id.clone(), Some("agreed"))
    );
    assert!(matches!(
        s.find_child_request("req-nope").await,
        Err(StoreError::NotFound { .. })
    ));
}

// clause WB3, IM4
pub async fn reports_wait_for_a_manager_and_approvals_are_registered(s: &impl Store) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let carer = Actor("stf-carer".into());
    let r = s
        .add_off_duty_report(&carer, &h.id, Some(&c.id), "{}", 10)
        .await
        .unwrap();
    assert_eq!(
        s.off_duty_reports(Some(&h.id), true).await.unwrap().len(),
        1
    );
    let manager = Actor("stf-m".into());
    let done = s
        .acknowledge_off_duty_report(&manager, &r.id, "spoke to Jo", 20)
        .await
        .unwrap();
    assert_eq!(done.acknowledged_by.as_deref(), Some("stf-m"));
    assert_eq!(s.find_off_duty_report(&r.id).await.unwrap().home_id, h.id);
    assert!(matches!(
        s.find_off_duty_report("odr-nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.acknowledge_off_duty_report(&manager, &r.id, "again", 21)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.off_duty_reports(Some(&h.id), true).await.unwrap().len(),
        0
    );
    assert_eq!(s.off_duty_reports(None, false).await.unwrap().len(), 1);
    s.add_photography_approval(&manager, &c.id, "{}", 30)
        .await
        .unwrap();
    assert_eq!(s.photography_approvals(&c.id).await.unwrap().len(), 1);
}

// clause RM2: revisions are never edited or deleted; a change is a new revision.
pub async fn plan_revisions_are_numbered_kept_and_never_overwritten(s: &impl Store) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let d = enrolled(s, &c.id, "code", "fp").await;
    let manager = Actor("stf-m".into());
    s.add_risk_assessment(&manager, "ra-1", &c.id, "{\"outcome\":\"ok\"}", 30)
        .await
        .unwrap();
    assert_eq!(s.risk_assessments(&c.id).await.unwrap().len(), 1);
    let (first, v1) = s
        .add_plan_revision(&manager, &c.id, 0, "{\"r\":1}", 40)
        .await
        .unwrap();
    assert_eq!(first.number, 1);
    assert!(
        v1 > d.desired_version,
        "a plan change makes a new policy version"
    );
    let data = s.policy_data_for_device(&d.id).await.unwrap().unwrap();
    assert_eq!(data.version, v1);
    assert_eq!(data.plan.as_deref(), Some("{\"r\":1}"));
    // Someone who started from revision 0 cannot overwrite revision 1.
    assert!(matches!(
        s.add_plan_revision(&manager, &c.id, 0, "{\"r\":\"stale\"}", 41)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let (second, _) = s
        .add_plan_revision(&manager, &c.id, 1, "{\"r\":2}", 42)
        .await
        .unwrap();
    assert_eq!(second.number, 2);
    let all = s.plan_revisions(&c.id).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[0].document, "{\"r\":1}",
        "the first revision is kept as written"
    );
    let home_inputs = s.home_policy_inputs(&h.id).await.unwrap();
    assert_eq!(
        home_inputs.children[0].plan.as_deref(),
        Some("{\"r\":2}"),
        "devices get the newest revision"
    );
    let actions: Vec<String> = s
        .audit_entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"plan.revision.add".to_string()));
    assert!(actions.contains(&"risk_assessment.add".to_string()));
}

fn admin() -> Actor {
    Actor("stf-admin".into())
}

fn staff<'a>(name: &'a str, role: Role, homes: &'a [String], token_hash: &'a str) -> NewStaff<'a> {
    NewStaff {
        name,
        role,
        homes,
        token_hash,
        token_hint: "hvn_ab",
        token_expires_at: 1_000_000_000,
    }
}

// Issue 13: enrollment codes are listed by id and hint, cancelled once, and die with their
// maker's account or their child's record.
pub async fn enrollment_codes_are_listed_cancelled_and_die_with_their_maker(s: &impl Store) {
    use crate::domain::enrollment::CodeState;
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let jo = s
        .add_staff(
            &admin(),
            staff("Jo", Role::Staff, std::slice::from_ref(&h.id), "h-jo"),
            3,
        )
        .await
        .unwrap();
    let ann = s
        .add_staff(&admin(), staff("Ann", Role::Admin, &[], "h-ann"), 3)
        .await
        .unwrap();
    let by_jo = Actor(jo.id.clone());
    s.create_enrollment_with(&by_jo, &c.id, "hash-1", "enr-1", "AAAA-…", 1_000, 10)
        .await
        .unwrap();
    s.create_enrollment_with(&admin(), &c.id, "hash-2", "enr-2", "BBBB-…", 1_000, 11)
        .await
        .unwrap();
    let listed = s.list_enrollments(Some(&c.id), 20).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, "enr-2", "newest first");
    assert!(listed.iter().all(|e| e.state == CodeState::Usable));
    let cancelled = s.cancel_enrollment(&admin(), "enr-2", 30).await.unwrap();
    assert_eq!(cancelled.state, CodeState::Cancelled);
    assert!(matches!(
        s.check_enrollment("hash-2", 31).await,
        Ok((_, CodeState::Cancelled))
    ));
    assert!(matches!(
        s.cancel_enrollment(&admin(), "enr-2", 32).await,
        Err(StoreError::Conflict(_))
    ));
    // Jo leaves: the code Jo made dies with Jo's account.
    s.revoke_staff(&Actor(ann.id.clone()), &jo.id, 40)
        .await
        .unwrap();
    assert!(matches!(
        s.check_enrollment("hash-1", 41).await,
        Ok((_, CodeState::Cancelled))
    ));
    let audit = s.audit_entries(0, 1000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "device.enrollment.cancel"));
}

// A rotated token replaces the old one at once, with its new expiry, and is audited; a
// revoked member of staff gets no new token.
pub async fn a_rotated_token_replaces_the_old_one(s: &impl Store) {
    let oak = home(s, "Oak").await;
    let jo = s
        .add_staff(
            &admin(),
            staff("Jo", Role::Staff, std::slice::from_ref(&oak.id), "h-old"),
            2,
        )
        .await
        .unwrap();
    assert_eq!(jo.token_expires_at, Some(1_000_000_000));
    let rotated = s
        .rotate_staff_token(&admin(), &jo.id, "h-new", "hvn_cd", 2_000_000_000, 3)
        .await
        .unwrap();
    assert_eq!(rotated.token_hint, "hvn_cd");
    assert_eq!(rotated.homes, vec![oak.id.clone()]);
    assert!(s.staff_by_token("h-old", 4).await.unwrap().is_none());
    let by_new = s.staff_by_token("h-new", 4).await.unwrap().unwrap();
    assert_eq!(by_new.token_expires_at, Some(2_000_000_000));
    let audit = s.audit_entries(0, 1000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "staff.token.rotate"));
    s.add_staff(&admin(), staff("Ann", Role::Admin, &[], "h-ann"), 5)
        .await
        .unwrap();
    s.revoke_staff(&admin(), &jo.id, 6).await.unwrap();
    assert!(matches!(
        s.rotate_staff_token(&admin(), &jo.id, "h-x", "hvn_x", 7, 7)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn home(s: &impl Store, name: &str) -> HomeRecord {
    s.add_home(&admin(), name, "Europe/London", 1)
        .await
        .unwrap()
}

async fn enrolled(s: &impl Store, child_id: &str, code: &str, fp: &str) -> DeviceRecord {
    s.create_enrollment(&admin(), child_id, code, 1_000, 10)
        .await
        .unwrap();
    s.redeem_enrollment(
        code,
        NewDevice {
            id: format!("dev-{fp}"),
            cert_fingerprint: fp.into(),
            inventory: None,
        },
        20,
    )
    .await
    .unwrap()
}

pub async fn homes_are_unique_and_found_by_id_or_name(s: &impl Store) {
    let oak = home(s, "Oak House").await;
    assert_eq!(s.find_home("oak house").await.unwrap().id, oak.id);
    assert_eq!(s.find_home(&oak.id).await.unwrap().name, "Oak House");
    assert!(matches!(
        s.add_home(&admin(), "OAK HOUSE", "Europe/London", 2).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.find_home("Elm").await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn children_with_the_same_name_are_told_apart(s: &impl Store) {
    let h = home(s, "Oak").await;
    let a = s
        .add_child(&admin(), &h.id, "Sam Jones", "2012-01-01", 2)
        .await
        .unwrap();
    let b = s
        .add_child(&admin(), &h.id, "Sam Jones", "2013-01-01", 3)
        .await
        .unwrap();
    match s.find_child("sam jones").await {
        Err(StoreError::Ambiguous { ids, .. }) => {
            assert!(ids.contains(&a.id) && ids.contains(&b.id))
        }
        other => panic!("expected ambiguity, got {other:?}"),
    }
    assert_eq!(
        s.find_child(&b.id).await.unwrap().date_of_birth,
        "2013-01-01"
    );
    let amira = s
        .add_child(&admin(), &h.id, "Amira Khan", "2012-01-01", 4)
        .await
        .unwrap();
    assert_eq!(
        s.find_child("amira").await.unwrap().id,
        amira.id,
        "a first name is enough"
    );
    assert!(matches!(
        s.find_child("sam").await,
        Err(StoreError::Ambiguous { .. })
    ));
    assert!(matches!(
        s.find_child("ami").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.list_children(Some(&h.id)).await.unwrap().len(), 3);
    assert_eq!(s.list_children(Some("home-none")).await.unwrap().len(), 0);
}

pub async fn an_enrollment_code_enrolls_one_device_once(s: &impl Store) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    s.create_enrollment(&admin(), &c.id, "hash-1", 100, 10)
        .await
        .unwrap();
    assert_eq!(
        s.check_enrollment("hash-1", 50).await.unwrap(),
        (c.id.clone(), CodeState::Usable)
    );
    let dev = NewDevice {
        id: "dev-1".into(),
        cert_fingerprint: "fp-1".into(),
        inventory: Some("{}".into()),
    };
    let d = s
        .redeem_enrollment("hash-1", dev.clone(), 50)
        .await
        .unwrap();
    assert_eq!(d.child_id, c.id);
    assert_eq!(d.status, "active");
    let again = NewDevice {
        id: "dev-2".into(),
        cert_fingerprint: "fp-2".into(),
        ..dev
    };
    assert!(matches!(
        s.redeem_enrollment("hash-1", again.clone(), 60).await,
        Err(StoreError::CodeUnusable(Some(CodeState::AlreadyUsed)))
    ));
    s.create_enrollment(&admin(), &c.id, "hash-2", 100, 10)
        .await
        .unwrap();
    assert!(matches!(
        s.redeem_enrollment("hash-2", again.clone(), 100).await,
        Err(StoreError::CodeUnusable(Some(CodeState::Expired)))
    ));
    assert!(matches!(
        s.redeem_enrollment("hash-x", again, 10).await,
        Err(StoreError::CodeUnusable(None))
    ));
    assert_eq!(s.list_devices(Some(&c.id), true).await.unwrap().len(), 1);
    assert_eq!(
        s.device_by_fingerprint("fp-1").await.unwrap().unwrap().id,
        "dev-1"
    );
}

pub async fn policy_versions_grow_with_each_change(s: &impl Store) {
    let before = s.highest_policy_version().await.unwrap();
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let d = enrolled(s, &c.id, "code", "fp").await;
    assert!(d.desired_version > 0);
    assert_eq!(d.applied_version, 0);
    let (_, v) = s
        .add_protected_contact(
            &Actor("stf-m".into()),
            &h.id,
            None,
            "Childline",
            "08001111",
            30,
        )
        .await
        .unwrap();
    assert!(v > d.desired_version);
    // What a device may claim to enforce is bounded by what was handed out.
    let highest = s.highest_policy_version().await.unwrap();
    assert!(highest >= v && v > before, "{before} {v} {highest}");
    let inputs = s.home_policy_inputs(&h.id).await.unwrap();
    assert_eq!(
        inputs.children,
        vec![ChildPolicyInput {
            child_id: c.id.clone(),
            name: "Amira".to_string(),
            plan: None
        }]
    );
    assert_eq!(inputs.protected_contacts.len(), 1);
    let data = s.policy_data_for_device(&d.id).await.unwrap().unwrap();
    assert_eq!(
        data.version, v,
        "the home's change is the device's newest version"
    );
    assert_eq!(data.protected_contacts.len(), 1);
    assert!(matches!(
        s.add_protected_contact(&Actor("stf-m".into()), &h.id, None, "Again", "08001111", 31)
            .await,
        Err(StoreError::Conflict(_))
    ));
    s.record_device_reports(&[DeviceReport {
        device_id: d.id.clone(),
        seen_at: 39,
        inventory: Some("{\"os_name\":\"Linux\"}".into()),
        applied: Some((v - 1, None, 39)),
        guards: Some("{\"enforcer\":\"linux\"}".into()),
    }])
    .await
    .unwrap();
    assert_eq!(s.find_device(&d.id).await.unwrap().applied_version, v - 1);
    assert_eq!(s.find_device(&d.id).await.unwrap().last_seen_at, Some(39));
    for (version, at) in [(v, 40), (v - 1, 41)] {
        s.record_device_reports(&[DeviceReport {
            device_id: d.id.clone(),
            seen_at: at,
            inventory: None,
            applied: Some((version, None, at)),
            guards: None,
        }])
        .await
        .unwrap();
    }
    let after = s.find_device(&d.id).await.unwrap();
    assert_eq!(
        after.applied_version, v,
        "an older acknowledgement never wins"
    );
    assert_eq!(
        after.guards.as_deref(),
        Some("{\"enforcer\":\"linux\"}"),
        "a report without guards keeps the last guard report"
    );
    assert_eq!(after.desired_version, v);
}

// clause RM3: a lockdown's reply and live count name exactly the active devices it reaches,
// read without their inventories (issue 14).
pub async fn a_lockdown_reaches_the_active_devices_of_its_target_only(s: &impl Store) {
    let oak = home(s, "Oak").await;
    let elm = home(s, "Elm").await;
    let zoe = s
        .add_child(&admin(), &oak.id, "Zoe", "2012-01-01", 2)
        .await
        .unwrap();
    let amira = s
        .add_child(&admin(), &oak.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let other = s
        .add_child(&admin(), &elm.id, "Ben", "2012-01-01", 2)
        .await
        .unwrap();
    let zoe_phone = enrolled(s, &zoe.id, "c1", "z1").await;
    let amira_tablet = enrolled(s, &amira.id, "c2", "a1").await;
    let amira_old = enrolled(s, &amira.id, "c3", "a2").await;
    enrolled(s, &other.id, "c4", "b1").await;
    s.revoke_device(&admin(), &amira_old.id, "lost", 30)
        .await
        .unwrap();
    // One batch, two devices: each row gets its own report.
    s.record_device_reports(&[
        DeviceReport {
            device_id: zoe_phone.id.clone(),
            seen_at: 40,
            inventory: None,
            applied: Some((2, None, 40)),
            guards: None,
        },
        DeviceReport {
            device_id: amira_tablet.id.clone(),
            seen_at: 41,
            inventory: Some("{\"os_name\":\"Android\"}".into()),
            applied: None,
            guards: None,
        },
    ])
    .await
    .unwrap();
    let tablet = s.find_device(&amira_tablet.id).await.unwrap();
    assert_eq!(tablet.last_seen_at, Some(41));
    assert_eq!(
        tablet.inventory.as_deref(),
        Some("{\"os_name\":\"Android\"}")
    );
    assert_eq!(
        s.find_device(&zoe_phone.id).await.unwrap().applied_at,
        Some(40)
    );

    let ids = |v: Vec<ReachedDevice>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let home_wide = s.devices_reached(&oak.id, None, None).await.unwrap();
    // By child name: Amira's tablet, then Zoe's phone; the revoked one and Elm's are not there.
    assert_eq!(
        home_wide,
        vec![
            ReachedDevice {
                id: amira_tablet.id.clone(),
                child_name: "Amira".into(),
                applied_version: 0,
            },
            ReachedDevice {
                id: zoe_phone.id.clone(),
                child_name: "Zoe".into(),
                applied_version: 2,
            },
        ]
    );
    assert_eq!(
        ids(s
            .devices_reached(&oak.id, Some(&zoe.id), None)
            .await
            .unwrap()),
        vec![zoe_phone.id.clone()]
    );
    assert_eq!(
        ids(s
            .devices_reached(&oak.id, Some(&amira.id), Some(&amira_tablet.id))
            .await
            .unwrap()),
        vec![amira_tablet.id.clone()]
    );
    assert!(
        s.devices_reached(&oak.id, Some(&amira.id), Some(&amira_old.id))
            .await
            .unwrap()
            .is_empty(),
        "a revoked device is not reached"
    );
    assert!(
        s.devices_reached(&elm.id, Some(&zoe.id), None)
            .await
            .unwrap()
            .is_empty(),
        "a child of another home is not reached"
    );
}

pub async fn revoked_devices_and_staff_stay_on_record(s: &impl Store) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let d = enrolled(s, &c.id, "code", "fp").await;
    let r = s.revoke_device(&admin(), &d.id, "lost", 50).await.unwrap();
    assert_eq!(r.status, "revoked");
    assert!(matches!(
        s.revoke_device(&admin(), &d.id, "again", 51).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.policy_data_for_device(&d.id).await.unwrap().is_none());
    assert_eq!(s.list_devices(None, false).await.unwrap().len(), 0);
    assert_eq!(s.list_devices(None, true).await.unwrap().len(), 1);

    let first = s
        .add_staff(
            &Actor::system(),
            staff("First Admin", Role::Admin, &[], "h1"),
            1,
        )
        .await
        .unwrap();
    assert!(matches!(
        s.revoke_staff(&admin(), &first.id, 2).await,
        Err(StoreError::Conflict(_))
    ));
    let worker = s
        .add_staff(&admin(), staff("Jo", Role::Staff, &[], "h2"), 3)
        .await
        .unwrap();
    assert_eq!(
        s.staff_by_token("h2", 4).await.unwrap().unwrap().id,
        worker.id
    );
    s.revoke_staff(&admin(), "jo", 5).await.unwrap();
    assert!(s.staff_by_token("h2", 6).await.unwrap().is_none());
    assert_eq!(s.list_staff(false).await.unwrap().len(), 1);
    assert_eq!(s.list_staff(true).await.unwrap().len(), 2);
}

pub async fn violations_are_counted_once(s: &impl Store) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let d = enrolled(s, &c.id, "code", "fp").await;
    let v = |id: &str| ViolationRecord {
        id: id.into(),
        kind: "app_blocked".into(),
        channel: "".into(),
        subject: "game".into(),
        detail: "tried to open a blocked app".into(),
        occurred_at: 5,
    };
    let first = s
        .record_violations(&d.id, &[v("a"), v("b"), v("a")], 9)
        .await
        .unwrap();
    assert_eq!(
        first.new.len(),
        2,
        "a repeat inside one batch is stored once"
    );
    assert_eq!(first.new[0].child_name, "Amira");
    let again = s
        .record_violations(&d.id, &[v("b"), v("c")], 9)
        .await
        .unwrap();
    let ids: Vec<&str> = again.new.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["c"], "only what was new is reported as new");
    assert_eq!(s.count_violations(&d.id).await.unwrap(), 3);
}

// clause D5: staff list what devices blocked, filtered and newest first.
pub async fn violations_are_listed_newest_first_and_filtered(s: &impl Store) {
    let h = home(s, "Oak").await;
    let amira = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let ben = s
        .add_child(&admin(), &h.id, "Ben", "2013-01-01", 2)
        .await
        .unwrap();
    let tablet = enrolled(s, &amira.id, "code1", "fp1").await;
    let laptop = enrolled(s, &amira.id, "code2", "fp2").await;
    let bens = enrolled(s, &ben.id, "code3", "fp3").await;
    let v = |id: &str, kind: &str, at: i64| ViolationRecord {
        id: id.into(),
        kind: kind.into(),
        channel: "".into(),
        subject: "x".into(),
        detail: "".into(),
        occurred_at: at,
    };
    s.record_violations(
        &tablet.id,
        &[v("t1", "camera_blocked", 10), v("t2", "app_blocked", 30)],
        40,
    )
    .await
    .unwrap();
    s.record_violations(&laptop.id, &[v("l1", "web_blocked", 20)], 40)
        .await
        .unwrap();
    s.record_violations(&bens.id, &[v("b1", "camera_blocked", 25)], 40)
        .await
        .unwrap();
    let ids = |list: Paged<StoredViolation, ViolationKey>| {
        list.items.into_iter().map(|v| v.id).collect::<Vec<_>>()
    };
    let all = ViolationFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        ids(s.list_violations(&all).await.unwrap()),
        ["t2", "b1", "l1", "t1"]
    );
    let amiras = ViolationFilter {
        child_id: Some(amira.id.clone()),
        ..all.clone()
    };
    assert_eq!(
        ids(s.list_violations(&amiras).await.unwrap()),
        ["t2", "l1", "t1"]
    );
    let tablet_only = ViolationFilter {
        device_id: Some(tablet.id.clone()),
        ..all.clone()
    };
    assert_eq!(
        ids(s.list_violations(&tablet_only).await.unwrap()),
        ["t2", "t1"]
    );
    let cameras = ViolationFilter {
        kind: Some("camera_blocked".into()),
        ..all.clone()
    };
    assert_eq!(
        ids(s.list_violations(&cameras).await.unwrap()),
        ["b1", "t1"]
    );
    let recent = ViolationFilter {
        since: Some(20),
        limit: 2,
        ..all.clone()
    };
    assert_eq!(ids(s.list_violations(&recent).await.unwrap()), ["t2", "b1"]);
    let listed = s.list_violations(&amiras).await.unwrap().items;
    assert_eq!(listed[0].child_name, "Amira");
    assert_eq!(listed[0].home_id, h.id);
    assert_eq!(listed[0].received_at, 40);
}

// clause GD3: an attempt to reach an unknown contact opens one manager task; repeats are
// counted on it; a manager closes it with a note, once.
pub async fn unknown_contacts_open_one_grouped_manager_task(s: &impl Store) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira Khan", "2012-01-01", 2)
        .await
        .unwrap();
    let d = enrolled(s, &c.id, "code", "fp").await;
    let v = |id: &str, subject: &str, at: i64| ViolationRecord {
        id: id.into(),
        kind: "unknown_contact".into(),
        channel: "call".into(),
        subject: subject.into(),
        detail: "".into(),
        occurred_at: at,
    };
    let first = s
        .record_violations(
            &d.id,
            &[v("u1", "+447700900999", 10), v("u2", "07700 900999", 11)],
            20,
        )
        .await
        .unwrap();
    assert_eq!(first.tasks.len(), 1, "{:?}", first.tasks);
    let task = &first.tasks[0];
    assert_eq!(task.attempts, 2);
    assert!(
        task.summary
            .starts_with("Amira tried to call +447700900999"),
        "{}",
        task.summary
    );
    // A resend changes nothing; a new attempt is counted on the same task.
    let resent = s
        .record_violations(&d.id, &[v("u2", "07700 900999", 11)], 30)
        .await
        .unwrap();
    assert!(resent.tasks.is_empty());
    let more = s
        .record_violations(&d.id, &[v("u3", "+447700900999", 50)], 60)
        .await
        .unwrap();
    assert_eq!(more.tasks.len(), 1);
    assert_eq!(more.tasks[0].id, task.id);
    assert_eq!(more.tasks[0].attempts, 3);
    assert_eq!(more.tasks[0].last_attempt_at, 50);
    assert_eq!(s.manager_tasks(Some(&c.id), false).await.unwrap().len(), 1);

    let closed = s
        .close_manager_task(
            &admin(),
            &task.id,
            "assess",
            "assessed with the social worker",
            70,
        )
        .await
        .unwrap();
    assert_eq!(closed.closed_at, Some(70));
    assert_eq!(closed.decision.as_deref(), Some("assess"));
    assert_eq!(s.find_manager_task(&task.id).await.unwrap(), closed);
    assert!(matches!(
        s.find_manager_task("tsk-nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.close_manager_task(&admin(), &task.id, "refuse", "again", 71)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.close_manager_task(&admin(), "tsk-nope", "refuse", "x", 71)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.manager_tasks(None, false).await.unwrap().is_empty());
    assert_eq!(s.manager_tasks(None, true).await.unwrap().len(), 1);
    // Once closed, a new attempt opens a new task.
    let after = s
        .record_violations(&d.id, &[v("u4", "+447700900999", 80)], 90)
        .await
        .unwrap();
    assert_eq!(after.tasks.len(), 1);
    assert_ne!(after.tasks[0].id, task.id);
    let actions: Vec<String> = s
        .audit_entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for expected in [
        "violations.record",
        "manager_task.open",
        "manager_task.attempt",
        "manager_task.close",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
}

pub async fn every_change_is_in_an_intact_audit_chain(s: &impl Store) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    enrolled(s, &c.id, "code", "fp").await;
    let entries = s.audit_entries(0, 100).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "home.add",
            "child.add",
            "device.enrollment.create",
            "device.enroll"
        ]
    );
    assert_eq!(verify_chain(&entries), Ok(4));
    assert_eq!(s.audit_entries(2, 1).await.unwrap()[0].seq, 3);
}

// Issue 13 (D7): a renewed certificate is on record for the same device, works before its
// first use alongside the old one, and replaces it at first use; expired, superseded and
// other devices' certificates find nothing.
pub async fn d7_a_renewed_certificate_finds_the_same_device_and_replaces_the_old_one_at_first_use(
    s: &impl Store,
) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let d = enrolled(s, &c.id, "code", "fp-old").await;
    let other = enrolled(s, &c.id, "code-2", "fp-other").await;
    // Not known until the device is seen with it (enrolled before certificates were recorded).
    assert_eq!(s.current_certificate(&d.id).await.unwrap(), None);
    assert_eq!(
        s.certificate_in_use(&d.id, "fp-old", 5_000, 100)
            .await
            .unwrap(),
        CertificateUse::Current
    );
    let current = s.current_certificate(&d.id).await.unwrap().unwrap();
    assert_eq!(
        (current.fingerprint.as_str(), current.not_after),
        ("fp-old", 5_000)
    );
    assert_eq!(current.first_used_at, Some(100));
    // Seen again: nothing changes.
    assert_eq!(
        s.certificate_in_use(&d.id, "fp-old", 5_000, 150)
            .await
            .unwrap(),
        CertificateUse::Current
    );

    s.record_renewed_certificate(&d.id, "fp-new", 9_000, 200)
        .await
        .unwrap();
    // Both work until the new one is first used.
    assert_eq!(
        s.device_by_fingerprint("fp-old").await.unwrap().unwrap().id,
        d.id
    );
    assert_eq!(
        s.device_for_renewed_certificate("fp-new", 300)
            .await
            .unwrap(),
        Some(d.id.clone())
    );
    assert_eq!(
        s.device_for_renewed_certificate("fp-new", 9_000)
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        s.device_for_renewed_certificate("fp-old", 300)
            .await
            .unwrap(),
        None,
        "the one in use is found by device_by_fingerprint"
    );
    // Another device cannot take it.
    assert!(matches!(
        s.certificate_in_use(&other.id, "fp-new", 9_000, 300).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.certificates_expiring(6_000).await.unwrap()[0].fingerprint,
        "fp-old"
    );

    assert_eq!(
        s.certificate_in_use(&d.id, "fp-new", 9_000, 400)
            .await
            .unwrap(),
        CertificateUse::SwitchedToRenewed
    );
    let device = s.device_by_fingerprint("fp-new").await.unwrap().unwrap();
    assert_eq!(device.id, d.id, "the same device");
    assert!(s.device_by_fingerprint("fp-old").await.unwrap().is_none());
    assert_eq!(
        s.device_for_renewed_certificate("fp-old", 400)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        s.certificate_in_use(&d.id, "fp-old", 5_000, 450).await,
        Err(StoreError::Conflict(_))
    ));
    let current = s.current_certificate(&d.id).await.unwrap().unwrap();
    assert_eq!(
        (current.not_after, current.first_used_at),
        (9_000, Some(400))
    );
    assert!(s.certificates_expiring(6_000).await.unwrap().is_empty());

    // A removed device is not renewed; each renewal and switch is audited, chain intact.
    s.revoke_device(&admin(), &other.id, "left", 500)
        .await
        .unwrap();
    assert!(matches!(
        s.record_renewed_certificate(&other.id, "fp-x", 9_000, 600)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.record_renewed_certificate("dev-nobody", "fp-y", 9_000, 600)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let entries = s.audit_entries(0, 100).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"device.certificate.renew"));
    assert!(actions.contains(&"device.certificate.use"));
    assert!(verify_chain(&entries).is_ok());
}

/// The methods no other scenario calls: listing homes, counting staff, camera incidents
/// (IM2) and finding one obligation. With this, every store trait method is exercised.
pub async fn every_store_method_is_covered(s: &impl Store) {
    use crate::domain::emergency::LockdownTarget;
    assert!(s.list_homes().await.unwrap().is_empty());
    assert_eq!(s.count_staff().await.unwrap(), 0);
    let elm = home(s, "Elm").await;
    let oak = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &oak.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let homes = s.list_homes().await.unwrap();
    let names: Vec<(&str, u32)> = homes
        .iter()
        .map(|h| (h.name.as_str(), h.children))
        .collect();
    assert_eq!(names, [("Elm", 0), ("Oak", 1)]);
    assert_eq!(homes[0].id, elm.id);
    s.add_staff(
        &admin(),
        NewStaff {
            name: "Sam",
            role: crate::domain::Role::Staff,
            homes: std::slice::from_ref(&oak.id),
            token_hash: "hash-sam",
            token_hint: "sam1",
            token_expires_at: 9_000,
        },
        3,
    )
    .await
    .unwrap();
    assert_eq!(s.count_staff().await.unwrap(), 1);

    // IM2: camera incidents are kept per child, oldest first, with their flag as written.
    assert!(s.camera_incidents(&c.id).await.unwrap().is_empty());
    let first = s
        .add_camera_incident(&admin(), &c.id, "photos sent to a stranger", true, 10)
        .await
        .unwrap();
    let second = s
        .add_camera_incident(&admin(), &c.id, "a photo of the garden", false, 20)
        .await
        .unwrap();
    assert!(first.images_may_reach_others && !second.images_may_reach_others);
    assert_eq!(s.camera_incidents(&c.id).await.unwrap(), [first, second]);
    assert!(
        s.add_camera_incident(&admin(), "chd-nobody", "x", false, 30)
            .await
            .is_err()
    );

    // One obligation is found by id, exactly as listed.
    s.start_lockdown(
        &admin(),
        &new_lockdown("lck-1", LockdownTarget::Child(c.id.clone()), &oak.id),
        &[NewSanction {
            id: "snc-1".into(),
            child_id: c.id.clone(),
            record: "{}".into(),
        }],
        &obligations_for(&c.id, "snc-1"),
        40,
    )
    .await
    .unwrap();
    let listed = s.obligations(None, true).await.unwrap();
    let one = listed.iter().find(|o| o.id == "obl-n").unwrap();
    assert_eq!(&s.find_obligation("obl-n").await.unwrap(), one);
    assert!(matches!(
        s.find_obligation("obl-nobody").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(verify_chain(&s.audit_entries(0, 1_000).await.unwrap()).is_ok());
}

/// R36 under load: many writers at once, through every connection the backend has, still
/// leave one gap-free, ordered, intact audit chain, and a check-then-write rule (a code
/// enrolls one device) holds when the attempts race.
pub async fn concurrent_writers_keep_one_gap_free_audit_chain(s: &impl Store) {
    const WRITERS: usize = 48;
    let oak = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &oak.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let writes = (0..WRITERS).map(|i| {
        let (oak, child) = (oak.id.clone(), c.id.clone());
        async move {
            match i % 3 {
                0 => s
                    .add_home(&admin(), &format!("Home {i}"), "Europe/London", 10)
                    .await
                    .map(|_| ()),
                1 => s
                    .add_child(&admin(), &oak, &format!("Child {i}"), "2012-01-01", 10)
                    .await
                    .map(|_| ()),
                _ => s
                    .create_enrollment(&admin(), &child, &format!("code-{i}"), 1_000, 10)
                    .await
                    .map(|_| ()),
            }
        }
    });
    for result in futures::future::join_all(writes).await {
        result.unwrap();
    }
    s.create_enrollment(&admin(), &c.id, "one-code", 1_000, 10)
        .await
        .unwrap();
    let redeems = (0..8).map(|i| {
        s.redeem_enrollment(
            "one-code",
            NewDevice {
                id: format!("dev-race-{i}"),
                cert_fingerprint: format!("fp-race-{i}"),
                inventory: None,
            },
            20,
        )
    });
    let enrolled = futures::future::join_all(redeems)
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count();
    assert_eq!(enrolled, 1, "a code enrolls exactly one device");

    let entries = s.audit_entries(0, 100_000).await.unwrap();
    assert!(verify_chain(&entries).is_ok());
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "no gaps, no duplicates, in order");
    // home + child + the writers + the code + one redemption, each at least one entry.
    assert!(entries.len() >= 2 + WRITERS + 2);
    let homes = s.list_homes().await.unwrap();
    assert_eq!(homes.len(), 1 + WRITERS.div_ceil(3));
}

// ---- pages (issue 15): keyset paging visits each row once, in the list's order ----

/// Every row from `after` on, `size` at a time, and how many pages that took.
async fn rest_of<T, K, Fut>(
    after: Option<K>,
    size: u32,
    mut fetch: impl FnMut(Page<K>) -> Fut,
) -> (Vec<T>, usize)
where
    Fut: std::future::Future<Output = StoreResult<Paged<T, K>>>,
{
    let (mut rows, mut pages, mut after) = (Vec::new(), 0, after);
    loop {
        let page = fetch(Page { after, size }).await.unwrap();
        assert!(
            page.items.len() <= size as usize,
            "a page is never longer than asked"
        );
        pages += 1;
        assert!(pages < 1_000, "paging did not end");
        rows.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return (rows, pages),
        }
    }
}

/// `seen` has no row twice and keeps `before`'s rows, all of them, in their order.
fn each_once_in_order(seen: &[String], before: &[String]) {
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a row came twice: {seen:?}");
    let kept: Vec<&String> = seen.iter().filter(|r| before.contains(r)).collect();
    assert_eq!(kept, before.iter().collect::<Vec<_>>(), "{seen:?}");
}

pub async fn children_and_devices_are_paged_each_once_in_order(s: &impl Store) {
    let oak = home(s, "Oak").await;
    let elm = home(s, "Elm").await;
    for (h, name) in [
        (&oak, "Cara"),
        (&oak, "Ben"),
        (&elm, "Dev"),
        (&oak, "Ben"),
        (&elm, "Amira"),
        (&oak, "Eli"),
        (&oak, "Fay"),
    ] {
        s.add_child(&admin(), &h.id, name, "2012-01-01", 2)
            .await
            .unwrap();
    }
    let ids = |rows: Vec<ChildRecord>| rows.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let whole = s
        .list_children_page(None, false, None, &Page::first(100))
        .await
        .unwrap();
    assert_eq!(whole.next, None);
    let names: Vec<(&str, &str)> = whole
        .items
        .iter()
        .map(|c| (c.home_name.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("Elm", "Amira"),
            ("Elm", "Dev"),
            ("Oak", "Ben"),
            ("Oak", "Ben"),
            ("Oak", "Cara"),
            ("Oak", "Eli"),
            ("Oak", "Fay")
        ]
    );
    let whole = ids(whole.items);
    for size in [1, 2, 3, 7, 8] {
        let (paged, pages) = rest_of(None, size, |p| async move {
            s.list_children_page(None, false, None, &p).await
        })
        .await;
        assert_eq!(ids(paged), whole, "pages of {size}");
        assert_eq!(pages, whole.len().div_ceil(size as usize).max(1));
    }
    // Filters narrow every page: one home, the caller's homes, archived children left out.
    let oaks = vec![oak.id.clone()];
    let (in_oak, _) = rest_of(None, 2, |p| {
        let oaks = oaks.clone();
        async move { s.list_children_page(None, false, Some(&oaks), &p).await }
    })
    .await;
    assert_eq!(ids(in_oak), whole[2..]);
    let (of_elm, _) = rest_of(None, 1, |p| {
        let elm = elm.id.clone();
        async move { s.list_children_page(Some(&elm), false, None, &p).await }
    })
    .await;
    assert_eq!(ids(of_elm), whole[..2]);
    s.archive_child(&admin(), &whole[4], "moved on", 3)
        .await
        .unwrap();
    let (staying, _) = rest_of(None, 2, |p| async move {
        s.list_children_page(None, false, None, &p).await
    })
    .await;
    assert!(!ids(staying).contains(&whole[4]));
    let (everyone, _) = rest_of(None, 2, |p| async move {
        s.list_children_page(None, true, None, &p).await
    })
    .await;
    assert_eq!(ids(everyone), whole);

    // A child added while paging: one sorting before the cursor is not sent, one after it is
    // sent once; no earlier row comes again or goes missing.
    let first = s
        .list_children_page(None, true, None, &Page::first(3))
        .await
        .unwrap();
    s.add_child(&admin(), &elm.id, "Aaron", "2012-01-01", 4)
        .await
        .unwrap();
    let late = s
        .add_child(&admin(), &oak.id, "Zed", "2012-01-01", 4)
        .await
        .unwrap();
    let (rest, _) = rest_of(first.next, 3, |p| async move {
        s.list_children_page(None, true, None, &p).await
    })
    .await;
    let seen: Vec<String> = ids(first.items).into_iter().chain(ids(rest)).collect();
    each_once_in_order(&seen, &whole);
    assert_eq!(seen.last(), Some(&late.id));
    assert_eq!(seen.len(), whole.len() + 1);

    // Devices: by child name, then enrollment time, then id.
    let mut devices = Vec::new();
    for (i, child) in [&whole[3], &whole[0], &whole[3], &whole[6]]
        .iter()
        .enumerate()
    {
        let d = enrolled(s, child, &format!("pcode{i}"), &format!("pfp{i}")).await;
        devices.push(d.id);
    }
    let all = s
        .list_devices_page(None, true, None, &Page::first(100))
        .await
        .unwrap();
    let order: Vec<String> = all.items.iter().map(|d| d.id.clone()).collect();
    assert_eq!(order.len(), 4);
    assert_eq!(all.items[0].child_name, "Amira");
    for size in [1, 3] {
        let (paged, _) = rest_of(None, size, |p| async move {
            s.list_devices_page(None, true, None, &p).await
        })
        .await;
        let paged: Vec<String> = paged.into_iter().map(|d| d.id).collect();
        assert_eq!(paged, order, "pages of {size}");
    }
    s.revoke_device(&admin(), &devices[2], "lost", 30)
        .await
        .unwrap();
    let (active, _) = rest_of(None, 1, |p| async move {
        s.list_devices_page(None, false, None, &p).await
    })
    .await;
    assert_eq!(active.len(), 3);
    let (bens, _) = rest_of(None, 1, |p| {
        let ben = whole[3].clone();
        async move { s.list_devices_page(Some(&ben), true, None, &p).await }
    })
    .await;
    assert_eq!(bens.len(), 2);
    let nowhere = vec!["hom-none".to_string()];
    let none = s
        .list_devices_page(None, true, Some(&nowhere), &Page::first(5))
        .await
        .unwrap();
    assert!(none.items.is_empty() && none.next.is_none());
}

pub async fn violations_are_paged_newest_first_each_once(s: &impl Store) {
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let tablet = enrolled(s, &c.id, "code1", "fp1").await;
    let laptop = enrolled(s, &c.id, "code2", "fp2").await;
    let v = |id: &str, at: i64| ViolationRecord {
        id: id.into(),
        kind: "web_blocked".into(),
        channel: "".into(),
        subject: "x".into(),
        detail: "".into(),
        occurred_at: at,
    };
    // Ties on purpose: the same time on both devices, and the same agent id on both.
    s.record_violations(
        &tablet.id,
        &[v("a", 10), v("b", 20), v("same", 20), v("c", 30), v("d", 5)],
        40,
    )
    .await
    .unwrap();
    s.record_violations(&laptop.id, &[v("same", 20), v("e", 20), v("f", 1)], 40)
        .await
        .unwrap();
    let key = |v: &StoredViolation| format!("{}/{}", v.device_id, v.id);
    let filter = |size: u32, after: Option<ViolationKey>| ViolationFilter {
        limit: size,
        after,
        ..Default::default()
    };
    let whole: Vec<String> = s
        .list_violations(&filter(100, None))
        .await
        .unwrap()
        .items
        .iter()
        .map(key)
        .collect();
    assert_eq!(whole.len(), 8);
    for size in [1, 2, 3, 8] {
        let (paged, _) = rest_of(None, size, |p| async move {
            s.list_violations(&filter(p.size, p.after)).await
        })
        .await;
        assert_eq!(
            paged.iter().map(key).collect::<Vec<_>>(),
            whole,
            "pages of {size}"
        );
    }
    // Reported while paging: a newer one is before the cursor (the next listing shows it),
    // an older one (a device catching up) comes once, in its place.
    let first = s.list_violations(&filter(3, None)).await.unwrap();
    s.record_violations(&tablet.id, &[v("new", 99), v("old", 2)], 50)
        .await
        .unwrap();
    let (rest, _) = rest_of(first.next, 3, |p| async move {
        s.list_violations(&filter(p.size, p.after)).await
    })
    .await;
    let seen: Vec<String> = first.items.iter().chain(rest.iter()).map(key).collect();
    each_once_in_order(&seen, &whole);
    assert!(seen.contains(&format!("{}/old", tablet.id)));
    assert!(!seen.contains(&format!("{}/new", tablet.id)));
    // Filters hold on every page.
    let laptops = |size: u32, after| ViolationFilter {
        device_id: Some(laptop.id.clone()),
        limit: size,
        after,
        ..Default::default()
    };
    let (only, _) = rest_of(None, 1, |p| {
        let f = laptops(p.size, p.after);
        async move { s.list_violations(&f).await }
    })
    .await;
    assert_eq!(only.len(), 3);
    assert!(only.iter().all(|v| v.device_id == laptop.id));
}

pub async fn reads_and_sanctions_are_paged_newest_first_each_once(s: &impl Store) {
    use crate::domain::reads::Read;
    let read = |at: i64, what: &str| Read {
        at,
        staff_id: "stf-1".into(),
        child_id: "chd-a".into(),
        what: what.into(),
    };
    // Several reads in one millisecond: `seq` tells them apart.
    s.record_reads(&[
        read(10, "r1"),
        read(20, "r2"),
        read(20, "r3"),
        read(20, "r4"),
        read(30, "r5"),
    ])
    .await
    .unwrap();
    let what = |rows: Vec<ReadRecord>| rows.into_iter().map(|r| r.read.what).collect::<Vec<_>>();
    for size in [1, 2, 5] {
        let (paged, _) = rest_of(None, size, |p| async move {
            s.reads_of_child("chd-a", 0, &p).await
        })
        .await;
        assert_eq!(
            what(paged),
            ["r5", "r4", "r3", "r2", "r1"],
            "pages of {size}"
        );
    }
    let first = s.reads_of_child("chd-a", 0, &Page::first(2)).await.unwrap();
    s.record_reads(&[read(40, "later"), read(20, "late, same time")])
        .await
        .unwrap();
    let (rest, _) = rest_of(first.next, 2, |p| async move {
        s.reads_of_child("chd-a", 0, &p).await
    })
    .await;
    // Reads written while paging are newer (a later time, or a higher seq in the same
    // millisecond): before the cursor, so the next listing shows them, not this one.
    assert_eq!(what(first.items), ["r5", "r4"]);
    assert_eq!(what(rest), ["r3", "r2", "r1"]);

    // Sanctions: newest first, ties by id.
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let manager = Actor("stf-m".into());
    s.add_plan_revision(&manager, &c.id, 0, "{\"r\":1}", 40)
        .await
        .unwrap();
    let open = |ids: &[&str]| Opened {
        sanctions: ids
            .iter()
            .map(|id| NewSanction {
                id: (*id).into(),
                child_id: c.id.clone(),
                record: "{}".into(),
            })
            .collect(),
        obligations: Vec::new(),
    };
    for (base, ids, at) in [
        (1, &["snc-b", "snc-a"][..], 50),
        (2, &["snc-c"][..], 60),
        (3, &["snc-e", "snc-d"][..], 50),
    ] {
        s.add_plan_revision_opening(&manager, &c.id, base, "{}", &open(ids), at)
            .await
            .unwrap();
    }
    let ids = |rows: Vec<SanctionRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let expected = ["snc-c", "snc-a", "snc-b", "snc-d", "snc-e"];
    for size in [1, 2, 4] {
        let (paged, _) = rest_of(None, size, |p| async move {
            s.sanctions_page(None, None, &p).await
        })
        .await;
        assert_eq!(ids(paged), expected, "pages of {size}");
    }
    let homes = vec![h.id.clone()];
    let (mine, _) = rest_of(None, 3, |p| {
        let homes = homes.clone();
        let home = h.id.clone();
        async move { s.sanctions_page(Some(&home), Some(&homes), &p).await }
    })
    .await;
    assert_eq!(ids(mine), expected);
    let elsewhere = s
        .sanctions_page(Some("hom-none"), None, &Page::first(3))
        .await
        .unwrap();
    assert!(elsewhere.items.is_empty());
}

pub async fn lockdowns_and_manager_tasks_are_paged_each_once(s: &impl Store) {
    use crate::domain::emergency::LockdownTarget;
    let h = home(s, "Oak").await;
    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    for (id, at) in [("lck-a", 50), ("lck-c", 60), ("lck-b", 60), ("lck-d", 55)] {
        s.start_lockdown(
            &admin(),
            &new_lockdown(id, LockdownTarget::Child(c.id.clone()), &h.id),
            &[],
            &[],
            at,
        )
        .await
        .unwrap();
    }
    s.lift_lockdown(&admin(), "lck-d", "calmer now", 70)
        .await
        .unwrap();
    let ids = |rows: Vec<LockdownRecord>| rows.into_iter().map(|l| l.id).collect::<Vec<_>>();
    for size in [1, 2, 4] {
        let (all, _) = rest_of(None, size, |p| async move {
            s.lockdowns_page(None, true, None, &p).await
        })
        .await;
        assert_eq!(
            ids(all),
            ["lck-b", "lck-c", "lck-d", "lck-a"],
            "pages of {size}"
        );
        let (in_force, _) = rest_of(None, size, |p| {
            let home = h.id.clone();
            async move { s.lockdowns_page(Some(&home), false, None, &p).await }
        })
        .await;
        assert_eq!(
            ids(in_force),
            ["lck-b", "lck-c", "lck-a"],
            "pages of {size}"
        );
    }
    let nowhere = vec!["hom-none".to_string()];
    assert!(
        s.lockdowns_page(None, true, Some(&nowhere), &Page::first(5))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let d = enrolled(s, &c.id, "code", "fp").await;
    let v = |id: &str, subject: &str, at: i64| ViolationRecord {
        id: id.into(),
        kind: "unknown_contact".into(),
        channel: "call".into(),
        subject: subject.into(),
        detail: "".into(),
        occurred_at: at,
    };
    for (batch, now) in [
        (
            vec![v("u1", "+447700900001", 10), v("u2", "+447700900002", 11)],
            40,
        ),
        (vec![v("u3", "+447700900003", 12)], 30),
        (
            vec![v("u4", "+447700900004", 13), v("u5", "+447700900005", 14)],
            40,
        ),
    ] {
        s.record_violations(&d.id, &batch, now).await.unwrap();
    }
    let whole = s
        .manager_tasks_page(None, true, None, &Page::first(100))
        .await
        .unwrap()
        .items;
    assert_eq!(whole.len(), 5);
    assert!(
        whole
            .windows(2)
            .all(|w| (w[0].opened_at, &w[0].id) < (w[1].opened_at, &w[1].id))
    );
    let whole: Vec<String> = whole.into_iter().map(|t| t.id).collect();
    for size in [1, 2, 3] {
        let (paged, _) = rest_of(None, size, |p| async move {
            s.manager_tasks_page(None, false, None, &p).await
        })
        .await;
        let paged: Vec<String> = paged.into_iter().map(|t| t.id).collect();
        assert_eq!(paged, whole, "pages of {size}");
    }
    s.close_manager_task(&admin(), &whole[0], "no-action", "a wrong number", 50)
        .await
        .unwrap();
    let (open, _) = rest_of(None, 2, |p| {
        let child = c.id.clone();
        async move { s.manager_tasks_page(Some(&child), false, None, &p).await }
    })
    .await;
    let open: Vec<String> = open.into_iter().map(|t| t.id).collect();
    assert_eq!(open, whole[1..]);
}

pub async fn staff_and_plan_history_are_paged_each_once(s: &impl Store) {
    let h = home(s, "Oak").await;
    for (name, at) in [("Sam", 5), ("Ali", 3), ("Jo", 5), ("Kim", 9)] {
        s.add_staff(
            &admin(),
            NewStaff {
                name,
                role: crate::domain::Role::Staff,
                homes: std::slice::from_ref(&h.id),
                token_hash: &format!("hash-{name}"),
                token_hint: "hint",
                token_expires_at: 9_000,
            },
            at,
        )
        .await
        .unwrap();
    }
    let whole: Vec<String> = s
        .list_staff(true)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(whole.len(), 4);
    for size in [1, 3, 4] {
        let (paged, _) = rest_of(
            None,
            size,
            |p| async move { s.list_staff_page(true, &p).await },
        )
        .await;
        let paged: Vec<String> = paged.into_iter().map(|m| m.id).collect();
        assert_eq!(paged, whole, "pages of {size}");
    }
    s.revoke_staff(&admin(), "Jo", 20).await.unwrap();
    let (active, _) = rest_of(
        None,
        1,
        |p| async move { s.list_staff_page(false, &p).await },
    )
    .await;
    assert_eq!(active.len(), 3);
    assert!(active.iter().all(|m| m.name != "Jo"));

    let c = s
        .add_child(&admin(), &h.id, "Amira", "2012-01-01", 2)
        .await
        .unwrap();
    let manager = Actor("stf-m".into());
    for base in 0..5 {
        s.add_plan_revision(&manager, &c.id, base, "{}", 40 + base as i64)
            .await
            .unwrap();
    }
    for size in [1, 2, 5, 6] {
        let (paged, _) = rest_of(None, size, |p| {
            let child = c.id.clone();
            async move { s.plan_revisions_page(&child, &p).await }
        })
        .await;
        let numbers: Vec<u64> = paged.iter().map(|d| d.number).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5], "pages of {size}");
    }
    let none = s
        .plan_revisions_page("chd-none", &Page::first(3))
        .await
        .unwrap();
    assert!(none.items.is_empty() && none.next.is_none());
}
