//! The heartbeat acceptance rule, written once for the XDP program and the socket receive path:
//! which received payloads change a peer's record, in which order the checks run, and which
//! `STATS` counter each outcome bumps.
//!
//! The order is part of the rule: decode; cluster id; authentication; own node id; then, against
//! the stored record, the sequence; then room for a new peer. Authentication comes before
//! anything stored is read or written, so a forged heartbeat can neither refresh a peer nor
//! burn its sequence, and is counted as forged rather than as stale; and before the own-id
//! check, so `own` counts only authentic heartbeats with our id (another node configured with
//! this node's id), never a forger's.
//!
//! Freshness: the sequence keeps out every heartbeat older than the newest recorded, but a
//! receiver with no record (just started, rebooted) has nothing to compare with. So a record is
//! `confirmed` only once a heartbeat of the peer's current epoch echoed the receiver's own
//! epoch (new at each start): no recording made before this run of the receiver can, and the
//! decisions ignore unconfirmed peers. Clocks need not agree: epochs are only compared for
//! equality by their owner.
//!
//! Both callers run it in their own setting: XDP reads `KEYS` and `PEERS` (BPF maps) and the
//! kernel clock, the socket path a key slice, a `HashMap` and a receive timestamp. So the
//! storage, the key lookup and the clock are parameters, monomorphised (no dynamic dispatch)
//! and inlined, as the verifier needs.
#[cfg(any(test, feature = "test-cases"))]
#[doc(hidden)]
pub mod cases;

use crate::{
    auth::{self, AuthError},
    maps::{PeerRecord, Stats},
    siphash::SipKey,
    wire::{DecodeError, HEARTBEAT_LEN, Heartbeat, Sequence},
};

/// What a receiver accepts: its cluster, its own id (never a peer), and whether heartbeats are
/// unauthenticated (`--insecure-no-auth`: key id 0 and only it); its own epoch, which peers
/// echo to confirm that they are live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub cluster_id: u32,
    pub node_id: u32,
    pub insecure: bool,
    /// This receiver's run (0: never confirms anybody).
    pub epoch: u64,
}

impl Policy {
    /// Whether `hb` echoes this receiver's current run.
    #[inline(always)]
    pub fn echoed_by(&self, hb: &Heartbeat) -> bool {
        self.epoch != 0 && hb.echo.node_id == self.node_id && hb.echo.epoch == self.epoch
    }
}

/// The peer records a receiver keeps: the `PEERS` map in XDP, a bounded map in user space.
pub trait PeerStore {
    /// The record of `node_id`, if it has one.
    fn get_mut(&mut self, node_id: u32) -> Option<&mut PeerRecord>;
    /// Adds the first record of `node_id`; `Err(TableFull)` when there is no room for it.
    fn insert(&mut self, node_id: u32, record: &PeerRecord) -> Result<(), TableFull>;

    /// Adds the first record of `node_id` as `init` fills in a default one. A store may build
    /// it somewhere other than the stack (the XDP program: a record is large for its 512 bytes).
    #[inline(always)]
    fn insert_with(&mut self, node_id: u32, init: impl FnOnce(&mut PeerRecord)) -> Result<(), TableFull> {
        let mut record = PeerRecord::default();
        init(&mut record);
        self.insert(node_id, &record)
    }
}

/// A [`PeerStore`] has no room for another peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// A heartbeat that was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub node_id: u32,
    pub priority: u32,
    /// The first record of this peer.
    pub new_peer: bool,
}

/// Why a payload changed nothing; each reason has its own `STATS` counter ([`Rejected::count`]).
///
/// Flat, one variant per counter: with nested payload-carrying variants (`Decode(DecodeError)`
/// next to `Auth(AuthError)`) LLVM once emitted a read of a clobbered register for the
/// payload-less ones, which the verifier refuses.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Shorter than a heartbeat (the XDP program also counts a UDP length that says so).
    Truncated,
    BadMagic,
    BadVersion,
    /// Unknown state or flag bits.
    Malformed,
    WrongCluster,
    /// An authentic heartbeat with this node's own id (another node configured with it).
    Own,
    /// Key id 0 (no tag) while authentication is required.
    Unauthenticated,
    /// No valid key has its key id (insecure: its key id is not 0).
    UnknownKey,
    /// The tag is not the MAC under the key its key id names.
    BadAuth,
    /// Not newer than the recorded sequence: a replay, a duplicate or reordered.
    Stale,
    /// A new peer, and no room for it.
    PeersFull,
}

impl From<DecodeError> for Rejected {
    #[inline(always)]
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Truncated => Self::Truncated,
            DecodeError::BadMagic => Self::BadMagic,
            DecodeError::BadVersion => Self::BadVersion,
            DecodeError::Malformed => Self::Malformed,
        }
    }
}

impl From<AuthError> for Rejected {
    #[inline(always)]
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated => Self::Unauthenticated,
            AuthError::UnknownKey => Self::UnknownKey,
            AuthError::BadAuth => Self::BadAuth,
        }
    }
}

impl Rejected {
    /// Every reason, in the order of the checks.
    pub const ALL: [Rejected; 11] = [
        Self::Truncated,
        Self::BadMagic,
        Self::BadVersion,
        Self::Malformed,
        Self::WrongCluster,
        Self::Unauthenticated,
        Self::UnknownKey,
        Self::BadAuth,
        Self::Own,
        Self::Stale,
        Self::PeersFull,
    ];

    /// Bumps the counter of this reason (one mapping for XDP and the socket path).
    #[inline(always)]
    pub fn count(self, s: &mut Stats) {
        match self {
            Self::Truncated => s.truncated += 1,
            Self::BadMagic => s.bad_magic += 1,
            Self::BadVersion => s.bad_version += 1,
            Self::Malformed => s.malformed += 1,
            Self::WrongCluster => s.wrong_cluster += 1,
            Self::Own => s.own += 1,
            Self::Unauthenticated => s.unauthenticated += 1,
            Self::UnknownKey => s.unknown_key += 1,
            Self::BadAuth => s.bad_auth += 1,
            Self::Stale => s.stale += 1,
            Self::PeersFull => s.peers_full += 1,
        }
    }
}

/// Bumps the counter of an outcome of [`receive`]: `valid` or the reason's.
#[inline(always)]
pub fn count(outcome: &Result<Accepted, Rejected>, s: &mut Stats) {
    match outcome {
        Ok(_) => s.valid += 1,
        Err(why) => why.count(s),
    }
}

/// Checks one heartbeat payload from `src` and, if it passes, records it in `peers`, stamped
/// with `now()` (read only then). `key_of` gives the key a key id names.
#[inline(always)]
pub fn receive<P: PeerStore>(
    policy: &Policy,
    payload: &[u8; HEARTBEAT_LEN],
    src: [u8; 4],
    peers: &mut P,
    key_of: impl FnOnce(u8) -> Option<SipKey>,
    now: impl FnOnce() -> u64,
) -> Result<Accepted, Rejected> {
    let mut hb = Heartbeat::ZERO;
    receive_in(policy, payload, &mut hb, src, peers, key_of, now)
}

/// [`receive`], decoding into `hb` (the XDP program keeps it off its stack).
#[inline(always)]
pub fn receive_in<P: PeerStore>(
    policy: &Policy,
    payload: &[u8; HEARTBEAT_LEN],
    hb: &mut Heartbeat,
    src: [u8; 4],
    peers: &mut P,
    key_of: impl FnOnce(u8) -> Option<SipKey>,
    now: impl FnOnce() -> u64,
) -> Result<Accepted, Rejected> {
    hb.decode_from(payload)?;
    let hb = &*hb;
    if hb.cluster_id != policy.cluster_id {
        return Err(Rejected::WrongCluster);
    }
    auth::check(payload, policy.insecure, key_of)?;
    if hb.node_id == policy.node_id {
        return Err(Rejected::Own);
    }
    let accepted = Accepted { node_id: hb.node_id, priority: hb.priority, new_peer: false };
    if let Some(rec) = peers.get_mut(hb.node_id) {
        if hb.seq <= (Sequence { epoch: rec.epoch, counter: rec.counter }) {
            // Too old to say the peer is live now, but if it echoes our run it still proves
            // that the peer's current run heard us: heartbeats sent back to back may arrive
            // out of order, and the echo must not be lost with the order.
            if hb.seq.epoch == rec.epoch && policy.echoed_by(hb) {
                rec.confirmed = 1;
            }
            return Err(Rejected::Stale);
        }
        rec.record(hb, src, now(), policy.echoed_by(hb));
        rec.received += 1;
        return Ok(accepted);
    }
    let echoes_us = policy.echoed_by(hb);
    peers
        .insert_with(hb.node_id, |rec| {
            rec.received = 1;
            rec.record(hb, src, now(), echoes_us);
        })
        .map_err(|TableFull| Rejected::PeersFull)?;
    Ok(Accepted { new_peer: true, ..accepted })
}

/// [`receive`] for a datagram of any length (the socket path): trailing bytes are ignored.
#[inline(always)]
pub fn receive_bytes<P: PeerStore>(
    policy: &Policy,
    payload: &[u8],
    src: [u8; 4],
    peers: &mut P,
    key_of: impl FnOnce(u8) -> Option<SipKey>,
    now: impl FnOnce() -> u64,
) -> Result<Accepted, Rejected> {
    let Some(fixed) = payload.first_chunk::<HEARTBEAT_LEN>() else {
        return Err(Rejected::Truncated);
    };
    receive(policy, fixed, src, peers, key_of, now)
}

#[cfg(test)]
mod tests {
    use super::{cases::*, *};
    use crate::maps::{AuthKey, MAX_PEERS};

    /// The rule on its own, with a fixed-capacity store of `MAX_PEERS` like `PEERS`.
    struct Direct {
        policy: Policy,
        keys: [AuthKey; 2],
        peers: [(u32, PeerRecord); MAX_PEERS as usize],
        len: usize,
        stats: Stats,
        clock: u64,
    }

    impl PeerStore for Direct {
        fn get_mut(&mut self, node_id: u32) -> Option<&mut PeerRecord> {
            self.peers[..self.len].iter_mut().find(|(id, _)| *id == node_id).map(|(_, rec)| rec)
        }

        fn insert(&mut self, node_id: u32, record: &PeerRecord) -> Result<(), TableFull> {
            let slot = self.peers.get_mut(self.len).ok_or(TableFull)?;
            *slot = (node_id, *record);
            self.len += 1;
            Ok(())
        }
    }

    impl Subject for Direct {
        fn receive(&mut self, payload: &[u8]) -> bool {
            let (policy, keys) = (self.policy, self.keys);
            self.clock += 1;
            let at = self.clock;
            let outcome = receive_bytes(&policy, payload, SRC, self, |id| AuthKey::find(&keys, id), || at);
            count(&outcome, &mut self.stats);
            outcome.is_ok()
        }

        fn stats(&self) -> Stats {
            self.stats
        }

        fn peer(&self, node_id: u32) -> Option<PeerRecord> {
            self.peers[..self.len].iter().find(|(id, _)| *id == node_id).map(|(_, rec)| *rec)
        }

        fn peer_count(&self) -> usize {
            self.len
        }
    }

    fn direct(keys: Keys) -> Direct {
        Direct {
            policy: Policy {
                cluster_id: CLUSTER,
                node_id: SELF_ID,
                insecure: keys == Keys::Insecure,
                epoch: SELF_EPOCH,
            },
            keys: keys.slots(),
            peers: [(0, PeerRecord::default()); MAX_PEERS as usize],
            len: 0,
            stats: Stats::default(),
            clock: 0,
        }
    }

    #[test]
    fn every_case_of_the_table() {
        run_all(direct);
    }

    #[test]
    fn every_reason_has_its_own_counter() {
        let mut total = Stats::default();
        for why in Rejected::ALL {
            let mut s = Stats::default();
            why.count(&mut s);
            let bumped: u64 = s.drops().iter().map(|(_, n)| n).sum();
            assert_eq!((bumped, s.valid), (1, 0), "{why:?}");
            why.count(&mut total);
        }
        assert!(total.drops().iter().all(|(_, n)| *n == 1), "two reasons share a counter: {total:?}");
    }

    #[test]
    fn the_table_covers_every_reason() {
        for why in Rejected::ALL {
            assert!(all().iter().any(|c| c.expect == Expect::Reject(why)), "no case is rejected as {why:?}");
        }
    }
}
