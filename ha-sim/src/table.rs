//! A node's kernel peer table (what XDP keeps in `PEERS`), with the receive path's acceptance:
//! a heartbeat of this cluster from another node, authenticated, newer than the one recorded,
//! is recorded at the receiver's clock and counted. Decoding, the cluster and authentication
//! cannot fail here: the simulated LAN carries only real heartbeats of this cluster, and the
//! attacker can only replay them verbatim (it has no key).
use ha_common::{
    maps::PeerRecord,
    wire::{Heartbeat, Sequence},
};
use ha_core::{Instant, Peer};

/// What the receive path does with one heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    Own,
    /// Not newer than the recorded one (a replay, a duplicate or reordered).
    Stale,
    Record,
}

/// The acceptance rule of `ha-agent/src/rx/table.rs` and the XDP program, for a heartbeat that
/// decoded, is of this cluster and authenticated. Kept apart so that it can become a call to
/// the rule shared in ha-common once there is one.
pub fn accept(own_id: u32, recorded: Option<&PeerRecord>, hb: &Heartbeat) -> Acceptance {
    if hb.node_id == own_id {
        return Acceptance::Own;
    }
    match recorded {
        Some(rec) if hb.seq <= (Sequence { epoch: rec.epoch, counter: rec.counter }) => Acceptance::Stale,
        _ => Acceptance::Record,
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub node_id: u32,
    pub rec: PeerRecord,
    /// The last recorded heartbeat was a replay (not the peer's own latest).
    pub replayed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct PeerTable {
    pub entries: Vec<Entry>,
    pub stale: u64,
}

impl PeerTable {
    /// Offers one heartbeat at the receiver's clock `now`; true when it was recorded.
    pub fn receive(&mut self, own_id: u32, hb: &Heartbeat, now: Instant, replayed: bool) -> bool {
        let slot = self.entries.iter().position(|e| e.node_id == hb.node_id);
        match accept(own_id, slot.map(|i| &self.entries[i].rec), hb) {
            Acceptance::Own => false,
            Acceptance::Stale => {
                self.stale += 1;
                false
            }
            Acceptance::Record => {
                let i = slot.unwrap_or_else(|| {
                    self.entries.push(Entry { node_id: hb.node_id, rec: PeerRecord::default(), replayed });
                    self.entries.len() - 1
                });
                let e = &mut self.entries[i];
                e.rec.record(hb, [0; 4], now.as_nanos());
                e.rec.received += 1;
                e.replayed = replayed;
                true
            }
        }
    }

    pub fn get(&self, node_id: u32) -> Option<&Entry> {
        self.entries.iter().find(|e| e.node_id == node_id)
    }

    /// The table as the agent converts it for the core (`Peer::from_record`).
    pub fn peers(&self, out: &mut Vec<Peer>) {
        out.clear();
        out.extend(self.entries.iter().filter_map(|e| Peer::from_record(e.node_id, &e.rec)));
    }
}

#[cfg(test)]
mod tests {
    use ha_common::wire::{NodeState, TAG_LEN};

    use super::*;

    fn hb(node_id: u32, epoch: u64, counter: u64) -> Heartbeat {
        Heartbeat {
            cluster_id: 1,
            node_id,
            priority: 100,
            state: NodeState::Active,
            flags: 0,
            key_id: 1,
            interval_us: 10_000,
            seq: Sequence { epoch, counter },
            tag: [0; TAG_LEN],
        }
    }

    #[test]
    fn records_newer_drops_stale_and_own() {
        let mut t = PeerTable::default();
        assert!(t.receive(1, &hb(2, 5, 1), Instant::from_nanos(10), false));
        assert!(!t.receive(1, &hb(2, 5, 1), Instant::from_nanos(11), false), "duplicate");
        assert!(!t.receive(1, &hb(2, 4, 9), Instant::from_nanos(12), true), "older epoch");
        assert!(t.receive(1, &hb(2, 6, 1), Instant::from_nanos(13), false), "restart");
        assert!(!t.receive(1, &hb(1, 9, 9), Instant::from_nanos(14), false), "own");
        let e = t.get(2).copied().expect("recorded");
        assert_eq!((e.rec.received, e.rec.last_seen_ns, e.rec.claimed_ns, t.stale), (2, 13, 13, 2));
    }
}
