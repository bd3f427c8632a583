//! A node's kernel peer table (what XDP keeps in `PEERS`), with the receive path's acceptance:
//! a heartbeat of this cluster from another node, authenticated, newer than the one recorded,
//! is recorded at the receiver's clock and counted. Decoding, the cluster and authentication
//! cannot fail here: the simulated LAN carries only real heartbeats of this cluster, and the
//! attacker can only replay them verbatim (it has no key).
use ha_common::{
    accept::{self, PeerStore, Policy, Rejected, TableFull},
    auth::NO_KEY,
    maps::PeerRecord,
    wire::{Heartbeat, TAG_LEN},
};
use ha_core::{Instant, Peer};

/// The cluster id every simulated node runs with.
pub const CLUSTER: u32 = 1;

/// The receive path's policy for a node: its id and its current run. Heartbeats travel
/// unauthenticated here (the attacker can only replay, never forge, so a tag adds nothing).
pub fn policy(node_id: u32, epoch: u64) -> Policy {
    Policy { cluster_id: CLUSTER, node_id, insecure: true, epoch }
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

/// The entries as the shared acceptance rule's store.
struct Store<'a>(&'a mut Vec<Entry>);

impl PeerStore for Store<'_> {
    fn get_mut(&mut self, node_id: u32) -> Option<&mut PeerRecord> {
        self.0.iter_mut().find(|e| e.node_id == node_id).map(|e| &mut e.rec)
    }

    fn insert(&mut self, node_id: u32, record: &PeerRecord) -> Result<(), TableFull> {
        self.0.push(Entry { node_id, rec: *record, replayed: false });
        Ok(())
    }
}

impl PeerTable {
    /// Offers one heartbeat at the receiver's clock `now` to the acceptance rule the XDP
    /// program and the socket path share (`ha_common::accept`); true when it was recorded.
    pub fn receive(&mut self, policy: &Policy, hb: &Heartbeat, now: Instant, replayed: bool) -> bool {
        let payload = Heartbeat { key_id: NO_KEY, tag: [0; TAG_LEN], ..*hb }.encode();
        match accept::receive(policy, &payload, [0; 4], &mut Store(&mut self.entries), |_| None, || now.as_nanos()) {
            Ok(accepted) => {
                if let Some(e) = self.entries.iter_mut().find(|e| e.node_id == accepted.node_id) {
                    e.replayed = replayed;
                }
                true
            }
            Err(Rejected::Stale) => {
                self.stale += 1;
                false
            }
            Err(_) => false,
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
    use ha_common::wire::{Echo, NodeState, Sequence};

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
            echo: Echo { node_id: 1, epoch: 77 },
            group_count: 0,
            groups: ha_common::wire::GroupEntry::NONE,
            tag: [0; TAG_LEN],
        }
    }

    #[test]
    fn records_newer_drops_stale_and_own() {
        let mut t = PeerTable::default();
        let p = policy(1, 77);
        assert!(t.receive(&p, &hb(2, 5, 1), Instant::from_nanos(10), false));
        assert!(!t.receive(&p, &hb(2, 5, 1), Instant::from_nanos(11), false), "duplicate");
        assert!(!t.receive(&p, &hb(2, 4, 9), Instant::from_nanos(12), true), "older epoch");
        assert!(t.receive(&p, &hb(2, 6, 1), Instant::from_nanos(13), false), "restart");
        assert!(!t.receive(&p, &hb(1, 9, 9), Instant::from_nanos(14), false), "own");
        let e = t.get(2).copied().expect("recorded");
        assert_eq!((e.rec.received, e.rec.last_seen_ns, e.rec.claimed_ns, t.stale), (2, 13, 13, 2));
        assert_eq!(e.rec.confirmed, 1, "it echoed run 77 of node 1");
        let mut restarted = PeerTable::default();
        assert!(restarted.receive(&policy(1, 78), &hb(2, 6, 2), Instant::from_nanos(15), true));
        assert_eq!(restarted.get(2).map(|e| e.rec.confirmed), Some(0), "an echo of an earlier run confirms nothing");
    }
}
