//! Names and key/value types of the BPF maps and load-time globals, shared by both sides.
//! Every map value is `#[repr(C)]` with explicit padding so its BTF shows named fields.

pub use crate::wire::MAX_GROUPS;

/// `PEERS`: node id -> [`PeerRecord`], filled by XDP from valid heartbeats.
pub const PEERS_MAP: &str = "PEERS";
/// `STATS`: per-CPU array of one [`Stats`], a counter per packet outcome.
pub const STATS_MAP: &str = "STATS";
/// Capacity of `PEERS`; heartbeats from further node ids are counted as `peers_full`.
pub const MAX_PEERS: u32 = 256;
/// `KEYS`: array of [`KEY_SLOTS`] [`AuthKey`]s, written by the agent (at start and on each
/// reload of its key file), read by XDP to verify heartbeat tags. Not pinned.
pub const KEYS_MAP: &str = "KEYS";
/// Keys accepted at once: the signing key and one more, the rotation window.
pub const KEY_SLOTS: u32 = 2;

/// `EVENTS`: ring buffer of [`PeerEvent`]s (event wake, `--wake event`): a peer's expiry, and
/// each change of a record the decisions read. Not pinned.
pub const EVENTS_MAP: &str = "EVENTS";
/// Size of `EVENTS` in bytes (a power of two, a multiple of the page size): 512 events.
pub const EVENTS_BYTES: u32 = 16 * 1024;
/// `LIMITS`: node id -> silence limit in ns (u64), written by the agent when the core hands out
/// a new one; a peer without one uses the global `HA_DEFAULT_LIMIT_NS`.
pub const LIMITS_MAP: &str = "LIMITS";
/// `ANSWER`: array of one [`Answer`], written by the agent: while it is in force, XDP answers
/// each peer's heartbeat with one of this node's own (`crate::answer`).
pub const ANSWER_MAP: &str = "ANSWER";
/// `ANSWER_IFACES`: ifindex (u32) -> [`AnswerIface`], written by the agent at start: where
/// answers may leave, and from which addresses. No entry: no answer on that interface.
pub const ANSWER_IFACES_MAP: &str = "ANSWER_IFACES";
/// `COUNTERS`: array of one [`Counters`], shared by the agent (through `mmap`) and XDP.
pub const COUNTERS_MAP: &str = "COUNTERS";
/// `BPF_F_MMAPABLE`: the agent maps `COUNTERS` into its memory.
pub const BPF_F_MMAPABLE: usize = 1 << 10;
/// Capacity of `ANSWER_IFACES`: heartbeat links of one agent.
pub const MAX_ANSWER_IFACES: u32 = 16;

/// Load-time globals of the XDP program (set with `EbpfLoader::override_global`).
pub mod globals {
    /// UDP destination port of heartbeats (u16).
    pub const PORT: &str = "HA_PORT";
    /// This node's cluster id (u32): heartbeats of other clusters are counted and dropped.
    pub const CLUSTER_ID: &str = "HA_CLUSTER_ID";
    /// This node's own id (u32): its own heartbeats are counted and dropped.
    pub const NODE_ID: &str = "HA_NODE_ID";
    /// [`super::XDP_FLAG_PASS_HEARTBEATS`] and future switches (u32).
    pub const FLAGS: &str = "HA_FLAGS";
    /// This node's epoch (its run), which peers echo to be confirmed (u64).
    pub const EPOCH: &str = "HA_EPOCH";
    /// Non-zero: event wake (u32): a timer per peer, events in `EVENTS`.
    pub const WAKE_EVENT: &str = "HA_WAKE_EVENT";
    /// A peer's silence limit in ns until the agent writes one in `LIMITS` (u64): the tolerance.
    pub const DEFAULT_LIMIT_NS: &str = "HA_DEFAULT_LIMIT_NS";
}

/// Let recorded heartbeats continue up the stack (for `--rx socket` comparison, tcpdump).
pub const XDP_FLAG_PASS_HEARTBEATS: u32 = 0x1;
/// `--insecure-no-auth`: accept unauthenticated heartbeats (key id 0), and only those. Without
/// it, a heartbeat must carry the tag of a key in `KEYS`: an empty `KEYS` accepts nothing.
pub const XDP_FLAG_INSECURE_NO_AUTH: u32 = 0x2;

/// One slot of `KEYS`: XDP accepts a heartbeat whose key id equals `key_id` of a slot with
/// `valid != 0` and whose tag verifies under (`k0`, `k1`).
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthKey {
    /// 1..=255, as in the heartbeat header.
    pub key_id: u32,
    /// Non-zero when the slot holds a key.
    pub valid: u32,
    pub k0: u64,
    pub k1: u64,
}

impl AuthKey {
    pub const fn new(key_id: u8, key: crate::siphash::SipKey) -> Self {
        Self { key_id: key_id as u32, valid: 1, k0: key.k0, k1: key.k1 }
    }

    #[inline(always)]
    pub const fn sip_key(&self) -> crate::siphash::SipKey {
        crate::siphash::SipKey { k0: self.k0, k1: self.k1 }
    }

    /// Whether this slot holds the key with this id.
    #[inline(always)]
    pub const fn matches(&self, key_id: u8) -> bool {
        self.valid != 0 && self.key_id == key_id as u32
    }

    /// The key with this id among `slots` (user space; XDP scans `KEYS` the same way).
    pub fn find(slots: &[AuthKey], key_id: u8) -> Option<crate::siphash::SipKey> {
        slots.iter().find(|k| k.matches(key_id)).map(AuthKey::sip_key)
    }
}

/// Never prints the key material.
impl core::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuthKey").field("key_id", &self.key_id).field("valid", &self.valid).finish_non_exhaustive()
    }
}

/// What XDP answers peers' heartbeats with, and until when.
///
/// Two template slots: a syscall's copy of the value is not atomic, so the agent writes a new
/// template into the slot that is not `current` first (one update, `current` unchanged), then
/// flips `current` and sets `until_ns` in a second update. A reader never sees a half-written
/// current slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `CLOCK_MONOTONIC` (as `bpf_ktime_get_ns`) up to which XDP answers; 0: never.
    pub until_ns: u64,
    /// Which of `templates` is in force (0 or 1; any other value reads as 1).
    pub current: u32,
    /// 0: an answer goes back to its requester alone, which suits one peer. Otherwise it goes
    /// to the group the request was sent to (a request to a unicast address is still answered
    /// to its sender), and a new counter is taken at most once per this many ns: every peer
    /// then hears one sequence of this node's heartbeats, with no gaps from answers to others.
    pub group_gap_ns: u32,
    /// Bytes `0..TAG_OFFSET` of this node's heartbeat in wire layout (`crate::wire`): state,
    /// flags, key id, priority, ...; the counter, the echo and the tag are filled per answer.
    pub templates: [[u8; crate::wire::TAG_OFFSET]; 2],
}

impl Default for Answer {
    fn default() -> Self {
        Self { until_ns: 0, current: 0, group_gap_ns: 0, templates: [[0; crate::wire::TAG_OFFSET]; 2] }
    }
}

impl Answer {
    /// Whether XDP answers at `now_ns`.
    #[inline(always)]
    pub const fn in_force(&self, now_ns: u64) -> bool {
        now_ns < self.until_ns
    }

    /// The template in force.
    #[inline(always)]
    pub fn template(&self) -> &[u8; crate::wire::TAG_OFFSET] {
        &self.templates[(self.current != 0) as usize]
    }

    /// The template in force as 8-byte words (see `crate::answer::HeartbeatWords`).
    #[inline(always)]
    pub fn template_words(&self) -> &crate::answer::TemplateWords {
        const _: () = assert!(core::mem::offset_of!(Answer, templates) % 8 == 0);
        const _: () = assert!(crate::wire::TAG_OFFSET.is_multiple_of(8) && core::mem::align_of::<Answer>() == 8);
        // SAFETY: both slots start 8-byte aligned (the value is, the slots' offset and length
        // are multiples of 8), and are as long as the words; any bit pattern is a valid u64.
        unsafe { &*self.template().as_ptr().cast::<crate::answer::TemplateWords>() }
    }
}

/// This node's heartbeat counter, shared by its agent's own heartbeats and its kernel's
/// answers: each takes the next, so a receiver sees one sequence that counts what this node
/// sent, and estimates its loss from it as from any node's (`ha_core::liveness`). The agent
/// adds atomically; XDP reads and writes back (no atomic fetch in the BPF ISA it is built
/// for), so in the rare race the two give one counter twice and the later copy is stale to
/// its receiver: one heartbeat lost, never an old one taken.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// The counter of this node's last heartbeat, its own or an answer.
    pub sent: u64,
    /// The request answered last (its sender's id, epoch and counter) and the counter its
    /// answer took: the copies of that request on the other links get the same answer, as a
    /// heartbeat's copies on every link are one heartbeat (`crate::links`).
    pub request_node: u32,
    /// Non-zero while the agent sends a heartbeat of its own, from taking its counter until it
    /// left: an answer then would take the next counter and may overtake it on the wire, so
    /// the receiver would drop the agent's as stale (and count it lost). The agent's carries
    /// what an answer would, so XDP does not answer meanwhile.
    pub sending: u32,
    pub request_epoch: u64,
    pub request_counter: u64,
    pub answer: u64,
    /// When the last answer took a new counter (`bpf_ktime_get_ns`).
    pub answered_ns: u64,
}

impl Counters {
    /// The counter of the answer to the request of `node_id` with sequence
    /// (`epoch`, `counter`) at `now_ns`: the one its copy on another link got, else the next;
    /// `None` (no answer) when the last new one is under `gap_ns` old.
    #[inline(always)]
    pub fn answer_to(&mut self, node_id: u32, epoch: u64, counter: u64, now_ns: u64, gap_ns: u64) -> Option<u64> {
        if (self.request_node, self.request_epoch, self.request_counter) != (node_id, epoch, counter)
            || self.answer == 0
        {
            if self.answer != 0 && now_ns.wrapping_sub(self.answered_ns) < gap_ns {
                return None;
            }
            self.sent += 1;
            self.answer = self.sent;
            self.answered_ns = now_ns;
            (self.request_node, self.request_epoch, self.request_counter) = (node_id, epoch, counter);
        }
        Some(self.answer)
    }
}

/// Where answers leave from on one heartbeat interface: its MAC and the IPv4 address the
/// agent's heartbeats leave from there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnswerIface {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    pub ipv4: [u8; 4],
    pub _pad2: u32,
}

/// What the agent learns about one peer, written by XDP on each valid heartbeat.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerRecord {
    /// `bpf_ktime_get_ns()` at reception: `CLOCK_MONOTONIC` in user space.
    pub last_seen_ns: u64,
    pub epoch: u64,
    pub counter: u64,
    /// Valid heartbeats recorded from this peer.
    pub received: u64,
    /// `last_seen_ns` of its last heartbeat that claimed the address (state ACTIVE); 0: never.
    /// Kept when it yields, so a holder that did not look meanwhile still learns of the claim.
    pub claimed_ns: u64,
    pub priority: u32,
    pub interval_us: u32,
    /// IPv4 source address of the last heartbeat.
    pub addr: [u8; 4],
    /// [`crate::wire::NodeState`] as a byte.
    pub state: u8,
    pub flags: u8,
    pub key_id: u8,
    /// 1 once a heartbeat of this peer's current epoch echoed the receiver's own epoch: the
    /// peer is heard live, not replayed (see `accept`). 0 for a new epoch until it does.
    pub confirmed: u8,
    /// The group entries of the last heartbeat, slot by slot (`state`, `priority` and `flags`
    /// above are group 0's; FLAG_CONFIRMING in `flags` is the node's).
    pub groups: [GroupRecord; MAX_GROUPS],
}

/// One group entry of a peer's last heartbeat ([`crate::wire::GroupEntry`]); all zero when the
/// slot is unused.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupRecord {
    /// 1..=255; 0: unused slot.
    pub group_id: u8,
    /// [`crate::wire::NodeState`] as a byte.
    pub state: u8,
    /// FLAG_LEAVING | FLAG_MAINTENANCE.
    pub flags: u8,
    pub _pad: u8,
    pub priority: u32,
    /// `last_seen_ns` of the last heartbeat whose entry in this slot claimed the group's address
    /// (state ACTIVE) while the slot held this group id; 0: never. Kept when it yields, like
    /// [`PeerRecord::claimed_ns`]; reset when another group id takes the slot.
    pub claimed_ns: u64,
}

impl PeerRecord {
    /// Records a valid, newer heartbeat from `src`, received at `now_ns` (XDP and the socket
    /// path alike). `echoes_us`: it echoed the receiver's own epoch. The caller counts it in
    /// `received`.
    #[inline(always)]
    pub fn record(&mut self, hb: &crate::wire::Heartbeat, src: [u8; 4], now_ns: u64, echoes_us: bool) {
        if hb.seq.epoch != self.epoch {
            // A new run of the peer (or its first heartbeat): it has to echo us again.
            self.confirmed = 0;
        }
        self.confirmed |= echoes_us as u8;
        self.last_seen_ns = now_ns;
        self.epoch = hb.seq.epoch;
        self.counter = hb.seq.counter;
        self.priority = hb.priority;
        self.interval_us = hb.interval_us;
        self.addr = src;
        self.state = hb.state as u8;
        self.flags = hb.flags;
        self.key_id = hb.key_id;
        if hb.state == crate::wire::NodeState::Active {
            self.claimed_ns = now_ns;
        }
        // A fixed bound and constant offsets: the verifier sees 16 straight copies.
        let mut i = 0;
        while i < MAX_GROUPS {
            let (entry, slot) = (&hb.groups[i], &mut self.groups[i]);
            if slot.group_id != entry.group_id {
                slot.claimed_ns = 0;
            }
            let used = entry.group_id != 0;
            slot.group_id = entry.group_id;
            slot.state = if used { entry.state as u8 } else { 0 };
            slot.flags = entry.flags;
            slot._pad = 0;
            slot.priority = entry.priority;
            if used && entry.state == crate::wire::NodeState::Active {
                slot.claimed_ns = now_ns;
            }
            i += 1;
        }
    }

    /// The record of group `group_id` (1..=255), if the peer's last heartbeat carried it.
    pub fn group(&self, group_id: u8) -> Option<&GroupRecord> {
        if group_id == 0 {
            return None;
        }
        self.groups.iter().find(|g| g.group_id == group_id)
    }
}

/// One report of the XDP program (`EVENTS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerEvent {
    /// `last_seen_ns` of the peer's record when the event was posted.
    pub last_seen_ns: u64,
    pub node_id: u32,
    /// [`EVENT_EXPIRED`] or [`EVENT_CHANGED`].
    pub kind: u32,
    /// For [`EVENT_CHANGED`]: the `CHANGE_*` bits of what changed.
    pub changes: u32,
    pub _pad: u32,
}

/// The peer's timer fired: nothing was heard from it for its silence limit.
pub const EVENT_EXPIRED: u32 = 1;
/// A heartbeat changed what the decisions read of the peer.
pub const EVENT_CHANGED: u32 = 2;
/// Another MAC claimed a shared address (`LAST_CLAIM`; `node_id` 0): a holder decides on it
/// within milliseconds, however long it would sleep otherwise. At most one a millisecond.
pub const EVENT_CLAIM: u32 = 3;
/// Claims closer together than this post one event.
pub const CLAIM_EVENT_EVERY_NS: u64 = 1_000_000;

/// The first record of the peer.
pub const CHANGE_NEW: u32 = 1 << 0;
/// Its state (a claim begins or ends).
pub const CHANGE_STATE: u32 = 1 << 1;
pub const CHANGE_PRIORITY: u32 = 1 << 2;
/// Its flags (leaving, maintenance, confirming).
pub const CHANGE_FLAGS: u32 = 1 << 3;
/// A new run (sequence restart).
pub const CHANGE_EPOCH: u32 = 1 << 4;
/// It echoed our run: confirmed.
pub const CHANGE_CONFIRMED: u32 = 1 << 5;
/// Heard again after its timer fired.
pub const CHANGE_RETURNED: u32 = 1 << 6;

/// The fields of a record the decisions read, apart from the time it was heard: a change of
/// any of them is worth a wake (`EVENT_CHANGED`); a plain heartbeat is not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watched {
    pub epoch: u64,
    pub priority: u32,
    pub state: u8,
    pub flags: u8,
    pub confirmed: u8,
    pub groups: [WatchedGroup; MAX_GROUPS],
}

/// What the decisions read of one group slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchedGroup {
    pub group_id: u8,
    pub state: u8,
    pub flags: u8,
    pub priority: u32,
}

impl Watched {
    /// The `CHANGE_*` bits of what `after` changed against this. A group's state, priority or
    /// flags set the same bits as the header's (group 0's); another group in a slot (one the
    /// peer began or stopped running) sets all three.
    #[inline(always)]
    pub fn changes(&self, after: &PeerRecord) -> u32 {
        let mut bits = 0;
        if after.state != self.state {
            bits |= CHANGE_STATE;
        }
        if after.priority != self.priority {
            bits |= CHANGE_PRIORITY;
        }
        if after.flags != self.flags {
            bits |= CHANGE_FLAGS;
        }
        if after.epoch != self.epoch {
            bits |= CHANGE_EPOCH;
        }
        if after.confirmed != 0 && self.confirmed == 0 {
            bits |= CHANGE_CONFIRMED;
        }
        // The differences of every slot OR-ed together, and the bits set once after the loop:
        // a bit set inside it would make the verifier walk each combination of slots.
        let (mut ids, mut states, mut flags, mut priorities) = (0u8, 0u8, 0u8, 0u32);
        let mut i = 0;
        while i < MAX_GROUPS {
            let (was, is) = (&self.groups[i], &after.groups[i]);
            ids |= was.group_id ^ is.group_id;
            states |= was.state ^ is.state;
            flags |= was.flags ^ is.flags;
            priorities |= was.priority ^ is.priority;
            i += 1;
        }
        if ids != 0 {
            bits |= CHANGE_STATE | CHANGE_PRIORITY | CHANGE_FLAGS;
        }
        if states != 0 {
            bits |= CHANGE_STATE;
        }
        if priorities != 0 {
            bits |= CHANGE_PRIORITY;
        }
        if flags != 0 {
            bits |= CHANGE_FLAGS;
        }
        bits
    }
}

impl PeerRecord {
    #[inline(always)]
    pub fn watched(&self) -> Watched {
        let mut w = Watched::default();
        w.read(self);
        w
    }
}

impl Watched {
    /// Reads what the decisions read of `rec` into `self` in place (the XDP program keeps it
    /// off its stack).
    #[inline(always)]
    pub fn read(&mut self, rec: &PeerRecord) {
        self.epoch = rec.epoch;
        self.priority = rec.priority;
        self.state = rec.state;
        self.flags = rec.flags;
        self.confirmed = rec.confirmed;
        let mut i = 0;
        while i < MAX_GROUPS {
            let (g, w) = (&rec.groups[i], &mut self.groups[i]);
            w.group_id = g.group_id;
            w.state = g.state;
            w.flags = g.flags;
            w.priority = g.priority;
            i += 1;
        }
    }
}

/// Packet outcomes counted by XDP; one instance per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Heartbeats recorded in `PEERS`.
    pub valid: u64,
    /// Not a heartbeat (other protocol or port): passed untouched.
    pub not_ours: u64,
    /// To the heartbeat port but too short.
    pub truncated: u64,
    pub bad_magic: u64,
    pub bad_version: u64,
    /// Unknown state or flag bits.
    pub malformed: u64,
    pub wrong_cluster: u64,
    /// Sequence not newer than the last recorded one (replay or reordering).
    pub stale: u64,
    /// This node's own heartbeat.
    pub own: u64,
    /// `PEERS` is full.
    pub peers_full: u64,
    /// The tag does not verify under the key its key id names (forged or corrupted).
    pub bad_auth: u64,
    /// Its key id names no key in `KEYS` (or, with `--insecure-no-auth`, is not 0).
    pub unknown_key: u64,
    /// Key id 0 (no tag) while authentication is required.
    pub unauthenticated: u64,
    /// Events (`EVENTS`) that found the ring buffer full: the agent's next wake reads the table.
    pub events_lost: u64,
    /// Heartbeats answered by XDP with one of this node's own (`ANSWER`).
    pub answered: u64,
}

impl Stats {
    /// Sum of the per-CPU instances.
    pub fn add(&mut self, other: &Stats) {
        self.valid += other.valid;
        self.not_ours += other.not_ours;
        self.truncated += other.truncated;
        self.bad_magic += other.bad_magic;
        self.bad_version += other.bad_version;
        self.malformed += other.malformed;
        self.wrong_cluster += other.wrong_cluster;
        self.stale += other.stale;
        self.own += other.own;
        self.peers_full += other.peers_full;
        self.bad_auth += other.bad_auth;
        self.unknown_key += other.unknown_key;
        self.unauthenticated += other.unauthenticated;
        self.events_lost += other.events_lost;
        self.answered += other.answered;
    }

    /// Dropped heartbeats by reason, for status and metrics.
    pub fn drops(&self) -> [(&'static str, u64); 11] {
        [
            ("truncated", self.truncated),
            ("bad_magic", self.bad_magic),
            ("bad_version", self.bad_version),
            ("malformed", self.malformed),
            ("wrong_cluster", self.wrong_cluster),
            ("stale", self.stale),
            ("own", self.own),
            ("peers_full", self.peers_full),
            ("bad_auth", self.bad_auth),
            ("unknown_key", self.unknown_key),
            ("unauthenticated", self.unauthenticated),
        ]
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] data with explicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for super::PeerRecord {}
    unsafe impl aya::Pod for super::GroupRecord {}
    unsafe impl aya::Pod for super::Stats {}
    unsafe impl aya::Pod for super::AuthKey {}
    unsafe impl aya::Pod for super::PeerEvent {}
    unsafe impl aya::Pod for super::Answer {}
    unsafe impl aya::Pod for super::AnswerIface {}
    unsafe impl aya::Pod for super::Counters {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Echo, FLAG_LEAVING, FLAG_MAINTENANCE, GroupEntry, Heartbeat, NodeState, Sequence};

    #[test]
    fn answers_take_one_counter_per_request_and_at_most_one_per_gap() {
        let mut c = Counters { sent: 10, ..Counters::default() };
        // One peer (no gap): each request a counter, its copy on another link the same one.
        assert_eq!(c.answer_to(2, 1, 5, 1_000, 0), Some(11));
        assert_eq!(c.answer_to(2, 1, 5, 1_001, 0), Some(11), "the copy on another link");
        assert_eq!(c.answer_to(3, 1, 7, 1_002, 0), Some(12));
        // To the group: requests within the gap of the last new answer get none.
        assert_eq!(c.answer_to(2, 1, 6, 1_500, 1_000), None);
        assert_eq!(c.answer_to(3, 1, 7, 1_500, 1_000), Some(12), "a copy is still answered");
        assert_eq!(c.answer_to(4, 1, 9, 2_002, 1_000), Some(13));
        assert_eq!(c.sent, 13);
    }

    fn heartbeat(counter: u64, groups: &[GroupEntry]) -> Heartbeat {
        let mut entries = GroupEntry::NONE;
        entries[..groups.len()].copy_from_slice(groups);
        Heartbeat {
            cluster_id: 1,
            node_id: 2,
            priority: 0,
            state: NodeState::Standby,
            flags: 0,
            key_id: 0,
            interval_us: 1_000,
            seq: Sequence { epoch: 5, counter },
            echo: Echo::default(),
            group_count: groups.len() as u8,
            groups: entries,
            tag: [0; crate::wire::TAG_LEN],
        }
    }

    const fn entry(group_id: u8, state: NodeState, priority: u32) -> GroupEntry {
        GroupEntry { group_id, state, flags: 0, priority }
    }

    #[test]
    fn group_record_is_16_bytes_and_the_record_has_room_for_every_group() {
        assert_eq!(core::mem::size_of::<GroupRecord>(), 16);
        assert_eq!(core::mem::size_of::<PeerRecord>(), 56 + 16 * MAX_GROUPS);
    }

    #[test]
    fn record_copies_the_entries_slot_by_slot() {
        let mut rec = PeerRecord::default();
        let a = GroupEntry { flags: FLAG_MAINTENANCE, ..entry(10, NodeState::Standby, 90) };
        rec.record(&heartbeat(1, &[a, entry(20, NodeState::Active, 200)]), [0; 4], 100, false);
        assert_eq!(
            rec.groups[0],
            GroupRecord { group_id: 10, state: 1, flags: FLAG_MAINTENANCE, _pad: 0, priority: 90, claimed_ns: 0 }
        );
        assert_eq!(
            rec.groups[1],
            GroupRecord { group_id: 20, state: 2, flags: 0, _pad: 0, priority: 200, claimed_ns: 100 }
        );
        assert!(rec.groups[2..].iter().all(|g| *g == GroupRecord::default()), "unused slots are all zero");
        assert_eq!(rec.group(20).map(|g| g.priority), Some(200));
        assert_eq!((rec.group(30), rec.group(0)), (None, None));
        assert_eq!(rec.claimed_ns, 0, "the header (group 0) claims nothing");
    }

    #[test]
    fn a_slot_keeps_its_claim_while_it_holds_the_same_group() {
        let mut rec = PeerRecord::default();
        rec.record(&heartbeat(1, &[entry(10, NodeState::Active, 1)]), [0; 4], 100, false);
        rec.record(&heartbeat(2, &[entry(10, NodeState::Standby, 1)]), [0; 4], 200, false);
        assert_eq!(rec.groups[0].claimed_ns, 100, "kept when it yields");
        rec.record(&heartbeat(3, &[entry(11, NodeState::Standby, 1)]), [0; 4], 300, false);
        assert_eq!(rec.groups[0].claimed_ns, 0, "another group in the slot never claimed");
        rec.record(&heartbeat(4, &[entry(11, NodeState::Active, 1)]), [0; 4], 400, false);
        rec.record(&heartbeat(5, &[]), [0; 4], 500, false);
        assert_eq!(rec.groups[0], GroupRecord::default(), "the group stopped: the slot is empty");
    }

    #[test]
    fn a_group_change_sets_the_header_change_bits() {
        let mut rec = PeerRecord::default();
        rec.record(
            &heartbeat(1, &[entry(10, NodeState::Standby, 1), entry(11, NodeState::Standby, 1)]),
            [0; 4],
            1,
            false,
        );
        let changes = |groups: &[GroupEntry]| {
            let mut after = rec;
            after.record(&heartbeat(2, groups), [0; 4], 2, false);
            rec.watched().changes(&after)
        };
        let (s, p, f) = (CHANGE_STATE, CHANGE_PRIORITY, CHANGE_FLAGS);
        assert_eq!(
            changes(&[entry(10, NodeState::Standby, 1), entry(11, NodeState::Standby, 1)]),
            0,
            "a plain heartbeat"
        );
        assert_eq!(changes(&[entry(10, NodeState::Standby, 1), entry(11, NodeState::Active, 1)]), s);
        assert_eq!(changes(&[entry(10, NodeState::Standby, 1), entry(11, NodeState::Standby, 2)]), p);
        let leaving = GroupEntry { flags: FLAG_LEAVING, ..entry(11, NodeState::Standby, 1) };
        assert_eq!(changes(&[entry(10, NodeState::Standby, 1), leaving]), f);
        assert_eq!(changes(&[entry(10, NodeState::Standby, 1)]), s | p | f, "a group stopped");
        assert_eq!(changes(&[entry(10, NodeState::Standby, 1), entry(12, NodeState::Standby, 1)]), s | p | f);
    }
}
