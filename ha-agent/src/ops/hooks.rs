//! Operator hooks (`--on-active`, `--on-standby`, `--notify`): run on a thread of their own, one
//! at a time in transition order, each bounded by `--hook-timeout`. The run loop only queues
//! them, so a slow, failing or hanging hook is logged and never delays a failover.
//!
//! Each hook runs as `/bin/sh -c 'CMD "$@"' ha-agent STATE REASON`: the new state (`ACTIVE`,
//! `STANDBY`, or `FAULT`: not holding and unable to serve; on-standby runs for it too) and the reason label (e.g. `holder_silent`) follow the command as `$1` and `$2`.
//! It also gets HA_HOOK, HA_STATE, HA_PREVIOUS_STATE, HA_REASON, HA_DETAIL, HA_NODE, HA_IFACE,
//! HA_VIPS (space separated), HA_PRIORITY and HA_UNIX_MS in its environment.
use std::{
    sync::{
        Arc,
        atomic::AtomicBool,
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread::{self, JoinHandle},
    time::Duration,
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
}

struct Job {
    event: Event,
    priority: u32,
}

/// Transitions queued beyond this are dropped with an error: hooks that far behind are stuck.
const QUEUE: usize = 256;

pub struct Hooks {
    queue: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Hooks {
    /// Starts the hook thread, if any hook is configured.
    pub fn start(cfg: HookConfig, facts: NodeFacts, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        if cfg.is_empty() {
            return Ok(Self { queue: None, thread: None });
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let thread =
            thread::Builder::new().name("hooks".into()).spawn(move || run_queue(&rx, &cfg, &facts, &metrics))?;
        Ok(Self { queue: Some(tx), thread: Some(thread) })
    }

    /// Queues the hooks of a transition; never blocks.
    pub fn fire(&self, event: &Event, priority: u32) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(Job { event: event.clone(), priority }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                log::error!(
                    "hooks are {QUEUE} transitions behind: not running them for {} -> {}",
                    event.from,
                    event.to
                );
            }
            Err(TrySendError::Disconnected(_)) => log::error!("the hook thread is gone: hooks no longer run"),
        }
    }
}

impl Drop for Hooks {
    /// Runs what is queued (each hook still bounded by its timeout), then ends the thread: the
    /// hooks of a clean stop's last transition do run.
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_queue(rx: &Receiver<Job>, cfg: &HookConfig, facts: &NodeFacts, metrics: &Metrics) {
    let never = AtomicBool::new(false);
    for job in rx {
        let state_hook = match job.event.to.as_str() {
            "ACTIVE" => ("on-active", &cfg.on_active),
            _ => ("on-standby", &cfg.on_standby),
        };
        for (name, script) in [state_hook, ("notify", &cfg.notify)] {
            let Some(script) = script else { continue };
            let env = environment(name, &job, facts);
            let done = shell::run(script, &[&job.event.to, &job.event.reason], &env, cfg.timeout, &never);
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
    vec![
        ("HA_HOOK", hook.to_string()),
        ("HA_STATE", e.to.clone()),
        ("HA_PREVIOUS_STATE", e.from.clone()),
        ("HA_REASON", e.reason.clone()),
        ("HA_DETAIL", e.detail.clone()),
        ("HA_NODE", e.node.clone()),
        ("HA_IFACE", facts.iface.clone()),
        ("HA_VIPS", facts.vips.join(" ")),
        ("HA_PRIORITY", job.priority.to_string()),
        ("HA_UNIX_MS", e.unix_ms.to_string()),
    ]
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
        }
    }

    #[test]
    fn hooks_run_in_order_with_arguments_and_environment_and_a_hang_does_not_block_the_caller() {
        let dir = std::env::temp_dir().join(format!("ha-hooks-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
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
        let facts = NodeFacts { iface: "eth0".into(), vips: vec!["192.0.2.200/24".into(), "192.0.2.201/24".into()] };
        let metrics = Arc::new(Metrics::new(crate::ops::control::Hub::new().0));
        let hooks = Hooks::start(cfg, facts, Arc::clone(&metrics)).expect("start");
        let start = Instant::now();
        for (to, reason) in [("ACTIVE", "no_holder"), ("STANDBY", "more_worthy_holder"), ("ACTIVE", "holder_silent")] {
            hooks.fire(&event(to, reason), 100);
        }
        assert!(start.elapsed() < Duration::from_millis(100), "firing never waits: {:?}", start.elapsed());
        drop(hooks); // runs the queue
        let text = std::fs::read_to_string(&log).expect("hook log");
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<&str> = text.lines().collect();
        let vips = "192.0.2.200/24 192.0.2.201/24";
        assert_eq!(
            lines,
            [
                "notify STANDBY ".to_string() + vips + " ACTIVE no_holder",
                "standby ACTIVE ".to_string() + vips + " STANDBY more_worthy_holder",
                "notify ACTIVE ".to_string() + vips + " STANDBY more_worthy_holder",
                "active STANDBY ".to_string() + vips + " ACTIVE holder_silent",
                "notify STANDBY ".to_string() + vips + " ACTIVE holder_silent",
            ],
            "the hung on-active was killed and wrote nothing; everything else in order"
        );
        let text = metrics.encode();
        assert!(text.contains("ha_hook_runs_total{hook=\"on-active\",outcome=\"timeout\"} 1"), "{text}");
        assert!(text.contains("ha_hook_runs_total{hook=\"notify\",outcome=\"ok\"} 3"), "{text}");
    }
}
