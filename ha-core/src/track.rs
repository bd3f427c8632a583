//! Interface tracking (keepalived's `track_interface`): the link state of listed interfaces,
//! not only the heartbeat links, lowers this node's worthiness by the interface's weight while
//! it is down, or, without a weight, takes it all: priority 0, which hands the address over
//! make-before-break and leaves the node in FAULT (as failing checks do) until the link is back.
use std::collections::VecDeque;

/// One tracked interface: its weight (None: FAULT while down) and its link as last reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub weight: Option<u32>,
    pub up: bool,
}

/// A tracked interface's link changed (`index` in the configured order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackEvent {
    pub index: usize,
    pub up: bool,
}

#[derive(Debug, Default)]
pub struct Tracking {
    tracked: Vec<Tracked>,
    events: VecDeque<TrackEvent>,
}

impl Tracking {
    /// Interfaces with these weights, all presumed up.
    pub fn new(weights: &[Option<u32>]) -> Self {
        Self { tracked: weights.iter().map(|&weight| Tracked { weight, up: true }).collect(), events: VecDeque::new() }
    }

    /// The link of tracked interface `index`.
    pub fn handle_link(&mut self, index: usize, up: bool) {
        if let Some(t) = self.tracked.get_mut(index)
            && t.up != up
        {
            t.up = up;
            self.events.push_back(TrackEvent { index, up });
        }
    }

    /// `priority` (the base less failing checks) less what the tracked interfaces down take.
    pub fn adjust(&self, priority: u32) -> u32 {
        self.tracked.iter().filter(|t| !t.up).fold(priority, |p, t| match t.weight {
            Some(w) => p.saturating_sub(w),
            None => 0,
        })
    }

    /// What each interface down takes off `priority`, for the operator's view.
    pub fn penalties(&self, priority: u32) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.tracked.iter().enumerate().filter(|(_, t)| !t.up).map(move |(i, t)| (i, t.weight.unwrap_or(priority)))
    }

    pub fn poll_event(&mut self) -> Option<TrackEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weighted_interface_down_lowers_the_priority_and_an_unweighted_one_takes_it_all() {
        let mut t = Tracking::new(&[Some(30), None]);
        assert_eq!(t.adjust(100), 100);
        t.handle_link(0, false);
        assert_eq!(t.adjust(100), 70);
        assert_eq!(t.adjust(20), 0, "never below 0");
        t.handle_link(1, false);
        assert_eq!(t.adjust(100), 0, "FAULT: priority 0 hands over");
        t.handle_link(1, true);
        t.handle_link(0, true);
        assert_eq!(t.adjust(100), 100);
        let events: Vec<TrackEvent> = std::iter::from_fn(|| t.poll_event()).collect();
        assert_eq!(events.len(), 4);
        assert_eq!(events[0], TrackEvent { index: 0, up: false });
    }

    #[test]
    fn only_changes_are_events_and_unknown_indexes_are_ignored() {
        let mut t = Tracking::new(&[None]);
        t.handle_link(0, true);
        t.handle_link(3, false);
        assert_eq!(t.poll_event(), None);
        assert_eq!(t.adjust(5), 5);
    }
}
