//! Heartbeat authentication: the tag is SipHash-2-4 of the heartbeat's bytes before the tag
//! (`0..TAG_OFFSET`, which include the key id, the cluster, the node, its claims and its
//! sequence), under the key the key id names. Signed by the sender, verified by XDP.
//!
//! The tag field is 16 bytes; SipHash gives 8. The first 8 carry the MAC (little-endian, as the
//! reference implementation outputs it), the last 8 must be zero: a later version may use them,
//! and until then they cannot carry anything unauthenticated.
use crate::{
    siphash::{SipKey, siphash24},
    wire::{HEARTBEAT_LEN, KEY_ID_OFFSET, TAG_LEN, TAG_OFFSET},
};

/// Bytes of the tag field that carry the MAC; the rest are zero.
pub const MAC_LEN: usize = 8;
/// Key id of unauthenticated heartbeats (accepted only with `--insecure-no-auth`).
pub const NO_KEY: u8 = 0;

/// Why a heartbeat is not taken as authentic; each reason has its `STATS` counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// Key id 0 (no tag) while authentication is required.
    Unauthenticated,
    /// No valid key has its key id (with `insecure`: its key id is not 0).
    UnknownKey,
    /// The tag is not the MAC under the key its key id names.
    BadAuth,
}

/// The authentication step of the acceptance rule ([`crate::accept`]).
/// `insecure` (`--insecure-no-auth`): key id 0, and only it, is accepted untagged. Otherwise
/// the key id must name a key (`key_of`) and the tag must verify under it.
#[inline(always)]
pub fn check(
    bytes: &[u8; HEARTBEAT_LEN],
    insecure: bool,
    key_of: impl FnOnce(u8) -> Option<SipKey>,
) -> Result<(), AuthError> {
    let key_id = bytes[KEY_ID_OFFSET];
    if key_id == NO_KEY {
        return if insecure { Ok(()) } else { Err(AuthError::Unauthenticated) };
    }
    if insecure {
        return Err(AuthError::UnknownKey);
    }
    let key = key_of(key_id).ok_or(AuthError::UnknownKey)?;
    if verify(bytes, &key) { Ok(()) } else { Err(AuthError::BadAuth) }
}

/// The MAC of a heartbeat's authenticated bytes.
#[inline(always)]
pub fn mac(bytes: &[u8; HEARTBEAT_LEN], key: &SipKey) -> u64 {
    let (authenticated, _) = bytes.split_at(TAG_OFFSET);
    siphash24(key, authenticated)
}

/// Writes the tag of `bytes` (whose key id must already name `key`) into its tag field.
pub fn sign(bytes: &mut [u8; HEARTBEAT_LEN], key: &SipKey) {
    let mut tag = [0u8; TAG_LEN];
    tag[..MAC_LEN].copy_from_slice(&mac(bytes, key).to_le_bytes());
    bytes[TAG_OFFSET..].copy_from_slice(&tag);
}

/// Whether the tag field holds the MAC of `bytes` under `key`, followed by zeros.
#[inline(always)]
pub fn verify(bytes: &[u8; HEARTBEAT_LEN], key: &SipKey) -> bool {
    let mut got = [0u8; MAC_LEN];
    let mut reserved = 0u8;
    let mut i = 0;
    while i < TAG_LEN {
        let b = bytes[TAG_OFFSET + i];
        if i < MAC_LEN {
            got[i] = b;
        } else {
            reserved |= b;
        }
        i += 1;
    }
    // One comparison of whole words: no early exit that would time how many bytes matched.
    (u64::from_le_bytes(got) ^ mac(bytes, key)) | reserved as u64 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Echo, GroupEntry, Heartbeat, NodeState, Sequence};

    const KEY: SipKey = SipKey { k0: 0x0123_4567_89ab_cdef, k1: 0xfedc_ba98_7654_3210 };

    fn heartbeat() -> Heartbeat {
        Heartbeat {
            cluster_id: 1,
            node_id: 2,
            priority: 100,
            state: NodeState::Active,
            flags: 0,
            key_id: 3,
            interval_us: 1_000,
            seq: Sequence { epoch: 5, counter: 6 },
            echo: Echo { node_id: 4, epoch: 7 },
            group_count: 0,
            groups: GroupEntry::NONE,
            tag: [0; TAG_LEN],
        }
    }

    #[test]
    fn signed_verifies_and_tag_layout_is_mac_then_zeros() {
        let mut b = heartbeat().encode();
        sign(&mut b, &KEY);
        assert!(verify(&b, &KEY));
        assert_eq!(&b[TAG_OFFSET..TAG_OFFSET + MAC_LEN], &mac(&b, &KEY).to_le_bytes());
        assert_eq!(&b[TAG_OFFSET + MAC_LEN..], &[0; TAG_LEN - MAC_LEN]);
        assert!(!verify(&b, &SipKey { k0: KEY.k0, k1: KEY.k1 ^ 1 }), "another key");
    }

    #[test]
    fn every_bit_of_the_heartbeat_is_covered() {
        let mut good = heartbeat().encode();
        sign(&mut good, &KEY);
        for byte in 0..HEARTBEAT_LEN {
            for bit in 0..8 {
                let mut b = good;
                b[byte] ^= 1 << bit;
                assert!(!verify(&b, &KEY), "flipping bit {bit} of byte {byte} went unnoticed");
            }
        }
    }

    #[test]
    fn unsigned_heartbeat_does_not_verify() {
        assert!(!verify(&heartbeat().encode(), &KEY));
    }

    #[test]
    fn check_names_each_reason() {
        let keys = |id: u8| (id == 3).then_some(KEY);
        let signed = heartbeat().encode_signed(3, &KEY);
        assert_eq!(check(&signed, false, keys), Ok(()));
        assert_eq!(check(&heartbeat().encode_signed(3, &SipKey::default()), false, keys), Err(AuthError::BadAuth));
        assert_eq!(check(&heartbeat().encode_signed(4, &KEY), false, keys), Err(AuthError::UnknownKey));
        let unsigned = Heartbeat { key_id: NO_KEY, ..heartbeat() }.encode();
        assert_eq!(check(&unsigned, false, keys), Err(AuthError::Unauthenticated));
        assert_eq!(check(&unsigned, true, keys), Ok(()));
        assert_eq!(check(&signed, true, keys), Err(AuthError::UnknownKey), "insecure accepts key id 0 only");
    }
}
