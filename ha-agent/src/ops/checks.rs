//! Health checks (`--check CMD`): shell commands run on a thread of their own every
//! `--check-interval`, each bounded by `--check-timeout`. A check counts as failing after
//! `--check-fall` failures in a row and as passing again after `--check-rise` passes; until its
//! first result it counts as failing, so a node does not claim to be healthy before it knows.
//! Each failing check takes its weight off the node's priority (by default all of it: priority
//! 0, which `node` lets any healthy peer take over from whatever `--preempt` says).
//! Checks get HA_NODE and HA_IFACE in their environment, so one script can serve every node.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use super::{shell, status::CheckStatus};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub commands: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
    /// Priority taken off per failing check; `None`: all of it.
    pub weight: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// No result yet: counts as failing.
    Pending,
    Passing,
    Failing,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Pending => "pending",
            Health::Passing => "passing",
            Health::Failing => "failing",
        }
    }
}

/// The fall/rise hysteresis of one check: pure, fed one result at a time.
#[derive(Clone, Copy, Debug)]
pub struct Tracker {
    health: Health,
    /// Results in a row that disagree with `health`.
    streak: u32,
}

impl Default for Tracker {
    fn default() -> Self {
        Self { health: Health::Pending, streak: 0 }
    }
}

impl Tracker {
    pub fn health(&self) -> Health {
        self.health
    }

    /// Records a result; true when the health changed.
    pub fn record(&mut self, passed: bool, fall: u32, rise: u32) -> bool {
        let next = match (self.health, passed) {
            (Health::Pending, true) => Health::Passing,
            (Health::Pending, false) => Health::Failing,
            (Health::Passing, true) | (Health::Failing, false) => {
                self.streak = 0;
                return false;
            }
            (Health::Passing, false) | (Health::Failing, true) => {
                self.streak += 1;
                let needed = if passed { rise } else { fall };
                if self.streak < needed {
                    return false;
                }
                if passed { Health::Passing } else { Health::Failing }
            }
        };
        self.health = next;
        self.streak = 0;
        true
    }
}

/// The priority a node announces: its base less the weight of every check not passing.
pub fn priority(base: u32, weight: Option<u32>, not_passing: usize) -> u32 {
    let each = weight.unwrap_or(base);
    base.saturating_sub(each.saturating_mul(u32::try_from(not_passing).unwrap_or(u32::MAX)))
}

struct Shared {
    statuses: Mutex<Vec<CheckStatus>>,
    not_passing: AtomicU32,
    /// The priority before checks: configured, or set at run time (`priority set`).
    base: AtomicU32,
}

/// The running checks. With no check configured, nothing runs and the priority stays the base.
pub struct Checks {
    shared: Arc<Shared>,
    weight: Option<u32>,
    cancel: Arc<AtomicBool>,
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checks {
    /// `env`: variables every check gets (HA_NODE, HA_IFACE). `waker` wakes the run loop when a
    /// check's health changes (the loop does not look on the wakes that only send).
    pub fn start(
        cfg: CheckConfig,
        base: u32,
        env: Vec<(&'static str, String)>,
        waker: crate::nudge::Waker,
    ) -> std::io::Result<Self> {
        let statuses = cfg
            .commands
            .iter()
            .map(|c| CheckStatus { command: c.clone(), state: Health::Pending.name().into(), detail: String::new() })
            .collect();
        let shared = Arc::new(Shared {
            statuses: Mutex::new(statuses),
            not_passing: AtomicU32::new(u32::try_from(cfg.commands.len()).unwrap_or(u32::MAX)),
            base: AtomicU32::new(base),
        });
        let cancel = Arc::new(AtomicBool::new(false));
        let weight = cfg.weight;
        if cfg.commands.is_empty() {
            return Ok(Self { shared, weight, cancel, wake: None, thread: None });
        }
        let (wake, sleep) = mpsc::channel();
        let thread = {
            let (shared, cancel) = (Arc::clone(&shared), Arc::clone(&cancel));
            thread::Builder::new()
                .name("checks".into())
                .spawn(move || run(&cfg, &env, &shared, &cancel, &sleep, &waker))?
        };
        Ok(Self { shared, weight, cancel, wake: Some(wake), thread: Some(thread) })
    }

    /// The priority to announce now. Cheap: read every tick.
    pub fn priority(&self) -> u32 {
        priority(self.base(), self.weight, self.shared.not_passing.load(Ordering::Relaxed) as usize)
    }

    fn base(&self) -> u32 {
        self.shared.base.load(Ordering::Relaxed)
    }

    /// A new priority before checks, from now on (`priority set`, `priority reset`).
    pub fn set_base(&self, base: u32) {
        self.shared.base.store(base, Ordering::Relaxed);
    }

    /// What the priority is made of, for `status`: the base, then each check not passing.
    pub fn priority_parts(&self) -> Vec<(String, i64)> {
        let base = self.base();
        let mut parts = vec![("base".to_string(), i64::from(base))];
        let each = i64::from(self.weight.unwrap_or(base));
        let mut left = i64::from(base);
        for s in self.statuses().iter().filter(|s| s.state != Health::Passing.name()) {
            let taken = each.min(left);
            left -= taken;
            parts.push((format!("check `{}` {}", s.command, s.state), -taken));
        }
        parts
    }

    pub fn statuses(&self) -> Vec<CheckStatus> {
        self.shared.statuses.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.wake = None; // ends the thread's sleep
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    cfg: &CheckConfig,
    env: &[(&str, String)],
    shared: &Shared,
    cancel: &AtomicBool,
    sleep: &Receiver<()>,
    waker: &crate::nudge::Waker,
) {
    let mut trackers = vec![Tracker::default(); cfg.commands.len()];
    loop {
        for (i, command) in cfg.commands.iter().enumerate() {
            let done = shell::run(command, &[], env, cfg.timeout, cancel);
            if matches!(done.outcome, shell::Outcome::Cancelled) {
                return;
            }
            let base = shared.base.load(Ordering::Relaxed);
            let before = priority(base, cfg.weight, not_passing(&trackers));
            if !trackers[i].record(done.success(), cfg.fall, cfg.rise) {
                continue;
            }
            let health = trackers[i].health();
            let after = priority(base, cfg.weight, not_passing(&trackers));
            let detail = if done.success() { String::new() } else { done.describe(cfg.timeout) };
            // One line per change of health, none per run.
            if health == Health::Passing {
                log::info!("check `{command}` passing: priority {before} -> {after}");
            } else {
                log::warn!("check `{command}` failing ({detail}): priority {before} -> {after}");
            }
            if let Ok(mut statuses) = shared.statuses.lock() {
                statuses[i].state = health.name().into();
                statuses[i].detail = detail;
            }
            shared.not_passing.store(u32::try_from(not_passing(&trackers)).unwrap_or(u32::MAX), Ordering::Relaxed);
            waker.wake();
        }
        match sleep.recv_timeout(cfg.interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

fn not_passing(trackers: &[Tracker]) -> usize {
    trackers.iter().filter(|t| t.health() != Health::Passing).count()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn first_result_decides_then_fall_and_rise_debounce() {
        let mut t = Tracker::default();
        assert_eq!(t.health(), Health::Pending);
        assert!(t.record(true, 3, 2));
        assert_eq!(t.health(), Health::Passing);
        assert!(!t.record(false, 3, 2) && !t.record(false, 3, 2), "two failures are not three");
        assert!(!t.record(true, 3, 2), "a pass resets the count");
        assert!(!t.record(false, 3, 2) && !t.record(false, 3, 2));
        assert!(t.record(false, 3, 2));
        assert_eq!(t.health(), Health::Failing);
        assert!(!t.record(true, 3, 2) && t.record(true, 3, 2));
        assert_eq!(t.health(), Health::Passing);
        let mut t = Tracker::default();
        assert!(t.record(false, 3, 2));
        assert_eq!(t.health(), Health::Failing, "a first failure counts at once");
    }

    #[test]
    fn failing_checks_take_their_weight_off_down_to_zero() {
        assert_eq!(priority(200, None, 0), 200);
        assert_eq!(priority(200, None, 1), 0, "the default weight is all of it");
        assert_eq!(priority(200, Some(30), 1), 170);
        assert_eq!(priority(200, Some(30), 2), 140);
        assert_eq!(priority(200, Some(150), 2), 0);
        assert_eq!(priority(200, Some(u32::MAX), 3), 0);
    }

    #[test]
    fn a_check_thread_follows_a_command_that_starts_failing() {
        let dir = std::env::temp_dir().join(format!("ha-checks-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let healthy = dir.join("192.0.2.1");
        std::fs::write(&healthy, b"").expect("marker");
        let cfg = CheckConfig {
            commands: vec![format!("test -e {}/\"$HA_NODE\"", dir.display()), "true".into()],
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
            fall: 2,
            rise: 1,
            weight: Some(30),
        };
        let nudge = crate::nudge::Nudge::new().expect("wake-up socket");
        let waker = nudge.waker().expect("waker");
        let checks = Checks::start(cfg, 100, vec![("HA_NODE", "192.0.2.1".into())], waker).expect("start");
        let wait_for = |want: u32| {
            let start = Instant::now();
            while checks.priority() != want {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "priority {} never became {want}",
                    checks.priority()
                );
                thread::sleep(Duration::from_millis(5));
            }
        };
        wait_for(100);
        std::fs::remove_file(&healthy).expect("unhealthy");
        wait_for(70);
        let parts = checks.priority_parts();
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[1].0.contains("failing") && parts[1].1 == -30, "{parts:?}");
        assert!(checks.statuses()[0].detail.starts_with("exit 1"), "{:?}", checks.statuses());
        std::fs::write(&healthy, b"").expect("healthy again");
        wait_for(100);
        let _ = std::fs::remove_dir_all(&dir);
        let start = Instant::now();
        drop(checks);
        assert!(start.elapsed() < Duration::from_secs(2), "stopping is prompt");
    }
}
