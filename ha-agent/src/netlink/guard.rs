//! Keeps the shared addresses where the state machine put them when another program
//! interferes: systemd-networkd, NetworkManager or a DHCP renewal deleting the address from
//! the holder is a known cause of outages. A thread follows netlink address events: a shared
//! address deleted while we hold it is restored and announced at once; one that appears while
//! we do not hold it is removed.
use std::{
    os::fd::{AsFd, AsRawFd, OwnedFd},
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
}

pub struct AddressGuard {
    state: Arc<GuardState>,
    /// An eventfd: written on drop, it ends the thread's wait (which has no timer).
    stop: OwnedFd,
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
        let stop = super::link::eventfd().map_err(AddressError::Setup)?;
        let stop_fd = stop.try_clone().map_err(AddressError::Setup)?;
        let iface = iface.to_string();
        let thread = thread::Builder::new()
            .name("address-guard".into())
            .spawn(move || {
                loop {
                    match watcher.next_event_or_stop(stop_fd.as_fd()) {
                        Ok(None) => break,
                        Ok(Some(event)) => {
                            if let Some(vip) = vips.iter().find(|v| v.addr == event.addr) {
                                correct(&shared, &addresses, announcer.as_ref(), &iface, vip, Some(event.added));
                            }
                        }
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
        Ok(Self { state, stop, thread: Some(thread) })
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
        let one = 1u64;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd; ends the thread's wait.
        unsafe { libc::write(self.stop.as_raw_fd(), (&raw const one).cast(), 8) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
