//! Carries out the core's heartbeat schedules (`Action::ScheduleHeartbeats`, `--wake event`)
//! in the kernel: every heartbeat of a schedule is signed and handed over at once, each with its
//! departure time (`SO_TXTIME` on CLOCK_MONOTONIC), and the interface's `fq` qdisc sends it at
//! its slot. The agent wakes per schedule (about every half horizon), not per heartbeat.
//!
//! Sequence numbers follow the slots, so a schedule's heartbeats are consecutive. A change of
//! content goes out at once with a counter above every queued heartbeat, and its schedule is
//! queued after it: the heartbeats of the replaced schedule still leave at their slots, and
//! every receiver rejects them as stale (they are counted as such). Queued heartbeats outlive
//! a stopped agent by up to the horizon (`ha_core::heartbeat_horizon`): its peers notice it
//! within their silence limit plus that.
use ha_core::{Duration, HeartbeatContent, Instant};

use super::sender::Sender;
use crate::netlink::{iface, qdisc};

/// Queues schedules in the kernel where it can, before any change to the system: one heartbeat
/// link whose qdisc keeps departure times. Otherwise the agent sends each heartbeat itself, as
/// it always did, and says why in one line, a warning when `--wake event` was asked for (an
/// information with `auto`); the operator's qdisc is left as it is.
pub fn open(iface_name: &str, links: usize, sender: &mut Sender, asked: bool) -> Option<QueuedSchedule> {
    let fallback = |why: String| {
        let level = if asked { log::Level::Warn } else { log::Level::Info };
        log::log!(
            level,
            "event wake: heartbeats are sent from this process, one wake each, because {why} (`tc qdisc replace dev {iface_name} root fq` lets the kernel send them)"
        );
        None
    };
    if links > 1 {
        return fallback("several heartbeat links are used".into());
    }
    let qdiscs = iface::index(iface_name).and_then(qdisc::of_interface);
    match qdiscs {
        Err(e) => return fallback(format!("the qdisc of {iface_name} cannot be read: {e}")),
        Ok(q) => {
            if let Err(why) = qdisc::keeps_departure_times(&q) {
                return fallback(format!("{iface_name} would send timed heartbeats at once: {why}"));
            }
        }
    }
    if let Err(e) = sender.enable_departure_times() {
        return fallback(format!("SO_TXTIME is refused: {e}"));
    }
    log::info!("event wake: heartbeat schedules are queued in the fq qdisc of {iface_name}");
    Some(QueuedSchedule::default())
}

/// When one heartbeat of a schedule leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// At once.
    Now,
    /// At its slot.
    At(Instant),
}

/// The schedule queued last: what the queued heartbeats say and the slot of the last one.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueuedSchedule {
    last: Option<(HeartbeatContent, Instant, Duration)>,
}

impl QueuedSchedule {
    /// The heartbeats to queue for a schedule of `content` at `first`, `first + interval`, ...
    /// up to `until`, in the order to hand them over. A renewal (same content, on the grid of
    /// what is queued) adds only the slots after the last one queued; anything else starts
    /// with a heartbeat at once. Slots already past (a late wake) become one heartbeat at once,
    /// never a burst.
    pub fn plan(
        &mut self,
        content: HeartbeatContent,
        first: Instant,
        interval: Duration,
        until: Instant,
        now: Instant,
        out: &mut Vec<Departure>,
    ) {
        out.clear();
        let continues = self
            .last
            .filter(|&(c, last, i)| c == content && i == interval && first <= last + interval && !interval.is_zero());
        let mut start = match continues {
            Some((_, last, _)) => last + interval,
            None => first,
        };
        if start <= now {
            out.push(Departure::Now);
            if interval.is_zero() {
                self.last = Some((content, now, interval));
                return;
            }
            let behind = (now - start).as_nanos() / interval.as_nanos() + 1;
            start = start + interval * u32::try_from(behind).unwrap_or(u32::MAX);
        }
        let mut last = continues.map_or(now, |(_, last, _)| last);
        let mut slot = start;
        while slot <= until {
            out.push(Departure::At(slot));
            last = slot;
            slot = slot + interval;
        }
        self.last = Some((content, last, interval));
    }
}

#[cfg(test)]
mod tests {
    use ha_common::wire::{Echo, NodeState};

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(ms: u32) -> Instant {
        Instant::ZERO + MS * ms
    }

    fn content(state: NodeState) -> HeartbeatContent {
        HeartbeatContent { state, flags: 0, priority: 1, echo: Echo::default() }
    }

    fn slots(out: &[Departure]) -> Vec<Option<u32>> {
        out.iter()
            .map(|d| match d {
                Departure::Now => None,
                Departure::At(t) => Some(u32::try_from((*t - Instant::ZERO).as_millis()).unwrap_or(u32::MAX)),
            })
            .collect()
    }

    #[test]
    fn a_first_schedule_starts_at_once_then_queues_its_slots() {
        let (mut q, mut out) = (QueuedSchedule::default(), Vec::new());
        q.plan(content(NodeState::Standby), at(10), 2 * MS, at(20), at(10), &mut out);
        assert_eq!(slots(&out), [None, Some(12), Some(14), Some(16), Some(18), Some(20)]);
    }

    #[test]
    fn a_renewal_queues_only_the_slots_after_the_last_queued() {
        let (mut q, mut out) = (QueuedSchedule::default(), Vec::new());
        let c = content(NodeState::Standby);
        q.plan(c, at(10), 2 * MS, at(20), at(10), &mut out);
        q.plan(c, at(14), 2 * MS, at(24), at(14), &mut out);
        assert_eq!(slots(&out), [Some(22), Some(24)], "no heartbeat sent twice, none at once");
    }

    #[test]
    fn a_change_goes_out_at_once_and_requeues_everything_after_it() {
        let (mut q, mut out) = (QueuedSchedule::default(), Vec::new());
        q.plan(content(NodeState::Standby), at(10), 2 * MS, at(20), at(10), &mut out);
        q.plan(content(NodeState::Active), at(13), 2 * MS, at(23), at(13), &mut out);
        assert_eq!(slots(&out), [None, Some(15), Some(17), Some(19), Some(21), Some(23)]);
    }

    #[test]
    fn a_late_renewal_sends_one_at_once_not_a_burst() {
        let (mut q, mut out) = (QueuedSchedule::default(), Vec::new());
        let c = content(NodeState::Standby);
        q.plan(c, at(10), 2 * MS, at(20), at(10), &mut out);
        // Renewed at 29: slots 22..28 are past and were never queued.
        q.plan(c, at(20), 2 * MS, at(30), at(29), &mut out);
        assert_eq!(slots(&out), [None, Some(30)]);
    }
}
