//! Redundant heartbeat links: which links carry which peer. A peer is alive while any link
//! carries its heartbeats (the peer table holds the newest from any link, so [`crate::Failover`]
//! needs nothing of this); here the driver reports when each link last carried each peer, and
//! the node's own carrier per link, and learns "the link to peer X is down" (redundancy lost,
//! no transition) or back, as events.
//!
//! A link counts as down for a peer once it has been silent for the peer's silence limit (the
//! one the failover uses) while another link still carries the peer: it did within that limit,
//! and at least half a limit after this link last did. A peer that dies falls silent on every
//! link within the links' jitter of each other, so the link that happened to carry its last
//! heartbeat a little later is no such evidence. A peer silent on every link is lost, which is
//! the failover's to report: its links go down without an event each.
use std::collections::{BTreeMap, VecDeque};

use crate::time::{Duration, Instant};

/// Link `link` (the driver's index) last carried a heartbeat of `peer` at `last_seen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkSighting {
    pub peer: u32,
    pub link: usize,
    pub last_seen: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// `peer` is no longer heard on `link` (silent for `silent`), though another link carries it.
    PeerDown { peer: u32, link: usize, silent: Duration },
    /// `peer` is heard on `link` again.
    PeerUp { peer: u32, link: usize },
    /// This node's own carrier on `link` changed.
    Own { link: usize, up: bool },
}

/// One (peer, link) as last decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLink {
    pub peer: u32,
    pub link: usize,
    /// Carried the peer within its limit.
    pub up: bool,
    pub last_seen: Instant,
    /// Since when the evidence that only this link fails has held (see the module doc).
    suspect_since: Option<Instant>,
    /// `PeerDown` was reported and no `PeerUp` since.
    reported_down: bool,
}

#[derive(Debug, Default)]
pub struct Links {
    count: usize,
    state: BTreeMap<(u32, usize), PeerLink>,
    own: Vec<bool>,
    events: VecDeque<LinkEvent>,
}

impl Links {
    /// `count` heartbeat links, all presumed up.
    pub fn new(count: usize) -> Self {
        Self { count, own: vec![true; count], ..Self::default() }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// This node's carrier on `link`.
    pub fn handle_own(&mut self, link: usize, up: bool) {
        if let Some(was) = self.own.get_mut(link)
            && *was != up
        {
            *was = up;
            self.events.push_back(LinkEvent::Own { link, up });
        }
    }

    /// Whether any of this node's links has carrier: what the failover's link is.
    pub fn any_own_up(&self) -> bool {
        self.own.iter().any(|up| *up)
    }

    /// The sightings read at `now` (read before them, as for the peer table); `limit(peer)`:
    /// the peer's silence limit now.
    pub fn handle_sightings(&mut self, now: Instant, sightings: &[LinkSighting], limit: impl Fn(u32) -> Duration) {
        for s in sightings.iter().filter(|s| s.link < self.count) {
            // A link first heard of is up without an event: only changes are news.
            let entry = self.state.entry((s.peer, s.link)).or_insert(PeerLink {
                peer: s.peer,
                link: s.link,
                up: now.since(s.last_seen) <= limit(s.peer),
                last_seen: s.last_seen,
                suspect_since: None,
                reported_down: false,
            });
            entry.last_seen = entry.last_seen.max(s.last_seen);
        }
        // Another link carried `silent`'s peer recently, and well after `silent` last did.
        let carried_since = |links: &BTreeMap<(u32, usize), PeerLink>, silent: &PeerLink| {
            let limit = limit(silent.peer);
            links.values().any(|l| {
                l.peer == silent.peer
                    && l.link != silent.link
                    && now.since(l.last_seen) <= limit
                    && l.last_seen.since(silent.last_seen) >= limit / 2
            })
        };
        let keys: Vec<(u32, usize)> = self.state.keys().copied().collect();
        for key in keys {
            let Some(mut link) = self.state.get(&key).copied() else { continue };
            let silent = now.since(link.last_seen);
            let limit = limit(link.peer);
            link.up = silent <= limit;
            if link.up {
                link.suspect_since = None;
                if std::mem::take(&mut link.reported_down) {
                    self.events.push_back(LinkEvent::PeerUp { peer: link.peer, link: link.link });
                }
            } else if !link.reported_down && carried_since(&self.state, &link) {
                // Held for half a limit: after a silence on every link, the first heartbeat
                // reaches one link a moment before the others, and is no evidence.
                let since = *link.suspect_since.get_or_insert(now);
                if now.since(since) >= limit / 2 {
                    link.reported_down = true;
                    self.events.push_back(LinkEvent::PeerDown { peer: link.peer, link: link.link, silent });
                }
            } else if !link.reported_down {
                link.suspect_since = None;
            }
            self.state.insert(key, link);
        }
    }

    /// Every (peer, link) known, by peer then link.
    pub fn peer_links(&self) -> impl Iterator<Item = &PeerLink> {
        self.state.values()
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(100);

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn seen(peer: u32, link: usize, ms: u64) -> LinkSighting {
        LinkSighting { peer, link, last_seen: at(ms) }
    }

    fn events(links: &mut Links) -> Vec<LinkEvent> {
        std::iter::from_fn(|| links.poll_event()).collect()
    }

    #[test]
    fn one_silent_link_of_a_peer_still_heard_on_another_is_down_once_then_up_again() {
        let mut links = Links::new(2);
        links.handle_sightings(at(10), &[seen(7, 0, 10), seen(7, 1, 10)], |_| LIMIT);
        assert_eq!(events(&mut links), [], "first heard: no news");
        // Link 1 stops carrying peer 7; link 0 goes on.
        links.handle_sightings(at(100), &[seen(7, 0, 100), seen(7, 1, 20)], |_| LIMIT);
        assert_eq!(events(&mut links), [], "80 ms of silence is within the limit");
        links.handle_sightings(at(121), &[seen(7, 0, 120), seen(7, 1, 20)], |_| LIMIT);
        assert_eq!(events(&mut links), [], "suspect: held for half a limit first");
        links.handle_sightings(at(171), &[seen(7, 0, 170), seen(7, 1, 20)], |_| LIMIT);
        assert_eq!(events(&mut links), [LinkEvent::PeerDown { peer: 7, link: 1, silent: Duration::from_millis(151) }]);
        links.handle_sightings(at(200), &[seen(7, 0, 200), seen(7, 1, 20)], |_| LIMIT);
        assert_eq!(events(&mut links), [], "once");
        links.handle_sightings(at(300), &[seen(7, 0, 300), seen(7, 1, 299)], |_| LIMIT);
        assert_eq!(events(&mut links), [LinkEvent::PeerUp { peer: 7, link: 1 }]);
    }

    #[test]
    fn a_peer_silent_on_every_link_is_the_failovers_to_report() {
        let mut links = Links::new(2);
        links.handle_sightings(at(10), &[seen(7, 0, 10), seen(7, 1, 10)], |_| LIMIT);
        events(&mut links);
        links.handle_sightings(at(200), &[seen(7, 0, 10), seen(7, 1, 10)], |_| LIMIT);
        assert_eq!(events(&mut links), []);
        assert!(links.peer_links().all(|l| !l.up));
    }

    #[test]
    fn a_peer_that_dies_is_no_link_down_though_one_link_carried_its_last_heartbeat_later() {
        let mut links = Links::new(2);
        links.handle_sightings(at(10), &[seen(7, 0, 10), seen(7, 1, 10)], |_| LIMIT);
        // Its last heartbeat at 50: over link 0 at 50.0, over link 1 at 50.3 (jitter).
        let last = [seen(7, 0, 50), LinkSighting { peer: 7, link: 1, last_seen: at(50) + Duration::from_micros(300) }];
        links.handle_sightings(at(150) + Duration::from_micros(100), &last, |_| LIMIT);
        assert_eq!(events(&mut links), [], "link 0 is silent a hair longer: no evidence of a cut");
        links.handle_sightings(at(200), &last, |_| LIMIT);
        assert_eq!(events(&mut links), []);
    }

    #[test]
    fn after_a_silence_on_every_link_the_link_that_resumes_a_moment_later_is_not_down() {
        let mut links = Links::new(2);
        links.handle_sightings(at(10), &[seen(7, 0, 10), seen(7, 1, 10)], |_| LIMIT);
        // A partition from 10 to 300; its first heartbeat after it reaches link 1 first.
        let resumed = [seen(7, 0, 10), seen(7, 1, 300)];
        links.handle_sightings(at(300) + Duration::from_micros(10), &resumed, |_| LIMIT);
        let both = [seen(7, 0, 300), seen(7, 1, 300)];
        links.handle_sightings(at(310), &both, |_| LIMIT);
        links.handle_sightings(at(400), &both, |_| LIMIT);
        assert_eq!(events(&mut links), []);
    }

    #[test]
    fn the_limit_is_the_peers_own() {
        let mut links = Links::new(2);
        links.handle_sightings(at(10), &[seen(7, 0, 10), seen(7, 1, 10)], |_| LIMIT);
        events(&mut links);
        // Under loss the failover's limit for this peer has grown to 300 ms.
        links.handle_sightings(at(250), &[seen(7, 0, 250), seen(7, 1, 10)], |_| LIMIT * 3);
        assert_eq!(events(&mut links), []);
    }

    #[test]
    fn own_carrier_per_link_and_any() {
        let mut links = Links::new(2);
        links.handle_own(1, false);
        links.handle_own(1, false);
        assert!(links.any_own_up());
        links.handle_own(0, false);
        assert!(!links.any_own_up());
        assert_eq!(events(&mut links), [LinkEvent::Own { link: 1, up: false }, LinkEvent::Own { link: 0, up: false }]);
        links.handle_own(5, false);
        assert_eq!(events(&mut links), [], "no such link");
    }
}
