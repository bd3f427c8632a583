//! The XDP program's neighbour watch through BPF_PROG_TEST_RUN: the fence drops ARP requests and
//! neighbour solicitations for the shared addresses once the agent's stamp is stale, and only
//! those; claims for them by other MACs are recorded and passed. Needs root (CAP_BPF) and the
//! object from `cargo xtask build-ebpf`.
use std::{net::IpAddr, time::Duration};

use ha_agent::{
    clock::monotonic_ns,
    rx::neighbour::{NeighbourConfig, NeighbourMaps, vip_key},
};
use ha_common::neighbour::NeighbourStats;
use ha_lab::{
    VIP, VIP6,
    frames::{arp, neighbour_discovery},
};

use crate::support::xdp::*;

const OWN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const OTHER: [u8; 6] = [0x02, 0x66, 0, 0, 0, 0x02];
const TOLERANCE: Duration = Duration::from_millis(50);
const REQUEST: u16 = 1;
const REPLY: u16 = 2;
const NS: u8 = 135;
const NA: u8 = 136;

fn client() -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(192, 0, 2, 100)
}

fn watched() -> (Harness, NeighbourMaps) {
    let mut h = Harness::new();
    let cfg = NeighbourConfig { vips: vec![IpAddr::V4(VIP), IpAddr::V6(VIP6)], mac: OWN, tolerance: TOLERANCE };
    let maps = NeighbourMaps::take_from(&mut h.ebpf, &cfg, monotonic_ns()).expect("neighbour maps");
    (h, maps)
}

/// The agent's last stamp is `age` old.
fn stamped_ago(maps: &mut NeighbourMaps, age: Duration) {
    maps.stamp(monotonic_ns() - age.as_nanos() as u64).expect("stamp");
}

#[test]
fn the_fence_drops_requests_for_the_shared_addresses_only_once_the_stamp_is_stale() {
    let (mut h, mut maps) = watched();
    let for_vip = arp(REQUEST, OTHER, client(), VIP, None);
    let for_vip_tagged = arp(REQUEST, OTHER, client(), VIP, Some(7));
    let for_other = arp(REQUEST, OTHER, client(), std::net::Ipv4Addr::new(192, 0, 2, 1), None);
    let reply_to_us = arp(REPLY, OTHER, client(), VIP, None);
    let ns_vip6 = neighbour_discovery(NS, OTHER, VIP6);
    let ns_other = neighbour_discovery(NS, OTHER, "2001:db8::1".parse().expect("addr"));

    stamped_ago(&mut maps, TOLERANCE / 2);
    for frame in [&for_vip, &for_vip_tagged, &for_other, &reply_to_us, &ns_vip6, &ns_other] {
        let (verdict, out) = h.run(frame);
        assert_eq!(verdict, XDP_PASS, "a live agent: everything passes");
        assert_eq!(&out, frame, "unchanged");
    }
    assert_eq!(maps.stats().expect("stats").fenced, 0);

    stamped_ago(&mut maps, TOLERANCE + Duration::from_millis(5));
    assert_eq!(h.run(&for_vip).0, XDP_DROP, "ARP request for the address: fenced");
    assert_eq!(h.run(&for_vip_tagged).0, XDP_DROP, "behind a VLAN tag too");
    assert_eq!(h.run(&ns_vip6).0, XDP_DROP, "neighbour solicitation for the IPv6 address: fenced");
    assert_eq!(h.run(&for_other).0, XDP_PASS, "other addresses are not ours to fence");
    assert_eq!(h.run(&reply_to_us).0, XDP_PASS, "replies pass");
    assert_eq!(h.run(&ns_other).0, XDP_PASS);
    assert_eq!(maps.stats().expect("stats").fenced, 3);

    stamped_ago(&mut maps, Duration::ZERO);
    assert_eq!(h.run(&for_vip).0, XDP_PASS, "the agent is back: the fence is down");
}

#[test]
fn an_unfenced_node_passes_requests_however_old_its_stamp_until_it_stamps_again() {
    // A node without the address stops stamping and switches the fence off.
    let (mut h, mut maps) = watched();
    let for_vip = arp(REQUEST, OTHER, client(), VIP, None);
    stamped_ago(&mut maps, TOLERANCE * 4);
    maps.unfence().expect("unfence");
    assert_eq!(h.run(&for_vip).0, XDP_PASS, "off: nothing to guard");
    // Claims by other MACs are still told from our own.
    h.run(&arp(REQUEST, OTHER, VIP, VIP, None));
    assert_eq!(maps.last_claim().expect("claim").mac, OTHER);
    // It takes the address: the stamp before it arms the fence again, with its tolerance.
    stamped_ago(&mut maps, TOLERANCE + Duration::from_millis(5));
    assert_eq!(h.run(&for_vip).0, XDP_DROP, "armed again");
}

#[test]
fn without_an_agents_stamp_nothing_is_fenced() {
    // Loaded but never configured (the benchmark, other tests): tolerance 0 means no fence.
    let mut h = Harness::new();
    assert_eq!(h.run(&arp(REQUEST, OTHER, client(), VIP, None)).0, XDP_PASS);
}

#[test]
fn claims_by_other_macs_are_recorded_and_passed() {
    let (mut h, maps) = watched();
    let before = monotonic_ns();
    let garp = arp(REQUEST, OTHER, VIP, VIP, None);
    let (verdict, out) = h.run(&garp);
    assert_eq!((verdict, out), (XDP_PASS, garp.clone()), "a claim is passed unchanged");
    let claim = maps.last_claim().expect("claim");
    assert_eq!((claim.mac, claim.addr), (OTHER, vip_key(IpAddr::V4(VIP))));
    assert!(claim.at_ns >= before && claim.at_ns <= monotonic_ns(), "kernel time is CLOCK_MONOTONIC");

    // Replies sent from the address count too; our own MAC, other senders and probes do not.
    assert_eq!(h.run(&arp(REPLY, OTHER, VIP, client(), None)).0, XDP_PASS);
    h.run(&arp(REQUEST, OWN, VIP, VIP, None));
    h.run(&arp(REQUEST, OTHER, client(), VIP, None));
    h.run(&arp(REQUEST, OTHER, std::net::Ipv4Addr::UNSPECIFIED, VIP, None));
    assert_eq!(maps.stats().expect("stats"), NeighbourStats { claims: 2, fenced: 0 });

    // IPv6: an advertisement for the address from another MAC; solicitations are no claim.
    assert_eq!(h.run(&neighbour_discovery(NA, OTHER, VIP6)).0, XDP_PASS);
    h.run(&neighbour_discovery(NA, OWN, VIP6));
    h.run(&neighbour_discovery(NA, OTHER, "2001:db8::1".parse().expect("addr")));
    h.run(&neighbour_discovery(NS, OTHER, VIP6));
    assert_eq!(maps.stats().expect("stats").claims, 3);
    assert_eq!(maps.last_claim().expect("claim").addr, vip_key(IpAddr::V6(VIP6)));
}

#[test]
fn truncated_neighbour_frames_pass_untouched() {
    let (mut h, mut maps) = watched();
    stamped_ago(&mut maps, TOLERANCE * 2);
    let full = arp(REQUEST, OTHER, VIP, VIP, None);
    let ns = neighbour_discovery(NS, OTHER, VIP6);
    for cut in [14, 20, 41] {
        assert_eq!(h.run(&full[..cut]).0, XDP_PASS, "ARP cut at {cut}");
    }
    for cut in [20, 54, 61, 77] {
        assert_eq!(h.run(&ns[..cut]).0, XDP_PASS, "NS cut at {cut}");
    }
    assert_eq!(maps.stats().expect("stats"), NeighbourStats::default());
}
