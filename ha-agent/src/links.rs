//! Redundant heartbeat links (`--iface` repeated): the heartbeats' extra senders, each link's
//! carrier, and which link carries which peer, read from `PEER_LINKS` and handed to
//! `ha_core::links`, whose events ("the link to peer X is down") are logged, published and
//! counted here. With one link this does nothing.
use std::collections::BTreeMap;

use ha_common::{
    links::{LinkKey, LinkRecord},
    wire::{Echo, NodeState},
};
use ha_core::{
    Instant,
    links::{LinkEvent, LinkSighting, Links},
    node::{Node, id},
};
use serde::{Deserialize, Serialize};

use crate::{
    auth::keys::SigningKey,
    config::RunConfig,
    netlink::{iface, link::LinkWatch},
    rx::Receiver,
    tx::sender::{Sender, SenderConfig},
};

/// One peer on one link, as `status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerLinkStatus {
    pub node_id: String,
    pub link: String,
    pub up: bool,
    pub age_ms: f64,
    pub received: u64,
    /// Times this link was found down for this peer while another carried it.
    pub downs: u64,
}

/// A link event as one JSON line of `ha-agent events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkEventLine {
    pub unix_ms: u64,
    pub node: String,
    /// `link_down` or `link_up`.
    pub event: String,
    /// The peer, or empty for this node's own carrier.
    pub peer: String,
    pub link: String,
    pub detail: String,
}

pub struct HeartbeatLinks {
    names: Vec<String>,
    ifindexes: Vec<u32>,
    /// Links after the first (the first is the agent's own sender).
    senders: Vec<Sender>,
    /// Carrier of links after the first.
    watches: Vec<LinkWatch>,
    core: Links,
    raw: Vec<(LinkKey, LinkRecord)>,
    sightings: Vec<LinkSighting>,
    received: BTreeMap<(u32, usize), u64>,
    downs: BTreeMap<(u32, usize), u64>,
    read_errors: u64,
}

impl HeartbeatLinks {
    /// Opens a sender and a carrier watch on every link after the first. `base` is the first
    /// link's sender configuration: the others send the same heartbeats (same epoch, and the
    /// first link's counter, one heartbeat per link per send).
    pub fn open(cfg: &RunConfig, base: &SenderConfig, waker: &crate::nudge::Waker) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let mut senders = Vec::new();
        let mut watches = Vec::new();
        let mut ifindexes = Vec::new();
        for (i, link) in cfg.links.iter().enumerate() {
            ifindexes.push(iface::index(&link.iface).with_context(|| format!("heartbeat link {}", link.iface))?);
            if i == 0 {
                continue;
            }
            let sender_cfg = SenderConfig { iface: link.iface.clone(), iface_addr: link.addr, ..base.clone() };
            senders.push(
                Sender::new(sender_cfg).with_context(|| format!("opening the heartbeat socket on {}", link.iface))?,
            );
            watches.push(
                LinkWatch::new(&link.iface, waker.clone())
                    .with_context(|| format!("watching the link {}", link.iface))?,
            );
        }
        Ok(Self {
            names: cfg.links.iter().map(|l| l.iface.clone()).collect(),
            ifindexes,
            senders,
            watches,
            core: Links::new(cfg.links.len()),
            raw: Vec::new(),
            sightings: Vec::new(),
            received: BTreeMap::new(),
            downs: BTreeMap::new(),
            read_errors: 0,
        })
    }

    fn several(&self) -> bool {
        self.names.len() > 1
    }

    pub fn set_signing_key(&mut self, key: Option<SigningKey>) {
        for s in &mut self.senders {
            s.set_signing_key(key);
        }
    }

    /// The groups' entries for the heartbeats from now on, on every other link.
    pub fn set_groups(&mut self, count: u8, groups: [ha_common::wire::GroupEntry; ha_common::wire::MAX_GROUPS]) {
        for s in &mut self.senders {
            s.set_groups(count, groups);
        }
    }

    /// The heartbeat the first link's sender just sent (its `counter`), on every other link.
    pub fn send(&mut self, counter: u64, state: NodeState, flags: u8, priority: u32, echo: Echo) {
        for s in &mut self.senders {
            // Counted, and logged once per burst of failures by the sender.
            let _ = s.send_copy(counter, state, flags, priority, echo);
        }
    }

    /// (sent, errors) of the senders after the first.
    pub fn sent_and_errors(&self) -> (u64, u64) {
        self.senders.iter().fold((0, 0), |(s, e), x| (s + x.sent, e + x.errors))
    }

    /// This node's carrier on each link (`first`: the first link's); whether any is up, which
    /// is the failover's link.
    pub fn own_up(&mut self, first: bool) -> bool {
        self.core.handle_own(0, first);
        for (i, w) in self.watches.iter().enumerate() {
            self.core.handle_own(i + 1, w.is_up());
        }
        self.core.any_own_up()
    }

    /// Reads which link carried which peer (read after `now`, like the peer table) and lets
    /// the core decide on each link.
    pub fn observe(&mut self, now: Instant, rx: &Receiver, node: &Node) {
        if !self.several() {
            return;
        }
        if let Err(e) = rx.read_links(&mut self.raw) {
            self.read_errors += 1;
            if self.read_errors.is_power_of_two() {
                log::error!("reading the peers per link ({} failures): {e}", self.read_errors);
            }
            return;
        }
        self.sightings.clear();
        for (key, rec) in &self.raw {
            let Some(link) = self.ifindexes.iter().position(|i| *i == key.ifindex) else { continue };
            self.received.insert((key.node_id, link), rec.received);
            self.sightings.push(LinkSighting {
                peer: key.node_id,
                link,
                last_seen: Instant::from_nanos(rec.last_seen_ns),
            });
        }
        self.core.handle_sightings(now, &self.sightings, |peer| node.peer_liveness(peer).0);
    }

    /// Logs, counts and returns the core's link events as `events` lines.
    pub fn drain_events(&mut self, node_id: u32) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(event) = self.core.poll_event() {
            let name = |link: usize| self.names.get(link).cloned().unwrap_or_default();
            let (kind, peer, link, detail) = match event {
                LinkEvent::PeerDown { peer, link, silent } => {
                    *self.downs.entry((peer, link)).or_default() += 1;
                    let detail = format!(
                        "no heartbeat from {} on {} for {} ms; other links still carry it (no redundancy left if that was the last spare)",
                        id(peer),
                        name(link),
                        silent.as_millis()
                    );
                    log::warn!(event = "link_down", peer = id(peer).to_string(), link = name(link); "{detail}");
                    ("link_down", id(peer).to_string(), name(link), detail)
                }
                LinkEvent::PeerUp { peer, link } => {
                    let detail = format!("heartbeats from {} come over {} again", id(peer), name(link));
                    log::info!(event = "link_up", peer = id(peer).to_string(), link = name(link); "{detail}");
                    ("link_up", id(peer).to_string(), name(link), detail)
                }
                // With one link the failover's own event says it.
                LinkEvent::Own { .. } if !self.several() => continue,
                LinkEvent::Own { link, up } => {
                    let detail = format!("heartbeat link {} is {}", name(link), if up { "up" } else { "down" });
                    log::warn!(event = if up { "link_up" } else { "link_down" }, link = name(link); "{detail}");
                    (if up { "link_up" } else { "link_down" }, String::new(), name(link), detail)
                }
            };
            let line = LinkEventLine {
                unix_ms: crate::clock::realtime_us() / 1_000,
                node: id(node_id).to_string(),
                event: kind.into(),
                peer,
                link,
                detail,
            };
            lines.push(serde_json::to_string(&line).unwrap_or_default());
        }
        lines
    }

    /// Every peer per link, for `status` and metrics (empty with one link).
    pub fn rows(&self, now: Instant) -> Vec<PeerLinkStatus> {
        self.core
            .peer_links()
            .map(|l| PeerLinkStatus {
                node_id: id(l.peer).to_string(),
                link: self.names.get(l.link).cloned().unwrap_or_default(),
                up: l.up,
                age_ms: now.since(l.last_seen).as_secs_f64() * 1e3,
                received: self.received.get(&(l.peer, l.link)).copied().unwrap_or(0),
                downs: self.downs.get(&(l.peer, l.link)).copied().unwrap_or(0),
            })
            .collect()
    }
}
