//! Carries out the core's heartbeat schedules (`Action::ScheduleHeartbeats`, `--wake event`)
//! from user space, one send per interval: the path when no kernel-side sender takes them.
use ha_core::{Duration, HeartbeatContent, Instant};

/// The schedule handed out last, and the next heartbeat of it.
#[derive(Clone, Copy, Debug)]
pub struct UserSchedule {
    content: HeartbeatContent,
    next: Instant,
    interval: Duration,
    until: Instant,
    /// The time of the last heartbeat sent (of this schedule or those it replaced).
    last_sent: Option<Instant>,
}

impl UserSchedule {
    /// Replaces every heartbeat still queued in `old`; one already sent at `first` is not
    /// sent again.
    pub fn replace(
        old: Option<UserSchedule>,
        content: HeartbeatContent,
        first: Instant,
        interval: Duration,
        until: Instant,
    ) -> Self {
        let last_sent = old.and_then(|o| o.last_sent);
        let next = if last_sent.is_some_and(|sent| sent >= first) { first + interval } else { first };
        Self { content, next, interval, until, last_sent }
    }

    /// When the next heartbeat is due (`None`: the schedule is used up).
    pub fn next_at(&self) -> Option<Instant> {
        (self.next <= self.until).then_some(self.next)
    }

    /// The heartbeat due at `now`, if one is, and the time it was meant for. After a stall, one
    /// heartbeat and on from the next slot: no burst to catch up (as the poll mode).
    pub fn due(&mut self, now: Instant) -> Option<(HeartbeatContent, Instant)> {
        let at = self.next_at().filter(|&at| at <= now)?;
        self.last_sent = Some(at);
        self.next = at + self.interval;
        if self.next <= now && !self.interval.is_zero() {
            let behind = (now - self.next).as_nanos() / self.interval.as_nanos() + 1;
            self.next = self.next + self.interval * u32::try_from(behind).unwrap_or(u32::MAX);
        }
        Some((self.content, at))
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

    #[test]
    fn sends_one_per_interval_until_the_end_and_no_burst_after_a_stall() {
        let content = HeartbeatContent { state: NodeState::Standby, flags: 0, priority: 1, echo: Echo::default() };
        let mut s = UserSchedule::replace(None, content, at(10), 2 * MS, at(20));
        assert!(s.due(at(9)).is_none());
        assert_eq!(s.due(at(10)).map(|(_, at)| at), Some(at(10)));
        assert!(s.due(at(11)).is_none());
        assert_eq!(s.next_at(), Some(at(12)));
        // Stalled until 17: one heartbeat (meant for 12), then on from 18.
        assert_eq!(s.due(at(17)).map(|(_, at)| at), Some(at(12)));
        assert_eq!(s.next_at(), Some(at(18)));
        assert!(s.due(at(18)).is_some());
        assert!(s.due(at(20)).is_some());
        assert_eq!(s.next_at(), None, "used up at its end");
    }

    #[test]
    fn a_renewal_from_a_slot_already_sent_goes_on_from_the_next() {
        let content = HeartbeatContent { state: NodeState::Standby, flags: 0, priority: 1, echo: Echo::default() };
        let mut s = UserSchedule::replace(None, content, at(10), 2 * MS, at(20));
        assert!(s.due(at(10)).is_some() && s.due(at(12)).is_some());
        let renewed = UserSchedule::replace(Some(s), content, at(12), 2 * MS, at(30));
        assert_eq!(renewed.next_at(), Some(at(14)), "12 went out already");
        let renewed = UserSchedule::replace(Some(s), content, at(14), 2 * MS, at(30));
        assert_eq!(renewed.next_at(), Some(at(14)), "14 did not");
    }
}
