//! Keeps the shared addresses where the state machine put them when another program
//! interferes: systemd-networkd, NetworkManager or a DHCP renewal deleting the address from
//! the holder is a known cause of outages. A thread follows netlink address events: a shared
//! address deleted while we hold it is restored and announced at once; one that appears while
//! we do not hold it is removed.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use super::{
    SharedAddr,
    address::{AddressError, AddressManager},
};
use crate::tx::announce::Announcer;

/// Shared with the run loop, which flips `holding` before it adds and before it removes.
#[derive(Default)]
pub struct GuardState {
    pub holding: AtomicBool,
    pub restored: AtomicU64,
    pub removed: AtomicU64,
    stop: AtomicBool,
}

pub struct AddressGuard {
    state: Arc<GuardState>,
    thread: Option<JoinHandle<()>>,
}

impl AddressGuard {
    /// `announce`: whether a restored address is announced by gratuitous ARP / unsolicited NA
    /// (l2 mode; in routed mode the host route announces it).
    pub fn start(iface: &str, vips: Vec<SharedAddr>, announce: bool) -> Result<Self, AddressError> {
        let addresses = AddressManager::new(iface)?;
        let mut watcher = addresses.watch()?;
        let announcer = if announce { Some(Announcer::new(iface).map_err(AddressError::Setup)?) } else { None };
        let state = Arc::new(GuardState::default());
        let shared = Arc::clone(&state);
        let iface = iface.to_string();
        let thread = thread::Builder::new()
            .name("address-guard".into())
            .spawn(move || {
                while !shared.stop.load(Ordering::Relaxed) {
                    match watcher.next_event(Duration::from_millis(200)) {
                        Ok(Some(event)) => {
                            if let Some(vip) = vips.iter().find(|v| v.addr == event.addr) {
                                correct(&shared, &addresses, announcer.as_ref(), &iface, vip, Some(event.added));
                            }
                        }
                        Ok(None) => {}
                        // Events were lost: compare every shared address with what we should have.
                        Err(AddressError::WatchOverrun) => {
                            for vip in &vips {
                                correct(&shared, &addresses, announcer.as_ref(), &iface, vip, None);
                            }
                        }
                        Err(e) => {
                            log::warn!("watching addresses on {iface}: {e}");
                            thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })
            .map_err(AddressError::Setup)?;
        Ok(Self { state, thread: Some(thread) })
    }

    pub fn state(&self) -> &GuardState {
        &self.state
    }
}

/// Brings `vip` back in line with `holding`. `seen`: what the event said (None: unknown).
fn correct(
    state: &GuardState,
    addresses: &AddressManager,
    announcer: Option<&Announcer>,
    iface: &str,
    vip: &SharedAddr,
    seen: Option<bool>,
) {
    let holding = state.holding.load(Ordering::Acquire);
    let present = match seen {
        Some(added) => added,
        None => addresses.is_present(vip).unwrap_or(holding),
    };
    if holding && !present {
        match addresses.add(vip) {
            Ok(()) => {
                if let Some(announcer) = announcer {
                    let _ = announcer.announce(&[vip.addr]);
                }
                state.restored.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "{vip} was removed from {iface} by another program while this node holds it: restored and announced"
                );
            }
            Err(e) => log::error!("restoring {vip} on {iface}: {e}"),
        }
    } else if !holding && present {
        // Re-check: the run loop may have just taken it (it sets `holding` before adding).
        if state.holding.load(Ordering::Acquire) {
            return;
        }
        match addresses.remove(vip) {
            Ok(()) => {
                state.removed.fetch_add(1, Ordering::Relaxed);
                log::warn!("{vip} appeared on {iface} while this node does not hold it: removed");
            }
            Err(e) => log::error!("removing stray {vip} from {iface}: {e}"),
        }
    }
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
