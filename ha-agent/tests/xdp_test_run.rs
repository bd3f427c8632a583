//! The real XDP program on crafted frames through BPF_PROG_TEST_RUN: every outcome class gets
//! its verdict and its counter; a valid heartbeat lands in PEERS; other traffic passes unchanged.
//! Needs root (CAP_BPF) and the object from `cargo xtask build-ebpf`.
use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions},
};
use ha_agent::{
    ebpf::{self, XdpConfig},
    peers::PeerMaps,
};
use ha_common::{
    maps::Stats,
    wire::{FLAG_LEAVING, Heartbeat, NodeState, Sequence, TAG_LEN},
};
use ha_lab::frames::{self, FrameSpec};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const PORT: u16 = 7265;
const CLUSTER: u32 = 42;
const SELF_ID: u32 = 1;

struct Harness {
    ebpf: Ebpf,
    maps: PeerMaps,
}

impl Harness {
    fn new() -> Self {
        Self::with(XdpConfig { cluster_id: CLUSTER, node_id: SELF_ID, port: PORT, pass_heartbeats: false })
    }

    fn with(cfg: XdpConfig) -> Self {
        let mut ebpf = ebpf::load(&cfg).expect("load the XDP program (root and `cargo xtask build-ebpf` needed)");
        let maps = PeerMaps::take_from(&mut ebpf).expect("maps");
        Self { ebpf, maps }
    }

    /// Runs one frame; returns the verdict and the frame as the program left it.
    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog = ebpf::program_mut(&mut self.ebpf).expect("program");
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), repeat: 1, ..Default::default() };
        let result = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    fn stats(&self) -> Stats {
        self.maps.stats().expect("stats")
    }

    fn peers(&self) -> Vec<(u32, ha_common::maps::PeerRecord)> {
        let mut v = Vec::new();
        self.maps.read_peers(&mut v).expect("peers");
        v
    }
}

fn heartbeat(node_id: u32, counter: u64) -> Heartbeat {
    Heartbeat {
        cluster_id: CLUSTER,
        node_id,
        priority: 150,
        state: NodeState::Active,
        flags: 0,
        key_id: 0,
        interval_us: 2_000,
        seq: Sequence { epoch: 1_000, counter },
        tag: [0; TAG_LEN],
    }
}

fn frame(hb: &Heartbeat) -> Vec<u8> {
    FrameSpec::heartbeat(hb, PORT).build()
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

    // A newer one updates the record; flags come through.
    let mut next = heartbeat(7, 2);
    next.flags = FLAG_LEAVING;
    next.state = NodeState::Standby;
    h.run(&frame(&next));
    let (_, rec) = h.peers()[0];
    assert_eq!((rec.counter, rec.received, rec.flags, rec.state), (2, 2, FLAG_LEAVING, 1));
}

#[test]
fn stale_and_replayed_sequences_are_ignored_but_a_restart_is_accepted() {
    let mut h = Harness::new();
    h.run(&frame(&heartbeat(7, 10)));
    assert_eq!(h.run(&frame(&heartbeat(7, 10))).0, XDP_DROP);
    assert_eq!(h.run(&frame(&heartbeat(7, 9))).0, XDP_DROP);
    assert_eq!(h.stats().stale, 2);
    assert_eq!(h.peers()[0].1.counter, 10);
    // Restart: a larger epoch with a small counter.
    let mut restarted = heartbeat(7, 0);
    restarted.seq.epoch = 2_000;
    h.run(&frame(&restarted));
    assert_eq!(h.peers()[0].1.epoch, 2_000);
    assert_eq!(h.stats().valid, 2);
}

#[test]
fn each_malformed_class_is_counted_and_dropped() {
    let mut h = Harness::new();
    let good = heartbeat(7, 1).encode();
    let mut bad_magic = good;
    bad_magic[0] = b'X';
    let mut bad_version = good;
    bad_version[4] = 9;
    let mut malformed = good;
    malformed[5] = 0;
    let mut wrong_cluster = heartbeat(7, 1);
    wrong_cluster.cluster_id = CLUSTER + 1;
    let mut lying_length = FrameSpec::udp(PORT, &good);
    lying_length.udp_len_override = Some(20);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated payload", FrameSpec::udp(PORT, &good[..30]).build()),
        ("truncated by udp length", lying_length.build()),
        ("bad magic", FrameSpec::udp(PORT, &bad_magic).build()),
        ("bad version", FrameSpec::udp(PORT, &bad_version).build()),
        ("malformed", FrameSpec::udp(PORT, &malformed).build()),
        ("wrong cluster", frame(&wrong_cluster)),
        ("own", frame(&heartbeat(SELF_ID, 1))),
    ];
    for (name, f) in &cases {
        assert_eq!(h.run(f).0, XDP_DROP, "{name}");
    }
    assert_eq!(
        h.stats(),
        Stats {
            truncated: 2,
            bad_magic: 1,
            bad_version: 1,
            malformed: 1,
            wrong_cluster: 1,
            own: 1,
            ..Stats::default()
        }
    );
    assert!(h.peers().is_empty(), "no invalid packet may touch PEERS");
}

#[test]
fn vlan_and_ip_options_are_parsed() {
    let mut h = Harness::new();
    let mut tagged = FrameSpec::heartbeat(&heartbeat(8, 1), PORT);
    tagged.vlan = Some(100);
    let mut options = FrameSpec::heartbeat(&heartbeat(9, 1), PORT);
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
    let mut h = Harness::with(XdpConfig { cluster_id: CLUSTER, node_id: SELF_ID, port: PORT, pass_heartbeats: true });
    assert_eq!(h.run(&frame(&heartbeat(7, 1))).0, XDP_PASS);
    assert_eq!(h.stats().valid, 1);
}

#[test]
fn configured_port_is_honoured() {
    let mut h = Harness::with(XdpConfig { cluster_id: CLUSTER, node_id: SELF_ID, port: 9999, pass_heartbeats: false });
    assert_eq!(h.run(&frame(&heartbeat(7, 1))).0, XDP_PASS, "7265 is not the port now");
    assert_eq!(h.run(&FrameSpec::heartbeat(&heartbeat(7, 1), 9999).build()).0, XDP_DROP);
}
