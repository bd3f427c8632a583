//! The peer table of the socket receive path: the same checks, records and counters as the XDP
//! program (`ha-ebpf/src/main.rs`), kept in user space, authentication included (the same
//! `ha_common::auth::check`). Pure: the caller supplies the bytes, the sender's address and the
//! reception time.
use std::{collections::HashMap, net::Ipv4Addr};

use ha_common::{
    auth::{self, AuthError},
    maps::{AuthKey, MAX_PEERS, PeerRecord, Stats},
    wire::{DecodeError, HEARTBEAT_LEN, Heartbeat, Sequence},
};

use crate::auth::keys::{AuthMode, KeySet};

/// Why a datagram was not recorded; each reason has the counter XDP uses for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    Decode(DecodeError),
    WrongCluster,
    Own,
    Auth(AuthError),
    Stale,
    PeersFull,
}

pub struct PeerTable {
    cluster_id: u32,
    node_id: u32,
    auth: AuthMode,
    peers: HashMap<u32, PeerRecord>,
    stats: Stats,
}

impl PeerTable {
    pub fn new(cluster_id: u32, node_id: u32, auth: AuthMode) -> Self {
        Self { cluster_id, node_id, auth, peers: HashMap::new(), stats: Stats::default() }
    }

    /// Accepts `keys` from now on (a SIGHUP reload; ignored with `--insecure-no-auth`).
    pub fn install_keys(&mut self, keys: &KeySet) {
        if let AuthMode::Keys(slots) = &mut self.auth {
            *slots = keys.slots(slots);
        }
    }

    /// Checks one datagram and records it if it is a newer heartbeat of a peer of this cluster.
    pub fn receive(&mut self, payload: &[u8], src: Ipv4Addr, at_ns: u64) -> Result<(), Rejected> {
        let outcome = self.check_and_record(payload, src, at_ns);
        let s = &mut self.stats;
        match outcome {
            Ok(()) => s.valid += 1,
            Err(Rejected::Decode(DecodeError::Truncated)) => s.truncated += 1,
            Err(Rejected::Decode(DecodeError::BadMagic)) => s.bad_magic += 1,
            Err(Rejected::Decode(DecodeError::BadVersion)) => s.bad_version += 1,
            Err(Rejected::Decode(DecodeError::Malformed)) => s.malformed += 1,
            Err(Rejected::WrongCluster) => s.wrong_cluster += 1,
            Err(Rejected::Own) => s.own += 1,
            Err(Rejected::Auth(AuthError::Unauthenticated)) => s.unauthenticated += 1,
            Err(Rejected::Auth(AuthError::UnknownKey)) => s.unknown_key += 1,
            Err(Rejected::Auth(AuthError::BadAuth)) => s.bad_auth += 1,
            Err(Rejected::Stale) => s.stale += 1,
            Err(Rejected::PeersFull) => s.peers_full += 1,
        }
        outcome
    }

    fn check_and_record(&mut self, payload: &[u8], src: Ipv4Addr, at_ns: u64) -> Result<(), Rejected> {
        let hb = Heartbeat::decode(payload).map_err(Rejected::Decode)?;
        if hb.cluster_id != self.cluster_id {
            return Err(Rejected::WrongCluster);
        }
        if hb.node_id == self.node_id {
            return Err(Rejected::Own);
        }
        // Before the table is touched, as XDP does before its maps are.
        let bytes = payload.first_chunk::<HEARTBEAT_LEN>().ok_or(Rejected::Decode(DecodeError::Truncated))?;
        let result = match &self.auth {
            AuthMode::Keys(slots) => auth::check(bytes, false, |id| AuthKey::find(slots, id)),
            AuthMode::InsecureNoAuth => auth::check(bytes, true, |_| None),
        };
        result.map_err(Rejected::Auth)?;
        if let Some(rec) = self.peers.get_mut(&hb.node_id) {
            if hb.seq <= (Sequence { epoch: rec.epoch, counter: rec.counter }) {
                return Err(Rejected::Stale);
            }
            rec.record(&hb, src.octets(), at_ns);
            rec.received += 1;
            return Ok(());
        }
        if self.peers.len() >= MAX_PEERS as usize {
            return Err(Rejected::PeersFull);
        }
        let mut rec = PeerRecord { received: 1, ..PeerRecord::default() };
        rec.record(&hb, src.octets(), at_ns);
        self.peers.insert(hb.node_id, rec);
        log::info!("new peer {} priority {} from {src}", ha_core::node::id(hb.node_id), hb.priority);
        Ok(())
    }

    /// Every recorded peer, as `PeerMaps::read_peers` gives them (reusing `out`'s allocation).
    pub fn snapshot(&self, out: &mut Vec<(u32, PeerRecord)>) {
        out.clear();
        out.extend(self.peers.iter().map(|(id, rec)| (*id, *rec)));
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use ha_common::{
        siphash::SipKey,
        wire::{FLAG_LEAVING, NodeState, TAG_LEN},
    };

    use super::*;

    const CLUSTER: u32 = 42;
    const SELF_ID: u32 = 1;
    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

    fn heartbeat(node_id: u32, counter: u64) -> Heartbeat {
        Heartbeat {
            cluster_id: CLUSTER,
            node_id,
            priority: 150,
            state: NodeState::Active,
            flags: 0,
            key_id: 0,
            interval_us: 2_000,
            seq: Sequence { epoch: 1_000, counter },
            tag: [0; TAG_LEN],
        }
    }

    /// Unauthenticated, so the tests of the table's own logic can use plain heartbeats.
    fn table() -> PeerTable {
        PeerTable::new(CLUSTER, SELF_ID, AuthMode::InsecureNoAuth)
    }

    const KEY: SipKey = SipKey { k0: 11, k1: 22 };

    fn keyed_table() -> PeerTable {
        PeerTable::new(CLUSTER, SELF_ID, AuthMode::Keys([AuthKey::new(1, KEY), AuthKey::default()]))
    }

    fn peers(t: &PeerTable) -> Vec<(u32, PeerRecord)> {
        let mut v = Vec::new();
        t.snapshot(&mut v);
        v.sort_by_key(|p| p.0);
        v
    }

    #[test]
    fn valid_heartbeat_is_recorded_like_xdp_records_it() {
        let mut t = table();
        assert_eq!(t.receive(&heartbeat(7, 1).encode(), SRC, 5_000), Ok(()));
        assert_eq!(t.stats(), Stats { valid: 1, ..Stats::default() });
        let (id, rec) = peers(&t)[0];
        assert_eq!(id, 7);
        assert_eq!((rec.priority, rec.state, rec.counter, rec.epoch, rec.received), (150, 2, 1, 1_000, 1));
        assert_eq!((rec.addr, rec.interval_us, rec.last_seen_ns), (SRC.octets(), 2_000, 5_000));

        let mut next = heartbeat(7, 2);
        next.flags = FLAG_LEAVING;
        next.state = NodeState::Standby;
        t.receive(&next.encode(), SRC, 6_000).expect("newer");
        let (_, rec) = peers(&t)[0];
        assert_eq!((rec.counter, rec.received, rec.flags, rec.state, rec.last_seen_ns), (2, 2, FLAG_LEAVING, 1, 6_000));
    }

    #[test]
    fn stale_and_replayed_sequences_are_ignored_but_a_restart_is_accepted() {
        let mut t = table();
        t.receive(&heartbeat(7, 10).encode(), SRC, 1).expect("first");
        assert_eq!(t.receive(&heartbeat(7, 10).encode(), SRC, 2), Err(Rejected::Stale));
        assert_eq!(t.receive(&heartbeat(7, 9).encode(), SRC, 3), Err(Rejected::Stale));
        assert_eq!(peers(&t)[0].1.last_seen_ns, 1, "a replay does not refresh liveness");
        let mut restarted = heartbeat(7, 0);
        restarted.seq.epoch = 2_000;
        t.receive(&restarted.encode(), SRC, 4).expect("restart");
        assert_eq!(peers(&t)[0].1.epoch, 2_000);
        assert_eq!((t.stats().valid, t.stats().stale), (2, 2));
    }

    #[test]
    fn each_malformed_class_is_counted_and_nothing_recorded() {
        let mut t = table();
        let good = heartbeat(7, 1).encode();
        let mut bad_magic = good;
        bad_magic[0] = b'X';
        let mut bad_version = good;
        bad_version[4] = 9;
        let mut malformed = good;
        malformed[5] = 0;
        let mut wrong_cluster = heartbeat(7, 1);
        wrong_cluster.cluster_id = CLUSTER + 1;
        let cases: [&[u8]; 7] = [
            &good[..30],
            &good[..HEARTBEAT_LEN - 1],
            &bad_magic,
            &bad_version,
            &malformed,
            &wrong_cluster.encode(),
            &heartbeat(SELF_ID, 1).encode(),
        ];
        for bytes in cases {
            assert!(t.receive(bytes, SRC, 1).is_err());
        }
        assert_eq!(
            t.stats(),
            Stats {
                truncated: 2,
                bad_magic: 1,
                bad_version: 1,
                malformed: 1,
                wrong_cluster: 1,
                own: 1,
                ..Stats::default()
            }
        );
        assert!(peers(&t).is_empty());
    }

    #[test]
    fn with_keys_only_signed_heartbeats_are_recorded_and_replays_stay_stale() {
        let mut t = keyed_table();
        let signed = |hb: &Heartbeat| hb.encode_signed(1, &KEY);
        assert_eq!(t.receive(&signed(&heartbeat(7, 1)), SRC, 1), Ok(()));
        let mut forged = heartbeat(7, 2);
        forged.priority = u32::MAX;
        let bad = [
            (forged.encode_signed(1, &SipKey::default()), Rejected::Auth(AuthError::BadAuth)),
            (forged.encode_signed(2, &KEY), Rejected::Auth(AuthError::UnknownKey)),
            (forged.encode(), Rejected::Auth(AuthError::Unauthenticated)),
            (signed(&heartbeat(7, 1)), Rejected::Stale),
        ];
        for (bytes, why) in &bad {
            assert_eq!(t.receive(bytes, SRC, 2), Err(*why));
        }
        let s = t.stats();
        assert_eq!((s.valid, s.bad_auth, s.unknown_key, s.unauthenticated, s.stale), (1, 1, 1, 1, 1));
        assert_eq!((peers(&t)[0].1.priority, peers(&t)[0].1.last_seen_ns), (150, 1), "nothing forged was recorded");
        // Unauthenticated mode takes key id 0 only.
        assert_eq!(table().receive(&signed(&heartbeat(7, 1)), SRC, 1), Err(Rejected::Auth(AuthError::UnknownKey)));
    }

    #[test]
    fn installed_keys_apply_from_the_next_heartbeat() {
        let mut t = keyed_table();
        let next = SipKey { k0: 33, k1: 44 };
        let hex = |k: &SipKey| -> String {
            k.k0.to_le_bytes().iter().chain(&k.k1.to_le_bytes()).map(|b| format!("{b:02x}")).collect()
        };
        assert!(t.receive(&heartbeat(7, 1).encode_signed(2, &next), SRC, 1).is_err());
        t.install_keys(&KeySet::parse("keys", &format!("2 {}", hex(&next))).expect("keys"));
        assert_eq!(t.receive(&heartbeat(7, 2).encode_signed(2, &next), SRC, 2), Ok(()));
        assert_eq!(
            t.receive(&heartbeat(7, 3).encode_signed(1, &KEY), SRC, 3),
            Err(Rejected::Auth(AuthError::UnknownKey)),
            "the retired key"
        );
    }

    #[test]
    fn the_table_is_bounded_like_the_map() {
        let mut t = table();
        for id in 0..MAX_PEERS {
            t.receive(&heartbeat(1_000 + id, 1).encode(), SRC, 1).expect("room");
        }
        assert_eq!(t.receive(&heartbeat(9, 1).encode(), SRC, 1), Err(Rejected::PeersFull));
        // Known peers still update.
        t.receive(&heartbeat(1_000, 2).encode(), SRC, 2).expect("known peer");
        assert_eq!(t.stats().peers_full, 1);
    }
}
