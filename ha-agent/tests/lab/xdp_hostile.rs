//! Hostile input through the real XDP program (BPF_PROG_TEST_RUN): 100,000 random and mutated
//! frames, each checked as it runs. Whatever arrives, a frame not addressed to the heartbeat
//! port passes byte for byte, every frame is counted exactly once, and nothing but the one
//! genuine heartbeat ever changes `PEERS`. Deterministic: set HA_FUZZ_SEED to explore others.
use std::time::{Duration, Instant};

use ha_common::{
    maps::PeerRecord,
    wire::{
        Echo, GROUP_FLAGS, GroupEntry, HEARTBEAT_LEN, Heartbeat, KNOWN_FLAGS, MAGIC, MAX_GROUPS, NodeState, Sequence,
        TAG_LEN, VERSION,
    },
};
use ha_lab::frames::{self, FrameSpec};

use crate::support::xdp::*;

const PACKETS: usize = 100_000;
/// A bound that only a hung or pathological run reaches (the run takes about a second).
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Whether a frame is UDP to the heartbeat port, by a reading independent of the program's:
/// these and only these may be dropped (recorded heartbeats do not pass by default).
fn to_heartbeat_port(f: &[u8]) -> bool {
    let be16 = |at: usize| f.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let mut l3 = 14;
    let mut ethertype = be16(12);
    if matches!(ethertype, Some(0x8100 | 0x88a8)) {
        ethertype = be16(16);
        l3 = 18;
    }
    if ethertype != Some(0x0800) {
        return false;
    }
    let Some(ip) = f.get(l3..l3 + 20) else { return false };
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 17 || fragmented || f.len() < l3 + ihl + 8 {
        return false;
    }
    be16(l3 + ihl + 2) == Some(PORT)
}

/// The genuine heartbeat recorded before the storm; everything after it is hostile or a replay.
fn genuine() -> Heartbeat {
    Heartbeat { seq: Sequence { epoch: 1_000, counter: 1_000 }, ..heartbeat(7, 0) }
}

/// A heartbeat that decodes (so it reaches the checks after the decoder) with random claims,
/// a random key id and a random tag: what a forger without the key can do at best.
fn forged(rng: &mut Rng) -> [u8; HEARTBEAT_LEN] {
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&rng.bytes(TAG_LEN));
    let group_count = rng.below(MAX_GROUPS + 1) as u8;
    let mut groups = GroupEntry::NONE;
    for (i, g) in groups.iter_mut().take(group_count as usize).enumerate() {
        // Distinct ids: one of 16 in its own sixteenth of 1..=255.
        let group_id = (i * 16 + 1 + rng.below(15)) as u8;
        let state = if rng.chance(50) { NodeState::Active } else { NodeState::Standby };
        *g = GroupEntry { group_id, state, flags: rng.next() as u8 & GROUP_FLAGS, priority: rng.next() as u32 };
    }
    let hb = Heartbeat {
        cluster_id: if rng.chance(90) { CLUSTER } else { rng.next() as u32 },
        node_id: if rng.chance(50) { 7 } else { rng.next() as u32 },
        priority: rng.next() as u32,
        state: if rng.chance(50) { NodeState::Active } else { NodeState::Standby },
        flags: rng.next() as u8 & KNOWN_FLAGS,
        key_id: [0, KEY_ID, 2, rng.next() as u8][rng.below(4)],
        interval_us: rng.next() as u32,
        seq: Sequence { epoch: rng.next(), counter: rng.next() },
        echo: Echo { node_id: rng.next() as u32, epoch: rng.next() },
        group_count,
        groups,
        tag,
    };
    hb.encode()
}

/// One hostile frame; the kernel runs XDP only on frames of at least an Ethernet header.
fn hostile(rng: &mut Rng, templates: &[Vec<u8>]) -> Vec<u8> {
    let mut f = match rng.below(7) {
        // Random bytes.
        0 => {
            let n = 14 + rng.below(200);
            rng.bytes(n)
        }
        // Random payload to the heartbeat port, sometimes starting like a heartbeat.
        1 => {
            let n = rng.below(120);
            let mut p = rng.bytes(n);
            if p.len() >= 5 && rng.chance(50) {
                p[..4].copy_from_slice(&MAGIC.to_be_bytes());
                p[4] = VERSION;
            }
            FrameSpec::udp(PORT, &p).build()
        }
        // Forged heartbeats, in any of the framings.
        2 => {
            let mut spec = FrameSpec::udp(PORT, &forged(rng));
            spec.vlan = rng.chance(20).then_some(rng.next() as u16);
            spec.ihl_words = 5 + rng.below(11) as u8;
            spec.build()
        }
        // Replays and mutations of the genuine heartbeat's frames (below).
        3 | 4 => templates[rng.below(templates.len())].clone(),
        // Other traffic, which must pass untouched.
        5 => {
            let (port, n) = (rng.next() as u16, rng.below(80));
            let mut spec = FrameSpec::udp(port, &rng.bytes(n));
            if rng.chance(30) {
                spec.protocol = rng.next() as u8;
            }
            spec.build()
        }
        _ => frames::arp_request(),
    };
    // Mutate some: a few random bytes anywhere, or a cut anywhere after the Ethernet header.
    if rng.chance(60) {
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(f.len());
            f[at] = rng.next() as u8;
        }
    }
    if rng.chance(15) {
        let keep = 14 + rng.below(f.len() - 13);
        f.truncate(keep);
    }
    f
}

fn seed() -> u64 {
    std::env::var("HA_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x4841_4842_2024) | 1
}

#[test]
fn random_and_mutated_frames_change_nothing_and_other_traffic_passes_untouched() {
    let mut h = Harness::new();
    let seed = seed();
    let mut rng = Rng(seed);
    let hb = genuine();
    let mut tagged = FrameSpec::udp(PORT, &hb.encode_signed(KEY_ID, &KEY));
    tagged.vlan = Some(7);
    let mut options = FrameSpec::udp(PORT, &hb.encode_signed(KEY_ID, &KEY));
    options.ihl_words = 9;
    let templates = [frame(&hb), tagged.build(), options.build()];
    assert_eq!(h.run(&templates[0]).0, XDP_DROP);
    let recorded: Vec<(u32, PeerRecord)> = h.peers();
    assert_eq!(recorded.len(), 1);

    let start = Instant::now();
    let mut passed = 0u64;
    for i in 0..PACKETS {
        let f = hostile(&mut rng, &templates);
        let expect_drop = to_heartbeat_port(&f);
        let (verdict, out) = h.run_ref(&f);
        let context = || format!("packet {i} (HA_FUZZ_SEED={seed}): {f:02x?}");
        if expect_drop {
            assert_eq!(verdict, XDP_DROP, "{}", context());
        } else {
            assert_eq!(verdict, XDP_PASS, "{}", context());
            assert!(out == &f[..], "modified {}", context());
            passed += 1;
        }
        if i % 1_000 == 0 {
            assert!(start.elapsed() < TIME_LIMIT, "only {i} packets in {TIME_LIMIT:?}");
        }
    }

    let s = h.stats();
    assert_eq!(s.valid, 1, "only the genuine heartbeat was ever recorded: {s:?}");
    assert_eq!(h.peers(), recorded, "PEERS is exactly as the genuine heartbeat left it");
    assert_eq!(s.not_ours, passed, "{s:?}");
    let dropped: u64 = s.drops().iter().map(|(_, n)| n).sum();
    assert_eq!(s.valid + s.not_ours + dropped, PACKETS as u64 + 1, "every frame counted once: {s:?}");
    // The storm reached every check (so the test exercises what it claims to).
    for (name, n) in s.drops() {
        if name != "own" && name != "peers_full" {
            assert!(n > 0, "no frame was dropped as {name}: {s:?}");
        }
    }
    println!("{PACKETS} frames in {:?}: {s:?}", start.elapsed());
}
