//! The invariants, checked on every step of the simulation. Each has a name ([`Invariant`])
//! and a precondition stated where it is checked.
//!
//! Definitions used below:
//! - A node *holds* the address while it is configured on it (from `Take` to
//!   `RemoveAddresses`, and after a SIGKILL until the agent starts again), its machine runs and
//!   its link is up: it then answers ARP for it, until the XDP fence goes up: once the agent's
//!   last liveness stamp is a tolerance old (`--no-fence` models an agent without it).
//! - A node *claims* the address while its running agent says ACTIVE (from `Take` to
//!   `StopClaiming`).
//! - A node is *eligible* when its agent runs (not paused), its link is up, it is not in
//!   maintenance and not leaving.
//! - A *disturbance* is a span of time in which a fault acts (see
//!   [`crate::scenario::Fault::disturbances`]): a lasting condition (loss, delay, reordering,
//!   duplication, a partition, a pause, a replay) for as long as it lasts, a change at one
//!   instant (crash, restart, clean stop, maintenance, priority, link down or up, a node's first
//!   start) at that instant. The network is *stable for d* at `t` when no disturbance touches
//!   `(t - d, t]`.
//! - *settle* = max tolerance + 2 intervals + hold-down + preempt delay + tick + twice the
//!   wake slack and the LAN delay; *client settle* = settle + the last announcement repeat +
//!   the LAN delay (see [`crate::scenario::Cluster::settle`]).
//! - A client's probe is *lost* while the MAC it caches is of a node that does not hold the
//!   address (not configured there, machine paused, or link down).
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// (a) Stable for settle: at most one node holds the address.
    AtMostOneHolder,
    /// (a) Stable for settle and some node eligible: at least one node claims the address.
    AtLeastOneClaims,
    /// (b) No takeover on a holder's silence (reason `HolderSilent` or `NoHolder`) while that
    /// holder's heartbeats keep arriving at the taker within the taker's current silence limit
    /// for it (`peer_liveness`). "Arriving" is counted at the taker's port: a heartbeat that
    /// reached it while the taker itself was not running (agent or machine paused) counts; one
    /// lost, cut or delayed by the network does not. Only the newest sequence counts, as the
    /// receive path would record it. A holder whose agent is not running at that moment does not
    /// keep sending, and one cut off from the taker, either way, is not heard (one that cannot hear the taker cannot echo its run, and is ignored by
    /// design, as a recording is).
    NoTakeoverWhileHolderHeard,
    /// (c) A planned change (clean stop, maintenance on/off, a priority change, a restart after
    /// a clean stop) made while the network has been stable for client settle, with no other
    /// disturbance for the next client settle + leave timeout: meanwhile no instant where no
    /// node holds the address (precondition: another eligible node exists), and no lost client
    /// probe.
    MakeBeforeBreak,
    /// (d) Stable for client settle and exactly one node claiming: every client that caches a
    /// MAC for the address caches the claimer's. Precondition: the client's announcements path
    /// was undisturbed since the holder claimed, and the holder heard the claim that re-pointed
    /// the client (one made across a partition by a node that then left or died, only the
    /// periodic refresh, or the client's own neighbour timeout, can repair); with `refresh`,
    /// after one period, always.
    ClientsPointAtHolder,
    /// (e) Under steady loss of at most 30% (no other disturbance from client settle before it
    /// to settle after it, the loss lasting at least 200 intervals, and a max tolerance that
    /// covers that loss rate: `silence_limit(rate) <= max_tolerance`), transitions across the
    /// cluster stay within [`FLAP_BOUND_BASE`] + [`FLAP_BOUND_PER_MINUTE`] per minute of loss.
    NoFlapping,
    /// (e) A node that yielded to a more worthy holder does not take the address back on that
    /// holder's silence within its hold-down while that holder lives (its agent runs and no
    /// partition cuts them): a silence then is loss, and taking back would start a flap.
    NoTakeBackWithinHoldDown,
    /// (f) A replayed heartbeat never confirms a run, nor counts for a run the receiver had
    /// not confirmed, for a node whose agent is not running (crashed, stopped, paused): it would
    /// make a dead node look alive. A replay of one the receiver never got, newer than all it
    /// got of a run it had confirmed, is a late delivery, as a network could make.
    ReplayNeverRevives,
    /// (f) No change of state whose reason names a peer whose record in the table is a replay.
    ReplayNeverMovesAddress,
    /// (g) A holder whose agent stops (SIGSTOP) while it alone claims, stable for settle before
    /// and no other disturbance meanwhile, is replaced: some node claims within the longest
    /// silence limit plus what event wake adds (the heartbeat schedule's horizon, which a
    /// kernel-side sender goes on sending after the stop, the timer slack and the ring delay;
    /// [`crate::scenario::Cluster::event_bound`]) plus 4 intervals, twice the wake slack and
    /// the LAN delay. Precondition: another node is eligible.
    StalledHolderReplaced,
    /// (h) With several heartbeat links, a node reports "the link to peer X is down"
    /// (`ha_core::links`) only for a link that was cut at either end (`CutLink`) within the
    /// last silence limit, or while faults that lose or delay single packets (loss, burst
    /// loss, delay, reorder) were about, which can silence one link and not the other. A peer
    /// that dies, pauses or is partitioned off falls silent on every link: no link is down.
    LinkDownOnlyWhenCut,
    /// (i) Stable for settle: a node whose worthiness is 0 (checks failing, or a tracked
    /// interface without a weight down: FAULT) does not hold the address while another node
    /// is eligible with a worthiness above 0.
    UnhealthyNeverHoldsBesideHealthy,
}

/// Transitions allowed in a window of steady loss, plus so many per minute of it.
pub const FLAP_BOUND_BASE: u64 = 6;
pub const FLAP_BOUND_PER_MINUTE: f64 = 2.0;

pub const ALL: [Invariant; 12] = [
    Invariant::AtMostOneHolder,
    Invariant::AtLeastOneClaims,
    Invariant::NoTakeoverWhileHolderHeard,
    Invariant::MakeBeforeBreak,
    Invariant::ClientsPointAtHolder,
    Invariant::NoFlapping,
    Invariant::NoTakeBackWithinHoldDown,
    Invariant::ReplayNeverRevives,
    Invariant::ReplayNeverMovesAddress,
    Invariant::StalledHolderReplaced,
    Invariant::LinkDownOnlyWhenCut,
    Invariant::UnhealthyNeverHoldsBesideHealthy,
];

impl Invariant {
    pub fn index(self) -> usize {
        ALL.iter().position(|&i| i == self).unwrap_or(0)
    }

    pub fn label(self) -> &'static str {
        match self {
            Invariant::AtMostOneHolder => "a:at_most_one_holder",
            Invariant::AtLeastOneClaims => "a:at_least_one_claims",
            Invariant::NoTakeoverWhileHolderHeard => "b:no_takeover_while_holder_heard",
            Invariant::MakeBeforeBreak => "c:make_before_break",
            Invariant::ClientsPointAtHolder => "d:clients_point_at_holder",
            Invariant::NoFlapping => "e:no_flapping",
            Invariant::NoTakeBackWithinHoldDown => "e:no_take_back_within_hold_down",
            Invariant::ReplayNeverRevives => "f:replay_never_revives",
            Invariant::ReplayNeverMovesAddress => "f:replay_never_moves_address",
            Invariant::StalledHolderReplaced => "g:stalled_holder_replaced",
            Invariant::LinkDownOnlyWhenCut => "h:link_down_only_when_cut",
            Invariant::UnhealthyNeverHoldsBesideHealthy => "i:unhealthy_never_holds_beside_healthy",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One broken invariant in one run.
#[derive(Clone, Debug)]
pub struct Violation {
    pub invariant: Invariant,
    /// Global simulated time, ns.
    pub at: u64,
    pub detail: String,
}
