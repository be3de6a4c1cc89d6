//! A lockdown's progress as its acknowledgements arrive (RM3's live count, `WatchLockdown`):
//! which targeted devices enforce it, which said they could not, which are still waiting and
//! which are offline.
//!
//! Each look reads only the devices not yet known to enforce the version, and the names are
//! gathered and sorted only for a message that is sent: watching a home of 10,000 devices gets
//! cheaper with every acknowledgement, instead of costing 10,000 reads and a sort of 10,000
//! names every few milliseconds while the lockdown is still spreading (issue 14).

use std::time::Duration;

use haven_proto::admin::v1::LockdownProgress;

/// Least time between two looks, plus [`LOOK_PER_PENDING`] for each device still pending: a
/// look costs about a tenth of a microsecond per pending device, so this keeps watching to a
/// few percent of one core while 10,000 devices are acknowledging, and looks every 5 ms once
/// only stragglers are left (the moment "every device has it" is noticed).
pub const LOOK_EVERY: Duration = Duration::from_millis(5);
pub const LOOK_PER_PENDING: Duration = Duration::from_micros(2);

/// What a device last said about a version, as `Acks` holds it: `(version, failed)`.
pub type Heard = Option<(u64, bool)>;

pub struct Progress {
    version: u64,
    targeted: u32,
    acknowledged: u32,
    /// Devices not yet known to enforce `version`, each with the version the store last had
    /// for it (an acknowledgement older than that is stale and ignored).
    pending: Vec<(String, u64)>,
    /// After the last look, indices into `pending`.
    failed: Vec<usize>,
    waiting: Vec<usize>,
    offline: Vec<usize>,
}

impl Progress {
    /// `devices`: every targeted device with the version the store last had it applying.
    pub fn new(version: u64, devices: impl IntoIterator<Item = (String, u64)>) -> Self {
        let pending: Vec<(String, u64)> = devices.into_iter().collect();
        Progress {
            version,
            targeted: u32::try_from(pending.len()).unwrap_or(u32::MAX),
            acknowledged: 0,
            pending,
            failed: Vec::new(),
            waiting: Vec::new(),
            offline: Vec::new(),
        }
    }

    /// The devices to ask `Acks` about for the next look, in the order `look` wants them.
    pub fn pending(&self) -> impl Iterator<Item = &str> {
        self.pending.iter().map(|(id, _)| id.as_str())
    }

    /// How long to wait after a look before the next one.
    pub fn look_every(&self) -> Duration {
        LOOK_EVERY + LOOK_PER_PENDING * u32::try_from(self.pending.len()).unwrap_or(u32::MAX)
    }

    /// One look: `heard` is what each pending device last said (in `pending()`'s order), and
    /// `online` says for each device asked whether it has a stream to any replica.
    ///
    /// A device that enforces the version leaves the pending set for good; one that said it
    /// failed stays, so a later success is seen.
    pub fn look(&mut self, heard: &[Heard], online: impl FnOnce(&[&str]) -> Vec<bool>) {
        let mut kept = Vec::with_capacity(self.pending.len());
        self.failed.clear();
        let mut undecided = Vec::new();
        for (i, (device, stored)) in std::mem::take(&mut self.pending).into_iter().enumerate() {
            let (applied, failed) = heard
                .get(i)
                .copied()
                .flatten()
                .filter(|(v, _)| *v >= stored)
                .unwrap_or((stored, false));
            if applied >= self.version && !failed {
                self.acknowledged += 1;
                continue;
            }
            if applied >= self.version {
                self.failed.push(kept.len());
            } else {
                undecided.push(kept.len());
            }
            kept.push((device, stored));
        }
        self.pending = kept;
        let ids: Vec<&str> = undecided
            .iter()
            .map(|&i| self.pending[i].0.as_str())
            .collect();
        let online = online(&ids);
        self.waiting.clear();
        self.offline.clear();
        for (n, i) in undecided.into_iter().enumerate() {
            if online.get(n).copied().unwrap_or(false) {
                self.waiting.push(i);
            } else {
                self.offline.push(i);
            }
        }
    }

    /// Every online targeted device has answered (enforcing it or failing).
    pub fn finished(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The progress message as of the last look, names sorted.
    pub fn message(&self, timed_out: bool) -> LockdownProgress {
        let names = |indices: &[usize]| {
            let mut names: Vec<String> =
                indices.iter().map(|&i| self.pending[i].0.clone()).collect();
            names.sort();
            names
        };
        let finished = self.finished();
        LockdownProgress {
            policy_version: self.version,
            targeted: self.targeted,
            acknowledged: self.acknowledged,
            offline: u32::try_from(self.offline.len()).unwrap_or(u32::MAX),
            waiting: names(&self.waiting),
            offline_devices: names(&self.offline),
            failed: names(&self.failed),
            finished,
            timed_out: timed_out && !finished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(n: usize) -> Vec<(String, u64)> {
        (0..n).map(|i| (format!("dev-{i:02}"), 3)).collect()
    }

    #[test]
    fn rm3_devices_move_from_waiting_to_acknowledged_as_they_answer() {
        let mut p = Progress::new(7, devices(4));
        let all_online = |ids: &[&str]| vec![true; ids.len()];
        p.look(&[None, None, None, None], all_online);
        let m = p.message(false);
        assert_eq!((m.targeted, m.acknowledged), (4, 0));
        assert_eq!(m.waiting, vec!["dev-00", "dev-01", "dev-02", "dev-03"]);
        assert!(!m.finished);

        // dev-01 enforces it, dev-02 failed, dev-03 answered an older version.
        p.look(
            &[None, Some((7, false)), Some((7, true)), Some((6, false))],
            all_online,
        );
        let m = p.message(false);
        assert_eq!(m.acknowledged, 1);
        assert_eq!(m.failed, vec!["dev-02"]);
        assert_eq!(m.waiting, vec!["dev-00", "dev-03"]);
        // Only the three not enforcing it are asked about again, in the same order.
        assert_eq!(
            p.pending().collect::<Vec<_>>(),
            vec!["dev-00", "dev-02", "dev-03"]
        );

        // dev-02 recovers; dev-00 goes offline; dev-03 enforces it.
        p.look(
            &[None, Some((7, false)), Some((8, false))],
            |ids: &[&str]| ids.iter().map(|id| *id != "dev-00").collect(),
        );
        let m = p.message(true);
        assert_eq!(m.acknowledged, 3);
        assert!(m.failed.is_empty() && m.waiting.is_empty());
        assert_eq!(
            (m.offline, m.offline_devices.clone()),
            (1, vec!["dev-00".to_string()])
        );
        assert!(
            m.finished && !m.timed_out,
            "offline devices do not hold it up"
        );
    }

    #[test]
    fn rm3_an_acknowledgement_older_than_the_store_knows_is_ignored() {
        // The store already has dev-00 at 9 (after a later change); an old in-memory answer of
        // 5 must not make it look behind, and 9 >= 7 counts as enforcing the lockdown's 7.
        let mut p = Progress::new(7, vec![("dev-00".to_string(), 9)]);
        p.look(&[Some((5, true))], |ids: &[&str]| vec![true; ids.len()]);
        let m = p.message(false);
        assert_eq!(m.acknowledged, 1);
        assert!(m.finished);
    }

    #[test]
    fn a_timed_out_watch_says_so_only_if_devices_are_still_waiting() {
        let mut p = Progress::new(4, devices(2));
        p.look(&[None, Some((4, false))], |ids: &[&str]| {
            vec![true; ids.len()]
        });
        let m = p.message(true);
        assert!(m.timed_out && !m.finished);
        assert_eq!(m.waiting, vec!["dev-00"]);
    }

    #[test]
    fn looks_slow_down_while_many_devices_are_pending() {
        let many = Progress::new(2, devices(10_000));
        assert_eq!(many.look_every(), Duration::from_millis(25));
        let few = Progress::new(2, devices(1));
        assert!(few.look_every() < Duration::from_millis(6));
    }
}
