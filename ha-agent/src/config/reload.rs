//! What a reload (SIGHUP, `systemctl reload`) may change in a running agent: the settings the
//! agent can apply while it keeps the address, and the ones that need a restart, named one per
//! line so an operator never wonders whether an edit took.
use super::{
    RunConfig,
    values::{spell_period as span, spell_preempt as preempt_flag},
};

/// The differences between the running configuration and the one read again.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Applied now, each described for the log.
    pub live: Vec<String>,
    /// Changed in the file or flags but kept as they are until a restart: the option names.
    pub needs_restart: Vec<&'static str>,
}

impl ReloadPlan {
    pub fn between(old: &RunConfig, new: &RunConfig) -> Self {
        let mut plan = Self::default();
        let (o, n) = (&old.node, &new.node);
        let mut live = |changed: bool, what: String| {
            if changed {
                plan.live.push(what);
            }
        };
        live(o.priority != n.priority, format!("priority {} -> {}", o.priority, n.priority));
        live(o.preempt != n.preempt, format!("preempt {} -> {}", preempt_flag(o.preempt), preempt_flag(n.preempt)));
        live(
            o.hold_down != n.hold_down,
            format!("hold-down {} -> {}", span(Some(o.hold_down)), span(Some(n.hold_down))),
        );
        live(o.refresh != n.refresh, format!("garp-refresh {} -> {}", span(o.refresh), span(n.refresh)));
        live(
            o.leave_timeout != n.leave_timeout,
            format!("leave-timeout {} -> {}", span(Some(o.leave_timeout)), span(Some(n.leave_timeout))),
        );
        live(old.hooks != new.hooks, "hooks".to_string());
        live(old.checks != new.checks, "checks".to_string());
        let metrics = |m: Option<std::net::SocketAddr>| m.map_or("off".to_string(), |a| a.to_string());
        live(old.metrics != new.metrics, format!("metrics {} -> {}", metrics(old.metrics), metrics(new.metrics)));
        let mut restart = |changed: bool, name: &'static str| {
            if changed {
                plan.needs_restart.push(name);
            }
        };
        restart(old.links != new.links, "iface");
        restart(old.track != new.track, "track-iface");
        // As written: an address moved with --mode or --vip-iface is named there.
        restart(old.vip_names() != new.vip_names(), "vip");
        restart(o.node_id != n.node_id, "node-id");
        restart(old.interval != new.interval, "interval");
        restart(o.tolerance != n.tolerance, "tolerance");
        restart(o.max_tolerance != n.max_tolerance, "max-tolerance");
        restart(old.tick != new.tick, "tick");
        restart(old.cluster_id != new.cluster_id, "cluster");
        restart(old.group != new.group, "group");
        restart(old.port != new.port, "port");
        restart(old.unicast_peers != new.unicast_peers, "peer");
        restart(old.pin_dir != new.pin_dir, "pin-dir");
        restart(old.xdp_mode != new.xdp_mode, "xdp-mode");
        restart(old.rx != new.rx, "rx");
        restart(old.wake != new.wake, "wake");
        restart(old.pass_heartbeats != new.pass_heartbeats, "pass-heartbeats");
        restart(old.realtime != new.realtime, "realtime");
        restart(old.auth != new.auth, "key-file / insecure-no-auth");
        restart(old.routed != new.routed, "mode / route-table / vip-iface");
        plan
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::cli::{Command, parse_from};

    fn config(extra: &[&str]) -> RunConfig {
        let mut argv = vec!["ha-agent", "run", "--iface", "eth0", "--vip", "192.0.2.200/24", "--insecure-no-auth"];
        argv.extend_from_slice(extra);
        let Ok(cli) = parse_from(argv) else { panic!("parses") };
        let Command::Run(args) = cli.command else { panic!("run") };
        RunConfig::new(&args, &[Ipv4Addr::new(192, 0, 2, 1)]).expect("valid")
    }

    #[test]
    fn live_changes_apply_and_the_rest_is_named_for_a_restart() {
        let old = config(&[]);
        assert_eq!(ReloadPlan::between(&old, &old), ReloadPlan::default(), "nothing changed, nothing said");
        let new = config(&["--priority", "300", "--preempt", "never", "--interval", "50ms", "--port", "7000"]);
        let plan = ReloadPlan::between(&old, &new);
        assert_eq!(plan.live, vec!["priority 100 -> 300".to_string(), "preempt always -> never".to_string()]);
        assert_eq!(plan.needs_restart, vec!["interval", "tick", "port"], "the tick follows the interval");
    }

    #[test]
    fn routed_settings_need_a_restart() {
        let host_route = |extra: &[&str]| {
            let mut argv =
                vec!["ha-agent", "run", "--iface", "eth0", "--vip", "203.0.113.200/32", "--insecure-no-auth"];
            argv.extend_from_slice(extra);
            let Ok(cli) = parse_from(argv) else { panic!("parses") };
            let Command::Run(args) = cli.command else { panic!("run") };
            RunConfig::new(&args, &[Ipv4Addr::new(192, 0, 2, 1)]).expect("valid")
        };
        let (l2, routed) = (host_route(&[]), host_route(&["--mode", "routed"]));
        assert_eq!(ReloadPlan::between(&l2, &routed).needs_restart, vec!["mode / route-table / vip-iface"]);
        let other_table = host_route(&["--mode", "routed", "--route-table", "200"]);
        let plan = ReloadPlan::between(&routed, &other_table);
        assert_eq!((plan.live.len(), plan.needs_restart), (0, vec!["mode / route-table / vip-iface"]));
    }
}
