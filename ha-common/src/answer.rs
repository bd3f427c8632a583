//! The kernel's answer: while the agent has it in force (`ANSWER`, [`crate::maps::Answer`]),
//! the XDP program answers each peer's accepted heartbeat with one of this node's own, sent
//! back on the interface it came in on (`XDP_TX`), so a holder at rest is heard without its
//! agent waking (BFD's echo function is the precedent).
//!
//! An answer is the template the agent wrote (bytes `0..TAG_OFFSET` of its heartbeat: state,
//! flags with [`FLAG_ANSWERING`], priority, key id, epoch, ...) with the node's next counter
//! (`crate::maps::Counters`, shared with the agent's own heartbeats), the requester's id and
//! epoch as the echo, and the tag under the key the template's key id names, exactly as the
//! agent signs. So the answer is as fresh and as unforgeable as any heartbeat: a receiver
//! accepts it by the same rule (`crate::accept`), and the echo confirms this node to it.
//!
//! Written once here for the XDP program and the tests: [`asks`], [`build`] and the headers
//! ([`rewrite_ethernet`], [`rewrite_ipv4`], [`rewrite_udp`]), all in place: the XDP program
//! has no stack to spare for a second copy of a frame.
use crate::{
    auth::MAC_LEN,
    siphash::SipKey,
    wire::{FLAG_ANSWERING, HEARTBEAT_LEN, KEY_ID_OFFSET, TAG_LEN, TAG_OFFSET},
};

/// IPv4 header length of an answer (no options) and of the requests it answers.
pub const IPV4_HLEN: usize = 20;
/// UDP length of a request answered, and of its answer: a heartbeat and nothing after it.
pub const UDP_LEN: u16 = (crate::ether::UDP_HLEN + HEARTBEAT_LEN) as u16;
/// TTL of answers: they are unicast to the requester, which may be a routed unicast peer; the
/// TTL left in a request says nothing of the way back (multicast requests carry 1).
pub const TTL: u8 = 64;

/// Whether a heartbeat asks for an answer: every one does except an answer itself, so two
/// answering nodes cannot answer each other in a loop.
#[inline(always)]
pub const fn asks(request: &[u8; HEARTBEAT_LEN]) -> bool {
    request[6] & FLAG_ANSWERING == 0
}

/// The key id a template names (0: unauthenticated, a zero tag).
#[inline(always)]
pub const fn key_id(template: &[u8; TAG_OFFSET]) -> u8 {
    template[KEY_ID_OFFSET]
}

/// A heartbeat as the XDP program holds it: 8-byte words, so copies are word copies that need
/// neither a `memcpy` (which BPF lacks) nor unaligned accesses (byte by byte in BPF, which ran
/// the answer out of registers and the stack).
pub type HeartbeatWords = [u64; HEARTBEAT_LEN / 8];
/// A template ([`crate::maps::Answer::template_words`]) likewise.
pub type TemplateWords = [u64; TAG_OFFSET / 8];
const _: () = assert!(HEARTBEAT_LEN.is_multiple_of(8) && TAG_OFFSET.is_multiple_of(8));

/// The bytes of a heartbeat held as words, in wire order.
#[inline(always)]
pub fn as_bytes(words: &HeartbeatWords) -> &[u8; HEARTBEAT_LEN] {
    // SAFETY: same size, and u8 needs no alignment; every bit pattern is valid for both.
    unsafe { &*words.as_ptr().cast::<[u8; HEARTBEAT_LEN]>() }
}

/// [`as_bytes`], to change.
#[inline(always)]
pub fn as_bytes_mut(words: &mut HeartbeatWords) -> &mut [u8; HEARTBEAT_LEN] {
    // SAFETY: as `as_bytes`.
    unsafe { &mut *words.as_mut_ptr().cast::<[u8; HEARTBEAT_LEN]>() }
}

/// Turns `payload`, an accepted request, into this node's answer to it, in place: the
/// template, `counter`, the requester's node id and epoch as the echo, then the tag under
/// `key` (None: the zero tag of key id 0). The caller checked [`asks`].
#[inline(always)]
pub fn build(payload: &mut HeartbeatWords, template: &TemplateWords, counter: u64, key: Option<&SipKey>) {
    // The requester's id (bytes 12..16) and epoch (24..32, word 3), before the template
    // covers them.
    let b = as_bytes(payload);
    let id = [b[12], b[13], b[14], b[15]];
    let epoch = payload[3];
    let mut i = 0;
    while i < TAG_OFFSET / 8 {
        payload[i] = template[i];
        i += 1;
    }
    payload[4] = u64::from_ne_bytes(counter.to_be_bytes());
    payload[6] = epoch;
    let b = as_bytes_mut(payload);
    b[40] = id[0];
    b[41] = id[1];
    b[42] = id[2];
    b[43] = id[3];
    let mac = match key {
        Some(k) => crate::auth::mac(b, k),
        None => 0,
    };
    const _: () = assert!(MAC_LEN == 8 && TAG_LEN == 16 && TAG_OFFSET == 8 * 23);
    payload[23] = u64::from_ne_bytes(mac.to_le_bytes());
    payload[24] = 0;
}

/// Turns a request's Ethernet addresses (its first 12 bytes) into the answer's, in place: from
/// `mac`, back to the requester's MAC or, `to_group`, to where the request went. What follows
/// (a VLAN tag, the EtherType) stays.
#[inline(always)]
pub fn rewrite_ethernet(h: &mut [u8; 12], mac: &[u8; 6], to_group: bool) {
    let mut i = 0;
    while i < 6 {
        if !to_group {
            h[i] = h[6 + i];
        }
        h[6 + i] = mac[i];
        i += 1;
    }
}

/// Where an IPv4 header holds its destination address.
pub const IPV4_DST: usize = 16;

/// Whether an IPv4 address whose first octet is `first` is a multicast one (224.0.0.0/4): a
/// request sent to one can be answered to that group, and every peer hears it.
#[inline(always)]
pub const fn is_multicast_v4(first: u8) -> bool {
    first & 0xf0 == 0xe0
}

/// Turns a request's IPv4 header (no options) into the answer's, in place: from `src`, back to
/// the request's source or, `to_group`, to its destination; id 0, DF, [`TTL`], its checksum;
/// version, TOS, total length and protocol stay the request's.
#[inline(always)]
pub fn rewrite_ipv4(h: &mut [u8; IPV4_HLEN], src: &[u8; 4], to_group: bool) {
    let mut i = 0;
    while i < 4 {
        if !to_group {
            h[IPV4_DST + i] = h[12 + i];
        }
        h[12 + i] = src[i];
        i += 1;
    }
    h[4] = 0;
    h[5] = 0;
    h[6] = 0x40;
    h[7] = 0;
    h[8] = TTL;
    h[10] = 0;
    h[11] = 0;
    let sum = ipv4_checksum(h).to_be_bytes();
    h[10] = sum[0];
    h[11] = sum[1];
}

/// The internet checksum of a 20-byte IPv4 header (its checksum field as it is: zero to
/// compute one; the one sent to verify, which gives 0).
#[inline(always)]
pub const fn ipv4_checksum(h: &[u8; IPV4_HLEN]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < IPV4_HLEN {
        sum += u16::from_be_bytes([h[i], h[i + 1]]) as u32;
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Turns a request's UDP header into the answer's, in place: from and to `port` (requests
/// leave from an ephemeral port, peers listen on the heartbeat port), [`UDP_LEN`], checksum 0
/// (none, legal for IPv4).
#[inline(always)]
pub fn rewrite_udp(h: &mut [u8; crate::ether::UDP_HLEN], port: u16) {
    let p = port.to_be_bytes();
    let l = UDP_LEN.to_be_bytes();
    h[0] = p[0];
    h[1] = p[1];
    h[2] = p[0];
    h[3] = p[1];
    h[4] = l[0];
    h[5] = l[1];
    h[6] = 0;
    h[7] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        accept::{self, Policy},
        auth,
        maps::{Answer, PeerRecord},
        wire::{Echo, FLAG_CONFIRMING, GroupEntry, Heartbeat, NodeState, Sequence},
    };

    const KEY: SipKey = SipKey { k0: 0x0123_4567_89ab_cdef, k1: 0xfedc_ba98_7654_3210 };
    const KEY_ID: u8 = 5;
    const HOLDER: u32 = 1;
    const STANDBY: u32 = 2;

    fn heartbeat(node_id: u32, state: NodeState, flags: u8, epoch: u64, counter: u64, echo: Echo) -> Heartbeat {
        Heartbeat {
            cluster_id: 9,
            node_id,
            priority: 100 + node_id,
            state,
            flags,
            key_id: KEY_ID,
            interval_us: 10_000,
            seq: Sequence { epoch, counter },
            echo,
            group_count: 0,
            groups: GroupEntry::NONE,
            tag: [0; TAG_LEN],
        }
    }

    /// The holder's template as the agent writes it: its heartbeat's bytes before the tag.
    fn template(state: NodeState) -> [u8; TAG_OFFSET] {
        let hb = heartbeat(HOLDER, state, FLAG_ANSWERING, 77, 0, Echo::default());
        let mut t = [0; TAG_OFFSET];
        t.copy_from_slice(&hb.encode()[..TAG_OFFSET]);
        t
    }

    fn request() -> [u8; HEARTBEAT_LEN] {
        let echo = Echo { node_id: HOLDER, epoch: 77 };
        heartbeat(STANDBY, NodeState::Standby, FLAG_CONFIRMING, 55, 3, echo).encode_signed(KEY_ID, &KEY)
    }

    /// The standby's acceptance rule, with one record kept.
    struct One(Option<PeerRecord>);

    impl accept::PeerStore for One {
        fn get_mut(&mut self, node_id: u32) -> Option<&mut PeerRecord> {
            self.0.as_mut().filter(|_| node_id == HOLDER)
        }

        fn insert(&mut self, _: u32, record: &PeerRecord) -> Result<(), accept::TableFull> {
            self.0 = Some(*record);
            Ok(())
        }
    }

    /// [`build`] on byte arrays, as the tests hold heartbeats.
    fn answer(
        request: &[u8; HEARTBEAT_LEN],
        template: &[u8; TAG_OFFSET],
        counter: u64,
        key: Option<&SipKey>,
    ) -> [u8; HEARTBEAT_LEN] {
        let mut a = Answer::default();
        a.templates[1] = *template;
        a.current = 1;
        let mut words = [0u64; HEARTBEAT_LEN / 8];
        as_bytes_mut(&mut words).copy_from_slice(request);
        build(&mut words, a.template_words(), counter, key);
        *as_bytes(&words)
    }

    #[test]
    fn an_answer_verifies_echoes_the_requester_and_carries_the_template() {
        assert!(asks(&request()));
        let payload = answer(&request(), &template(NodeState::Active), 1_000, Some(&KEY));
        assert!(auth::verify(&payload, &KEY), "signed as the agent signs");
        let hb = Heartbeat::decode(&payload).expect("decodes");
        assert_eq!(
            (hb.node_id, hb.state, hb.flags, hb.seq),
            (HOLDER, NodeState::Active, FLAG_ANSWERING, Sequence { epoch: 77, counter: 1_000 })
        );
        assert_eq!(hb.echo, Echo { node_id: STANDBY, epoch: 55 }, "echoes the requester's run");
        assert_eq!((hb.priority, hb.interval_us, hb.key_id), (101, 10_000, KEY_ID));
        assert!(!asks(&payload), "an answer is never answered");

        // The standby accepts it by the same rule as any heartbeat, and is confirmed by it.
        let policy = Policy { cluster_id: 9, node_id: STANDBY, insecure: false, epoch: 55 };
        let mut store = One(None);
        let key_of = |id: u8| (id == KEY_ID).then_some(KEY);
        let got = accept::receive(&policy, &payload, [192, 0, 2, 1], &mut store, key_of, || 5);
        assert_eq!(got.map(|a| a.node_id), Ok(HOLDER));
        let rec = store.0.expect("recorded");
        assert_eq!((rec.confirmed, rec.counter, rec.state), (1, 1_000, NodeState::Active as u8));

        // A later answer is newer; the same counter again is stale.
        let later = answer(&request(), &template(NodeState::Active), 2_000, Some(&KEY));
        assert!(accept::receive(&policy, &later, [192, 0, 2, 1], &mut store, key_of, || 6).is_ok());
        assert_eq!(
            accept::receive(&policy, &later, [192, 0, 2, 1], &mut store, key_of, || 7),
            Err(accept::Rejected::Stale)
        );
    }

    #[test]
    fn without_a_key_the_tag_is_zero_and_only_the_insecure_accept_it() {
        let mut t = template(NodeState::Active);
        t[KEY_ID_OFFSET] = 0;
        let mut payload = request();
        payload[TAG_OFFSET..].fill(0xaa);
        let payload = answer(&payload, &t, 1, None);
        assert_eq!(&payload[TAG_OFFSET..], &[0; TAG_LEN]);
        assert_eq!(auth::check(&payload, true, |_| None), Ok(()));
        assert_eq!(auth::check(&payload, false, |_| Some(KEY)), Err(auth::AuthError::Unauthenticated));
        assert_eq!(key_id(&t), 0);
    }

    #[test]
    fn the_template_in_force_is_the_current_slot() {
        let mut a = Answer::default();
        a.templates[1] = template(NodeState::Active);
        assert_eq!(a.template(), &[0; TAG_OFFSET]);
        a.current = 1;
        assert_eq!(a.template(), &template(NodeState::Active));
        assert!(!a.in_force(0), "0: never");
        a.until_ns = 10;
        assert!(a.in_force(9) && !a.in_force(10));
    }

    #[test]
    fn headers_turn_around() {
        let mut eth = [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2];
        rewrite_ethernet(&mut eth, &[3; 6], false);
        assert_eq!(eth, [2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3], "to the requester, from us");
        let mut eth = [1, 0, 0x5e, 0x7f, 0x48, 0x41, 2, 2, 2, 2, 2, 2];
        rewrite_ethernet(&mut eth, &[3; 6], true);
        assert_eq!(eth, [1, 0, 0x5e, 0x7f, 0x48, 0x41, 3, 3, 3, 3, 3, 3], "to the group, from us");

        // A request: 228 bytes, id 0x1234, TTL 1, TOS CS6, 192.0.2.2 -> 239.255.72.65.
        let request = [0x45, 0xc0, 0, 228, 0x12, 0x34, 0, 0, 1, 17, 0, 0, 192, 0, 2, 2, 239, 255, 72, 65];
        assert!(is_multicast_v4(request[IPV4_DST]));
        let mut ip = request;
        rewrite_ipv4(&mut ip, &[192, 0, 2, 1], false);
        assert_eq!(ipv4_checksum(&ip), 0, "a header with its checksum sums to zero");
        assert_eq!(ip[..10], [0x45, 0xc0, 0, 228, 0, 0, 0x40, 0, TTL, 17]);
        assert_eq!(ip[12..], [192, 0, 2, 1, 192, 0, 2, 2], "from us back to the requester");
        let mut ip = request;
        rewrite_ipv4(&mut ip, &[192, 0, 2, 1], true);
        assert_eq!(ipv4_checksum(&ip), 0);
        assert_eq!(ip[12..], [192, 0, 2, 1, 239, 255, 72, 65], "from us to the group");
        assert!(!is_multicast_v4(192), "192.0.2.2");
        assert!(is_multicast_v4(224) && !is_multicast_v4(240), "224.0.0.0/4 only");

        // A known header: 4500 0073 0000 4000 4011 ---- c0a8 0001 c0a8 00c7 -> checksum b861.
        let known = [0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7];
        assert_eq!(ipv4_checksum(&known), 0xb861);

        let mut udp = [0xc3, 0x50, 0x1c, 0x61, 0, 208, 0xab, 0xcd];
        rewrite_udp(&mut udp, 7265);
        assert_eq!(udp, [0x1c, 0x61, 0x1c, 0x61, 0, 208, 0, 0]);
    }
}
