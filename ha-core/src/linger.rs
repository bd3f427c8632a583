//! After a make-before-break hand-over the old holder stops announcing at once but keeps its
//! shared addresses for a grace before removing them.
//!
//! Why: an announcement of ours that was already scheduled (the repeats after a re-announce)
//! can leave after the new holder's and before we hear its claim. Clients then point at us
//! again. The new holder announces once more when it sees us stop claiming (see `node`); until
//! then we must still answer, or those clients lose packets for up to one of its repeats.
use crate::{
    node::Reason,
    time::{Duration, Instant},
};

/// Whether letting go for `reason` hands the address to a live successor (make-before-break),
/// so that clients may still reach us for a moment. Other releases (link down, no successor)
/// have nobody to wait for.
pub fn after_hand_over(reason: &Reason) -> bool {
    matches!(
        reason,
        Reason::MoreWorthyHolder { .. } | Reason::SuccessorHolds { .. } | Reason::ChecksFailing { successor: Some(_) }
    )
}

/// The pending removal of addresses we no longer claim.
#[derive(Debug, Default)]
pub struct Linger {
    remove_at: Option<Instant>,
}

impl Linger {
    /// Keeps the addresses until `now + grace`.
    pub fn start(&mut self, now: Instant, grace: Duration) {
        self.remove_at = Some(now + grace);
    }

    /// We claim the addresses again (or remove them at once): nothing pending.
    pub fn cancel(&mut self) {
        self.remove_at = None;
    }

    /// True once, when the grace is over: remove the addresses now.
    pub fn due(&mut self, now: Instant) -> bool {
        let due = self.remove_at.is_some_and(|at| now >= at);
        if due {
            self.remove_at = None;
        }
        due
    }

    /// When the run loop must wake to remove the addresses.
    pub fn deadline(&self) -> Option<Instant> {
        self.remove_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: u64) -> Instant {
        Instant::from_nanos(ns)
    }

    #[test]
    fn removes_once_after_the_grace() {
        let mut l = Linger::default();
        assert!(!l.due(at(0)) && l.deadline().is_none(), "nothing pending");
        l.start(at(10), Duration::from_nanos(5));
        assert_eq!(l.deadline(), Some(at(15)));
        assert!(!l.due(at(14)));
        assert!(l.due(at(15)));
        assert!(!l.due(at(16)), "only once");
        assert_eq!(l.deadline(), None);
    }

    #[test]
    fn claiming_again_cancels_the_removal() {
        let mut l = Linger::default();
        l.start(at(10), Duration::from_nanos(5));
        l.cancel();
        assert!(!l.due(at(100)));
    }

    #[test]
    fn only_hand_overs_linger() {
        assert!(after_hand_over(&Reason::MoreWorthyHolder { node_id: 2, priority: 200 }));
        assert!(after_hand_over(&Reason::SuccessorHolds { node_id: 2 }));
        assert!(after_hand_over(&Reason::ChecksFailing { successor: Some(2) }), "handing over as checks fail");
        for reason in
            [Reason::LinkDown, Reason::LeaveTimeout, Reason::NoSuccessor, Reason::ChecksFailing { successor: None }]
        {
            assert!(!after_hand_over(&reason), "{reason:?}");
        }
    }
}
