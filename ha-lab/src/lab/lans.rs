//! More networks than the lab's LAN: a second switched LAN on its own bridge (a multi-homed
//! server's second NIC, where a shared address may live) and direct cables between two nodes
//! (a dedicated heartbeat link).
use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::atomic::Ordering,
};

use anyhow::{Context, Result, ensure};

use super::{CLIENT_BYTE, Lab, READY_TIMEOUT, bridge_port_forwarding};
use crate::{
    host::{Host, format_mac},
    napi, netns,
};

/// A further network of the lab: every node (and maybe the client) has `iface` on it.
#[derive(Debug)]
pub struct Lan {
    /// The device name on each host, e.g. `eth1`.
    pub iface: String,
    /// The first three octets of its /24, e.g. `10.9.0`; host i is `.i`, the client `.100`.
    pub subnet: String,
    /// 1-based number of the extra network: its bridge is `lan<k>`, its ports `l<k>p<i>`.
    k: u8,
    /// Views of the nodes on this network (same namespaces, `iface` as their interface), by
    /// node index; None for a node not on it (a cable joins two).
    nodes: Vec<Option<Host>>,
    client: Option<Host>,
    /// A cable has no switch: cutting it takes a node's end down.
    switched: bool,
}

impl Lan {
    /// Node i (1-based) as seen on this network: `iface`, its address and MAC there.
    ///
    /// Panics if node i is not on this network (a test bug, like a bad slice index).
    pub fn node(&self, i: usize) -> &Host {
        match self.nodes.get(i.wrapping_sub(1)) {
            Some(Some(h)) => h,
            _ => panic!("node {i} is not on network {}", self.iface),
        }
    }

    /// The client on this network, if it was put on it.
    pub fn client(&self) -> Option<&Host> {
        self.client.as_ref()
    }

    fn port(&self, i: usize) -> String {
        format!("l{}p{i}", self.k)
    }
}

impl Lab {
    /// A second switched LAN: bridge `lan<k>` in the switch namespace, `iface` on every node
    /// (`<subnet>.i/24`) and, with `client`, on the client (`<subnet>.100/24`).
    pub fn add_lan(&self, iface: &str, subnet: &str, client: bool) -> Result<Lan> {
        let k = self.extra_lans.fetch_add(1, Ordering::Relaxed) + 1;
        let mut lan =
            Lan { iface: iface.into(), subnet: subnet.into(), k, nodes: Vec::new(), client: None, switched: true };
        let bridge = format!("lan{k}");
        let mut sw_cmds = vec![
            format!(
                "link add {bridge} address {} type bridge forward_delay 0 stp_state 0 mcast_snooping 0",
                format_mac(&[0x02, 0, 3, k, self.lab_byte, 0xff])
            ),
            format!("link set {bridge} up"),
        ];
        let mut members: Vec<(&Host, u8, String)> =
            self.nodes.iter().enumerate().map(|(i, h)| (h, i as u8 + 1, lan.port(i + 1))).collect();
        if client {
            members.push((&self.client, CLIENT_BYTE, format!("l{k}pc")));
        }
        for (h, byte, port) in &members {
            let mac = [0x02, 0, 3, k, self.lab_byte, *byte];
            let port_mac = [0x02, 0, 4, k, self.lab_byte, *byte];
            sw_cmds.push(format!(
                "link add {port} address {} type veth peer name {iface} address {} netns {}",
                format_mac(&port_mac),
                format_mac(&mac),
                h.name
            ));
            sw_cmds.push(format!("link set {port} master {bridge}"));
            sw_cmds.push(format!("link set {port} up"));
        }
        netns::ip_batch(&self.switch, &sw_cmds).with_context(|| format!("adding the LAN of {iface}"))?;
        let ports: Vec<String> = members.iter().map(|(_, _, p)| p.clone()).collect();
        let links = napi::attach_xdp_pass(&super::ns_handle(&self.switch), &ports)?;
        super::locked(&self.napi).extend(links);
        for (h, byte, _) in &members {
            let view = self.view(h, iface, subnet, *byte, [0x02, 0, 3, k, self.lab_byte, *byte]);
            netns::ip_batch(
                &h.name,
                &[format!("addr add {}/24 dev {iface}", view.addr), format!("link set {iface} up")],
            )
            .with_context(|| format!("setting up {iface} in {}", h.name))?;
            if *byte == CLIENT_BYTE {
                lan.client = Some(view);
            } else {
                lan.nodes.push(Some(view));
            }
        }
        self.wait_lan_forwarding(&ports)?;
        Ok(lan)
    }

    /// A direct cable (veth pair) between nodes `a` and `b`: `iface` on both, `<subnet>.a/24`
    /// and `<subnet>.b/24`; no switch, no client.
    pub fn add_cable(&self, a: usize, b: usize, iface: &str, subnet: &str) -> Result<Lan> {
        self.check_node(a)?;
        self.check_node(b)?;
        ensure!(a != b, "a cable joins two nodes");
        let k = self.extra_lans.fetch_add(1, Ordering::Relaxed) + 1;
        let mac = |i: usize| [0x02, 0, 5, k, self.lab_byte, i as u8];
        let (ha, hb) = (self.node(a), self.node(b));
        netns::ip_batch(
            &ha.name,
            &[format!(
                "link add {iface} address {} type veth peer name {iface} address {} netns {}",
                format_mac(&mac(a)),
                format_mac(&mac(b)),
                hb.name
            )],
        )
        .with_context(|| format!("adding a cable between nodes {a} and {b}"))?;
        let mut nodes: Vec<Option<Host>> = self.nodes.iter().map(|_| None).collect();
        for i in [a, b] {
            let view = self.view(self.node(i), iface, subnet, i as u8, mac(i));
            netns::ip_batch(
                &view.name,
                &[format!("addr add {}/24 dev {iface}", view.addr), format!("link set {iface} up")],
            )?;
            nodes[i - 1] = Some(view);
        }
        Ok(Lan { iface: iface.into(), subnet: subnet.into(), k, nodes, client: None, switched: false })
    }

    /// Cuts node i off `lan`: its switch port goes down (the node sees NO-CARRIER); on a cable,
    /// the node's end goes down, and the other end loses carrier.
    pub fn cut_lan_link(&self, lan: &Lan, i: usize) -> Result<()> {
        self.check_node(i)?;
        if lan.switched {
            netns::run("ip", &["-n", &self.switch, "link", "set", &lan.port(i), "down"])?;
        } else {
            self.node(i).ip(&["link", "set", &lan.iface, "down"])?;
        }
        Ok(())
    }

    /// Undoes [`Lab::cut_lan_link`] and waits (bounded) until the link carries frames again.
    pub fn restore_lan_link(&self, lan: &Lan, i: usize) -> Result<()> {
        self.check_node(i)?;
        if lan.switched {
            netns::run("ip", &["-n", &self.switch, "link", "set", &lan.port(i), "up"])?;
            self.wait_lan_forwarding(&[lan.port(i)])
        } else {
            self.node(i).ip(&["link", "set", &lan.iface, "up"])?;
            Ok(())
        }
    }

    fn view(&self, h: &Host, iface: &str, subnet: &str, byte: u8, mac: [u8; 6]) -> Host {
        Host {
            name: h.name.clone(),
            iface: iface.into(),
            addr: format!("{subnet}.{byte}").parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
            addr6: Ipv6Addr::UNSPECIFIED,
            mac,
        }
    }

    fn wait_lan_forwarding(&self, ports: &[String]) -> Result<()> {
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            let out = netns::run("bridge", &["-n", &self.switch, "link", "show"])?;
            if ports.iter().all(|p| bridge_port_forwarding(&out, p)) {
                return Ok(());
            }
            ensure!(std::time::Instant::now() < deadline, "ports {ports:?} not forwarding after {READY_TIMEOUT:?}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
