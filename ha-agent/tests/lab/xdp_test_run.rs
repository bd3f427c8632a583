//! The real XDP program on crafted frames through BPF_PROG_TEST_RUN: the shared table of
//! acceptance cases (`ha_common::accept::cases`, also run on the socket path's table) gives each
//! payload its verdict, its counter and its record; framing (VLAN, IP options, a lying UDP
//! length) is parsed; other traffic passes unchanged. Needs root (CAP_BPF) and the object from
//! `cargo xtask build-ebpf`.
use ha_agent::{auth::keys::AuthMode, rx::ebpf::XdpConfig};
use ha_common::{
    accept::cases,
    maps::{MAX_PEERS, Stats},
    wire::{FLAG_LEAVING, NodeState},
};
use ha_lab::frames::{self, FrameSpec};

use crate::support::xdp::*;

#[test]
fn every_case_of_the_shared_table() {
    cases::run_all(Accepting::new);
}

#[test]
fn valid_heartbeat_is_recorded_and_dropped() {
    let mut h = Harness::new();
    let before = ha_agent::clock::monotonic_ns();
    let (verdict, _) = h.run(&frame(&heartbeat(7, 1)));
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(h.stats(), Stats { valid: 1, ..Stats::default() });
    let peers = h.peers();
    assert_eq!(peers.len(), 1);
    let (id, rec) = peers[0];
    assert_eq!(id, 7);
    assert_eq!((rec.priority, rec.state, rec.counter, rec.epoch, rec.received), (150, 2, 1, 1_000, 1));
    assert_eq!(rec.addr, [192, 0, 2, 1]);
    assert_eq!(rec.interval_us, 2_000);
    let after = ha_agent::clock::monotonic_ns();
    assert!(rec.last_seen_ns >= before && rec.last_seen_ns <= after, "kernel time is CLOCK_MONOTONIC");
    assert_eq!(rec.claimed_ns, rec.last_seen_ns, "an ACTIVE heartbeat is a claim");
    let claimed = rec.claimed_ns;

    // A newer one updates the record; flags come through.
    let mut next = heartbeat(7, 2);
    next.flags = FLAG_LEAVING;
    next.state = NodeState::Standby;
    h.run(&frame(&next));
    let (_, rec) = h.peers()[0];
    assert_eq!((rec.counter, rec.received, rec.flags, rec.state), (2, 2, FLAG_LEAVING, 1));
    assert_eq!(rec.claimed_ns, claimed, "a STANDBY heartbeat keeps the last claim");
    assert!(rec.last_seen_ns > claimed);
}

#[test]
fn a_full_peer_table_reads_back_whole_and_forgetting_shrinks_it() {
    // The agent reads PEERS with one batch lookup; it must give every entry, each with its own
    // record, also when the table is full (every bucket chain in use).
    let mut h = Harness::new();
    let ids: Vec<u32> = (0..MAX_PEERS).map(|i| 100 + i * 7).collect();
    for (n, &id) in ids.iter().enumerate() {
        h.run(&frame(&heartbeat(id, n as u64 + 1)));
    }
    let peers = h.peers();
    assert_eq!(peers.iter().map(|p| p.0).collect::<Vec<_>>(), ids);
    for (n, (_, rec)) in peers.iter().enumerate() {
        assert_eq!(rec.counter, n as u64 + 1, "record of peer {} is its own", ids[n]);
    }
    h.maps.forget(ids[3]).expect("forget");
    assert_eq!(h.peers().len(), ids.len() - 1);
    assert!(h.peers().iter().all(|p| p.0 != ids[3]));
}

#[test]
fn a_udp_length_shorter_than_a_heartbeat_is_truncated() {
    // The frame holds a whole heartbeat; the UDP header says it does not. (Payloads that are
    // really short are in the shared table.)
    let mut h = Harness::new();
    let mut lying_length = FrameSpec::udp(PORT, &heartbeat(7, 1).encode_signed(KEY_ID, &KEY));
    lying_length.udp_len_override = Some(20);
    assert_eq!(h.run(&lying_length.build()).0, XDP_DROP);
    assert_eq!(h.stats(), Stats { truncated: 1, ..Stats::default() });
    assert!(h.peers().is_empty());
}

#[test]
fn vlan_and_ip_options_are_parsed() {
    let mut h = Harness::new();
    let mut tagged = FrameSpec::udp(PORT, &heartbeat(8, 1).encode_signed(KEY_ID, &KEY));
    tagged.vlan = Some(100);
    let mut options = FrameSpec::udp(PORT, &heartbeat(9, 1).encode_signed(KEY_ID, &KEY));
    options.ihl_words = 15;
    assert_eq!(h.run(&tagged.build()).0, XDP_DROP);
    assert_eq!(h.run(&options.build()).0, XDP_DROP);
    let mut ids: Vec<u32> = h.peers().iter().map(|p| p.0).collect();
    ids.sort();
    assert_eq!(ids, vec![8, 9]);
}

#[test]
fn other_traffic_passes_byte_for_byte() {
    let mut h = Harness::new();
    let mut tcp = FrameSpec::udp(PORT, b"not udp at all");
    tcp.protocol = 6;
    let cases = vec![
        FrameSpec::udp(53, b"a dns query, say").build(),
        tcp.build(),
        frames::arp_request(),
        // IPv4 ethertype, header cut short (the kernel refuses frames under 14 bytes).
        [&[0u8; 12][..], &[0x08, 0x00, 0x45, 0x00]].concat(),
        // 802.1Q tag with nothing behind it.
        [&[0u8; 12][..], &[0x81, 0x00]].concat(),
    ];
    for f in &cases {
        let (verdict, out) = h.run(f);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(&out, f, "passed frames are untouched");
    }
    assert_eq!(h.stats(), Stats { not_ours: cases.len() as u64, ..Stats::default() });
}

#[test]
fn pass_flag_lets_recorded_heartbeats_through() {
    let mut h = Harness::with(XdpConfig { pass_heartbeats: true, ..config(AuthMode::Keys(default_keys())) });
    assert_eq!(h.run(&frame(&heartbeat(7, 1))).0, XDP_PASS);
    assert_eq!(h.stats().valid, 1);
}

#[test]
fn configured_port_is_honoured() {
    let mut h = Harness::with(XdpConfig { port: 9999, ..config(AuthMode::Keys(default_keys())) });
    assert_eq!(h.run(&frame(&heartbeat(7, 1))).0, XDP_PASS, "7265 is not the port now");
    assert_eq!(h.run(&FrameSpec::udp(9999, &heartbeat(7, 1).encode_signed(KEY_ID, &KEY)).build()).0, XDP_DROP);
}
