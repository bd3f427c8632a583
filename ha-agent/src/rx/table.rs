//! The peer table of the socket receive path: the acceptance rule of the XDP program
//! (`ha_common::accept`, authentication included), run on a user-space store bounded like
//! `PEERS`, with the same records and counters. Pure: the caller supplies the bytes, the
//! sender's address and the reception time.
use std::{collections::HashMap, net::Ipv4Addr};

pub use ha_common::accept::Rejected;
use ha_common::{
    accept::{self, Accepted, PeerStore, Policy, TableFull},
    maps::{AuthKey, MAX_PEERS, PeerRecord, Stats},
};

use crate::auth::keys::{AuthMode, KeySet};

pub struct PeerTable {
    policy: Policy,
    auth: AuthMode,
    peers: Bounded,
    stats: Stats,
}

/// At most `MAX_PEERS` records, as the `PEERS` map holds.
struct Bounded(HashMap<u32, PeerRecord>);

impl PeerStore for Bounded {
    fn get_mut(&mut self, node_id: u32) -> Option<&mut PeerRecord> {
        self.0.get_mut(&node_id)
    }

    fn insert(&mut self, node_id: u32, record: &PeerRecord) -> Result<(), TableFull> {
        if self.0.len() >= MAX_PEERS as usize {
            return Err(TableFull);
        }
        self.0.insert(node_id, *record);
        Ok(())
    }
}

impl PeerTable {
    pub fn new(cluster_id: u32, node_id: u32, epoch: u64, auth: AuthMode) -> Self {
        let insecure = matches!(auth, AuthMode::InsecureNoAuth);
        let policy = Policy { cluster_id, node_id, insecure, epoch };
        Self { policy, auth, peers: Bounded(HashMap::new()), stats: Stats::default() }
    }

    /// Accepts `keys` from now on (a SIGHUP reload; ignored with `--insecure-no-auth`).
    pub fn install_keys(&mut self, keys: &KeySet) {
        if let AuthMode::Keys(slots) = &mut self.auth {
            *slots = keys.slots(slots);
        }
    }

    /// Checks one datagram and records it if it is a newer heartbeat of a peer of this cluster.
    pub fn receive(&mut self, payload: &[u8], src: Ipv4Addr, at_ns: u64) -> Result<Accepted, Rejected> {
        let slots: &[AuthKey] = match &self.auth {
            AuthMode::Keys(slots) => slots,
            AuthMode::InsecureNoAuth => &[],
        };
        let key_of = |id| AuthKey::find(slots, id);
        let outcome = accept::receive_bytes(&self.policy, payload, src.octets(), &mut self.peers, key_of, || at_ns);
        accept::count(&outcome, &mut self.stats);
        if let Ok(Accepted { new_peer: true, node_id, priority }) = outcome {
            log::info!("new peer {} priority {priority} from {src}", ha_core::node::id(node_id));
        }
        outcome
    }

    /// Every recorded peer, as `PeerMaps::read_peers` gives them (reusing `out`'s allocation).
    pub fn snapshot(&self, out: &mut Vec<(u32, PeerRecord)>) {
        out.clear();
        out.extend(self.peers.0.iter().map(|(id, rec)| (*id, *rec)));
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use ha_common::{
        accept::cases::{self, CLUSTER, KEY, KEY_ID, Keys, SELF_EPOCH, SELF_ID, SRC, Subject},
        siphash::SipKey,
    };

    use super::*;

    /// The table's own clock: every payload arrives a nanosecond after the one before.
    struct Timed(PeerTable, u64);

    impl Subject for Timed {
        fn receive(&mut self, payload: &[u8]) -> bool {
            self.1 += 1;
            self.0.receive(payload, Ipv4Addr::from(SRC), self.1).is_ok()
        }

        fn stats(&self) -> Stats {
            self.0.stats()
        }

        fn peer(&self, node_id: u32) -> Option<PeerRecord> {
            self.0.peers.0.get(&node_id).copied()
        }

        fn peer_count(&self) -> usize {
            self.0.peers.0.len()
        }
    }

    fn table(keys: Keys) -> PeerTable {
        let auth = match keys {
            Keys::Insecure => AuthMode::InsecureNoAuth,
            Keys::One | Keys::Empty => AuthMode::Keys(keys.slots()),
        };
        PeerTable::new(CLUSTER, SELF_ID, SELF_EPOCH, auth)
    }

    #[test]
    fn every_case_of_the_shared_table() {
        cases::run_all(|keys| Timed(table(keys), 0));
    }

    #[test]
    fn snapshot_gives_every_record() {
        let mut t = table(Keys::One);
        for node_id in [7, 8] {
            let hb = ha_common::wire::Heartbeat { node_id, ..cases::heartbeat(1, 1) };
            t.receive(&hb.encode_signed(KEY_ID, &KEY), Ipv4Addr::from(SRC), 5).expect("valid");
        }
        let mut out = vec![(0, PeerRecord::default()); 5];
        t.snapshot(&mut out);
        out.sort_by_key(|p| p.0);
        assert_eq!(out.iter().map(|p| (p.0, p.1.last_seen_ns)).collect::<Vec<_>>(), vec![(7, 5), (8, 5)]);
    }

    #[test]
    fn installed_keys_apply_from_the_next_heartbeat() {
        let mut t = table(Keys::One);
        let next = SipKey { k0: 33, k1: 44 };
        let hex = |k: &SipKey| -> String {
            k.k0.to_le_bytes().iter().chain(&k.k1.to_le_bytes()).map(|b| format!("{b:02x}")).collect()
        };
        let src = Ipv4Addr::from(SRC);
        let hb = cases::heartbeat;
        assert_eq!(t.receive(&hb(1, 1).encode_signed(2, &next), src, 1), Err(Rejected::UnknownKey));
        t.install_keys(&KeySet::parse("keys", &format!("2 {}", hex(&next))).expect("keys"));
        assert!(t.receive(&hb(1, 2).encode_signed(2, &next), src, 2).is_ok());
        assert_eq!(
            t.receive(&hb(1, 3).encode_signed(KEY_ID, &KEY), src, 3),
            Err(Rejected::UnknownKey),
            "the retired key"
        );
    }

    #[test]
    fn insecure_mode_ignores_installed_keys() {
        let mut t = table(Keys::Insecure);
        t.install_keys(&KeySet::parse("keys", "1 000102030405060708090a0b0c0d0e0f").expect("keys"));
        let signed =
            cases::heartbeat(1, 1).encode_signed(KEY_ID, &SipKey::from_bytes(core::array::from_fn(|i| i as u8)));
        assert_eq!(t.receive(&signed, Ipv4Addr::from(SRC), 1), Err(Rejected::UnknownKey));
    }
}
