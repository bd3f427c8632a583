//! One table of received payloads with the outcome the acceptance rule gives each, and one runner
//! that checks a receive path against it: the verdict, the one counter bumped, and what the
//! peer records became. Run on [`super::receive`] itself (ha-common's tests), on the socket
//! path's `PeerTable` and on the real XDP program through BPF_PROG_TEST_RUN (ha-agent's tests).
//! Test support only (feature `test-cases`).
use crate::{
    auth::{MAC_LEN, NO_KEY},
    maps::{AuthKey, KEY_SLOTS, MAX_PEERS, PeerRecord, Stats},
    siphash::SipKey,
    wire::{
        Echo, FLAG_CONFIRMING, FLAG_MAINTENANCE, GROUP_COUNT_OFFSET, GROUP_ENTRY_LEN, GROUPS_OFFSET, GroupEntry,
        HEARTBEAT_LEN, Heartbeat, MAX_GROUPS, NodeState, Sequence, TAG_LEN, TAG_OFFSET,
    },
};

use super::Rejected;

pub const CLUSTER: u32 = 42;
/// The receiver's own node id.
pub const SELF_ID: u32 = 1;
/// The receiver's own epoch (its current run), which peers echo to be confirmed.
pub const SELF_EPOCH: u64 = 0x00ab_cdef_0000_0001;
/// An echo of the receiver's current run.
pub const ECHO_US: Echo = Echo { node_id: SELF_ID, epoch: SELF_EPOCH };
/// The peer most cases are about.
pub const PEER: u32 = 7;
/// Source address of every payload (the one `ha_lab::frames::FrameSpec::udp` writes).
pub const SRC: [u8; 4] = [192, 0, 2, 1];
/// The key receivers hold ([`Keys::One`]) and its id.
pub const KEY_ID: u8 = 1;
pub const KEY: SipKey = SipKey { k0: 0x5eed_0001_c0ff_ee00, k1: 0x0123_4567_89ab_cdef };
/// A key receivers do not hold.
pub const OTHER_KEY: SipKey = SipKey { k0: 0x1111_2222_3333_4444, k1: 0x5555_6666_7777_8888 };
/// The sequence of the peer's record in cases that start with one.
pub const RECORDED: Sequence = Sequence { epoch: 1_000, counter: 10 };
/// Ids of the other peers that fill the table in [`Before::FullTable`].
pub const FILLER_IDS: u32 = 1_000;
/// Room for a heartbeat and trailing bytes.
pub const MAX_PAYLOAD: usize = HEARTBEAT_LEN + 8;

/// The authentication a receiver is set up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// `KEYS` holds [`KEY`] as [`KEY_ID`].
    One,
    /// `KEYS` holds nothing: nothing is accepted.
    Empty,
    /// `--insecure-no-auth`.
    Insecure,
}

impl Keys {
    /// The key slots a receiver holds (all empty unless [`Keys::One`]).
    pub fn slots(self) -> [AuthKey; KEY_SLOTS as usize] {
        let mut slots = [AuthKey::default(); KEY_SLOTS as usize];
        if self == Keys::One {
            slots[0] = AuthKey::new(KEY_ID, KEY);
        }
        slots
    }

    /// A heartbeat as a sender accepted by this receiver sends it.
    fn encode(self, hb: &Heartbeat) -> [u8; HEARTBEAT_LEN] {
        match self {
            Keys::Insecure => Heartbeat { key_id: NO_KEY, tag: [0; TAG_LEN], ..*hb }.encode(),
            Keys::One | Keys::Empty => hb.encode_signed(KEY_ID, &KEY),
        }
    }
}

/// What the receiver has recorded before the case's payload arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Before {
    Nothing,
    /// [`PEER`] at [`RECORDED`], unconfirmed.
    Peer,
    /// [`PEER`] at [`RECORDED`], confirmed (that heartbeat echoed [`SELF_EPOCH`]).
    ConfirmedPeer,
    /// [`MAX_PEERS`] peers: [`PEER`] at [`RECORDED`] and fillers.
    FullTable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Recorded as the first heartbeat of a peer.
    NewPeer,
    /// Recorded over the peer's earlier record.
    Update,
    Reject(Rejected),
    /// Not recorded (stale, counted so), but the peer's record is confirmed: the heartbeat
    /// echoes our run.
    StaleButConfirms,
}

pub struct Case {
    pub name: &'static str,
    pub keys: Keys,
    pub before: Before,
    /// What the payload says (for accepted cases: what must be recorded).
    pub hb: Heartbeat,
    payload: [u8; MAX_PAYLOAD],
    len: usize,
    pub expect: Expect,
    /// For accepted cases: whether the record is confirmed afterwards.
    pub confirmed: bool,
}

impl Case {
    /// The UDP payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload[..self.len]
    }

    /// The payloads that set up [`Case::before`], each to be accepted, in order.
    pub fn prior(&self) -> impl Iterator<Item = [u8; HEARTBEAT_LEN]> + '_ {
        let n = match self.before {
            Before::Nothing => 0,
            Before::Peer | Before::ConfirmedPeer => 1,
            Before::FullTable => MAX_PEERS,
        };
        let echo = if self.before == Before::ConfirmedPeer { ECHO_US } else { Echo::default() };
        (0..n).map(move |i| {
            let node_id = if i == 0 { PEER } else { FILLER_IDS + i };
            self.keys.encode(&Heartbeat { node_id, seq: RECORDED, echo, ..heartbeat(RECORDED.epoch, RECORDED.counter) })
        })
    }
}

/// A heartbeat of [`PEER`] in [`CLUSTER`], to be signed.
pub const fn heartbeat(epoch: u64, counter: u64) -> Heartbeat {
    Heartbeat {
        cluster_id: CLUSTER,
        node_id: PEER,
        priority: 150,
        state: NodeState::Active,
        flags: 0,
        key_id: KEY_ID,
        interval_us: 2_000,
        seq: Sequence { epoch, counter },
        echo: Echo { node_id: 0, epoch: 0 },
        group_count: 0,
        groups: GroupEntry::NONE,
        tag: [0; TAG_LEN],
    }
}

const NEWER: Heartbeat = heartbeat(RECORDED.epoch, RECORDED.counter + 1);

/// [`NEWER`] from a node running two groups: 3 ACTIVE, 9 STANDBY in maintenance.
const GROUPED: Heartbeat = {
    let mut groups = GroupEntry::NONE;
    groups[0] = GroupEntry { group_id: 3, state: NodeState::Active, flags: 0, priority: 120 };
    groups[1] = GroupEntry { group_id: 9, state: NodeState::Standby, flags: FLAG_MAINTENANCE, priority: 80 };
    Heartbeat { state: NodeState::Standby, priority: 0, group_count: 2, groups, ..NEWER }
};
/// Offset of the second group entry.
const ENTRY_1: usize = GROUPS_OFFSET + GROUP_ENTRY_LEN;

struct Builder {
    name: &'static str,
    keys: Keys,
    before: Before,
    hb: Heartbeat,
    bytes: [u8; HEARTBEAT_LEN],
    confirmed: bool,
}

fn case(name: &'static str, hb: Heartbeat) -> Builder {
    Builder {
        name,
        keys: Keys::One,
        before: Before::Nothing,
        hb,
        bytes: hb.encode_signed(KEY_ID, &KEY),
        confirmed: false,
    }
}

impl Builder {
    fn keys(mut self, keys: Keys) -> Self {
        self.keys = keys;
        self
    }

    fn after(mut self, before: Before) -> Self {
        self.before = before;
        self
    }

    fn signed_with(mut self, key_id: u8, key: &SipKey) -> Self {
        self.bytes = self.hb.encode_signed(key_id, key);
        self
    }

    /// As the heartbeat says (key id and tag as given, zero by default).
    fn unsigned(mut self) -> Self {
        self.bytes = self.hb.encode();
        self
    }

    /// Changes the encoded bytes (after signing: the tag no longer covers the change).
    fn edit(mut self, f: impl FnOnce(&mut [u8; HEARTBEAT_LEN])) -> Self {
        f(&mut self.bytes);
        self
    }

    /// Changes the encoded bytes, then signs them, so only the change is wrong.
    fn edit_signed(self, f: impl FnOnce(&mut [u8; HEARTBEAT_LEN])) -> Self {
        self.edit(|b| {
            f(b);
            crate::auth::sign(b, &KEY);
        })
    }

    /// The record is confirmed after this case's heartbeat.
    fn confirmed(mut self) -> Self {
        self.confirmed = true;
        self
    }

    fn expect(self, expect: Expect) -> Case {
        self.payload(HEARTBEAT_LEN, expect)
    }

    fn payload(self, len: usize, expect: Expect) -> Case {
        let mut payload = [0xa5; MAX_PAYLOAD];
        payload[..HEARTBEAT_LEN].copy_from_slice(&self.bytes);
        let confirmed = self.confirmed;
        Case { name: self.name, keys: self.keys, before: self.before, hb: self.hb, payload, len, expect, confirmed }
    }
}

/// Every case. Each has one thing wrong (or two, to pin down which check runs first).
pub fn all() -> [Case; 48] {
    use Before::*;
    use Expect::*;
    use Rejected::*;
    let mine = Heartbeat { node_id: SELF_ID, ..NEWER };
    let elsewhere = Heartbeat { cluster_id: CLUSTER + 1, ..NEWER };
    [
        case("valid: a new peer", NEWER).expect(NewPeer),
        case("valid: newer counter", NEWER).after(Peer).expect(Update),
        case("valid: a restart, newer epoch and counter from 0", heartbeat(RECORDED.epoch + 1, 0))
            .after(Peer)
            .expect(Update),
        case(
            "valid: standby in maintenance",
            Heartbeat { state: NodeState::Standby, flags: FLAG_MAINTENANCE, ..NEWER },
        )
        .after(Peer)
        .expect(Update),
        case("valid: trailing bytes are ignored", NEWER).payload(MAX_PAYLOAD, NewPeer),
        case("valid: group entries are recorded", GROUPED).after(Peer).expect(Update),
        case("group entries: an unused entry not zero", GROUPED)
            .edit_signed(|b| b[GROUPS_OFFSET + MAX_GROUPS * GROUP_ENTRY_LEN - 1] = 1)
            .expect(Reject(Malformed)),
        case("group entries: the same group twice", GROUPED).edit_signed(|b| b[ENTRY_1] = 3).expect(Reject(Malformed)),
        case("group entries: a node-level flag in an entry", GROUPED)
            .edit_signed(|b| b[ENTRY_1 + 2] = FLAG_CONFIRMING)
            .after(Peer)
            .expect(Reject(Malformed)),
        case("group entries: more than 16", GROUPED)
            .edit_signed(|b| b[GROUP_COUNT_OFFSET] = 17)
            .expect(Reject(Malformed)),
        case("fresh: an echo of our run confirms a new peer", Heartbeat { echo: ECHO_US, ..NEWER })
            .confirmed()
            .expect(NewPeer),
        case(
            "fresh: an echo of an earlier run of ours does not confirm (a recording)",
            Heartbeat { echo: Echo { epoch: SELF_EPOCH - 1, ..ECHO_US }, ..NEWER },
        )
        .expect(NewPeer),
        case(
            "fresh: an echo of our epoch for another node does not confirm",
            Heartbeat { echo: Echo { node_id: SELF_ID + 1, ..ECHO_US }, ..NEWER },
        )
        .expect(NewPeer),
        case("fresh: a confirmed peer stays confirmed within its run", NEWER)
            .after(ConfirmedPeer)
            .confirmed()
            .expect(Update),
        case("fresh: a new run of a confirmed peer must echo again", heartbeat(RECORDED.epoch + 1, 0))
            .after(ConfirmedPeer)
            .expect(Update),
        case("fresh: a replay stays stale after confirmation", heartbeat(RECORDED.epoch, RECORDED.counter))
            .after(ConfirmedPeer)
            .expect(Reject(Stale)),
        case(
            "fresh: an older heartbeat of the same run that echoes us still confirms (reordered)",
            Heartbeat { echo: ECHO_US, ..heartbeat(RECORDED.epoch, RECORDED.counter - 1) },
        )
        .after(Peer)
        .confirmed()
        .expect(StaleButConfirms),
        case(
            "fresh: an older run's heartbeat that echoes us confirms nothing",
            Heartbeat { echo: ECHO_US, ..heartbeat(RECORDED.epoch - 1, RECORDED.counter) },
        )
        .after(Peer)
        .expect(Reject(Stale)),
        case("empty", NEWER).payload(0, Reject(Truncated)),
        case("one byte short", NEWER).payload(HEARTBEAT_LEN - 1, Reject(Truncated)),
        case("bad magic", NEWER).edit_signed(|b| b[0] = b'X').expect(Reject(BadMagic)),
        case("bad version", NEWER).edit_signed(|b| b[4] = 9).expect(Reject(BadVersion)),
        case("unknown state", NEWER).edit_signed(|b| b[5] = 0).expect(Reject(Malformed)),
        case("unknown flag bit", NEWER).edit_signed(|b| b[6] = 0x80).expect(Reject(Malformed)),
        case("bad magic and unsigned: decoding comes first", NEWER).edit(|b| b[0] = 0).expect(Reject(BadMagic)),
        case("wrong cluster", elsewhere).expect(Reject(WrongCluster)),
        case("wrong cluster and unsigned: the cluster comes before authentication", elsewhere)
            .unsigned()
            .expect(Reject(WrongCluster)),
        case("own node id", mine).expect(Reject(Own)),
        case("own node id, forged: authentication comes first, so a forger is no `own`", mine)
            .signed_with(KEY_ID, &OTHER_KEY)
            .expect(Reject(BadAuth)),
        case("own node id, unsigned: counted as unauthenticated", Heartbeat { key_id: NO_KEY, ..mine })
            .unsigned()
            .expect(Reject(Unauthenticated)),
        case("key id 0 while keys are required", Heartbeat { key_id: NO_KEY, ..NEWER })
            .unsigned()
            .expect(Reject(Unauthenticated)),
        case("a key id no slot holds", NEWER).signed_with(2, &OTHER_KEY).expect(Reject(UnknownKey)),
        case("the right key under another id", NEWER).signed_with(2, &KEY).expect(Reject(UnknownKey)),
        case("tag of another key", NEWER).signed_with(KEY_ID, &OTHER_KEY).expect(Reject(BadAuth)),
        case("all-zero tag", NEWER).unsigned().expect(Reject(BadAuth)),
        case("the right MAC, reserved half of the tag not zero", NEWER)
            .edit(|b| b[TAG_OFFSET + MAC_LEN] = 1)
            .expect(Reject(BadAuth)),
        case("a field changed after signing", NEWER).edit(|b| b[19] ^= 1).expect(Reject(BadAuth)),
        case("forged, newer than the record: not recorded", NEWER)
            .after(Peer)
            .signed_with(KEY_ID, &OTHER_KEY)
            .expect(Reject(BadAuth)),
        case("forged replay: authentication comes before the sequence", heartbeat(RECORDED.epoch, RECORDED.counter))
            .after(Peer)
            .signed_with(KEY_ID, &OTHER_KEY)
            .expect(Reject(BadAuth)),
        case("replay of the recorded sequence", heartbeat(RECORDED.epoch, RECORDED.counter))
            .after(Peer)
            .expect(Reject(Stale)),
        case("older counter", heartbeat(RECORDED.epoch, RECORDED.counter - 1)).after(Peer).expect(Reject(Stale)),
        case("older epoch, larger counter", heartbeat(RECORDED.epoch - 1, u64::MAX)).after(Peer).expect(Reject(Stale)),
        case("no keys: signed", NEWER).keys(Keys::Empty).expect(Reject(UnknownKey)),
        case("no keys: unsigned", Heartbeat { key_id: NO_KEY, ..NEWER })
            .keys(Keys::Empty)
            .unsigned()
            .expect(Reject(Unauthenticated)),
        case("insecure: unsigned is accepted", Heartbeat { key_id: NO_KEY, ..NEWER })
            .keys(Keys::Insecure)
            .unsigned()
            .expect(NewPeer),
        case("insecure: signed is refused", NEWER).keys(Keys::Insecure).expect(Reject(UnknownKey)),
        case("table full: a new peer", Heartbeat { node_id: FILLER_IDS + MAX_PEERS, ..NEWER })
            .after(FullTable)
            .expect(Reject(PeersFull)),
        case("table full: a known peer still updates", NEWER).after(FullTable).expect(Update),
    ]
}

/// A receive path under test, fresh for each case.
pub trait Subject {
    /// Offers one UDP payload from [`SRC`]; whether it was recorded.
    fn receive(&mut self, payload: &[u8]) -> bool;
    /// The counters so far.
    fn stats(&self) -> Stats;
    fn peer(&self, node_id: u32) -> Option<PeerRecord>;
    fn peer_count(&self) -> usize;
}

/// Runs every case, each on a fresh subject made by `new` for the case's keys; panics, naming
/// the case, at the first difference.
pub fn run_all<S: Subject>(mut new: impl FnMut(Keys) -> S) {
    for case in all() {
        run(&case, &mut new(case.keys));
    }
}

/// Runs one case on a fresh subject.
pub fn run(case: &Case, s: &mut impl Subject) {
    let name = case.name;
    for (i, prior) in case.prior().enumerate() {
        assert!(s.receive(&prior), "{name}: setting up, prior heartbeat {i} was refused: {:?}", s.stats());
    }
    let (stats, peers, record) = (s.stats(), s.peer_count(), s.peer(case.hb.node_id));
    let recorded = s.receive(case.payload());

    let rejected = matches!(case.expect, Expect::Reject(_) | Expect::StaleButConfirms);
    assert_eq!(recorded, !rejected, "{name}: verdict ({:?})", case.expect);
    let expected = match case.expect {
        Expect::NewPeer | Expect::Update => "valid",
        Expect::Reject(why) => counter_of(why),
        Expect::StaleButConfirms => counter_of(Rejected::Stale),
    };
    let (before, after) = (counters(&stats), counters(&s.stats()));
    for ((counter, was), (_, is)) in before.iter().zip(&after) {
        let bumped = if *counter == expected { 1 } else { 0 };
        assert_eq!(is.wrapping_sub(*was), bumped, "{name}: counter {counter} ({:?}): {:?}", case.expect, s.stats());
    }
    let now = s.peer(case.hb.node_id);
    match case.expect {
        Expect::Reject(_) => {
            assert_eq!((s.peer_count(), now), (peers, record), "{name}: a rejected payload changed a record");
        }
        Expect::StaleButConfirms => {
            let confirmed_only = record.map(|r| PeerRecord { confirmed: 1, ..r });
            assert_eq!((s.peer_count(), now), (peers, confirmed_only), "{name}: only the confirmation changes");
        }
        Expect::NewPeer => {
            assert_eq!((record, s.peer_count()), (None, peers + 1), "{name}: a new peer");
            assert_recorded(name, case, now, 1);
        }
        Expect::Update => {
            let before = record.map(|r| r.received);
            assert_eq!((before.is_some(), s.peer_count()), (true, peers), "{name}: an update");
            assert_recorded(name, case, now, before.unwrap_or(0) + 1);
        }
    }
}

/// The `STATS` counter of each reason, written out here rather than taken from
/// [`Rejected::count`], so a wrong mapping there shows.
fn counter_of(why: Rejected) -> &'static str {
    match why {
        Rejected::Truncated => "truncated",
        Rejected::BadMagic => "bad_magic",
        Rejected::BadVersion => "bad_version",
        Rejected::Malformed => "malformed",
        Rejected::WrongCluster => "wrong_cluster",
        Rejected::Own => "own",
        Rejected::Unauthenticated => "unauthenticated",
        Rejected::UnknownKey => "unknown_key",
        Rejected::BadAuth => "bad_auth",
        Rejected::Stale => "stale",
        Rejected::PeersFull => "peers_full",
    }
}

/// Every counter by name.
fn counters(s: &Stats) -> [(&'static str, u64); 13] {
    let mut all = [("valid", s.valid); 13];
    all[1] = ("not_ours", s.not_ours);
    for (slot, drop) in all[2..].iter_mut().zip(s.drops()) {
        *slot = drop;
    }
    all
}

fn assert_recorded(name: &str, case: &Case, rec: Option<PeerRecord>, received: u64) {
    let Some(rec) = rec else { panic!("{name}: not recorded") };
    let hb = &case.hb;
    let key_id = if case.keys == Keys::Insecure { NO_KEY } else { KEY_ID };
    assert_eq!(
        (rec.epoch, rec.counter, rec.priority, rec.interval_us, rec.state, rec.flags, rec.key_id, rec.addr),
        (hb.seq.epoch, hb.seq.counter, hb.priority, hb.interval_us, hb.state as u8, hb.flags, key_id, SRC),
        "{name}: the record"
    );
    assert_eq!(rec.received, received, "{name}: heartbeats received");
    assert_eq!(rec.confirmed == 1, case.confirmed, "{name}: confirmed (echoed our run)");
    assert!(rec.last_seen_ns != 0, "{name}: reception time");
    let claimed = hb.state == NodeState::Active;
    assert_eq!(rec.claimed_ns == rec.last_seen_ns, claimed, "{name}: an ACTIVE heartbeat is a claim");
    for (i, (g, entry)) in rec.groups.iter().zip(&hb.groups).enumerate() {
        let used = i < hb.group_count as usize;
        let want = if used { (entry.group_id, entry.state as u8, entry.flags, entry.priority) } else { (0, 0, 0, 0) };
        assert_eq!(
            (g.group_id, g.state, g.flags, g.priority, g._pad),
            (want.0, want.1, want.2, want.3, 0),
            "{name}: group slot {i}"
        );
        let claimed = used && entry.state == NodeState::Active;
        assert_eq!(g.claimed_ns == rec.last_seen_ns, claimed, "{name}: group slot {i} claims");
    }
}
