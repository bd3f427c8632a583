//! How the operator chose to receive heartbeats (`--rx`, `--xdp-mode`) and where the maps are
//! pinned by default: values the configuration holds, apart from the code that acts on them.
use std::path::{Path, PathBuf};

use super::bpffs;

/// `--rx`: how heartbeats are received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RxMode {
    /// XDP when it can be loaded and attached, else a UDP socket (with one warning).
    Auto,
    /// XDP only: fail if it cannot be loaded or attached.
    Xdp,
    /// A UDP socket: no eBPF, fewer privileges, more per-packet cost.
    Socket,
}

/// `--wake`: how the agent learns that something happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WakeMode {
    /// Poll, for now: event wake is opt-in until the simulator finds it as clean as poll (3 of
    /// 100 000 seeds, all with event nodes, still fail; docs/simulation.md).
    Auto,
    /// Kernel timers report a peer's expiry and XDP each change of a peer: no periodic wake.
    Event,
    /// A look at the peer table at least every tick, as before (also with `--rx socket`).
    Poll,
}

/// How to attach: native driver mode, falling back to generic (skb) mode with a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    Auto,
    Driver,
    Skb,
}

/// The default pin directory of a cluster.
pub fn default_pin_dir(cluster_id: u32) -> PathBuf {
    Path::new(bpffs::DEFAULT_ROOT).join("ha").join(cluster_id.to_string())
}
