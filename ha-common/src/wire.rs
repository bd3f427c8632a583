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
//! 44      reserved (u32): zero (receivers copy the heartbeat in 8-byte words)
//! 48      echo epoch (u64): that peer's epoch as the sender last heard it
//! 56      authentication tag (16 bytes): SipHash-2-4 of bytes 0..56 under the key named by
//!         the key id, then 8 zero bytes (see `auth`); all zero when unauthenticated
//! 72      end
//! ```
//! Trailing bytes after the 72 are ignored, so a later version may append fields.
//!
//! The echo makes recordings worthless (see `accept`): a receiver takes a peer's heartbeats
//! into account only once one of them echoed the receiver's own current epoch, which no
//! heartbeat recorded before that epoch began can do. After that, the sequence keeps every
//! older heartbeat out.

/// "HAHB".
pub const MAGIC: u32 = 0x4841_4842;
pub const VERSION: u8 = 2;
pub const HEARTBEAT_LEN: usize = 72;
pub const TAG_LEN: usize = 16;
/// Offset of the key id (authenticated: it is before the tag).
pub const KEY_ID_OFFSET: usize = 7;
/// Offset of the authentication tag: the tag covers bytes `0..TAG_OFFSET`.
pub const TAG_OFFSET: usize = 56;

/// The node is leaving (clean stop): peers take over now and must not wait for the tolerance.
pub const FLAG_LEAVING: u8 = 0x01;
/// The node is in maintenance: it must not be chosen as holder.
pub const FLAG_MAINTENANCE: u8 = 0x02;
/// The sender does not yet know that some peers it hears are live (none of their heartbeats
/// echoed its epoch): peers echo it first.
pub const FLAG_CONFIRMING: u8 = 0x04;
/// Flags this version knows; others are rejected so they cannot be misread later.
pub const KNOWN_FLAGS: u8 = FLAG_LEAVING | FLAG_MAINTENANCE | FLAG_CONFIRMING;

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
    /// Unknown state value or flag bits.
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
    pub tag: [u8; TAG_LEN],
}

/// A peer's epoch, repeated back to it: proof that the heartbeat was made after that peer's
/// run began. `node_id` 0: no echo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Echo {
    pub node_id: u32,
    pub epoch: u64,
}

#[inline(always)]
fn be_u32(b: &[u8; HEARTBEAT_LEN], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn be_u64(b: &[u8; HEARTBEAT_LEN], at: usize) -> u64 {
    ((be_u32(b, at) as u64) << 32) | be_u32(b, at + 4) as u64
}

impl Heartbeat {
    /// Decodes the first [`HEARTBEAT_LEN`] bytes; never panics.
    #[inline(always)]
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.first_chunk::<HEARTBEAT_LEN>() {
            Some(fixed) => Self::decode_fixed(fixed),
            None => Err(DecodeError::Truncated),
        }
    }

    /// Decodes a fixed-size buffer (what the XDP program copies out of the packet).
    #[inline(always)]
    pub fn decode_fixed(b: &[u8; HEARTBEAT_LEN]) -> Result<Self, DecodeError> {
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
        if flags & !KNOWN_FLAGS != 0 || be_u32(b, 44) != 0 {
            return Err(DecodeError::Malformed);
        }
        let mut tag = [0u8; TAG_LEN];
        let mut i = 0;
        while i < TAG_LEN {
            tag[i] = b[TAG_OFFSET + i];
            i += 1;
        }
        Ok(Self {
            state,
            flags,
            key_id: b[KEY_ID_OFFSET],
            cluster_id: be_u32(b, 8),
            node_id: be_u32(b, 12),
            priority: be_u32(b, 16),
            interval_us: be_u32(b, 20),
            seq: Sequence { epoch: be_u64(b, 24), counter: be_u64(b, 32) },
            echo: Echo { node_id: be_u32(b, 40), epoch: be_u64(b, 48) },
            tag,
        })
    }

    /// Encodes into the fixed wire layout.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Heartbeat {
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
        assert_eq!(&bytes[48..56], &99u64.to_be_bytes());
    }

    #[test]
    fn rejects_each_class() {
        let good = sample().encode();
        assert_eq!(Heartbeat::decode(&good[..HEARTBEAT_LEN - 1]), Err(DecodeError::Truncated));
        let mut b = good;
        b[0] ^= 1;
        assert_eq!(Heartbeat::decode(&b), Err(DecodeError::BadMagic));
        let mut b = good;
        b[4] = 1;
        assert_eq!(Heartbeat::decode(&b), Err(DecodeError::BadVersion), "version 1 had no echo");
        let mut b = good;
        b[5] = 0;
        assert_eq!(Heartbeat::decode(&b), Err(DecodeError::Malformed));
        let mut b = good;
        b[6] = 0x80;
        assert_eq!(Heartbeat::decode(&b), Err(DecodeError::Malformed));
        let mut b = good;
        b[45] = 1;
        assert_eq!(Heartbeat::decode(&b), Err(DecodeError::Malformed), "reserved bytes are zero");
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

    fn any_heartbeat() -> impl Strategy<Value = Heartbeat> {
        (any::<(u32, u32, u32, bool, u8, u8, u32)>(), any::<(u64, u64, [u8; TAG_LEN], u32, u64)>()).prop_map(
            |(
                (cluster_id, node_id, priority, active, flags, key_id, interval_us),
                (epoch, counter, tag, echo_node, echo_epoch),
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
        fn any_bytes_decode_or_reject(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(hb) = Heartbeat::decode(&bytes) {
                // Whatever decodes re-encodes to the same leading bytes.
                prop_assert_eq!(&hb.encode()[..], &bytes[..HEARTBEAT_LEN]);
            }
        }

        #[test]
        fn mutated_heartbeats_never_panic(hb in any_heartbeat(), at in 0usize..HEARTBEAT_LEN, bit in 0u8..8) {
            let mut bytes = hb.encode();
            bytes[at] ^= 1 << bit;
            let _ = Heartbeat::decode(&bytes);
        }
    }
}
