//! One observation for the state machine: the clock first, then the peer table.
//!
//! The XDP program stamps each heartbeat with the kernel's clock as it arrives. With `now` read
//! first, a loop that is preempted, starved or stopped between the two reads finds heartbeats
//! stamped *after* `now` (age zero), never an old table judged against a late clock. The other
//! order would let a starved standby declare a live holder dead.

/// Reads `clock`, then `read_table`, in that order.
pub fn observe<C, T>(clock: impl FnOnce() -> C, read_table: impl FnOnce() -> T) -> (C, T) {
    let now = clock();
    (now, read_table())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use ha_common::wire::NodeState;

    use super::observe;
    use ha_core::{
        Duration, Instant,
        node::{Inputs, Node, NodeConfig, Peer, Preempt},
    };

    #[test]
    fn a_late_loop_never_sees_a_live_holder_as_silent() {
        // The kernel clock, which stamps the holder's heartbeats as they keep arriving; the
        // loop stalls for a second right after its first read, whichever that is.
        let kernel = Cell::new(Instant::from_nanos(1_000_000_000));
        let stalled = Cell::new(false);
        let read = || {
            let value = kernel.get();
            if !stalled.replace(true) {
                kernel.set(value + Duration::from_secs(1));
            }
            value
        };
        // The table's answer is the holder's last heartbeat: the kernel time of the read.
        let (now, last_seen) = observe(read, read);
        let tolerance = Duration::from_millis(100);
        let cfg = NodeConfig {
            node_id: 1,
            priority: 100,
            tolerance,
            max_tolerance: tolerance,
            preempt: Preempt::Always,
            leave_timeout: Duration::ZERO,
            hold_down: Duration::ZERO,
            refresh: None,
        };
        let mut node = Node::new(cfg, now - 2 * tolerance);
        let holder = Peer {
            node_id: 2,
            priority: 200,
            state: NodeState::Active,
            flags: 0,
            last_seen,
            beats: Default::default(),
            claimed_at: None,
            confirmed: true,
        };
        let out = node.step(Inputs { now, peers: &[holder], link_up: true });
        assert!(!out.take, "now {now:?}, holder last seen {last_seen:?}: it is live");
    }
}
