//! The audit trail's proofs (R36) and the log of who read which child's records.
//!
//! - Checkpoints: the whole chain is verified, then its newest entry is signed with the
//!   controller's audit key (`audit_key.rs`) and kept; `check` compares the trail with a
//!   checkpoint a manager kept and with every checkpoint the controller kept, and the record
//!   tables with the trail (`domain::trail`).
//! - Reads: every request that shows a child's records notes a read (`note_read`, called by
//!   `Context::child_for` / `device_for` and by lists covering several children). Reads are
//!   gathered in memory and written in one transaction a second (`ReadLog`), so a read never
//!   waits for the write lock; the server writes what is left when it stops cleanly. A
//!   `kill -9` loses at most the last second's reads.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use haven_proto::admin::v1::CheckAuditResponse;
use tonic::Status;

use super::{Context, now_ms};
use crate::domain::audit::{AuditEntry, ChainVerifier};
use crate::domain::checkpoint::{self, Checkpoint};
use crate::domain::reads::{Read, what_was_read};
use crate::domain::trail::Agreement;
use crate::domain::{StaffIdentity, UnixMillis};
use crate::store::{ReadStore, StoreResult};

/// How often noted reads are written.
pub const FLUSH_READS_EVERY: Duration = Duration::from_secs(1);
/// The default time between scheduled checkpoints.
pub const DEFAULT_CHECKPOINT_EVERY_SECS: u64 = 3_600;
const PAGE: u32 = 1_000;

/// A time as people read it, in checkpoints and their messages.
pub fn when(at: UnixMillis) -> String {
    jiff::Timestamp::from_millisecond(at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| at.to_string())
}

impl Context {
    /// Verifies the whole chain and signs its newest entry; keeps and returns the checkpoint.
    /// A broken chain is never signed: a checkpoint would vouch for it.
    pub async fn make_checkpoint(&self) -> Result<Checkpoint, Status> {
        let mut verifier = ChainVerifier::default();
        let mut newest: Option<AuditEntry> = None;
        let mut after = 0;
        loop {
            let page = self.store.audit_entries(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                verifier.push(e).map_err(|b| {
                    super::errors::conflict(format!(
                        "the audit trail is NOT intact: entry {} fails because {}; no checkpoint was signed. Keep a copy of the database and report this",
                        b.seq, b.reason
                    ))
                })?;
            }
            newest = page.into_iter().last();
        }
        let newest = newest.ok_or_else(|| {
            super::errors::conflict("the audit trail is empty: there is nothing to sign yet")
        })?;
        let c = checkpoint::sign(
            self.audit_key.signing(),
            &newest,
            verifier.count(),
            now_ms(),
        );
        self.store.save_checkpoint(&c).await?;
        tracing::info!(
            entry = c.entry_seq,
            key = %c.key_id,
            "audit checkpoint signed"
        );
        Ok(c)
    }

    /// The printable block for a checkpoint made by this controller.
    pub fn checkpoint_text(&self, c: &Checkpoint) -> String {
        c.to_text(&self.audit_key.public(), &when(c.at))
    }

    /// The whole check of the trail: the chain, the checkpoint given (a printed block, or
    /// empty), every checkpoint kept, and the record tables against the trail.
    pub async fn check_audit(&self, given: &str) -> Result<CheckAuditResponse, Status> {
        let mut r = CheckAuditResponse {
            intact: true,
            checkpoints_hold: true,
            records_agree: true,
            key_id: self.audit_key.id.clone(),
            ..Default::default()
        };
        let mut checkpoints: Vec<(Checkpoint, &'static str)> = Vec::new();
        if !given.trim().is_empty() {
            let (c, _public) =
                Checkpoint::from_text(given).map_err(|e| super::errors::invalid(e.to_string()))?;
            r.checkpoint_given = true;
            checkpoints.push((c, "the checkpoint given"));
        }
        // Kept checkpoints are checked with this controller's key: one that does not verify
        // was altered in the database. One naming another key (the key was replaced, e.g. a
        // restore without `audit-key.txt`) cannot be checked and is counted instead: failing
        // on it would prove nothing that deleting it would not hide just as well.
        let public = self.audit_key.public();
        for c in self.store.checkpoints().await? {
            if c.key_id != self.audit_key.id {
                r.checkpoints_by_other_key += 1;
                continue;
            }
            if c.verify(&public).is_err() {
                r.checkpoints_hold = false;
                r.checkpoint_problem = format!(
                    "the checkpoint kept for entry {} ({}) is not signed by this controller's key: it was altered in the database",
                    c.entry_seq,
                    when(c.at)
                );
                break;
            }
            checkpoints.push((c, "a checkpoint the controller kept"));
        }
        // Which entries a checkpoint names: only those are remembered during the walk.
        let mut wanted: HashMap<i64, Option<AuditEntry>> = checkpoints
            .iter()
            .map(|(c, _)| (c.entry_seq, None))
            .collect();

        let mut verifier = ChainVerifier::default();
        let mut agreement = Agreement::default();
        let mut last_seq = 0;
        let mut after = 0;
        loop {
            let page = self.store.audit_entries(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in page {
                last_seq = e.seq;
                if r.intact
                    && let Err(b) = verifier.push(&e)
                {
                    tracing::warn!(entry = b.seq, reason = b.reason, "audit trail broken");
                    r.intact = false;
                    r.first_broken_entry = b.seq;
                    r.reason = b.reason.to_string();
                }
                agreement.push(&e);
                if let Some(slot) = wanted.get_mut(&e.seq) {
                    *slot = Some(e);
                }
            }
        }
        r.entries_checked = verifier.count();

        if r.checkpoints_hold {
            for (c, whose) in &checkpoints {
                let at_position = wanted.get(&c.entry_seq).and_then(Option::as_ref);
                match checkpoint::check(c, &self.audit_key.id, last_seq, at_position, &when(c.at)) {
                    Ok(()) => r.checkpoints_checked += 1,
                    Err(m) => {
                        r.checkpoints_hold = false;
                        r.checkpoint_problem = format!("{whose}: {m}");
                        break;
                    }
                }
            }
        }

        let records = self.store.record_facts().await?;
        if let Some(d) = agreement.first_disagreement(&records) {
            r.records_agree = false;
            r.records_disagreement = d.to_string();
        }
        if !(r.intact && r.checkpoints_hold && r.records_agree) {
            tracing::warn!(
                chain = r.intact,
                checkpoints = r.checkpoints_hold,
                records = r.records_agree,
                "the audit check failed"
            );
        }
        Ok(r)
    }

    /// Notes that `who` read `child_id`'s records, if the request being served is a read
    /// (`domain::reads::what_was_read`). Never waits: the read is written with the next batch.
    pub fn note_read(&self, who: &StaffIdentity, child_id: &str) {
        if let Some(what) = current_method().as_deref().and_then(what_was_read) {
            self.reads.note(&who.id, child_id, what, now_ms());
        }
    }

    /// `note_read` for each child a list showed (each child once).
    pub fn note_reads<'a>(
        &self,
        who: &StaffIdentity,
        child_ids: impl IntoIterator<Item = &'a str>,
    ) {
        let Some(what) = current_method().as_deref().and_then(what_was_read) else {
            return;
        };
        let now = now_ms();
        for child_id in child_ids {
            self.reads.note(&who.id, child_id, what, now);
        }
    }
}

/// Reads noted and not yet written. One entry per member of staff, child and kind of read in
/// each batch (the earliest time kept), so a member of staff paging through a list a hundred
/// times in a second is one read, and the memory held is bounded by who can read what.
#[derive(Default)]
pub struct ReadLog {
    pending: Mutex<HashMap<(String, String, &'static str), UnixMillis>>,
}

impl ReadLog {
    pub fn note(&self, staff_id: &str, child_id: &str, what: &'static str, at: UnixMillis) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .entry((staff_id.to_string(), child_id.to_string(), what))
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }

    /// Writes everything noted so far in one transaction. On failure the reads are kept for
    /// the next try.
    pub async fn flush(&self, store: &dyn ReadStore) -> StoreResult<usize> {
        let batch: Vec<((String, String, &'static str), UnixMillis)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let reads: Vec<Read> = batch
            .iter()
            .map(|((staff_id, child_id, what), at)| Read {
                at: *at,
                staff_id: staff_id.clone(),
                child_id: child_id.clone(),
                what: what.to_string(),
            })
            .collect();
        if let Err(e) = store.record_reads(&reads).await {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (key, at) in batch {
                pending
                    .entry(key)
                    .and_modify(|t| *t = (*t).min(at))
                    .or_insert(at);
            }
            return Err(e);
        }
        Ok(reads.len())
    }
}

tokio::task_local! {
    /// The gRPC method being served (`/package.Service/Method`), set by `MethodLayer` around
    /// every request so the central lookups know what a read was for.
    static METHOD: String;
}

fn current_method() -> Option<String> {
    METHOD.try_with(String::clone).ok()
}

/// A tower layer that runs each request with its gRPC method path in `METHOD`.
#[derive(Clone, Copy, Default)]
pub struct MethodLayer;

impl<S> tower::Layer<S> for MethodLayer {
    type Service = WithMethod<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WithMethod { inner }
    }
}

#[derive(Clone)]
pub struct WithMethod<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower::Service<http::Request<B>> for WithMethod<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let fut = self.inner.call(req);
        Box::pin(METHOD.scope(path, fut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_are_batched_once_per_staff_child_and_kind_and_kept_on_failure() {
        let store = crate::store::sqlite::SqliteStore::in_memory()
            .await
            .unwrap();
        let log = ReadLog::default();
        log.note("stf-1", "chd-1", "plan history", 20);
        log.note("stf-1", "chd-1", "plan history", 10);
        log.note("stf-1", "chd-1", "violations", 30);
        log.note("stf-2", "chd-1", "violations", 40);
        assert_eq!(log.flush(&store).await.unwrap(), 3);
        assert_eq!(log.flush(&store).await.unwrap(), 0);
        let reads = store
            .reads_of_child("chd-1", 0, &crate::store::Page::first(10))
            .await
            .unwrap()
            .items;
        assert_eq!(reads.len(), 3);
        assert!(
            reads
                .iter()
                .any(|r| r.read.what == "plan history" && r.read.at == 10)
        );
    }

    #[tokio::test]
    async fn the_method_is_known_inside_a_request_and_not_outside() {
        assert_eq!(current_method(), None);
        let seen = METHOD
            .scope("/haven.admin.v1.PlanService/PlanHistory".into(), async {
                current_method()
            })
            .await;
        assert_eq!(
            seen.as_deref().and_then(what_was_read),
            Some("plan history")
        );
    }
}
