//! Where peers come from: the XDP program's maps, or a UDP socket read in user space. The run
//! loop only sees [`Receiver::read_peers`] and [`Receiver::stats`], in the same `PeerRecord`
//! form either way, so the state machine gets the same `Peer` inputs from both.
mod bpffs;
pub mod ebpf;
pub mod events;
pub mod link_pin;
pub mod links;
mod map_batch;
pub mod neighbour;
pub mod peers;
pub mod settings;
mod socket;
mod table;

use std::path::PathBuf;

use ha_common::{
    maps::{PeerRecord, Stats},
    neighbour::{LastClaim, NeighbourStats},
};

use crate::{
    auth::keys::{AuthMode, KeySet, KeysMap, KeysMapError},
    config::RunConfig,
};
use ebpf::{AttachedXdp, EbpfError, XdpConfig};
use neighbour::{NeighbourConfig, NeighbourError, NeighbourMaps};
use peers::{PeerMaps, PeersError};
pub use settings::{RxMode, WakeMode};
use socket::{SocketRx, SocketRxConfig};

#[derive(Debug, thiserror::Error)]
pub enum RxError {
    #[error(transparent)]
    Xdp(#[from] EbpfError),
    #[error("opening the heartbeat receive socket: {0}")]
    Socket(std::io::Error),
    #[error(transparent)]
    Maps(#[from] PeersError),
    #[error("reading heartbeats from the socket: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Keys(#[from] KeysMapError),
    #[error(transparent)]
    Neighbour(#[from] NeighbourError),
    #[error(transparent)]
    Events(#[from] events::EventsError),
    #[error(transparent)]
    Answer(#[from] crate::tx::answer::AnswerError),
    #[error("the kernel's answers on {iface}: {source}")]
    AnswerIface { iface: String, source: std::io::Error },
}

pub enum Receiver {
    Xdp {
        maps: PeerMaps,
        /// Where new keys go on a reload (None with `--insecure-no-auth`).
        keys: Option<KeysMap>,
        /// The fence's stamp and the claims of other MACs (boxed like `xdp`).
        neighbour: Box<NeighbourMaps>,
        /// The ring buffer and the limits of event wake (`--wake event`; boxed like `xdp`).
        events: Option<Box<events::EventMaps>>,
        /// Which link carried which peer (read only with several heartbeat links; boxed like
        /// `xdp`).
        links: Box<links::LinkMaps>,
        /// Heartbeats the kernel answers for this node (boxed like `xdp`). Declared before
        /// `xdp`: answers stop before the program is detached.
        answer: Box<crate::tx::answer::Answerer>,
        /// Declared after `maps`: detaches and unpins when the receiver is dropped. Boxed: the
        /// loaded object is large and the socket variant small.
        xdp: Box<AttachedXdp>,
    },
    Socket {
        rx: SocketRx,
        pin_dir: PathBuf,
    },
}

impl Receiver {
    /// Opens the receive path `cfg.rx` asks for; in `auto`, falls back from XDP to the socket
    /// when XDP cannot be had here (no BPF support, no permission, no XDP on the interface).
    /// Either path accepts only what `auth` allows, with the same rule (`ha_common::auth::check`).
    /// `mac` is the interface's: XDP tells other MACs' claims for the shared addresses from ours.
    pub fn open(cfg: &RunConfig, auth: AuthMode, epoch: u64, mac: [u8; 6]) -> Result<Self, RxError> {
        match cfg.rx {
            RxMode::Xdp => Self::open_xdp(cfg, auth, epoch, mac),
            RxMode::Socket => Self::open_socket(cfg, auth, epoch),
            RxMode::Auto => match Self::open_xdp(cfg, auth, epoch, mac) {
                Err(RxError::Xdp(e)) if falls_back(&e) => {
                    log::warn!("XDP unavailable, receiving heartbeats on a UDP socket instead (--rx socket): {e}");
                    if cfg.links.len() > 1 {
                        log::warn!(
                            "the socket path listens on {} only: the other heartbeat links are not heard",
                            cfg.iface
                        );
                    }
                    Self::open_socket(cfg, auth, epoch)
                }
                other => other,
            },
        }
    }

    fn open_xdp(cfg: &RunConfig, auth: AuthMode, epoch: u64, mac: [u8; 6]) -> Result<Self, RxError> {
        let xdp_cfg = XdpConfig {
            cluster_id: cfg.cluster_id,
            node_id: cfg.node.node_id,
            port: cfg.port,
            pass_heartbeats: cfg.pass_heartbeats,
            epoch,
            auth,
            wake_event: (cfg.wake == WakeMode::Event).then_some(cfg.node.tolerance),
        };
        let mut xdp = AttachedXdp::attach(&cfg.iface, &xdp_cfg, cfg.xdp_mode, &cfg.pin_dir)?;
        for link in cfg.links.iter().skip(1) {
            let mode = xdp.attach_also(&link.iface, cfg.xdp_mode)?;
            log::info!("XDP also on {} ({mode:?} mode), a redundant heartbeat link", link.iface);
        }
        // The fence must cover the shared addresses where they are: their interfaces too. Not in
        // routed mode, where nobody ARPs for them (they sit on lo or a dummy).
        let heartbeat = |i: &str| cfg.links.iter().any(|l| l.iface == i);
        let placed = if cfg.routed.is_none() { crate::netlink::vip::interfaces(&cfg.vips) } else { Vec::new() };
        for iface in placed.into_iter().filter(|i| !heartbeat(i)) {
            let mode = xdp.attach_also(iface, cfg.xdp_mode)?;
            log::info!("XDP also on {iface} ({mode:?} mode), for the fence of its shared addresses");
        }
        let maps = PeerMaps::take_from(xdp.ebpf_mut())?;
        let keys = match auth {
            AuthMode::Keys(_) => Some(KeysMap::take_from(xdp.ebpf_mut())?),
            AuthMode::InsecureNoAuth => None,
        };
        let watch = NeighbourConfig {
            vips: cfg.vips.iter().map(|v| v.addr.addr).collect(),
            mac,
            tolerance: cfg.node.tolerance,
        };
        let neighbour = NeighbourMaps::take_from(xdp.ebpf_mut(), &watch, crate::clock::monotonic_ns())?;
        let events = match xdp_cfg.wake_event {
            Some(_) => Some(Box::new(events::EventMaps::take_from(xdp.ebpf_mut())?)),
            None => None,
        };
        let links = Box::new(links::LinkMaps::take_from(xdp.ebpf_mut())?);
        let mut answer = Box::new(crate::tx::answer::Answerer::take_from(xdp.ebpf_mut())?);
        for link in &cfg.links {
            let err = |source| RxError::AnswerIface { iface: link.iface.clone(), source };
            let ifindex = crate::netlink::iface::index(&link.iface).map_err(err)?;
            let mac = crate::tx::announce::Announcer::new(&link.iface).map_err(err)?.mac();
            answer.add_iface(ifindex, mac, link.addr)?;
        }
        Ok(Self::Xdp { maps, keys, neighbour: Box::new(neighbour), events, links, answer, xdp: Box::new(xdp) })
    }

    fn open_socket(cfg: &RunConfig, auth: AuthMode, epoch: u64) -> Result<Self, RxError> {
        let rx = SocketRx::open(&SocketRxConfig {
            iface: cfg.iface.clone(),
            iface_addr: cfg.iface_addr,
            group: cfg.unicast_peers.is_empty().then_some(cfg.group),
            port: cfg.port,
            cluster_id: cfg.cluster_id,
            node_id: cfg.node.node_id,
            epoch,
            auth,
        })
        .map_err(RxError::Socket)?;
        Ok(Self::Socket { rx, pin_dir: cfg.pin_dir.clone() })
    }

    /// Fills `out` with every peer heard of so far (reusing its allocation: this runs every tick).
    pub fn read_peers(&mut self, out: &mut Vec<(u32, PeerRecord)>) -> Result<(), RxError> {
        match self {
            Self::Xdp { maps, .. } => Ok(maps.read_peers(out)?),
            Self::Socket { rx, .. } => rx.read_peers(out).map_err(RxError::Read),
        }
    }

    /// Which link (interface index) last carried each peer; empty on the socket path, which
    /// listens on one link.
    pub fn read_links(
        &self,
        out: &mut Vec<(ha_common::links::LinkKey, ha_common::links::LinkRecord)>,
    ) -> Result<(), RxError> {
        match self {
            Self::Xdp { links, .. } => Ok(links.read(out)?),
            Self::Socket { .. } => {
                out.clear();
                Ok(())
            }
        }
    }

    /// Accepts `keys` from now on (a SIGHUP reload), keeping each kept key where it is.
    pub fn install_keys(&mut self, keys: &KeySet) -> Result<(), RxError> {
        match self {
            Self::Xdp { keys: Some(map), .. } => Ok(map.install(keys)?),
            Self::Xdp { keys: None, .. } => Ok(()),
            Self::Socket { rx, .. } => {
                rx.install_keys(keys);
                Ok(())
            }
        }
    }

    /// This agent is alive: the fence stays down (no-op without XDP).
    pub fn stamp(&mut self, now_ns: u64) -> Result<(), RxError> {
        match self {
            Self::Xdp { neighbour, .. } => Ok(neighbour.stamp(now_ns)?),
            Self::Socket { .. } => Ok(()),
        }
    }

    /// Switches the fence off until the next [`Receiver::stamp`]: this node holds no address.
    pub fn unfence(&mut self) -> Result<(), RxError> {
        match self {
            Self::Xdp { neighbour, .. } => Ok(neighbour.unfence()?),
            Self::Socket { .. } => Ok(()),
        }
    }

    /// The last claim for a shared address by another MAC (None without XDP).
    pub fn last_claim(&self) -> Result<Option<LastClaim>, RxError> {
        match self {
            Self::Xdp { neighbour, .. } => Ok(Some(neighbour.last_claim()?)),
            Self::Socket { .. } => Ok(None),
        }
    }

    /// Counters of the neighbour watch (zero without XDP).
    pub fn neighbour_stats(&self) -> Result<NeighbourStats, RxError> {
        match self {
            Self::Xdp { neighbour, .. } => Ok(neighbour.stats()?),
            Self::Socket { .. } => Ok(NeighbourStats::default()),
        }
    }

    /// Outcome counters of received heartbeats.
    pub fn stats(&self) -> Result<Stats, RxError> {
        match self {
            Self::Xdp { maps, .. } => Ok(maps.stats()?),
            Self::Socket { rx, .. } => Ok(rx.stats()),
        }
    }

    /// Key ids of heartbeats of this cluster refused for naming no key of ours, when the path
    /// sees them (the socket path; XDP counts them only).
    pub fn unknown_key_ids(&self) -> Vec<u8> {
        match self {
            Self::Xdp { .. } => Vec::new(),
            Self::Socket { rx, .. } => rx.unknown_key_ids(),
        }
    }

    /// Heartbeat datagrams the kernel dropped for a full receive buffer: the socket path's
    /// blind spot (None on XDP, which reads frames before any socket buffer).
    pub fn buffer_drops(&self) -> Option<u64> {
        match self {
            Self::Xdp { .. } => None,
            Self::Socket { rx, .. } => Some(rx.buffer_drops),
        }
    }

    /// Whether the sender must hold the group membership itself: XDP reads heartbeats before
    /// the stack, but NICs that filter multicast by address only pass joined groups.
    /// Readable when the kernel posted an event (`--wake event`); None: poll.
    pub fn event_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            Self::Xdp { events: Some(events), .. } => Some(events.fd()),
            _ => None,
        }
    }

    /// The events posted since the last call.
    pub fn drain_events(&mut self, out: &mut Vec<ha_common::maps::PeerEvent>) {
        if let Self::Xdp { events: Some(events), .. } = self {
            events.drain(out);
        }
    }

    /// A peer's silence limit for its kernel timer (`--wake event`; else nothing to do).
    pub fn set_silence_limit(&mut self, node_id: u32, limit_ns: u64) -> Result<(), RxError> {
        match self {
            Self::Xdp { events: Some(events), .. } => Ok(events.set_limit(node_id, limit_ns)?),
            _ => Ok(()),
        }
    }

    /// Where the kernel answers heartbeats for this node (None without XDP).
    pub fn answerer(&mut self) -> Option<&mut crate::tx::answer::Answerer> {
        match self {
            Self::Xdp { answer, .. } => Some(answer),
            Self::Socket { .. } => None,
        }
    }

    pub fn needs_membership(&self) -> bool {
        matches!(self, Self::Xdp { .. })
    }

    /// `xdp` or `socket`, for status and metrics.
    pub fn path_name(&self) -> &'static str {
        match self {
            Self::Xdp { .. } => "xdp",
            Self::Socket { .. } => "socket",
        }
    }

    /// For the start-up line.
    pub fn describe(&self) -> String {
        match self {
            Self::Xdp { xdp, .. } => {
                format!("XDP {:?} mode, maps in {}", xdp.mode(), xdp.pin_dir().display())
            }
            Self::Socket { pin_dir, .. } => format!("UDP socket, no eBPF; instance {}", pin_dir.display()),
        }
    }
}

/// In `auto`, what XDP trouble the socket path can stand in for. Not: a missing interface (the
/// socket would fail too) or another agent on the same instance (it must stay one agent).
fn falls_back(e: &EbpfError) -> bool {
    match e {
        EbpfError::NotEmbedded
        | EbpfError::Permission { .. }
        | EbpfError::Load(_)
        | EbpfError::Attach { .. }
        | EbpfError::Pin { .. } => true,
        EbpfError::NoInterface(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_for_what_the_socket_can_replace_only() {
        assert!(falls_back(&EbpfError::Permission { what: "loading".into() }));
        assert!(falls_back(&EbpfError::Load("no BTF".into())));
        assert!(falls_back(&EbpfError::NotEmbedded));
        assert!(falls_back(&EbpfError::Attach { iface: "eth0".into(), why: "EOPNOTSUPP".into() }));
        assert!(!falls_back(&EbpfError::NoInterface("eth9".into())));
    }
}
