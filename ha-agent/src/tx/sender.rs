//! Heartbeats out, on one UDP socket bound to the interface: multicast with TTL 1 and loopback
//! off, or unicast to listed peers. Also holds the group membership, so NICs that filter
//! multicast by address let the peers' heartbeats reach XDP.
use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4},
};

use ha_common::{
    auth::NO_KEY,
    wire::{Echo, Heartbeat, NodeState, Sequence, TAG_LEN},
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::auth::keys::SigningKey;

/// Where heartbeats go.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    pub iface: String,
    pub iface_addr: Ipv4Addr,
    pub group: Ipv4Addr,
    pub port: u16,
    /// Unicast peers; when empty, heartbeats are multicast to `group`.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// Hold the group membership here (XDP receive); the socket receive path holds its own.
    pub join_group: bool,
    pub cluster_id: u32,
    pub node_id: u32,
    pub interval_us: u32,
    /// This run (`clock::new_epoch`): grows across restarts so peers accept our new counter,
    /// and peers echo it to show that they are live.
    pub epoch: u64,
}

pub struct Sender {
    socket: Socket,
    _membership: Option<Socket>,
    targets: Vec<SockAddr>,
    cfg: SenderConfig,
    counter: u64,
    /// None: unauthenticated heartbeats (`--insecure-no-auth`).
    signing: Option<SigningKey>,
    pub sent: u64,
    pub errors: u64,
}

impl Sender {
    pub fn new(cfg: SenderConfig) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.bind_device(Some(cfg.iface.as_bytes()))?;
        socket.set_multicast_if_v4(&cfg.iface_addr)?;
        socket.set_multicast_ttl_v4(1)?;
        socket.set_multicast_loop_v4(false)?;
        socket.set_nonblocking(true)?;
        // Heartbeats are the most urgent traffic the node sends.
        socket.set_tos_v4(0xc0)?; // CS6, network control
        socket.bind(&SockAddr::from(SocketAddrV4::new(cfg.iface_addr, 0)))?;
        let (targets, membership) = if cfg.unicast_peers.is_empty() {
            let membership = if cfg.join_group { Some(join_group(&cfg)?) } else { None };
            (vec![SockAddr::from(SocketAddrV4::new(cfg.group, cfg.port))], membership)
        } else {
            (cfg.unicast_peers.iter().map(|p| SockAddr::from(SocketAddrV4::new(*p, cfg.port))).collect(), None)
        };
        Ok(Self { socket, _membership: membership, targets, cfg, counter: 0, signing: None, sent: 0, errors: 0 })
    }

    /// Signs every heartbeat from now on with `key` (None: unauthenticated).
    pub fn set_signing_key(&mut self, key: Option<SigningKey>) {
        self.signing = key;
    }

    /// Builds the next heartbeat (a fresh sequence number each time).
    pub fn next_heartbeat(&mut self, state: NodeState, flags: u8, priority: u32, echo: Echo) -> Heartbeat {
        self.counter += 1;
        Heartbeat {
            cluster_id: self.cfg.cluster_id,
            node_id: self.cfg.node_id,
            priority,
            state,
            flags,
            key_id: self.signing.map_or(NO_KEY, |k| k.key_id),
            interval_us: self.cfg.interval_us,
            seq: Sequence { epoch: self.cfg.epoch, counter: self.counter },
            echo,
            tag: [0; TAG_LEN],
        }
    }

    /// Sends one heartbeat to every target. A full send buffer or a down link is counted, not
    /// fatal: the next interval tries again.
    pub fn send(&mut self, state: NodeState, flags: u8, priority: u32, echo: Echo) -> io::Result<()> {
        let hb = self.next_heartbeat(state, flags, priority, echo);
        let bytes = match &self.signing {
            Some(k) => hb.encode_signed(k.key_id, &k.key),
            None => hb.encode(),
        };
        let mut last_err = None;
        for target in &self.targets {
            match self.socket.send_to(&bytes, target) {
                Ok(_) => self.sent += 1,
                Err(e) => {
                    self.errors += 1;
                    last_err = Some(e);
                }
            }
        }
        last_err.map_or(Ok(()), Err)
    }
}

/// A socket that only holds the multicast membership on the interface.
fn join_group(cfg: &SenderConfig) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.bind_device(Some(cfg.iface.as_bytes()))?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port)))?;
    socket.join_multicast_v4(&cfg.group, &cfg.iface_addr)?;
    // Nothing reads it while XDP consumes heartbeats: keep its buffer small.
    socket.set_recv_buffer_size(4096)?;
    Ok(socket)
}
