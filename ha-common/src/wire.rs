//! The heartbeat wire format: fixed size, network byte order, versioned.
//!
//! ```text
//!  0      magic "HAHB" (u32)
//!  4      version (u8) | state (u8) | flags (u8) | key id (u8, 0 = unauthenticated)
//!  8      cluster id (u32)
//! 12      node id (u32)
//! 16      priority / worthiness (u32)
//! 20      sender's interval in microseconds (u32)
//! 24      epoch (u64): the sender's run, new at every start and larger than the last
//! 32      counter (u64): grows within one epoch
//! 40      echo node id (u32): a peer this heartbeat answers (0: none)
//! 44      group count (u8, 0..=16) | 3 zero bytes (receivers copy the heartbeat in 8-byte words)
//! 48      echo epoch (u64): that peer's epoch as the sender last heard it
//! 56      16 group entries of 8 bytes, the first `group count` used, the others all zero:
//!           +0 group id (u8, 1..=255, distinct among the used entries)
//!           +1 state (u8) | +2 flags (u8: FLAG_LEAVING | FLAG_MAINTENANCE only) | +3 zero
//!           +4 priority (u32)
//! 184     authentication tag (16 bytes): SipHash-2-4 of bytes 0..184 under the key named by
//!         the key id, then 8 zero bytes (see `auth`); all zero when unauthenticated
//! 200     end
//! ```
//! Trailing bytes after the 200 are ignored, so a later version may append fields.
//!
//! The header's state, priority and flags LEAVING / MAINTENANCE are those of group 0 (the
//! group of an agent without `[[group]]` tables); FLAG_CONFIRMING is the node's and applies to
//! every group. A node running `[[group]]`s announces them in the entries (header: STANDBY,
//! priority 0). Everything else (sequence, echo, interval, key) is once per node: one
//! heartbeat carries every group.
//!
//! The echo makes recordings worthless (see `accept`): a receiver takes a peer's heartbeats
//! into account only once one of them echoed the receiver's own current epoch, which no
//! heartbeat recorded before that epoch began can do. After that, the sequence keeps every
//! older heartbeat out.

/// "HAHB".
pub const MAGIC: u32 = 0x4841_4842;
pub const VERSION: u8 = 3;
pub const HEARTBEAT_LEN: usize = 200;
pub const TAG_LEN: usize = 16;
/// Offset of the key id (authenticated: it is before the tag).
pub const KEY_ID_OFFSET: usize = 7;
/// Offset of the authentication tag: the tag covers bytes `0..TAG_OFFSET`.
pub const TAG_OFFSET: usize = 184;
/// Offset of the group count; the 3 bytes after it are zero.
pub const GROUP_COUNT_OFFSET: usize = 44;
/// Offset of the first group entry.
pub const GROUPS_OFFSET: usize = 56;
/// Bytes of one group entry.
pub const GROUP_ENTRY_LEN: usize = 8;
/// Group entries in a heartbeat: the most groups one agent runs.
pub const MAX_GROUPS: usize = 16;
const _: () = assert!(GROUPS_OFFSET + MAX_GROUPS * GROUP_ENTRY_LEN == TAG_OFFSET);
const _: () = assert!(TAG_OFFSET + TAG_LEN == HEARTBEAT_LEN);

/// The node is leaving (clean stop): peers take over now and must not wait for the tolerance.
pub const FLAG_LEAVING: u8 = 0x01;
/// The node is in maintenance: it must not be chosen as holder.
pub const FLAG_MAINTENANCE: u8 = 0x02;
/// The sender does not yet know that some peers it hears are live (none of their heartbeats
/// echoed its epoch): peers echo it first.
pub const FLAG_CONFIRMING: u8 = 0x04;
/// The sender's kernel answers each of the receiver's heartbeats with one of its own (XDP):
/// between its own heartbeats, which are rare, the sender is heard only when asked. Never
/// answered itself, so two answering nodes cannot answer each other in a loop.
pub const FLAG_ANSWERING: u8 = 0x08;
/// Flags this version knows; others are rejected so they cannot be misread later.
pub const KNOWN_FLAGS: u8 = FLAG_LEAVING | FLAG_MAINTENANCE | FLAG_CONFIRMING | FLAG_ANSWERING;
/// Flags a group entry may carry (confirming is the node's: the header's applies to all).
pub const GROUP_FLAGS: u8 = FLAG_LEAVING | FLAG_MAINTENANCE;

/// A node's role as it announces it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeState {
    /// Not holding the shared address.
    Standby = 1,
    /// Holding the shared address.
    Active = 2,
}

impl NodeState {
    #[inline(always)]
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Standby),
            2 => Some(Self::Active),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Standby => "STANDBY",
            Self::Active => "ACTIVE",
        }
    }
}

/// Orders heartbeats of one sender across restarts: a restart picks a larger epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sequence {
    pub epoch: u64,
    pub counter: u64,
}

/// Why bytes are not a heartbeat of this version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    BadMagic,
    BadVersion,
    /// Unknown state value or flag bits, non-zero reserved bytes, or bad group entries.
    Malformed,
}

/// A decoded heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub cluster_id: u32,
    pub node_id: u32,
    pub priority: u32,
    pub state: NodeState,
    pub flags: u8,
    pub key_id: u8,
    pub interval_us: u32,
    pub seq: Sequence,
    /// The peer this heartbeat answers, with its epoch as heard (see the module doc).
    pub echo: Echo,
    /// Entries used in `groups`; the others are [`GroupEntry::EMPTY`].
    pub group_count: u8,
    pub groups: [GroupEntry; MAX_GROUPS],
    pub tag: [u8; TAG_LEN],
}

/// One group's claim in a heartbeat (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupEntry {
    /// 1..=255 in a used entry; 0 in an unused one.
    pub group_id: u8,
    pub state: NodeState,
    /// [`GROUP_FLAGS`] bits.
    pub flags: u8,
    pub priority: u32,
}

impl GroupEntry {
    /// An unused entry (encoded as 8 zero bytes).
    pub const EMPTY: Self = Self { group_id: 0, state: NodeState::Standby, flags: 0, priority: 0 };
    /// The entries of a heartbeat without groups (group 0 only, in the header).
    pub const NONE: [Self; MAX_GROUPS] = [Self::EMPTY; MAX_GROUPS];

    /// The entry at `at`, or `None` if its state or flags are not valid for a used entry.
    #[inline(always)]
    fn decode_used(b: &[u8; HEARTBEAT_LEN], at: usize) -> Option<Self> {
        let state = NodeState::from_u8(b[at + 1])?;
        let (group_id, flags) = (b[at], b[at + 2]);
        if group_id == 0 || flags & !GROUP_FLAGS != 0 || b[at + 3] != 0 {
            return None;
        }
        Some(Self { group_id, state, flags, priority: be_u32(b, at + 4) })
    }

    #[inline(always)]
    pub const fn is_leaving(&self) -> bool {
        self.flags & FLAG_LEAVING != 0
    }
}

impl Default for GroupEntry {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// A peer's epoch, repeated back to it: proof that the heartbeat was made after that peer's
/// run began. `node_id` 0: no echo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Echo {
    pub node_id: u32,
    pub epoch: u64,
}

#[inline(always)]
/// The big-endian u32 at `at` of a heartbeat's bytes (also read by the XDP program's link
/// bookkeeping, which needs a sender's id and sequence without a second decode).
pub fn be_u32(b: &[u8; HEARTBEAT_LEN], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
/// The big-endian u64 at `at` of a heartbeat's bytes.
pub fn be_u64(b: &[u8; HEARTBEAT_LEN], at: usize) -> u64 {
    ((be_u32(b, at) as u64) << 32) | be_u32(b, at + 4) as u64
}

impl Heartbeat {
    /// All fields zero (state STANDBY, no groups): a place to decode into.
    pub const ZERO: Self = Self {
        cluster_id: 0,
        node_id: 0,
        priority: 0,
        state: NodeState::Standby,
        flags: 0,
        key_id: 0,
        interval_us: 0,
        seq: Sequence { epoch: 0, counter: 0 },
        echo: Echo { node_id: 0, epoch: 0 },
        group_count: 0,
        groups: GroupEntry::NONE,
        tag: [0; TAG_LEN],
    };

    /// Decodes the first [`HEARTBEAT_LEN`] bytes; never panics.
    #[inline(always)]
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.first_chunk::<HEARTBEAT_LEN>() {
            Some(fixed) => Self::decode_fixed(fixed),
            None => Err(DecodeError::Truncated),
        }
    }

    /// Decodes a fixed-size buffer.
    #[inline(always)]
    pub fn decode_fixed(b: &[u8; HEARTBEAT_LEN]) -> Result<Self, DecodeError> {
        let mut hb = Self::ZERO;
        hb.decode_from(b)?;
        Ok(hb)
    }

    /// Decodes `b` into `self` in place (the XDP program: a heartbeat is large for its stack);
    /// on an error `self` holds a partly decoded heartbeat.
    #[inline(always)]
    pub fn decode_from(&mut self, b: &[u8; HEARTBEAT_LEN]) -> Result<(), DecodeError> {
        if be_u32(b, 0) != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if b[4] != VERSION {
            return Err(DecodeError::BadVersion);
        }
        let Some(state) = NodeState::from_u8(b[5]) else {
            return Err(DecodeError::Malformed);
        };
        let flags = b[6];
        let group_count = b[GROUP_COUNT_OFFSET];
        if flags & !KNOWN_FLAGS != 0 || be_u32(b, GROUP_COUNT_OFFSET) & 0x00ff_ffff != 0 {
            return Err(DecodeError::Malformed);
        }
        if !decode_groups(b, group_count, &mut self.groups) {
            return Err(DecodeError::Malformed);
        }
        let mut i = 0;
        while i < TAG_LEN {
            self.tag[i] = b[TAG_OFFSET + i];
            i += 1;
        }
        self.state = state;
        self.flags = flags;
        self.key_id = b[KEY_ID_OFFSET];
        self.cluster_id = be_u32(b, 8);
        self.node_id = be_u32(b, 12);
        self.priority = be_u32(b, 16);
        self.interval_us = be_u32(b, 20);
        self.seq = Sequence { epoch: be_u64(b, 24), counter: be_u64(b, 32) };
        self.echo = Echo { node_id: be_u32(b, 40), epoch: be_u64(b, 48) };
        self.group_count = group_count;
        Ok(())
    }

    /// Encodes into the fixed wire layout: the first `group_count` entries (at most
    /// [`MAX_GROUPS`]) as they are, the others as zeros.
    pub fn encode(&self) -> [u8; HEARTBEAT_LEN] {
        let mut b = [0u8; HEARTBEAT_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4] = VERSION;
        b[5] = self.state as u8;
        b[6] = self.flags;
        b[KEY_ID_OFFSET] = self.key_id;
        b[8..12].copy_from_slice(&self.cluster_id.to_be_bytes());
        b[12..16].copy_from_slice(&self.node_id.to_be_bytes());
        b[16..20].copy_from_slice(&self.priority.to_be_bytes());
        b[20..24].copy_from_slice(&self.interval_us.to_be_bytes());
        b[24..32].copy_from_slice(&self.seq.epoch.to_be_bytes());
        b[32..40].copy_from_slice(&self.seq.counter.to_be_bytes());
        b[40..44].copy_from_slice(&self.echo.node_id.to_be_bytes());
        b[GROUP_COUNT_OFFSET] = self.group_count;
        for (i, g) in self.groups.iter().take(self.group_count as usize).enumerate() {
            let at = GROUPS_OFFSET + i * GROUP_ENTRY_LEN;
            b[at] = g.group_id;
            b[at + 1] = g.state as u8;
            b[at + 2] = g.flags;
            b[at + 4..at + 8].copy_from_slice(&g.priority.to_be_bytes());
        }
        b[48..56].copy_from_slice(&self.echo.epoch.to_be_bytes());
        b[TAG_OFFSET..].copy_from_slice(&self.tag);
        b
    }

    /// Encodes with `key_id` in the header and the tag of `key` (see [`crate::auth`]).
    pub fn encode_signed(&self, key_id: u8, key: &crate::siphash::SipKey) -> [u8; HEARTBEAT_LEN] {
        let mut b = Self { key_id, tag: [0; TAG_LEN], ..*self }.encode();
        crate::auth::sign(&mut b, key);
        b
    }

    pub const fn is_leaving(&self) -> bool {
        self.flags & FLAG_LEAVING != 0
    }

    /// The used group entries.
    pub fn used_groups(&self) -> &[GroupEntry] {
        let n = (self.group_count as usize).min(MAX_GROUPS);
        &self.groups[..n]
    }

    /// The entry of group `group_id` (1..=255), if the sender runs it.
    pub fn group(&self, group_id: u8) -> Option<&GroupEntry> {
        self.used_groups().iter().find(|g| g.group_id == group_id && group_id != 0)
    }
}

/// Decodes the group entries of `b` into `out`: `count` used ones, valid and with distinct
/// ids, then zeros; false otherwise. A loop with a fixed bound and no slice indexing by the
/// count, as the verifier needs.
#[inline(always)]
fn decode_groups(b: &[u8; HEARTBEAT_LEN], count: u8, out: &mut [GroupEntry; MAX_GROUPS]) -> bool {
    if count as usize > MAX_GROUPS {
        return false;
    }
    // Which group ids were seen: bit `id % 64` of word `id / 64`.
    let mut seen = [0u64; 4];
    let mut i = 0;
    while i < MAX_GROUPS {
        let at = GROUPS_OFFSET + i * GROUP_ENTRY_LEN;
        if i < count as usize {
            let Some(g) = GroupEntry::decode_used(b, at) else {
                return false;
            };
            let (word, bit) = ((g.group_id >> 6) as usize & 3, 1u64 << (g.group_id & 63));
            if seen[word] & bit != 0 {
                return false;
            }
            seen[word] |= bit;
            out[i] = g;
        } else if be_u64(b, at) != 0 {
            return false;
        } else {
            out[i] = GroupEntry::EMPTY;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use proptest::prelude::*;

    fn sample() -> Heartbeat {
        let mut groups = [GroupEntry::EMPTY; MAX_GROUPS];
        groups[0] = GroupEntry { group_id: 3, state: NodeState::Active, flags: 0, priority: 200 };
        groups[1] = GroupEntry { group_id: 255, state: NodeState::Standby, flags: FLAG_MAINTENANCE, priority: 7 };
        Heartbeat {
            cluster_id: 7,
            node_id: 0x0a00_0001,
            priority: 100,
            state: NodeState::Active,
            flags: FLAG_LEAVING,
            key_id: 0,
            interval_us: 2_000,
            seq: Sequence { epoch: 1_700_000_000_000_000, counter: 42 },
            echo: Echo { node_id: 0x0a00_0002, epoch: 99 },
            group_count: 2,
            groups,
            tag: [0; TAG_LEN],
        }
    }

    #[test]
    fn layout_is_stable() {
        let bytes = sample().encode();
        assert_eq!(&bytes[0..4], b"HAHB");
        assert_eq!(bytes[4], VERSION);
        assert_eq!(bytes[5], 2);
        assert_eq!(&bytes[12..16], &[10, 0, 0, 1]);
        assert_eq!(&bytes[32..40], &42u64.to_be_bytes());
        assert_eq!(&bytes[40..44], &[10, 0, 0, 2]);
        assert_eq!(&bytes[44..48], &[2, 0, 0, 0]);
        assert_eq!(&bytes[48..56], &99u64.to_be_bytes());
        assert_eq!(&bytes[56..64], &[3, 2, 0, 0, 0, 0, 0, 200]);
        assert_eq!(&bytes[64..72], &[255, 1, FLAG_MAINTENANCE, 0, 0, 0, 0, 7]);
        assert_eq!(&bytes[72..TAG_OFFSET], &[0; TAG_OFFSET - 72]);
        assert_eq!(bytes.len(), 200);
    }

    /// `sample()` encoded, with `f` applied to the bytes.
    fn edited(f: impl FnOnce(&mut [u8; HEARTBEAT_LEN])) -> Result<Heartbeat, DecodeError> {
        let mut b = sample().encode();
        f(&mut b);
        Heartbeat::decode(&b)
    }

    #[test]
    fn rejects_each_class() {
        let good = sample().encode();
        assert_eq!(Heartbeat::decode(&good[..HEARTBEAT_LEN - 1]), Err(DecodeError::Truncated));
        assert_eq!(edited(|b| b[0] ^= 1), Err(DecodeError::BadMagic));
        assert_eq!(edited(|b| b[4] = 2), Err(DecodeError::BadVersion), "version 2 had no groups");
        assert_eq!(edited(|b| b[5] = 0), Err(DecodeError::Malformed));
        assert_eq!(edited(|b| b[6] = 0x80), Err(DecodeError::Malformed));
        for at in 45..48 {
            assert_eq!(edited(|b| b[at] = 1), Err(DecodeError::Malformed), "reserved byte {at} is zero");
        }
    }

    #[test]
    fn rejects_bad_group_entries() {
        let entry = |i: usize| GROUPS_OFFSET + i * GROUP_ENTRY_LEN;
        assert_eq!(edited(|b| b[GROUP_COUNT_OFFSET] = 17), Err(DecodeError::Malformed), "more than 16");
        assert_eq!(edited(|b| b[GROUP_COUNT_OFFSET] = 3), Err(DecodeError::Malformed), "a used entry of zeros");
        assert_eq!(edited(|b| b[GROUP_COUNT_OFFSET] = 1), Err(DecodeError::Malformed), "an unused entry not zero");
        assert_eq!(edited(|b| b[entry(15) + 7] = 1), Err(DecodeError::Malformed), "the last entry not zero");
        assert_eq!(edited(|b| b[entry(1)] = 0), Err(DecodeError::Malformed), "group id 0 in a used entry");
        assert_eq!(edited(|b| b[entry(1)] = 3), Err(DecodeError::Malformed), "the same group twice");
        assert_eq!(edited(|b| b[entry(1) + 1] = 0), Err(DecodeError::Malformed), "unknown state");
        assert_eq!(edited(|b| b[entry(1) + 1] = 3), Err(DecodeError::Malformed), "unknown state");
        assert_eq!(edited(|b| b[entry(1) + 2] = FLAG_CONFIRMING), Err(DecodeError::Malformed), "node-level flag");
        assert_eq!(edited(|b| b[entry(1) + 2] = 0x80), Err(DecodeError::Malformed), "unknown flag");
        assert_eq!(edited(|b| b[entry(1) + 3] = 1), Err(DecodeError::Malformed), "the zero byte");
        // Ids that differ only in the word or the bit of the seen-set are distinct.
        let ids = edited(|b| {
            b[GROUP_COUNT_OFFSET] = 4;
            for (i, id) in [1u8, 65, 129, 2].into_iter().enumerate() {
                b[entry(i)] = id;
                b[entry(i) + 1] = 1;
            }
        });
        assert_eq!(ids.map(|hb| hb.used_groups().iter().map(|g| g.group_id).sum::<u8>()), Ok(197));
    }

    #[test]
    fn group_lookup() {
        let hb = sample();
        assert_eq!(hb.used_groups().len(), 2);
        assert_eq!(hb.group(255).map(|g| g.priority), Some(7));
        assert_eq!(hb.group(4), None);
        assert_eq!(hb.group(0), None, "group 0 is the header's, never an entry");
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut long = [0u8; HEARTBEAT_LEN + 9];
        long[..HEARTBEAT_LEN].copy_from_slice(&sample().encode());
        assert_eq!(Heartbeat::decode(&long), Ok(sample()));
    }

    #[test]
    fn sequence_orders_epoch_first() {
        let old = Sequence { epoch: 1, counter: 1_000 };
        let restarted = Sequence { epoch: 2, counter: 0 };
        assert!(restarted > old);
    }

    /// A used prefix of distinct ids in any order, valid entries, then empty ones.
    fn any_groups() -> impl Strategy<Value = (u8, [GroupEntry; MAX_GROUPS])> {
        let ids = proptest::sample::subsequence((1..=255u8).collect::<Vec<_>>(), 0..=MAX_GROUPS).prop_shuffle();
        (ids, proptest::collection::vec(any::<(bool, u8, u32)>(), MAX_GROUPS)).prop_map(|(ids, entries)| {
            let mut groups = [GroupEntry::EMPTY; MAX_GROUPS];
            for ((slot, id), (active, flags, priority)) in groups.iter_mut().zip(&ids).zip(entries) {
                let state = if active { NodeState::Active } else { NodeState::Standby };
                *slot = GroupEntry { group_id: *id, state, flags: flags & GROUP_FLAGS, priority };
            }
            (ids.len() as u8, groups)
        })
    }

    fn any_heartbeat() -> impl Strategy<Value = Heartbeat> {
        (any::<(u32, u32, u32, bool, u8, u8, u32)>(), any::<(u64, u64, [u8; TAG_LEN], u32, u64)>(), any_groups())
            .prop_map(
                |(
                    (cluster_id, node_id, priority, active, flags, key_id, interval_us),
                    (epoch, counter, tag, echo_node, echo_epoch),
                    (group_count, groups),
                )| Heartbeat {
                    cluster_id,
                    node_id,
                    priority,
                    state: if active { NodeState::Active } else { NodeState::Standby },
                    flags: flags & KNOWN_FLAGS,
                    key_id,
                    interval_us,
                    seq: Sequence { epoch, counter },
                    echo: Echo { node_id: echo_node, epoch: echo_epoch },
                    group_count,
                    groups,
                    tag,
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(hb in any_heartbeat()) {
            prop_assert_eq!(Heartbeat::decode(&hb.encode()), Ok(hb));
        }

        #[test]
        fn any_bytes_decode_or_reject(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(hb) = Heartbeat::decode(&bytes) {
                // Whatever decodes re-encodes to the same leading bytes.
                prop_assert_eq!(&hb.encode()[..], &bytes[..HEARTBEAT_LEN]);
            }
        }

        #[test]
        fn mutated_heartbeats_decode_to_themselves_or_reject(
            hb in any_heartbeat(), at in 0usize..HEARTBEAT_LEN, bit in 0u8..8,
        ) {
            let mut bytes = hb.encode();
            bytes[at] ^= 1 << bit;
            if let Ok(decoded) = Heartbeat::decode(&bytes) {
                prop_assert_eq!(&decoded.encode()[..], &bytes[..]);
            }
        }
    }
}
