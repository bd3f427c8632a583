//! The faults chaos injects, what each may cost the client (one table), and how the seeded
//! schedule draws them.
use std::time::Duration;

use super::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A node's link goes down, then up (its own eth0, or its switch port).
    LinkFlap,
    /// Random loss on a node's egress for a while.
    LossBurst,
    /// A node is cut off from the rest of the LAN (and from the client), then rejoins.
    Partition,
    /// SIGSTOP, then SIGCONT, of a node's agent.
    Pause,
    /// SIGKILL of a node's agent, later restarted.
    Kill,
    /// SIGTERM of a node's agent, later restarted.
    CleanStop,
    /// `ha-agent maintenance on`, later `off`.
    Maintenance,
    /// One step of a key rotation in the shared key file, then SIGHUP to every agent.
    KeyReload,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::LinkFlap,
        FaultKind::LossBurst,
        FaultKind::Partition,
        FaultKind::Pause,
        FaultKind::Kill,
        FaultKind::CleanStop,
        FaultKind::Maintenance,
        FaultKind::KeyReload,
    ];

    /// The kind's name on a command line (`--only kill,pause`).
    pub fn slug(self) -> &'static str {
        match self {
            FaultKind::LinkFlap => "link-flap",
            FaultKind::LossBurst => "loss-burst",
            FaultKind::Partition => "partition",
            FaultKind::Pause => "pause",
            FaultKind::Kill => "kill",
            FaultKind::CleanStop => "clean-stop",
            FaultKind::Maintenance => "maintenance",
            FaultKind::KeyReload => "key-reload",
        }
    }

    pub fn from_slug(s: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.slug() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::LinkFlap => "link flap",
            FaultKind::LossBurst => "loss burst",
            FaultKind::Partition => "partition",
            FaultKind::Pause => "SIGSTOP/SIGCONT",
            FaultKind::Kill => "SIGKILL + restart",
            FaultKind::CleanStop => "SIGTERM + restart",
            FaultKind::Maintenance => "maintenance on/off",
            FaultKind::KeyReload => "key reload (SIGHUP)",
        }
    }

    /// The longest client outage this fault may cause, when it hits the holder and when it
    /// hits another node. The one table every outage is judged by.
    pub fn allowance(self) -> (Allowance, Allowance) {
        use Allowance::{Lossless, Takeover};
        match self {
            // The holder stops being reachable (or heard): the successor takes over after
            // the tolerance. A standby's trouble is none of the client's business.
            FaultKind::LinkFlap | FaultKind::LossBurst | FaultKind::Partition => (Takeover, Lossless),
            // The kernel keeps answering for a stopped or dead agent; a fence that makes it stop
            // may cost at most a takeover.
            FaultKind::Pause | FaultKind::Kill => (Takeover, Lossless),
            // Planned: the holder hands over before it lets go, and takes back (preemption)
            // only once it holds the address again.
            FaultKind::CleanStop | FaultKind::Maintenance => (Lossless, Lossless),
            FaultKind::KeyReload => (Lossless, Lossless),
        }
    }
}

/// How long a client outage a fault may cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowance {
    /// Not one lost probe.
    Lossless,
    /// Up to the successor's silence limit for the holder plus [`takeover_margin`]: silence
    /// detected, successor announced.
    Takeover,
}

/// What a takeover may take beyond the tolerance: the silence is noticed at the next wake (up to
/// one interval), plus 5 ms for scheduling on a loaded machine.
pub fn takeover_margin(interval: Duration) -> Duration {
    interval + Duration::from_millis(5)
}

impl Allowance {
    /// The longest outage allowed (zero: no lost probe at all). `silence_limit` is how long the
    /// successors let the holder be silent when the fault began: the tolerance on a clean link,
    /// more (up to the maximum tolerance) while recent loss has widened it, as designed.
    pub fn limit(self, interval: Duration, silence_limit: Duration) -> Duration {
        match self {
            Allowance::Lossless => Duration::ZERO,
            Allowance::Takeover => silence_limit + takeover_margin(interval),
        }
    }

    pub fn describe(self, interval: Duration, tolerance: Duration) -> String {
        match self {
            Allowance::Lossless => "no lost probe".into(),
            Allowance::Takeover => format!(
                "silence limit + {} ms (clean link: {} ms)",
                takeover_margin(interval).as_millis(),
                self.limit(interval, tolerance).as_millis()
            ),
        }
    }
}

/// Whom a fault hits, drawn from the seed; resolved against the holder of the moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Holder,
    /// The k-th (mod count) of the nodes that do not hold the address.
    Other(usize),
    Everyone,
}

/// Which side of a node's cable a link flap pulls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkSide {
    /// `ip link set eth0 down` inside the node.
    Iface,
    /// The node's port on the switch (the node sees NO-CARRIER).
    Port,
}

/// One fault as drawn: kind, role and the parameters of its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub kind: FaultKind,
    pub role: Role,
    /// How long the fault lasts before it is undone (zero for a key reload).
    pub hold: Duration,
    pub side: LinkSide,
    pub loss_percent: u8,
}

impl Plan {
    /// Whether the fault lasts long enough to settle while it is on: then who answers ARP is
    /// checked during it too, not only after it.
    pub fn settles_during(&self, settle: Duration) -> bool {
        self.kind != FaultKind::LossBurst && self.hold >= settle
    }

    pub fn describe(&self) -> String {
        let hold = format!("{} ms", self.hold.as_millis());
        match self.kind {
            FaultKind::LinkFlap => format!(
                "{} down for {hold}",
                match self.side {
                    LinkSide::Iface => "eth0",
                    LinkSide::Port => "switch port",
                }
            ),
            FaultKind::LossBurst => format!("{}% egress loss for {hold}", self.loss_percent),
            FaultKind::Partition => format!("isolated for {hold}"),
            FaultKind::Pause => format!("stopped for {hold}"),
            FaultKind::Kill | FaultKind::CleanStop => format!("down for {hold}"),
            FaultKind::Maintenance => format!("in maintenance for {hold}"),
            FaultKind::KeyReload => "one rotation step".into(),
        }
    }
}

/// Draws faults: every kind once per round, in a seeded order, so any run of at least one round
/// has tried them all and counts stay balanced.
pub struct Schedule {
    rng: Rng,
    kinds: Vec<FaultKind>,
    round: Vec<FaultKind>,
    /// The time a fault must last to settle during it (see [`Plan::settles_during`]).
    settle: Duration,
    tolerance: Duration,
}

impl Schedule {
    /// Draws from `kinds` (every kind when empty).
    pub fn new(seed: u64, kinds: &[FaultKind], settle: Duration, tolerance: Duration) -> Self {
        let kinds = if kinds.is_empty() { FaultKind::ALL.to_vec() } else { kinds.to_vec() };
        Schedule { rng: Rng::new(seed), kinds, round: Vec::new(), settle, tolerance }
    }

    pub fn next_plan(&mut self) -> Plan {
        if self.round.is_empty() {
            self.round = self.kinds.clone();
            self.rng.shuffle(&mut self.round);
            self.round.reverse(); // popped from the back: keep the shuffled order readable
        }
        let kind = self.round.pop().unwrap_or(FaultKind::KeyReload);
        let r = &mut self.rng;
        let role = if kind == FaultKind::KeyReload {
            Role::Everyone
        } else if r.chance(50) {
            Role::Holder
        } else {
            Role::Other(r.below(2))
        };
        let long = |r: &mut Rng| r.millis(self.settle, self.settle + Duration::from_millis(500));
        // Shorter than half the tolerance: no one should take over.
        let blip = |r: &mut Rng| r.millis(Duration::from_millis(5), self.tolerance / 2);
        let hold = match kind {
            FaultKind::LinkFlap | FaultKind::Pause => {
                if r.chance(50) {
                    blip(r)
                } else {
                    long(r)
                }
            }
            FaultKind::LossBurst => r.millis(Duration::from_millis(500), Duration::from_millis(2000)),
            FaultKind::Partition | FaultKind::Kill | FaultKind::CleanStop | FaultKind::Maintenance => long(r),
            FaultKind::KeyReload => Duration::ZERO,
        };
        let side = if r.chance(50) { LinkSide::Iface } else { LinkSide::Port };
        let loss_percent = r.pick(&[5, 10, 20, 30]).unwrap_or(10);
        Plan { kind, role, hold, side, loss_percent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_millis(400);
    const TOL: Duration = Duration::from_millis(40);

    #[test]
    fn every_round_has_every_kind_once() {
        let mut s = Schedule::new(42, &[], SETTLE, TOL);
        for _ in 0..3 {
            let mut kinds: Vec<FaultKind> = (0..FaultKind::ALL.len()).map(|_| s.next_plan().kind).collect();
            kinds.sort();
            assert_eq!(kinds, FaultKind::ALL);
        }
    }

    #[test]
    fn only_the_chosen_kinds() {
        let mut s = Schedule::new(1, &[FaultKind::Kill, FaultKind::Pause], SETTLE, TOL);
        assert!((0..10).all(|_| matches!(s.next_plan().kind, FaultKind::Kill | FaultKind::Pause)));
        for k in FaultKind::ALL {
            assert_eq!(FaultKind::from_slug(k.slug()), Some(k));
        }
    }

    #[test]
    fn a_seed_replays() {
        let draw = |seed| {
            let mut s = Schedule::new(seed, &[], SETTLE, TOL);
            (0..20).map(|_| s.next_plan()).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn blips_stay_below_the_tolerance_and_long_faults_settle() {
        let mut s = Schedule::new(9, &[], SETTLE, TOL);
        for _ in 0..400 {
            let p = s.next_plan();
            match p.kind {
                FaultKind::LinkFlap | FaultKind::Pause => {
                    assert!(p.hold <= TOL / 2 || p.settles_during(SETTLE), "{p:?}")
                }
                FaultKind::Partition | FaultKind::Kill | FaultKind::CleanStop | FaultKind::Maintenance => {
                    assert!(p.settles_during(SETTLE), "{p:?}")
                }
                FaultKind::LossBurst => assert!(!p.settles_during(SETTLE)),
                FaultKind::KeyReload => assert_eq!(p.role, Role::Everyone),
            }
        }
    }

    #[test]
    fn planned_changes_lose_nothing() {
        for kind in [FaultKind::CleanStop, FaultKind::Maintenance, FaultKind::KeyReload] {
            assert_eq!(kind.allowance(), (Allowance::Lossless, Allowance::Lossless), "{kind:?}");
        }
        let ms = Duration::from_millis;
        assert_eq!(Allowance::Takeover.limit(ms(10), ms(40)), ms(55));
        assert_eq!(Allowance::Lossless.limit(ms(10), ms(40)), Duration::ZERO);
        // After loss widened the successors' limit for the holder, the takeover may take that long.
        assert_eq!(Allowance::Takeover.limit(ms(10), ms(75)), ms(90));
        assert_eq!(Allowance::Lossless.limit(ms(10), ms(75)), Duration::ZERO);
    }
}
