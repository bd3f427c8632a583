//! The XDP program: embedded object, load with this node's configuration, attach, pin its maps
//! and its link (so its fence outlives a crashed agent; the next start replaces it). Everything
//! done here is undone when [`AttachedXdp`] is dropped.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, Xdp, XdpMode, links::FdLink, xdp::XdpLinkId},
};
use ha_common::{
    maps::{
        ANSWER_IFACES_MAP, ANSWER_MAP, PEERS_MAP, STATS_MAP, XDP_FLAG_INSECURE_NO_AUTH, XDP_FLAG_PASS_HEARTBEATS,
        globals,
    },
    neighbour::LINK_PIN,
};

use super::{bpffs, link_pin, settings::AttachMode};
use crate::{
    auth::keys::{AuthMode, KeysMap},
    netlink::iface,
};

/// The object `cargo xtask build-ebpf` produced, embedded at build time (empty if it was missing).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha-ebpf.o"));
/// Name of the XDP entry point in the object.
pub const PROGRAM: &str = "ha_xdp";
/// An empty XDP program in the same object, for the benchmark's baseline.
pub const BASELINE_PROGRAM: &str = "ha_xdp_baseline";

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("this ha-agent was built without its XDP object: run `cargo xtask build-ebpf`, then rebuild")]
    NotEmbedded,
    #[error(
        "permission denied by the kernel ({what}): run as root, or with CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_PERFMON"
    )]
    Permission { what: String },
    #[error(
        "the kernel refused the XDP program ({0}): a kernel with BPF, BTF and XDP support (5.10 or newer) is needed"
    )]
    Load(String),
    #[error("no interface named {0}: check `ip link`")]
    NoInterface(String),
    #[error("cannot attach XDP to {iface}: {why}")]
    Attach { iface: String, why: String },
    #[error("cannot pin maps under {dir}: {why}")]
    Pin { dir: PathBuf, why: String },
}

/// What the XDP program is told at load time.
#[derive(Clone, Copy, Debug)]
pub struct XdpConfig {
    pub cluster_id: u32,
    pub node_id: u32,
    pub port: u16,
    pub pass_heartbeats: bool,
    /// This node's run, which peers echo to be confirmed (see `ha_common::accept`).
    pub epoch: u64,
    /// Which heartbeats are accepted; with keys, they are in `KEYS` before the program is attached.
    pub auth: AuthMode,
    /// Event wake: a timer per peer with this silence limit until the agent writes one in
    /// `LIMITS`, and events in `EVENTS`. None: poll (the timer code is dead to the verifier).
    pub wake_event: Option<std::time::Duration>,
}

fn is_permission(e: &(dyn std::error::Error + 'static)) -> bool {
    let text = e.to_string();
    has_os_error(e, &[libc::EPERM, libc::EACCES])
        || text.contains("Operation not permitted")
        || text.contains("Permission denied")
}

/// Whether `e` or an error it wraps is one of the OS errors `codes`.
fn has_os_error(e: &(dyn std::error::Error + 'static), codes: &[i32]) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(code) = err.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error)
            && codes.contains(&code)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Loads of the program tried when the kernel says to try again. The verifier gives up with
/// EAGAIN when a signal is pending while it works (it looks between instructions, and the
/// program takes it about 0.3 s), and an agent whose checks spawn a shell every few ms met
/// that in the lab; libbpf retries the same way.
const VERIFY_ATTEMPTS: u32 = 5;

fn classify(what: &str, e: impl std::error::Error + 'static) -> EbpfError {
    if is_permission(&e) {
        EbpfError::Permission { what: what.to_string() }
    } else {
        EbpfError::Load(format!("{what}: {e}"))
    }
}

/// Loads the program with `cfg` into the kernel, not attached: the agent attaches it, tests and
/// the benchmark run it through `BPF_PROG_TEST_RUN`.
pub fn load(cfg: &XdpConfig) -> Result<Ebpf, EbpfError> {
    if OBJECT.is_empty() {
        return Err(EbpfError::NotEmbedded);
    }
    let mut flags = if cfg.pass_heartbeats { XDP_FLAG_PASS_HEARTBEATS } else { 0 };
    if let AuthMode::InsecureNoAuth = cfg.auth {
        flags |= XDP_FLAG_INSECURE_NO_AUTH;
    }
    let wake_event = u32::from(cfg.wake_event.is_some());
    let default_limit_ns = cfg.wake_event.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut ebpf = EbpfLoader::new()
        .override_global(globals::PORT, &cfg.port, true)
        .override_global(globals::CLUSTER_ID, &cfg.cluster_id, true)
        .override_global(globals::NODE_ID, &cfg.node_id, true)
        .override_global(globals::FLAGS, &flags, true)
        .override_global(globals::EPOCH, &cfg.epoch, true)
        .override_global(globals::WAKE_EVENT, &wake_event, true)
        .override_global(globals::DEFAULT_LIMIT_NS, &default_limit_ns, true)
        .load(OBJECT)
        .map_err(|e| classify("loading the object", e))?;
    let mut attempt = 1;
    while let Err(e) = program_mut(&mut ebpf)?.load() {
        if attempt == VERIFY_ATTEMPTS || !has_os_error(&e, &[libc::EAGAIN]) {
            return Err(classify("verifying the XDP program", e));
        }
        attempt += 1;
        log::info!(
            "the kernel interrupted the XDP program's verification (EAGAIN): verifying again ({attempt} of {VERIFY_ATTEMPTS})"
        );
    }
    if let AuthMode::Keys(slots) = cfg.auth {
        // Through a second handle: the map stays in `ebpf` for whoever takes it later.
        let map = ebpf
            .map_mut(ha_common::maps::KEYS_MAP)
            .ok_or_else(|| EbpfError::Load("the object has no map KEYS".into()))?;
        KeysMap::write_into(map, &slots).map_err(|e| EbpfError::Load(e.to_string()))?;
    }
    Ok(ebpf)
}

/// The XDP program of a loaded object.
pub fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, EbpfError> {
    named_program_mut(ebpf, PROGRAM)
}

/// A program of the object by name (the agent's, or the bench's baseline).
pub fn named_program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, EbpfError> {
    ebpf.program_mut(name)
        .ok_or_else(|| EbpfError::Load(format!("the object has no program {name}")))?
        .try_into()
        .map_err(|e: ProgramError| EbpfError::Load(e.to_string()))
}

/// A loaded, attached program with pinned maps and link. Dropping it detaches and unpins.
pub struct AttachedXdp {
    ebpf: Ebpf,
    mode: XdpMode,
    pins: Pins,
    /// Keeps the link attached while the agent runs; once its pin is gone, closing it detaches.
    _link: FdLink,
    /// The links on further interfaces (those of shared addresses), likewise.
    _more: Vec<FdLink>,
}

impl AttachedXdp {
    pub fn attach(iface: &str, cfg: &XdpConfig, mode: AttachMode, pin_dir: &Path) -> Result<Self, EbpfError> {
        let ifindex = ifindex(iface)?;
        let mut ebpf = load(cfg)?;
        // Pin after a successful load: a failed verification leaves nothing behind.
        let mut pins = Pins::create(&ebpf, pin_dir)?;
        // We hold the instance lock: links pinned here were left by an agent that died.
        for path in link_pins(pin_dir) {
            match link_pin::remove(&path) {
                Ok(true) => log::warn!("detached the XDP program a crashed agent left ({})", path.display()),
                Ok(false) => {}
                Err(e) => log::warn!("detaching the XDP program a crashed agent left ({}): {e}", path.display()),
            }
        }
        let link_path = pin_dir.join(LINK_PIN);
        let (mode, link) = attach_pinned(program_mut(&mut ebpf)?, iface, ifindex, mode, &link_path, pin_dir)?;
        pins.files.push(link_path);
        Ok(Self { ebpf, mode, pins, _link: link, _more: Vec::new() })
    }

    /// Attaches the same program (same maps) to another interface too, its link pinned beside
    /// the first: a shared address carried there is fenced like one on the first interface.
    pub fn attach_also(&mut self, iface: &str, mode: AttachMode) -> Result<XdpMode, EbpfError> {
        let ifindex = ifindex(iface)?;
        let path = self.pins.dir.join(format!("{LINK_PIN}{EXTRA_LINK_SEP}{iface}"));
        let dir = self.pins.dir.clone();
        let (mode, link) = attach_pinned(program_mut(&mut self.ebpf)?, iface, ifindex, mode, &path, &dir)?;
        self.pins.files.push(path);
        self._more.push(link);
        Ok(mode)
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pins.dir
    }
}

/// Between [`LINK_PIN`] and the interface name in the pins of further interfaces' links.
const EXTRA_LINK_SEP: char = '@';

/// Every pinned XDP link in `dir`: the first interface's and the others'.
fn link_pins(dir: &Path) -> Vec<PathBuf> {
    let extra = format!("{LINK_PIN}{EXTRA_LINK_SEP}");
    let mut out = vec![dir.join(LINK_PIN)];
    if let Ok(entries) = fs::read_dir(dir) {
        out.extend(
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&extra))
                .map(|e| e.path()),
        );
    }
    out
}

/// Attaches `prog` to `iface` (generic mode at once on stacked devices, in `auto`) and pins its
/// link at `path`.
fn attach_pinned(
    prog: &mut Xdp,
    iface: &str,
    ifindex: u32,
    mode: AttachMode,
    path: &Path,
    pin_dir: &Path,
) -> Result<(XdpMode, FdLink), EbpfError> {
    let stacked = iface::driver(iface).ok().and_then(|d| stacked_kind(&d));
    let mode = match (mode, stacked) {
        (AttachMode::Auto, Some(kind)) => {
            log::info!("{iface} is a {kind} device, which has no native XDP: attaching in generic mode");
            AttachMode::Skb
        }
        _ => mode,
    };
    let (mode, link_id) = attach_with_fallback(prog, iface, ifindex, mode).map_err(|e| match (e, stacked) {
        (EbpfError::Attach { iface, why }, Some(kind)) => {
            EbpfError::Attach { iface, why: format!("{why}; {kind} devices have no native XDP: use --xdp-mode auto") }
        }
        (e, _) => e,
    })?;
    let link = pin_link(prog, link_id, path).map_err(|why| EbpfError::Pin { dir: pin_dir.to_path_buf(), why })?;
    Ok((mode, link))
}

/// Pins the link of the attached program at `path`; the returned handle keeps it attached.
fn pin_link(prog: &mut Xdp, id: XdpLinkId, path: &Path) -> Result<FdLink, String> {
    let link = prog.take_link(id).map_err(|e| e.to_string())?;
    let link = FdLink::try_from(link)
        .map_err(|e| format!("{e}: the kernel attached XDP without a link (Linux 5.9 or newer is needed to pin it)"))?;
    link.pin(path).map(FdLink::from).map_err(|e| format!("the XDP link: {e}"))
}

fn attach_with_fallback(
    prog: &mut Xdp,
    iface: &str,
    ifindex: u32,
    mode: AttachMode,
) -> Result<(XdpMode, XdpLinkId), EbpfError> {
    let attach_err = |e: ProgramError| {
        if is_permission(&e) {
            EbpfError::Permission { what: format!("attaching XDP to {iface}") }
        } else {
            let why = if e.to_string().contains("busy") || e.to_string().contains("EBUSY") {
                format!("{e}; another XDP program is attached (see `ip link show {iface}`)")
            } else {
                e.to_string()
            };
            EbpfError::Attach { iface: iface.to_string(), why }
        }
    };
    match mode {
        AttachMode::Driver => prog.attach(ifindex, XdpMode::Driver).map(|id| (XdpMode::Driver, id)).map_err(attach_err),
        AttachMode::Skb => prog.attach(ifindex, XdpMode::Skb).map(|id| (XdpMode::Skb, id)).map_err(attach_err),
        AttachMode::Auto => match prog.attach(ifindex, XdpMode::Driver) {
            Ok(id) => Ok((XdpMode::Driver, id)),
            Err(e) => {
                log::warn!("native XDP unavailable on {iface} ({e}); using generic mode, which is slower");
                prog.attach(ifindex, XdpMode::Skb).map(|id| (XdpMode::Skb, id)).map_err(attach_err)
            }
        },
    }
}

fn ifindex(iface: &str) -> Result<u32, EbpfError> {
    iface::index(iface).map_err(|_| EbpfError::NoInterface(iface.to_string()))
}

/// Stacked (upper) devices: the driver names (ethtool) of device kinds without native XDP. On
/// them generic mode is the only mode, and the right one: it sees only that device's traffic,
/// e.g. one VLAN's, tag already removed. The parent would see every VLAN, and with VLAN receive
/// offload (common, and veth) the tag is not even in the frame XDP reads.
fn stacked_kind(driver: &str) -> Option<&'static str> {
    match driver {
        "802.1Q VLAN Support" => Some("VLAN"),
        "macvlan" => Some("macvlan"),
        "ipvlan" => Some("ipvlan"),
        "bridge" => Some("bridge"),
        _ => None,
    }
}

/// The maps pinned in the pin directory, for `bpftool map dump pinned`: what XDP recorded and
/// counted, and what the kernel answers for this node.
const PINNED_MAPS: [&str; 4] = [PEERS_MAP, STATS_MAP, ANSWER_MAP, ANSWER_IFACES_MAP];

/// Pinned maps, removed on drop.
struct Pins {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Pins {
    fn create(ebpf: &Ebpf, dir: &Path) -> Result<Self, EbpfError> {
        let pin_err = |why: String| EbpfError::Pin { dir: dir.to_path_buf(), why };
        if dir.starts_with(bpffs::DEFAULT_ROOT) {
            bpffs::ensure_mounted(Path::new(bpffs::DEFAULT_ROOT))
                .map_err(|e| pin_err(format!("mounting bpffs: {e}")))?;
        }
        fs::create_dir_all(dir).map_err(|e| pin_err(e.to_string()))?;
        let mut pins = Self { dir: dir.to_path_buf(), files: Vec::new() };
        for name in PINNED_MAPS {
            let path = dir.join(name);
            // The agent holds the instance lock, so anything here was left by a crashed agent.
            let _ = fs::remove_file(&path);
            let map = ebpf.map(name).ok_or_else(|| pin_err(format!("the object has no map {name}")))?;
            map.pin(&path).map_err(|e| pin_err(format!("{name}: {e}")))?;
            pins.files.push(path);
        }
        Ok(pins)
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = fs::remove_file(file);
        }
        remove_empty_dirs(&self.dir);
    }
}

/// Only removes directories that are now empty; other clusters' pins stay.
fn remove_empty_dirs(dir: &Path) {
    let _ = fs::remove_dir(dir);
    if let Some(parent) = dir.parent()
        && parent != Path::new(bpffs::DEFAULT_ROOT)
    {
        let _ = fs::remove_dir(parent);
    }
}

/// What an agent that did not stop cleanly left in `dir`: detaches its XDP program (the pinned
/// link) and removes its pinned maps. The caller holds the instance lock. Returns whether a
/// program was detached.
pub fn remove_leftover_pins(dir: &Path) -> io::Result<bool> {
    let mut detached = false;
    for path in link_pins(dir) {
        detached |= link_pin::remove(&path)?;
    }
    for name in PINNED_MAPS {
        match fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    remove_empty_dirs(dir);
    Ok(detached)
}

#[cfg(test)]
mod tests {
    use super::stacked_kind;

    #[test]
    fn stacked_devices_are_known_by_their_driver() {
        assert_eq!(stacked_kind("802.1Q VLAN Support"), Some("VLAN"));
        assert_eq!(stacked_kind("macvlan"), Some("macvlan"));
        assert_eq!(stacked_kind("veth"), None, "veth has native XDP");
        assert_eq!(stacked_kind("ixgbe"), None);
    }
}
