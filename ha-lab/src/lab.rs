//! The topology: a switch namespace with bridge `br0`, and N nodes + 1 client, each with an
//! `eth0` veth whose peer (`p<i>` / `pc`) is a bridge port. [`Lab::with_router`] adds a router
//! on the LAN (port `pr`, 192.0.2.254, every node's default route) and a remote client behind
//! it on a subnet of its own ([`REMOTE_NET`]), with no L2 to the nodes. Every bridge port runs
//! NAPI (an XDP_PASS program), so native XDP_TX on a host's end reaches the LAN. Nothing touches the root
//! namespace.

use std::{
    collections::{BTreeSet, HashMap},
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

mod lans;
pub use lans::Lan;

use crate::{
    bpffs,
    cleanup::{self, Registration},
    host::{Host, format_mac},
    loss, napi, netns, tcx,
};

/// How long setup, restore and heal wait for bridge ports to forward.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Node count limit: the client is .100 and port names stay short.
pub const MAX_NODES: usize = 99;
const CLIENT_BYTE: u8 = 100;
const ROUTER_BYTE: u8 = 254;

/// The router's address on the lab LAN, every node's default gateway in a routed lab.
pub const ROUTER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, ROUTER_BYTE);
/// The remote client's subnet behind the router (benchmarking range, RFC 2544), as /24.
pub const REMOTE_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// The router's address on the remote subnet.
const REMOTE_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

static SEQ: AtomicU64 = AtomicU64::new(0);

/// What `netem` put on a node's eth0, so `clear_netem` can undo it.
enum Impairment {
    Qdisc,
    /// tcx loss program; dropping the link fd detaches it.
    Bpf(#[allow(dead_code)] OwnedFd),
}

/// A private LAN of namespaces; everything is removed on drop (also when a test panics).
pub struct Lab {
    id: String,
    switch: String,
    nodes: Vec<Host>,
    client: Host,
    /// [`Lab::with_router`]: the router on the LAN and the client behind it.
    routed: Option<(Host, Host)>,
    lab_byte: u8,
    /// Extra bridges (`br1`..) currently holding partitioned groups.
    extra_bridges: Mutex<usize>,
    /// Networks added by [`Lab::add_lan`] and [`Lab::add_cable`], for unique names.
    extra_lans: std::sync::atomic::AtomicU8,
    impairments: Mutex<HashMap<usize, Impairment>>,
    /// tcx filters on every host (e.g. no IPv4 multicast); dropping the fds detaches them.
    filters: Mutex<Vec<OwnedFd>>,
    /// XDP_PASS on every bridge port (see [`napi`]); dropping the fds detaches them.
    napi: Mutex<Vec<OwnedFd>>,
    /// Last field: dropped after the others, it deletes the namespaces and pin dirs.
    _cleanup: Registration,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lab {
    /// Builds the lab with `nodes` nodes (1..=99) plus the client, everything up, and waits
    /// (bounded) until every bridge port forwards. Sweeps dead runs' leftovers first.
    pub fn new(nodes: usize) -> Result<Lab> {
        Self::build(nodes, false)
    }

    /// [`Lab::new`] plus a router on the LAN (every node's default gateway, IPv4 forwarding on)
    /// and a remote client behind it on [`REMOTE_NET`]: a client that reaches the nodes only
    /// through routes, as beyond one LAN.
    pub fn with_router(nodes: usize) -> Result<Lab> {
        Self::build(nodes, true)
    }

    fn build(nodes: usize, with_router: bool) -> Result<Lab> {
        ensure!((1..=MAX_NODES).contains(&nodes), "a lab has 1..={MAX_NODES} nodes, not {nodes}");
        // SAFETY: plain getter.
        ensure!(unsafe { libc::geteuid() } == 0, "ha-lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)");
        if let Err(e) = cleanup::sweep_leftovers() {
            eprintln!("ha-lab: sweeping leftovers: {e:#}");
        }
        // Mounted here, once and serialised, rather than by several agents racing to mount
        // it (two mounts would stack and hide each other's pins).
        if let Err(e) = bpffs::ensure_bpffs() {
            eprintln!("ha-lab: {e:#}");
        }
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}-{seq}", cleanup::PREFIX, std::process::id());
        let lab_byte = seq as u8;
        let mut reg = Registration::new(&id, Path::new(bpffs::ROOT).join(&id))?;

        let switch = format!("{id}-sw");
        let host = |suffix: &str, i: u8| Host {
            name: format!("{id}-{suffix}"),
            iface: "eth0".into(),
            addr: Ipv4Addr::new(192, 0, 2, i),
            addr6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, decimal_as_hex(i)),
            mac: [0x02, 0, 0, 0, lab_byte, i],
        };
        let node_hosts: Vec<Host> = (1..=nodes as u8).map(|i| host(&format!("n{i}"), i)).collect();
        let client = host("c", CLIENT_BYTE);
        let routed = with_router.then(|| {
            let remote = Host {
                name: format!("{id}-rc"),
                iface: "eth0".into(),
                addr: Ipv4Addr::from(u32::from(REMOTE_NET) | u32::from(CLIENT_BYTE)),
                addr6: Ipv6Addr::UNSPECIFIED,
                mac: [0x02, 0, 0, 3, lab_byte, CLIENT_BYTE],
            };
            (host("r", ROUTER_BYTE), remote)
        });

        // Switch: IPv6 off (no DAD/MLD chatter from ports), bridge that floods multicast and
        // forwards as soon as a port is up.
        reg.add_namespace(&switch)?;
        let sw = ns_handle(&switch);
        sw.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        sw.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        let mut sw_cmds = vec!["link set lo up".to_string(), bridge_cmd(0, lab_byte)];

        let all_hosts: Vec<(&Host, String)> = node_hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h, port_name(i + 1)))
            .chain(std::iter::once((&client, "pc".to_string())))
            .chain(routed.as_ref().map(|(router, _)| (router, "pr".to_string())))
            .collect();
        for (h, port) in &all_hosts {
            reg.add_namespace(&h.name)?;
            // Ping sockets for the prober; no DAD so link-local addresses work at once.
            h.sysctl("net.ipv4.ping_group_range", "0 2147483647")?;
            h.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
            h.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
            let mut port_mac = h.mac;
            port_mac[3] = 1;
            sw_cmds.push(format!(
                "link add {port} address {} type veth peer name eth0 address {} netns {}",
                format_mac(&port_mac),
                format_mac(&h.mac),
                h.name
            ));
            sw_cmds.push(format!("link set {port} master br0"));
        }
        netns::ip_batch(&switch, &sw_cmds)?;
        let ports: Vec<String> = all_hosts.iter().map(|(_, p)| p.clone()).collect();
        let napi_links = napi::attach_xdp_pass(&sw, &ports)?;
        for (h, _) in &all_hosts {
            netns::ip_batch(
                &h.name,
                &[
                    "link set lo up".into(),
                    format!("addr add {}/{} dev eth0", h.addr, crate::PREFIX),
                    format!("addr add {}/64 dev eth0 nodad", h.addr6),
                    "link set eth0 up".into(),
                ],
            )?;
        }
        let ups: Vec<String> = all_hosts.iter().map(|(_, p)| format!("link set {p} up")).collect();
        netns::ip_batch(&switch, &ups)?;
        drop(all_hosts);
        if let Some((router, remote)) = &routed {
            reg.add_namespace(&remote.name)?;
            remote.sysctl("net.ipv4.ping_group_range", "0 2147483647")?;
            router.sysctl("net.ipv4.ip_forward", "1")?;
            netns::ip_batch(
                &router.name,
                &[
                    format!(
                        "link add eth1 address {} type veth peer name eth0 address {} netns {}",
                        format_mac(&[0x02, 0, 0, 3, lab_byte, 1]),
                        format_mac(&remote.mac),
                        remote.name
                    ),
                    format!("addr add {REMOTE_GATEWAY}/24 dev eth1"),
                    "link set eth1 up".into(),
                ],
            )?;
            netns::ip_batch(
                &remote.name,
                &[
                    "link set lo up".into(),
                    format!("addr add {}/24 dev eth0", remote.addr),
                    "link set eth0 up".into(),
                    format!("route add default via {REMOTE_GATEWAY}"),
                ],
            )?;
            for h in &node_hosts {
                netns::ip_batch(&h.name, &[format!("route add default via {ROUTER_ADDR}")])?;
            }
        }

        let lab = Lab {
            id,
            switch,
            nodes: node_hosts,
            client,
            routed,
            lab_byte,
            extra_bridges: Mutex::new(0),
            extra_lans: std::sync::atomic::AtomicU8::new(0),
            impairments: Mutex::new(HashMap::new()),
            filters: Mutex::new(Vec::new()),
            napi: Mutex::new(napi_links),
            _cleanup: reg,
        };
        let every: Vec<String> = lab.ports().map(|(p, _)| p).collect();
        lab.wait_forwarding(&every, true).context("waiting for the lab's bridge ports")?;
        Ok(lab)
    }

    /// Node `i`, 1-based like its address 192.0.2.i.
    ///
    /// Panics if `i` is not a node of this lab (a test bug, like a bad slice index).
    pub fn node(&self, i: usize) -> &Host {
        match self.nodes.get(i.wrapping_sub(1)) {
            Some(h) => h,
            None => panic!("lab {} has nodes 1..={}, not {i}", self.id, self.nodes.len()),
        }
    }

    pub fn nodes(&self) -> &[Host] {
        &self.nodes
    }

    pub fn client(&self) -> &Host {
        &self.client
    }

    /// The router of [`Lab::with_router`]; `None` in a plain lab.
    pub fn router(&self) -> Option<&Host> {
        self.routed.as_ref().map(|(router, _)| router)
    }

    /// The client behind the router of [`Lab::with_router`], on [`REMOTE_NET`].
    pub fn remote_client(&self) -> Option<&Host> {
        self.routed.as_ref().map(|(_, remote)| remote)
    }

    /// `halab-<pid>-<seq>`: prefix of every namespace and of the pin root of this lab.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `/sys/fs/bpf/<id>/n<i>`, for node `i`'s pinned maps. Only a path (callers create it;
    /// [`Lab::new`] already made sure bpffs is mounted); the lab's pin root goes on drop.
    pub fn pin_dir(&self, node: usize) -> PathBuf {
        Path::new(bpffs::ROOT).join(&self.id).join(format!("n{node}"))
    }

    /// `$TMPDIR/<id>` (mode 0700): for files the lab's programs read (key files, configs);
    /// removed with the lab, also on a signal, and swept after a crash.
    pub fn scratch_dir(&self) -> &Path {
        self._cleanup.scratch()
    }

    /// Pulls node `i`'s cable: its switch-side port goes down (the node sees NO-CARRIER).
    pub fn cut_link(&self, i: usize) -> Result<()> {
        self.check_node(i)?;
        self.switch_ip(&["link", "set", &port_name(i), "down"]).with_context(|| format!("cutting node {i}'s link"))?;
        Ok(())
    }

    /// Plugs node `i`'s cable back in and waits until its port forwards again.
    pub fn restore_link(&self, i: usize) -> Result<()> {
        self.check_node(i)?;
        let port = port_name(i);
        self.switch_ip(&["link", "set", &port, "up"]).with_context(|| format!("restoring node {i}'s link"))?;
        self.wait_forwarding(&[port], false).with_context(|| format!("restoring node {i}'s link"))
    }

    /// Takes node `i`'s own eth0 down (`ip link set eth0 down` inside the node): the node's
    /// side of the cable, as an operator or a driver reset would.
    pub fn iface_down(&self, i: usize) -> Result<()> {
        self.check_node(i)?;
        self.node(i).ip(&["link", "set", "eth0", "down"]).with_context(|| format!("taking node {i}'s eth0 down"))?;
        Ok(())
    }

    /// Brings node `i`'s eth0 back up and waits until its bridge port forwards again.
    pub fn iface_up(&self, i: usize) -> Result<()> {
        self.check_node(i)?;
        self.node(i).ip(&["link", "set", "eth0", "up"]).with_context(|| format!("bringing node {i}'s eth0 up"))?;
        self.wait_forwarding(&[port_name(i)], false).with_context(|| format!("bringing node {i}'s eth0 up"))
    }

    /// Splits the LAN: group g > 0 moves to its own bridge, so groups cannot hear each other.
    /// Group 0, the client and nodes in no group stay on `br0`. Replaces any earlier partition.
    pub fn partition(&self, groups: &[&[usize]]) -> Result<()> {
        let mut seen = BTreeSet::new();
        for &i in groups.iter().flat_map(|g| g.iter()) {
            self.check_node(i)?;
            ensure!(seen.insert(i), "node {i} is in two partition groups");
        }
        self.heal()?;
        let mut extra = locked(&self.extra_bridges);
        let mut cmds = Vec::new();
        for (g, group) in groups.iter().enumerate().skip(1) {
            cmds.push(bridge_cmd(g, self.lab_byte));
            for &i in group.iter() {
                cmds.push(format!("link set {} master br{g}", port_name(i)));
            }
        }
        *extra = groups.len().saturating_sub(1);
        if !cmds.is_empty() {
            netns::ip_batch(&self.switch, &cmds).context("partitioning the lab")?;
        }
        drop(extra);
        self.wait_carrier_ports().context("partitioning the lab")
    }

    /// Undoes [`Lab::partition`]: every port back on `br0`, extra bridges removed.
    pub fn heal(&self) -> Result<()> {
        let mut extra = locked(&self.extra_bridges);
        if *extra == 0 {
            return Ok(());
        }
        let mut cmds: Vec<String> =
            (1..=self.nodes.len()).map(|i| format!("link set {} master br0", port_name(i))).collect();
        cmds.extend((1..=*extra).map(|g| format!("link del br{g}")));
        netns::ip_batch(&self.switch, &cmds).context("healing the partition")?;
        *extra = 0;
        drop(extra);
        self.wait_carrier_ports().context("healing the partition")
    }

    /// `tc qdisc replace dev eth0 root netem <spec>` on node `i` (its egress). This kernel
    /// may lack sch_netem: then a loss-only spec (`loss 10%`) is emulated with a tcx BPF
    /// drop program on node i's switch port (ingress: what node i sends, its XDP_TX answers
    /// too), and anything else is an error. A netem qdisc does not see XDP_TX answers.
    pub fn netem(&self, i: usize, spec: &str) -> Result<()> {
        self.check_node(i)?;
        let h = self.node(i);
        let mut args = vec!["-n", h.name(), "qdisc", "replace", "dev", "eth0", "root", "netem"];
        args.extend(spec.split_whitespace());
        let mut imp = locked(&self.impairments);
        match netns::run("tc", &args) {
            Ok(_) => {
                imp.insert(i, Impairment::Qdisc);
                Ok(())
            }
            Err(e) if format!("{e:#}").contains("unknown") => {
                let Some(pct) = loss::loss_only(spec) else {
                    bail!(
                        "netem `{spec}` on node {i}: this kernel has no sch_netem, and only a \
                         plain `loss N%` can be emulated without it ({e:#})"
                    );
                };
                if let Some(Impairment::Qdisc) = imp.get(&i) {
                    let _ = netns::run("tc", &["-n", h.name(), "qdisc", "del", "dev", "eth0", "root"]);
                }
                // Detach an earlier program before attaching the new one.
                imp.remove(&i);
                // On the switch's port of node i, not on its eth0: its kernel's answers
                // (XDP_TX) never pass eth0's egress hooks, and a lossy cable loses them too.
                let port = port_name(i);
                let link = ns_handle(&self.switch)
                    .run_in(|| loss::attach_ingress_loss(&port, pct))?
                    .with_context(|| format!("emulating `{spec}` on node {i}"))?;
                imp.insert(i, Impairment::Bpf(link));
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("netem `{spec}` on node {i}")),
        }
    }

    /// Removes what [`Lab::netem`] put on node `i` (nothing to do is fine).
    pub fn clear_netem(&self, i: usize) -> Result<()> {
        self.check_node(i)?;
        if let Some(Impairment::Qdisc) = locked(&self.impairments).remove(&i) {
            netns::run("tc", &["-n", self.node(i).name(), "qdisc", "del", "dev", "eth0", "root"])
                .with_context(|| format!("clearing netem on node {i}"))?;
        }
        Ok(())
    }

    /// Makes IPv4 multicast unusable on the LAN: every host's eth0 drops frames to IPv4
    /// multicast MACs on egress (ARP, unicast and IPv6 neighbour discovery still work). For
    /// unicast-only networks, as many clouds and some switches are.
    pub fn block_ipv4_multicast(&self) -> Result<()> {
        let mut filters = locked(&self.filters);
        for h in self.nodes.iter().chain(std::iter::once(&self.client)) {
            let link = h
                .run_in(|| tcx::attach_egress_ipv4_multicast_drop("eth0"))?
                .with_context(|| format!("blocking IPv4 multicast on {}", h.name()))?;
            filters.push(link);
        }
        Ok(())
    }

    /// A second LAN over eth0 on every node and the client: the 802.1Q VLAN `tag` as
    /// `eth0.<tag>` when the kernel has VLAN support, else (kernels without CONFIG_VLAN_8021Q)
    /// a macvlan `mv<tag>`, the other stacked device kind without native XDP. Host i gets
    /// [`SUB_NET`].i/24 on it (the client .100). Returns the device's name and kind.
    pub fn add_sub_interfaces(&self, tag: u16) -> Result<SubIface> {
        ensure!((1..4095).contains(&tag), "VLAN id {tag} out of range");
        let hosts: Vec<(&Host, u8)> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, h)| (h, i as u8 + 1))
            .chain(std::iter::once((&self.client, CLIENT_BYTE)))
            .collect();
        let vlan = format!("eth0.{tag}");
        let sub = match hosts[0].0.ip(&[
            "link",
            "add",
            "link",
            "eth0",
            "name",
            &vlan,
            "type",
            "vlan",
            "id",
            &tag.to_string(),
        ]) {
            Ok(_) => SubIface { name: vlan, kind: "vlan" },
            Err(e) if format!("{e:#}").contains("Unknown device type") => {
                SubIface { name: format!("mv{tag}"), kind: "macvlan" }
            }
            Err(e) => return Err(e).context("creating a VLAN sub-interface"),
        };
        for (n, (h, byte)) in hosts.iter().enumerate() {
            let mut cmds = Vec::new();
            match sub.kind {
                "vlan" if n == 0 => {}
                "vlan" => cmds.push(format!("link add link eth0 name {} type vlan id {tag}", sub.name)),
                _ => {
                    let mac = [0x02, 0, 1, (tag & 0xff) as u8, self.lab_byte, *byte];
                    cmds.push(format!(
                        "link add link eth0 name {} address {} type macvlan",
                        sub.name,
                        format_mac(&mac)
                    ));
                }
            }
            cmds.push(format!("addr add {}.{byte}/24 dev {}", SUB_NET, sub.name));
            cmds.push(format!("link set {} up", sub.name));
            netns::ip_batch(h.name(), &cmds).with_context(|| format!("adding {} to {}", sub.name, h.name()))?;
        }
        Ok(sub)
    }

    fn check_node(&self, i: usize) -> Result<()> {
        ensure!((1..=self.nodes.len()).contains(&i), "lab {} has nodes 1..={}, not {i}", self.id, self.nodes.len());
        Ok(())
    }

    fn switch_ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.switch.as_str()];
        full.extend_from_slice(args);
        netns::run("ip", &full)
    }

    /// (port, host) pairs: `p1`.. for nodes, `pc` for the client, `pr` for a router.
    fn ports(&self) -> impl Iterator<Item = (String, &Host)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, h)| (port_name(i + 1), h))
            .chain(std::iter::once(("pc".to_string(), &self.client)))
            .chain(self.router().map(|r| ("pr".to_string(), r)))
    }

    /// Waits until every port that has carrier forwards (after moving ports between bridges).
    fn wait_carrier_ports(&self) -> Result<()> {
        let status = self.port_status()?;
        let with_carrier: Vec<String> = status.into_iter().filter(|p| p.carrier).map(|p| p.name).collect();
        self.wait_forwarding(&with_carrier, false)
    }

    /// Polls (bounded by [`READY_TIMEOUT`]) until the named ports are in forwarding state and,
    /// with `hosts_up`, every host's eth0 is operationally up.
    fn wait_forwarding(&self, ports: &[String], hosts_up: bool) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pending_hosts: Vec<&Host> = if hosts_up { self.ports().map(|(_, h)| h).collect() } else { Vec::new() };
        loop {
            let status = self.port_status()?;
            let not_ready: Vec<String> = ports
                .iter()
                .filter(|p| !status.iter().any(|s| &s.name == *p && s.state == "forwarding"))
                .cloned()
                .collect();
            let mut still = Vec::new();
            for h in pending_hosts {
                let out = h.ip(&["-o", "link", "show", "dev", "eth0"])?;
                if !(out.contains("LOWER_UP") && out.contains(" state UP ")) {
                    still.push(h);
                }
            }
            pending_hosts = still;
            if not_ready.is_empty() && pending_hosts.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let hosts: Vec<&str> = pending_hosts.iter().map(|h| h.name()).collect();
                bail!(
                    "not ready after {READY_TIMEOUT:?}: ports not forwarding {not_ready:?}, eth0 not up in {hosts:?}; \
                     bridge says: {status:?}"
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn port_status(&self) -> Result<Vec<PortStatus>> {
        let out = netns::run("bridge", &["-n", &self.switch, "link", "show"])
            .with_context(|| format!("reading bridge ports in {}", self.switch))?;
        Ok(parse_bridge_links(&out))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Detach loss programs before their namespaces go (closing the fds does it).
        locked(&self.impairments).clear();
        locked(&self.filters).clear();
        locked(&self.napi).clear();
        // `_cleanup` (declared last) then kills what runs inside and deletes everything.
    }
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab").field("id", &self.id).field("nodes", &self.nodes.len()).finish()
    }
}

/// The subnet of [`Lab::add_sub_interfaces`] (TEST-NET-2), as the first three octets.
pub const SUB_NET: &str = "198.51.100";

/// A sub-interface on every host of a lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubIface {
    /// `eth0.<tag>` or `mv<tag>`.
    pub name: String,
    /// `vlan` or `macvlan`.
    pub kind: &'static str,
}

/// 12 -> 0x12, so node 12 is both 192.0.2.12 and 2001:db8::12.
fn decimal_as_hex(i: u8) -> u16 {
    u16::from_str_radix(&i.to_string(), 16).unwrap_or(i as u16)
}

fn port_name(i: usize) -> String {
    format!("p{i}")
}

fn bridge_cmd(g: usize, lab_byte: u8) -> String {
    let mac = [0x02, 0, 0, 2, lab_byte, g as u8];
    // forward_delay 0 + STP off: a port forwards as soon as it is up; no snooping: 239.x
    // heartbeats flood to every port whether or not anyone sent an IGMP join.
    format!(
        "link add br{g} address {} type bridge forward_delay 0 stp_state 0 mcast_snooping 0\nlink set br{g} up",
        format_mac(&mac)
    )
}

/// A namespace handle for sysctls on the switch (not a real host).
fn ns_handle(name: &str) -> Host {
    Host {
        name: name.to_string(),
        iface: String::new(),
        addr: Ipv4Addr::UNSPECIFIED,
        addr6: Ipv6Addr::UNSPECIFIED,
        mac: [0; 6],
    }
}

#[derive(Debug)]
struct PortStatus {
    name: String,
    state: String,
    carrier: bool,
}

/// Whether `port` is forwarding in `bridge link show` output.
fn bridge_port_forwarding(out: &str, port: &str) -> bool {
    parse_bridge_links(out).iter().any(|p| p.name == port && p.state == "forwarding")
}

/// `bridge link show` lines: `3: p1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master br0 state forwarding ...`.
fn parse_bridge_links(out: &str) -> Vec<PortStatus> {
    out.lines()
        .filter_map(|line| {
            let toks: Vec<&str> = line.split_whitespace().collect();
            let name = toks.get(1)?.trim_end_matches(':').split('@').next()?.to_string();
            let state = toks.iter().position(|t| *t == "state").and_then(|i| toks.get(i + 1))?.to_string();
            let carrier = toks.get(2).is_some_and(|f| f.contains("LOWER_UP"));
            Some(PortStatus { name, state, carrier })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bridge_ports() {
        let out = "3: p1@br0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master br0 state forwarding priority 32 cost 2 \n\
                   4: pc@if2: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 master br1 state disabled priority 32 cost 2\n";
        let p = parse_bridge_links(out);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].name.as_str(), p[0].state.as_str(), p[0].carrier), ("p1", "forwarding", true));
        assert_eq!((p[1].name.as_str(), p[1].state.as_str(), p[1].carrier), ("pc", "disabled", false));
    }

    #[test]
    fn v6_host_part_reads_like_v4() {
        assert_eq!(decimal_as_hex(1), 0x1);
        assert_eq!(decimal_as_hex(12), 0x12);
        assert_eq!(decimal_as_hex(100), 0x100);
    }
}
