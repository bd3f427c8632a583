//! Tracked interfaces (`--track-iface`): their link watches, fed to `ha_core::track`, whose
//! adjusted priority the run loop hands the core and whose changes are logged here.
use anyhow::Context as _;
use ha_core::track::Tracking;

use crate::{config::track::TrackArg, netlink::link::LinkWatch, nudge::Waker};

pub struct TrackedIfaces {
    tracked: Vec<TrackArg>,
    watches: Vec<LinkWatch>,
    core: Tracking,
}

impl TrackedIfaces {
    pub fn open(tracked: &[TrackArg], waker: &Waker) -> anyhow::Result<Self> {
        let watches = tracked
            .iter()
            .map(|t| {
                LinkWatch::new(&t.iface, waker.clone())
                    .with_context(|| format!("watching tracked interface {}", t.iface))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let weights: Vec<Option<u32>> = tracked.iter().map(|t| t.weight).collect();
        Ok(Self { tracked: tracked.to_vec(), watches, core: Tracking::new(&weights) })
    }

    /// `priority` (base less failing checks) as the tracked links leave it; logs their changes.
    pub fn priority(&mut self, priority: u32) -> u32 {
        for (i, w) in self.watches.iter().enumerate() {
            self.core.handle_link(i, w.is_up());
        }
        let adjusted = self.core.adjust(priority);
        while let Some(e) = self.core.poll_event() {
            let Some(t) = self.tracked.get(e.index) else { continue };
            match (e.up, t.weight) {
                (true, _) => {
                    log::info!(event = "track", iface = t.iface.as_str(); "tracked interface {} is up again", t.iface)
                }
                (false, Some(w)) => log::warn!(
                    event = "track", iface = t.iface.as_str();
                    "tracked interface {} is down: priority -{w} (now {adjusted})", t.iface
                ),
                (false, None) => log::warn!(
                    event = "track", iface = t.iface.as_str();
                    "tracked interface {} is down: FAULT, handing the address over", t.iface
                ),
            }
        }
        adjusted
    }

    /// The status's priority parts for interfaces down, given the priority before them.
    pub fn parts(&self, priority: u32) -> Vec<(String, i64)> {
        self.core
            .penalties(priority)
            .filter_map(|(i, w)| Some((format!("track {} down", self.tracked.get(i)?.iface), -i64::from(w))))
            .collect()
    }
}
