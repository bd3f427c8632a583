//! The real XDP program loaded for BPF_PROG_TEST_RUN, shared by the XDP test modules.
//! Needs root (CAP_BPF) and the object from `cargo xtask build-ebpf`.

use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions},
};
use ha_agent::{
    auth::keys::{AuthMode, KeySlots, KeysMap},
    rx::{
        ebpf::{self, XdpConfig},
        peers::PeerMaps,
    },
};
use ha_common::{
    accept::cases::{self, Keys, Subject},
    maps::{AuthKey, PeerRecord, Stats},
    wire::{Echo, Heartbeat, NodeState, Sequence, TAG_LEN},
};
use ha_lab::frames::FrameSpec;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const PORT: u16 = 7265;
/// The cluster, own id and key (the one the harness installs by default) of the shared table of
/// acceptance cases, so its payloads and the harness's agree.
pub use ha_common::accept::cases::{CLUSTER, KEY, KEY_ID, SELF_EPOCH, SELF_ID};

/// `KEYS` holding only [`KEY`].
pub fn default_keys() -> KeySlots {
    [AuthKey::new(KEY_ID, KEY), AuthKey::default()]
}

pub fn config(auth: AuthMode) -> XdpConfig {
    XdpConfig {
        cluster_id: CLUSTER,
        node_id: SELF_ID,
        port: PORT,
        pass_heartbeats: false,
        epoch: SELF_EPOCH,
        auth,
        wake_event: None,
    }
}

pub struct Harness {
    pub ebpf: Ebpf,
    pub maps: PeerMaps,
    pub keys: KeysMap,
    out: Vec<u8>,
}

impl Harness {
    /// Authentication required, [`KEY`] installed.
    pub fn new() -> Self {
        Self::with(config(AuthMode::Keys(default_keys())))
    }

    pub fn with(cfg: XdpConfig) -> Self {
        let mut ebpf = ebpf::load(&cfg).expect("load the XDP program (root and `cargo xtask build-ebpf` needed)");
        let maps = PeerMaps::take_from(&mut ebpf).expect("maps");
        let keys = KeysMap::take_from(&mut ebpf).expect("KEYS");
        Self { ebpf, maps, keys, out: vec![0u8; 4096] }
    }

    /// Runs one frame; returns the verdict and the frame as the program left it.
    pub fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let (verdict, out) = self.run_ref(frame);
        (verdict, out.to_vec())
    }

    /// Like [`Harness::run`], without allocating (for many runs).
    pub fn run_ref(&mut self, frame: &[u8]) -> (u32, &[u8]) {
        let prog = ebpf::program_mut(&mut self.ebpf).expect("program");
        let opts =
            TestRunOptions { data_in: Some(frame), data_out: Some(&mut self.out), repeat: 1, ..Default::default() };
        let result = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
        (result.return_value, &self.out[..result.data_size_out as usize])
    }

    pub fn stats(&self) -> Stats {
        self.maps.stats().expect("stats")
    }

    pub fn peers(&self) -> Vec<(u32, PeerRecord)> {
        let mut v = Vec::new();
        self.maps.read_peers(&mut v).expect("peers");
        v.sort_by_key(|p| p.0);
        v
    }
}

/// A heartbeat of this cluster carrying [`KEY_ID`] (sign it with [`frame`]).
pub fn heartbeat(node_id: u32, counter: u64) -> Heartbeat {
    Heartbeat {
        cluster_id: CLUSTER,
        node_id,
        priority: 150,
        state: NodeState::Active,
        flags: 0,
        key_id: KEY_ID,
        interval_us: 2_000,
        seq: Sequence { epoch: 1_000, counter },
        echo: Echo::default(),
        group_count: 0,
        groups: ha_common::wire::GroupEntry::NONE,
        tag: [0; TAG_LEN],
    }
}

/// The heartbeat signed with [`KEY`] as key [`KEY_ID`], in a UDP frame to [`PORT`].
pub fn frame(hb: &Heartbeat) -> Vec<u8> {
    FrameSpec::udp(PORT, &hb.encode_signed(KEY_ID, &KEY)).build()
}

/// The program as a subject of the shared table of acceptance cases: recorded heartbeats pass
/// (`pass_heartbeats`), so the verdict tells recorded from rejected.
pub struct Accepting(pub Harness);

impl Accepting {
    pub fn new(keys: Keys) -> Self {
        let auth = match keys {
            Keys::Insecure => AuthMode::InsecureNoAuth,
            Keys::One | Keys::Empty => AuthMode::Keys(keys.slots()),
        };
        Self(Harness::with(XdpConfig { pass_heartbeats: true, ..config(auth) }))
    }
}

impl Subject for Accepting {
    fn receive(&mut self, payload: &[u8]) -> bool {
        let spec = FrameSpec::udp(PORT, payload);
        assert_eq!(spec.src_ip.octets(), cases::SRC, "the table's source address");
        let (verdict, _) = self.0.run_ref(&spec.build());
        assert!(verdict == XDP_PASS || verdict == XDP_DROP, "verdict {verdict}");
        verdict == XDP_PASS
    }

    fn stats(&self) -> Stats {
        self.0.stats()
    }

    fn peer(&self, node_id: u32) -> Option<PeerRecord> {
        self.0.peers().into_iter().find(|p| p.0 == node_id).map(|p| p.1)
    }

    fn peer_count(&self) -> usize {
        self.0.peers().len()
    }
}
