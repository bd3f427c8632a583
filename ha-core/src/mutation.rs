//! Deliberately broken cores, to show that the simulator (`ha-sim`) catches each one. With the
//! cargo feature `mutations` (off by default; only ha-sim's tests turn it on) a test picks one
//! [`Mutation`] for its thread, and one `if` at the exact place in `node`, `liveness`,
//! `failover` or `groups` breaks that rule. Without the feature [`active`] is `false` and compiles away.

/// One broken rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// A peer counts as silent one of its intervals before its limit (`Node::is_live`).
    TakeoverEarly,
    /// Leaving or in maintenance, the holder lets go at once instead of waiting for a
    /// successor's claim (`Node::step_active`).
    ReleaseBeforeSuccessor,
    /// A node that just yielded takes the address back on the holder's silence (`step_standby`).
    IgnoreHoldDown,
    /// The silence limit stays the tolerance whatever the loss (`Liveness::observe`).
    ForgetLossAdaptive,
    /// After a gap (paused, starved, a late wake) the node decides at once on a table that
    /// missed the gap (`Node::note_gap`, `Failover::hold_after_a_late_wake`).
    NeverRelisten,
    /// Event mode: heartbeat schedules reach 20 horizons ahead, so a stopped agent's kernel
    /// speaks for it long after the stated bound (`Failover::schedule_heartbeats`).
    EndlessSchedule,
    /// Several groups: the clean stop is done when the first group's is, so the node exits
    /// holding the others (`Groups::handle_timeout`).
    DoneAfterFirstGroup,
}

pub const ALL: [Mutation; 7] = [
    Mutation::TakeoverEarly,
    Mutation::ReleaseBeforeSuccessor,
    Mutation::IgnoreHoldDown,
    Mutation::ForgetLossAdaptive,
    Mutation::NeverRelisten,
    Mutation::EndlessSchedule,
    Mutation::DoneAfterFirstGroup,
];

#[cfg(feature = "mutations")]
thread_local! {
    // Per thread, so that tests running side by side each break their own core.
    static ACTIVE: core::cell::Cell<Option<Mutation>> = const { core::cell::Cell::new(None) };
}

/// Breaks `mutation` for the cores run on this thread from now on (`None`: the real core).
#[cfg(feature = "mutations")]
pub fn set(mutation: Option<Mutation>) {
    ACTIVE.with(|a| a.set(mutation));
}

/// Whether this rule is broken on this thread.
#[inline(always)]
pub fn active(mutation: Mutation) -> bool {
    #[cfg(feature = "mutations")]
    {
        ACTIVE.with(|a| a.get() == Some(mutation))
    }
    #[cfg(not(feature = "mutations"))]
    {
        let _ = mutation;
        false
    }
}
