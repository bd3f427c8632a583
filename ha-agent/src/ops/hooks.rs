//! Operator hooks (`--on-active`, `--on-standby`, `--notify`): run on a thread of their own, one
//! at a time in transition order, each bounded by `--hook-timeout`. The run loop only hands
//! them over, so a slow, failing or hanging hook is logged and never delays a failover.
//!
//! Hooks tell the world the node's current state, so a transition whose hooks have not started
//! when a newer one comes is skipped (counted, and warned about at most every 10 s): at most
//! one transition waits, the newest, and a flood of transitions cannot put a real one's hooks
//! behind stale ones. It starts as soon as the hook running now ends.
//!
//! Each hook runs as `/bin/sh -c 'CMD "$@"' ha-agent STATE REASON`: the new state (`ACTIVE`,
//! `STANDBY`, or `FAULT`: not holding and unable to serve; on-standby runs for it too) and the reason label (e.g. `holder_silent`) follow the command as `$1` and `$2`.
//! It also gets HA_HOOK, HA_STATE, HA_PREVIOUS_STATE, HA_REASON, HA_DETAIL, HA_NODE, HA_IFACE,
//! HA_VIPS (space separated), HA_PRIORITY and HA_UNIX_MS in its environment. With groups
//! (`--vip-group`), each group's transitions are hooked on their own (one waits per group),
//! the group id follows as `$3` and in HA_GROUP, and HA_VIPS holds that group's addresses.
use std::{
    sync::{Arc, Condvar, Mutex, atomic::AtomicBool},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use super::{events::Event, metrics::Metrics, shell};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookConfig {
    pub on_active: Option<String>,
    pub on_standby: Option<String>,
    pub notify: Option<String>,
    pub timeout: Duration,
}

impl HookConfig {
    fn is_empty(&self) -> bool {
        self.on_active.is_none() && self.on_standby.is_none() && self.notify.is_none()
    }
}

/// What every hook is told about the node besides the transition.
#[derive(Clone, Debug, Default)]
pub struct NodeFacts {
    pub iface: String,
    pub vips: Vec<String>,
    /// Each group's addresses, with groups.
    pub group_vips: Vec<(u8, Vec<String>)>,
}

struct Job {
    event: Event,
    priority: u32,
}

/// Skipped transitions are warned about at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The transitions waiting for the hook thread: only the newest of each group is kept.
#[derive(Default)]
struct Pending {
    jobs: Vec<Job>,
    /// No more transitions come; run what waits, then end.
    closed: bool,
    skipped_unwarned: u64,
    warned_at: Option<Instant>,
}

#[derive(Default)]
struct Mailbox {
    pending: Mutex<Pending>,
    ready: Condvar,
}

pub struct Hooks {
    mailbox: Option<Arc<Mailbox>>,
    metrics: Arc<Metrics>,
    thread: Option<JoinHandle<()>>,
}

impl Hooks {
    /// Starts the hook thread, if any hook is configured.
    pub fn start(cfg: HookConfig, facts: NodeFacts, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        if cfg.is_empty() {
            return Ok(Self { mailbox: None, metrics, thread: None });
        }
        let mailbox = Arc::new(Mailbox::default());
        let thread = {
            let (mailbox, metrics) = (Arc::clone(&mailbox), Arc::clone(&metrics));
            thread::Builder::new().name("hooks".into()).spawn(move || run_queue(&mailbox, &cfg, &facts, &metrics))?
        };
        Ok(Self { mailbox: Some(mailbox), metrics, thread: Some(thread) })
    }

    /// Hands the hooks of a transition over; never blocks on a hook. Replaces a transition still
    /// waiting, whose hooks are then skipped.
    pub fn fire(&self, event: &Event, priority: u32) {
        let Some(mailbox) = &self.mailbox else { return };
        let Ok(mut pending) = mailbox.pending.lock() else {
            log::error!("the hook thread is gone: hooks no longer run");
            return;
        };
        let job = Job { event: event.clone(), priority };
        let waiting = pending.jobs.iter().position(|j| j.event.group == event.group);
        let replaced = match waiting {
            Some(k) => Some(std::mem::replace(&mut pending.jobs[k], job)),
            None => {
                pending.jobs.push(job);
                None
            }
        };
        if let Some(skipped) = replaced {
            self.metrics.hook_transition_skipped();
            pending.skipped_unwarned += 1;
            let now = Instant::now();
            if pending.warned_at.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
                log::warn!(
                    "hooks: skipped {} transition(s) whose hooks had not started when a newer one came (the last {} -> {} ({})): a hook is slow or transitions come fast",
                    pending.skipped_unwarned,
                    skipped.event.from,
                    skipped.event.to,
                    skipped.event.reason
                );
                pending.skipped_unwarned = 0;
                pending.warned_at = Some(now);
            }
        }
        mailbox.ready.notify_one();
    }
}

impl Drop for Hooks {
    /// Runs what waits (each hook still bounded by its timeout), then ends the thread: the
    /// hooks of a clean stop's last transition do run.
    fn drop(&mut self) {
        if let Some(mailbox) = self.mailbox.take() {
            if let Ok(mut pending) = mailbox.pending.lock() {
                pending.closed = true;
            }
            mailbox.ready.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The next transition to run hooks for; None once closed and nothing waits.
fn next_job(mailbox: &Mailbox) -> Option<Job> {
    let mut pending = mailbox.pending.lock().ok()?;
    loop {
        if !pending.jobs.is_empty() {
            return Some(pending.jobs.remove(0));
        }
        if pending.closed {
            return None;
        }
        pending = mailbox.ready.wait(pending).ok()?;
    }
}

fn run_queue(mailbox: &Mailbox, cfg: &HookConfig, facts: &NodeFacts, metrics: &Metrics) {
    let never = AtomicBool::new(false);
    while let Some(job) = next_job(mailbox) {
        let state_hook = match job.event.to.as_str() {
            "ACTIVE" => ("on-active", &cfg.on_active),
            _ => ("on-standby", &cfg.on_standby),
        };
        for (name, script) in [state_hook, ("notify", &cfg.notify)] {
            let Some(script) = script else { continue };
            let env = environment(name, &job, facts);
            let group = job.event.group.map(|g| g.to_string());
            let mut args = vec![job.event.to.as_str(), job.event.reason.as_str()];
            args.extend(group.as_deref());
            let done = shell::run(script, &args, &env, cfg.timeout, &never);
            let outcome = if done.success() {
                log::debug!("hook {name} done in {:?}", done.took);
                "ok"
            } else {
                log::warn!(
                    "hook {name} for {} -> {} ({}) failed: {}",
                    job.event.from,
                    job.event.to,
                    job.event.reason,
                    done.describe(cfg.timeout)
                );
                if matches!(done.outcome, shell::Outcome::TimedOut) { "timeout" } else { "failed" }
            };
            metrics.hook_ran(name, outcome);
        }
    }
}

fn environment(hook: &str, job: &Job, facts: &NodeFacts) -> Vec<(&'static str, String)> {
    let e = &job.event;
    let vips = match e.group.and_then(|g| facts.group_vips.iter().find(|(id, _)| *id == g)) {
        Some((_, vips)) => vips.join(" "),
        None => facts.vips.join(" "),
    };
    let mut env = vec![
        ("HA_HOOK", hook.to_string()),
        ("HA_STATE", e.to.clone()),
        ("HA_PREVIOUS_STATE", e.from.clone()),
        ("HA_REASON", e.reason.clone()),
        ("HA_DETAIL", e.detail.clone()),
        ("HA_NODE", e.node.clone()),
        ("HA_IFACE", facts.iface.clone()),
        ("HA_VIPS", vips),
        ("HA_PRIORITY", job.priority.to_string()),
        ("HA_UNIX_MS", e.unix_ms.to_string()),
    ];
    if let Some(g) = e.group {
        env.push(("HA_GROUP", g.to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn event(to: &str, reason: &str) -> Event {
        Event {
            unix_ms: 1,
            node: "192.0.2.1".into(),
            from: if to == "ACTIVE" { "STANDBY" } else { "ACTIVE" }.into(),
            to: to.into(),
            reason: reason.into(),
            detail: "in words".into(),
            group: None,
        }
    }

    fn wait_for(path: &std::path::Path, within: Duration) -> bool {
        let start = Instant::now();
        while !path.exists() {
            if start.elapsed() > within {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }

    #[test]
    fn hooks_run_in_order_with_arguments_and_environment_and_a_hang_does_not_block_the_caller() {
        let dir = tempfile::tempdir().expect("dir");
        let dir = dir.path();
        let log = dir.join("hooks.log");
        let append = |what: &str| format!("echo {what} \"$HA_PREVIOUS_STATE\" \"$HA_VIPS\" >> {}", log.display());
        let cfg = HookConfig {
            // The first on-active hangs until killed: later hooks still run, in order.
            on_active: Some(format!(
                "[ ! -e {0}/hung ] && touch {0}/hung && sleep 30; {1}",
                dir.display(),
                append("active")
            )),
            on_standby: Some(append("standby")),
            notify: Some(append("notify")),
            timeout: Duration::from_millis(300),
        };
        let facts = NodeFacts {
            iface: "eth0".into(),
            vips: vec!["192.0.2.200/24".into(), "192.0.2.201/24".into()],
            ..Default::default()
        };
        let metrics = Arc::new(Metrics::new(crate::ops::control::Hub::new().0));
        let hooks = Hooks::start(cfg, facts, Arc::clone(&metrics)).expect("start");
        hooks.fire(&event("ACTIVE", "no_holder"), 100);
        assert!(wait_for(&dir.join("hung"), Duration::from_secs(5)), "the first hook started");
        let start = Instant::now();
        for (to, reason) in [("STANDBY", "more_worthy_holder"), ("ACTIVE", "holder_silent")] {
            hooks.fire(&event(to, reason), 100);
        }
        assert!(start.elapsed() < Duration::from_millis(100), "firing never waits: {:?}", start.elapsed());
        drop(hooks); // runs what waits
        let text = std::fs::read_to_string(&log).expect("hook log");
        let lines: Vec<&str> = text.lines().collect();
        let vips = "192.0.2.200/24 192.0.2.201/24";
        assert_eq!(
            lines,
            [
                "notify STANDBY ".to_string() + vips + " ACTIVE no_holder",
                "active STANDBY ".to_string() + vips + " ACTIVE holder_silent",
                "notify STANDBY ".to_string() + vips + " ACTIVE holder_silent",
            ],
            "the hung on-active was killed and wrote nothing; the STANDBY that waited behind it was \
             superseded by the newer ACTIVE before it started"
        );
        let text = metrics.encode();
        assert!(text.contains("ha_hook_runs_total{hook=\"on-active\",outcome=\"timeout\"} 1"), "{text}");
        assert!(text.contains("ha_hook_runs_total{hook=\"notify\",outcome=\"ok\"} 2"), "{text}");
        assert!(text.contains("ha_hook_transitions_skipped_total 1"), "{text}");
    }

    /// 400 transitions while a slow hook runs, then a real one: its hook starts as soon as the
    /// running one ends, not after the 400.
    #[test]
    fn a_flood_of_transitions_cannot_delay_a_later_ones_hook() {
        let dir = tempfile::tempdir().expect("dir");
        let dir = dir.path();
        let slow = Duration::from_millis(200);
        let cfg = HookConfig {
            // Slow unless told to hurry (so a failing run does not take 400 x 200 ms to end).
            on_active: Some(format!(
                "touch {0}/started; [ -e {0}/hurry ] || sleep {1}; true",
                dir.display(),
                slow.as_secs_f64()
            )),
            on_standby: Some(format!("echo \"$2\" > {}/standby; true", dir.display())),
            notify: None,
            timeout: Duration::from_secs(5),
        };
        let metrics = Arc::new(Metrics::new(crate::ops::control::Hub::new().0));
        let hooks = Hooks::start(cfg, NodeFacts::default(), Arc::clone(&metrics)).expect("start");
        hooks.fire(&event("ACTIVE", "split_brain_won"), 100);
        assert!(wait_for(&dir.join("started"), Duration::from_secs(5)), "the first hook started");
        for _ in 1..400 {
            hooks.fire(&event("ACTIVE", "split_brain_won"), 100);
        }
        let fired = Instant::now();
        hooks.fire(&event("STANDBY", "more_worthy_holder"), 100);
        let started = wait_for(&dir.join("standby"), slow * 2 + Duration::from_millis(500));
        let took = fired.elapsed();
        if !started {
            let _ = std::fs::write(dir.join("hurry"), b"");
        }
        assert!(started, "the real transition's hook did not start within {took:?}");
        drop(hooks);
        assert_eq!(std::fs::read_to_string(dir.join("standby")).expect("ran").trim(), "more_worthy_holder");
        let text = metrics.encode();
        let ran: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("ha_hook_runs_total{hook=\"on-active\",outcome=\"ok\"} ")?.parse().ok())
            .expect("on-active ran");
        assert_eq!(ran, 1.0, "only the stale hook already running ran");
        assert!(text.contains("ha_hook_transitions_skipped_total 399"), "{text}");
    }
}
