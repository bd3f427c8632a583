//! The shared addresses on the interfaces that carry them: per interface one address manager,
//! one announcer and one guard. Every address of a run moves together (keepalived's sync
//! group): the run loop takes, announces and gives up all of them at once.
use std::{net::IpAddr, sync::atomic::Ordering};

use super::{
    SharedAddr, Vip,
    address::{AddressError, AddressManager},
    guard::AddressGuard,
    vip,
};
use crate::tx::announce::Announcer;

/// One interface's share of the addresses.
struct Link {
    iface: String,
    vips: Vec<SharedAddr>,
    addrs: Vec<IpAddr>,
    addresses: AddressManager,
    /// None in routed mode: no ARP there.
    announcer: Option<Announcer>,
    /// Started last, after leftovers are gone (it would remove them on its own, noisily).
    guard: Option<AddressGuard>,
}

pub struct VipLinks {
    links: Vec<Link>,
    announce: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VipLinksError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("opening the announcement socket on {iface}: {cause}")]
    Announcer { iface: String, cause: std::io::Error },
}

impl VipLinks {
    /// Opens netlink and (with `announce`) an announcement socket on every interface of `vips`;
    /// changes nothing.
    pub fn open(vips: &[Vip], announce: bool) -> Result<Self, VipLinksError> {
        let mut links = Vec::new();
        for iface in vip::interfaces(vips) {
            let mine: Vec<SharedAddr> = vips.iter().filter(|v| v.iface == iface).map(|v| v.addr).collect();
            links.push(Link {
                iface: iface.to_string(),
                addrs: mine.iter().map(|v| v.addr).collect(),
                vips: mine,
                addresses: AddressManager::new(iface)?,
                announcer: match announce {
                    true => Some(
                        Announcer::new(iface)
                            .map_err(|cause| VipLinksError::Announcer { iface: iface.to_string(), cause })?,
                    ),
                    false => None,
                },
                guard: None,
            });
        }
        Ok(Self { links, announce })
    }

    /// The MAC announcements for the first interface's addresses carry (None without them).
    pub fn first_mac(&self) -> Option<[u8; 6]> {
        self.links.first().and_then(|l| l.announcer.as_ref()).map(Announcer::mac)
    }

    /// Removes copies of the shared addresses already on their interfaces: a crashed run of
    /// ours left them (labelled), or keepalived or a person did (unlabelled: adopted). No other
    /// agent manages them (we hold their locks), so they go until this node is chosen.
    pub fn remove_leftovers(&self) -> Result<(), AddressError> {
        for link in &self.links {
            for vip in &link.vips {
                for copy in link.addresses.copies(vip.addr)? {
                    let whose = if copy.ours {
                        "left by a crashed run of this agent"
                    } else {
                        "not added by ha-agent (keepalived killed, or by hand): adopting it"
                    };
                    log::warn!(
                        "{} was already on {}, {whose}; removed until this node is chosen",
                        copy.addr,
                        link.iface
                    );
                    link.addresses.remove(&copy.addr)?;
                }
                // Idempotent: also opens the rtnetlink connection now, so the first takeover
                // does not pay for it.
                link.addresses.remove(vip)?;
            }
        }
        Ok(())
    }

    /// Starts a guard per interface (see `guard`).
    pub fn start_guards(&mut self) -> Result<(), AddressError> {
        for link in &mut self.links {
            link.guard = Some(AddressGuard::start(&link.iface, link.vips.clone(), self.announce)?);
        }
        Ok(())
    }

    /// What the guards keep: flipped before adding and before removing.
    pub fn set_holding(&self, holding: bool) {
        for guard in self.links.iter().filter_map(|l| l.guard.as_ref()) {
            guard.state().holding.store(holding, Ordering::Release);
        }
    }

    /// Whether the addresses are held (as last set).
    pub fn holding(&self) -> bool {
        self.links.iter().filter_map(|l| l.guard.as_ref()).any(|g| g.state().holding.load(Ordering::Acquire))
    }

    /// Adds every address on its interface; logs what fails and goes on with the others.
    pub fn add_all(&self) {
        for link in &self.links {
            for vip in &link.vips {
                if let Err(e) = link.addresses.add(vip) {
                    log::error!("adding {vip} to {}: {e}", link.iface);
                }
            }
        }
    }

    /// Removes every address; logs what fails and goes on with the others.
    pub fn remove_all(&self) {
        for link in &self.links {
            for vip in &link.vips {
                if let Err(e) = link.addresses.remove(vip) {
                    log::error!("removing {vip} from {}: {e}", link.iface);
                }
            }
        }
    }

    /// One gratuitous ARP / unsolicited NA round for every address, each on its interface.
    pub fn announce(&self) {
        for link in &self.links {
            let Some(announcer) = &link.announcer else { continue };
            if let Err(e) = announcer.announce(&link.addrs) {
                log::warn!("announcing {:?} on {}: {e}", link.addrs, link.iface);
            }
        }
    }

    /// Every shared address, for log lines.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.links.iter().flat_map(|l| l.addrs.iter().copied()).collect()
    }
}
