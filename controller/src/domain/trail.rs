//! Whether the record tables agree with the audit trail (R36): every record has the entries
//! its writes appended, and every entry that made a record still has its record.
//!
//! A chain that verifies proves the entries were not altered; it says nothing about a
//! sanction inserted without its entry, or a lockdown row deleted with its entry left behind.
//! The store lists what each record claims happened to it (`RecordFact`); this module reads
//! what each entry witnessed from its action, subject and detail, and names the first
//! disagreement.

use std::collections::{HashMap, HashSet};

use super::UnixMillis;
use super::audit::AuditEntry;

/// Something a record says happened to it, which must have its audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fact {
    /// What kind of record, in the words staff use: "sanction", "plan revision", …
    pub kind: &'static str,
    /// The record's id (for a plan revision: `<child id> revision <n>`).
    pub id: String,
    /// What happened: "made", "lifted", "completed", …
    pub event: &'static str,
}

/// A fact with when the record says it happened, to name the earliest disagreement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFact {
    pub fact: Fact,
    pub at: UnixMillis,
}

impl RecordFact {
    pub fn new(kind: &'static str, id: impl Into<String>, event: &'static str, at: i64) -> Self {
        RecordFact {
            fact: Fact {
                kind,
                id: id.into(),
                event,
            },
            at,
        }
    }
}

/// How many violations a device has stored: each batch is one entry listing the new ids, so
/// violations are compared by count per device (bounded memory however many there are).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViolationCount {
    pub device_id: String,
    pub stored: u64,
    /// When the first was received, to order disagreements.
    pub first_at: UnixMillis,
}

/// Everything the records claim, for `Agreement::first_disagreement`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordFacts {
    pub facts: Vec<RecordFact>,
    pub violations: Vec<ViolationCount>,
}

/// The id a plan revision is known by here.
pub fn plan_revision_id(child_id: &str, number: i64) -> String {
    format!("{child_id} revision {number}")
}

/// The kinds of record this check covers (and so whose "made" entries must have a record).
pub const COVERED: [&str; 14] = [
    "staff member",
    "home",
    "child",
    "device",
    "risk assessment",
    "plan revision",
    "lockdown",
    "sanction",
    "obligation",
    "camera incident",
    "photography approval",
    "off-duty report",
    "manager task",
    "child request",
];

/// What one audit entry witnessed.
pub fn witnessed(e: &AuditEntry) -> Vec<Fact> {
    let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
    let f = |kind, id: &str, event| Fact {
        kind,
        id: id.to_string(),
        event,
    };
    let text = |k: &str| detail.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let s = e.subject.as_str();
    let mut out = Vec::new();
    match e.action.as_str() {
        "staff.add" => out.push(f("staff member", s, "made")),
        "staff.revoke" => out.push(f("staff member", s, "revoked")),
        "home.add" => out.push(f("home", s, "made")),
        "child.add" => out.push(f("child", s, "made")),
        "child.archive" => out.push(f("child", s, "archived")),
        "device.enroll" => out.push(f("device", s, "made")),
        "device.revoke" => out.push(f("device", s, "revoked")),
        "risk_assessment.add" => out.push(f("risk assessment", text("risk_assessment"), "made")),
        "camera_incident.add" => out.push(f("camera incident", text("incident"), "made")),
        "photography_approval.add" => out.push(f("photography approval", text("approval"), "made")),
        "off_duty_report.add" => out.push(f("off-duty report", s, "made")),
        "off_duty_report.acknowledge" => out.push(f("off-duty report", s, "acknowledged")),
        "manager_task.open" => out.push(f("manager task", s, "made")),
        "manager_task.close" => out.push(f("manager task", s, "closed")),
        "child_request.add" => out.push(f("child request", text("request"), "made")),
        "child_request.answer" => out.push(f("child request", text("request"), "answered")),
        "lockdown.lift" => out.push(f("lockdown", s, "lifted")),
        "sanction.complete" => out.push(f("sanction", s, "completed")),
        "sanction.sign_off" => out.push(f("sanction", s, "signed off")),
        "sanction.discussed" => out.push(f("sanction", s, "discussed with the child")),
        "obligation.notified" => out.push(f("obligation", s, "notified")),
        "lockdown.start" | "plan.revision.add" => {
            if e.action == "lockdown.start" {
                out.push(f("lockdown", s, "made"));
            } else if let Some(n) = detail.get("revision").and_then(|v| v.as_i64()) {
                out.push(f("plan revision", &plan_revision_id(s, n), "made"));
            }
            for id in detail
                .get("sanctions")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                out.push(f("sanction", id, "made"));
            }
            for id in detail
                .get("obligations")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|o| o.get("id").and_then(|v| v.as_str()))
            {
                out.push(f("obligation", id, "made"));
            }
        }
        _ => {}
    }
    out
}

/// The first place records and trail disagree.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Disagreement {
    #[error("{kind} {id} has no audit entry for being {event}")]
    NoEntry {
        kind: &'static str,
        id: String,
        event: &'static str,
    },
    #[error("audit entry {seq} records {kind} {id} being made, but there is no such record")]
    NoRecord {
        seq: i64,
        kind: &'static str,
        id: String,
    },
    #[error(
        "device {device_id} has {stored} stored violations but its audit entries record {recorded}"
    )]
    Violations {
        device_id: String,
        stored: u64,
        recorded: u64,
    },
}

/// Collects what the entries witnessed, one page at a time, then compares with the records.
#[derive(Default)]
pub struct Agreement {
    /// Each fact an entry witnessed, with the first entry that did (seq, time).
    seen: HashMap<Fact, (i64, UnixMillis)>,
    /// Violations each device's `violations.record` entries list, with the first entry's time.
    violations: HashMap<String, (u64, UnixMillis)>,
}

impl Agreement {
    pub fn push(&mut self, e: &AuditEntry) {
        if e.action == "violations.record" {
            let ids = serde_json::from_str::<serde_json::Value>(&e.detail)
                .ok()
                .and_then(|d| d.get("ids").and_then(|v| v.as_array()).map(Vec::len))
                .unwrap_or(0);
            let slot = self
                .violations
                .entry(e.subject.clone())
                .or_insert((0, e.at));
            slot.0 += ids as u64;
        }
        for fact in witnessed(e) {
            self.seen.entry(fact).or_insert((e.seq, e.at));
        }
    }

    /// The earliest disagreement between `records` and the entries pushed so far: a record
    /// fact with no entry, or a "made" entry of a covered kind with no record.
    pub fn first_disagreement(&self, records: &RecordFacts) -> Option<Disagreement> {
        let mut worst: Option<(UnixMillis, i64, Disagreement)> = None;
        let mut consider = |at: UnixMillis, seq: i64, d: Disagreement| {
            if worst.as_ref().is_none_or(|(a, s, _)| (at, seq) < (*a, *s)) {
                worst = Some((at, seq, d));
            }
        };
        let present: HashSet<&Fact> = records.facts.iter().map(|r| &r.fact).collect();
        for r in &records.facts {
            if !self.seen.contains_key(&r.fact) {
                consider(
                    r.at,
                    0,
                    Disagreement::NoEntry {
                        kind: r.fact.kind,
                        id: r.fact.id.clone(),
                        event: r.fact.event,
                    },
                );
            }
        }
        for (fact, (seq, at)) in &self.seen {
            if fact.event == "made" && COVERED.contains(&fact.kind) && !present.contains(fact) {
                consider(
                    *at,
                    *seq,
                    Disagreement::NoRecord {
                        seq: *seq,
                        kind: fact.kind,
                        id: fact.id.clone(),
                    },
                );
            }
        }
        let stored: HashMap<&str, &ViolationCount> = records
            .violations
            .iter()
            .map(|v| (v.device_id.as_str(), v))
            .collect();
        let mut devices: HashSet<&str> = stored.keys().copied().collect();
        devices.extend(self.violations.keys().map(String::as_str));
        for device in devices {
            let (recorded, entry_at) = self.violations.get(device).copied().unwrap_or((0, 0));
            let (kept, kept_at) = stored
                .get(device)
                .map(|v| (v.stored, v.first_at))
                .unwrap_or((0, entry_at));
            if kept != recorded {
                consider(
                    kept_at.min(if recorded > 0 { entry_at } else { kept_at }),
                    0,
                    Disagreement::Violations {
                        device_id: device.to_string(),
                        stored: kept,
                        recorded,
                    },
                );
            }
        }
        worst.map(|(_, _, d)| d)
    }
}

/// `first_disagreement` over a whole trail at once.
pub fn first_disagreement<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
    records: &RecordFacts,
) -> Option<Disagreement> {
    let mut a = Agreement::default();
    for e in entries {
        a.push(e);
    }
    a.first_disagreement(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, action: &str, subject: &str, detail: serde_json::Value) -> AuditEntry {
        AuditEntry {
            seq,
            at: seq * 10,
            actor: "stf-1".into(),
            action: action.into(),
            subject: subject.into(),
            detail: detail.to_string(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn trail() -> Vec<AuditEntry> {
        vec![
            entry(1, "child.add", "chd-1", serde_json::json!({})),
            entry(
                2,
                "lockdown.start",
                "lck-1",
                serde_json::json!({
                    "sanctions": ["snc-1"],
                    "obligations": [{ "id": "obl-1" }],
                }),
            ),
            entry(
                3,
                "plan.revision.add",
                "chd-1",
                serde_json::json!({ "revision": 1, "sanctions": [], "obligations": [] }),
            ),
            entry(4, "lockdown.lift", "lck-1", serde_json::json!({})),
        ]
    }

    fn records() -> RecordFacts {
        RecordFacts {
            facts: facts(),
            violations: vec![],
        }
    }

    fn facts() -> Vec<RecordFact> {
        vec![
            RecordFact::new("child", "chd-1", "made", 10),
            RecordFact::new("lockdown", "lck-1", "made", 20),
            RecordFact::new("sanction", "snc-1", "made", 20),
            RecordFact::new("obligation", "obl-1", "made", 20),
            RecordFact::new("plan revision", plan_revision_id("chd-1", 1), "made", 30),
            RecordFact::new("lockdown", "lck-1", "lifted", 40),
        ]
    }

    // clause R36
    #[test]
    fn r36_records_that_agree_with_the_trail_pass() {
        assert_eq!(first_disagreement(&trail(), &records()), None);
    }

    // clause R36
    #[test]
    fn r36_a_record_without_its_entry_is_named() {
        let mut r = records();
        r.facts
            .push(RecordFact::new("sanction", "snc-9", "made", 25));
        r.facts
            .push(RecordFact::new("obligation", "obl-9", "made", 35));
        let d = first_disagreement(&trail(), &r).unwrap();
        assert_eq!(
            d.to_string(),
            "sanction snc-9 has no audit entry for being made"
        );

        let mut t = trail();
        t.remove(3);
        let d = first_disagreement(&t, &records()).unwrap();
        assert_eq!(
            d.to_string(),
            "lockdown lck-1 has no audit entry for being lifted"
        );
    }

    // clause R36
    #[test]
    fn r36_an_entry_whose_record_was_deleted_is_named() {
        let r = RecordFacts {
            facts: facts()
                .into_iter()
                .filter(|r| r.fact.kind != "plan revision")
                .collect(),
            violations: vec![],
        };
        let d = first_disagreement(&trail(), &r).unwrap();
        assert_eq!(
            d,
            Disagreement::NoRecord {
                seq: 3,
                kind: "plan revision",
                id: "chd-1 revision 1".into()
            }
        );
    }

    // clause R36
    #[test]
    fn r36_violations_are_compared_by_count_per_device() {
        let mut t = trail();
        t.push(entry(
            5,
            "violations.record",
            "dev-1",
            serde_json::json!({ "ids": ["a", "b"] }),
        ));
        t.push(entry(
            6,
            "violations.record",
            "dev-1",
            serde_json::json!({ "ids": ["c"] }),
        ));
        let count = |stored| RecordFacts {
            facts: facts(),
            violations: vec![ViolationCount {
                device_id: "dev-1".into(),
                stored,
                first_at: 50,
            }],
        };
        assert_eq!(first_disagreement(&t, &count(3)), None);
        assert_eq!(
            first_disagreement(&t, &count(4)).unwrap().to_string(),
            "device dev-1 has 4 stored violations but its audit entries record 3"
        );
        // Every row deleted: the entries still count them.
        assert_eq!(
            first_disagreement(&t, &records()),
            Some(Disagreement::Violations {
                device_id: "dev-1".into(),
                stored: 0,
                recorded: 3
            })
        );
    }
}
