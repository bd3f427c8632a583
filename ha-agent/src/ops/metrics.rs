//! Prometheus metrics (`--metrics ADDR:PORT`, served by `metrics_http`). Most series are read at
//! scrape time from the status the run loop already publishes to the control hub, so the loop
//! pays nothing per heartbeat; only what status does not keep (transitions by reason, takeover
//! durations, hook outcomes) is counted here as it happens.
use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::Histogram,
    },
    registry::Registry,
};

use super::{control::Hub, lateness::LatenessSummary};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    from: String,
    to: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    hook: String,
    outcome: String,
}

/// Takeover durations span ~100 us (native XDP host, one address) to seconds (a slow netlink).
const TAKEOVER_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

pub struct Metrics {
    registry: Registry,
    transitions: Family<TransitionLabels, Counter>,
    takeover: Histogram,
    hooks: Family<HookLabels, Counter>,
    hooks_skipped: Counter,
}

impl Metrics {
    pub fn new(hub: Arc<Hub>) -> Self {
        let mut registry = Registry::with_prefix("ha");
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register("transitions", "State changes by from, to and reason", transitions.clone());
        let takeover = Histogram::new(TAKEOVER_BUCKETS);
        registry.register(
            "takeover_duration_seconds",
            "Time from deciding to take the address until it is added and announced",
            takeover.clone(),
        );
        let hooks = Family::<HookLabels, Counter>::default();
        registry.register("hook_runs", "Hook runs by hook and outcome (ok, failed, timeout)", hooks.clone());
        let hooks_skipped = Counter::default();
        registry.register(
            "hook_transitions_skipped",
            "Transitions whose hooks were skipped: a newer transition came before they started",
            hooks_skipped.clone(),
        );
        registry.register_collector(Box::new(FromStatus(hub)));
        Self { registry, transitions, takeover, hooks, hooks_skipped }
    }

    pub fn transition(&self, from: &str, to: &str, reason: &str) {
        let labels = TransitionLabels { from: from.into(), to: to.into(), reason: reason.into() };
        self.transitions.get_or_create(&labels).inc();
    }

    pub fn takeover(&self, seconds: f64) {
        self.takeover.observe(seconds);
    }

    pub fn hook_ran(&self, hook: &str, outcome: &str) {
        self.hooks.get_or_create(&HookLabels { hook: hook.into(), outcome: outcome.into() }).inc();
    }

    pub fn hook_transition_skipped(&self) {
        self.hooks_skipped.inc();
    }

    /// The Prometheus text exposition format (0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry) {
            log::warn!("encoding metrics: {e}");
        }
        text
    }
}

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Series read from the published status at each scrape.
struct FromStatus(Arc<Hub>);

impl std::fmt::Debug for FromStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromStatus")
    }
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge_f64(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: f64) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// The sender's lateness histogram (log2 buckets of microseconds) as a Prometheus histogram.
struct LatenessHistogram(LatenessSummary);

/// Buckets above 2^24 µs (~17 s) go to +Inf: a heartbeat that late is a stopped agent.
const LATE_BUCKETS: usize = 25;

impl EncodeMetric for LatenessHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let l = &self.0;
        let mut buckets: Vec<(f64, u64)> =
            (0..LATE_BUCKETS).map(|i| ((1u64 << i) as f64 / 1e6, l.buckets[i])).collect();
        buckets.push((f64::INFINITY, l.buckets[LATE_BUCKETS..].iter().sum()));
        encoder.encode_histogram::<NoLabelSet>(l.sum_ns as f64 / 1e9, l.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One series per label set under one name.
fn family<M: EncodeMetric>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    series: impl IntoIterator<Item = (Vec<(&'static str, String)>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut family = e.encode_descriptor(name, help, None, metric_type)?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn flag(on: bool) -> i64 {
    i64::from(on)
}

impl Collector for FromStatus {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0.status();
        let info = [(
            vec![
                ("node", s.node_id.clone()),
                ("iface", s.iface.clone()),
                ("cluster", s.cluster.to_string()),
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("wake", s.wake.clone()),
            ],
            ConstGauge::new(1i64),
        )];
        family(
            &mut e,
            "info",
            "This agent: node id, interface, cluster, version, wake mode (event or poll).",
            MetricType::Gauge,
            info,
        )?;
        let states = ["ACTIVE", "STANDBY", "FAULT"]
            .map(|st| (vec![("state", st.to_string())], ConstGauge::new(flag(s.state == st))));
        family(&mut e, "state", "1 for the state this node is in.", MetricType::Gauge, states)?;
        if !s.groups.is_empty() {
            let group_states = s.groups.iter().flat_map(|g| {
                ["ACTIVE", "STANDBY", "FAULT"].map(|st| {
                    (vec![("group", g.id.to_string()), ("state", st.to_string())], ConstGauge::new(flag(g.state == st)))
                })
            });
            family(
                &mut e,
                "group_state",
                "1 for the state this node is in, per group (--vip-group).",
                MetricType::Gauge,
                group_states,
            )?;
            let group_priorities =
                s.groups.iter().map(|g| (vec![("group", g.id.to_string())], ConstGauge::new(i64::from(g.priority))));
            family(
                &mut e,
                "group_priority",
                "Worthiness announced now, per group.",
                MetricType::Gauge,
                group_priorities,
            )?;
        }
        gauge(&mut e, "priority", "Worthiness announced now (base less failing checks).", i64::from(s.priority))?;
        gauge(&mut e, "maintenance", "1 while in maintenance.", flag(s.maintenance))?;
        gauge(&mut e, "link_up", "1 while the interface's link is up.", flag(s.link_up))?;
        let checks =
            s.checks.iter().map(|c| (vec![("check", c.command.clone())], ConstGauge::new(flag(c.state != "passing"))));
        family(
            &mut e,
            "check_failing",
            "1 while a health check is failing or has no result yet.",
            MetricType::Gauge,
            checks,
        )?;
        let link_labels =
            |l: &crate::links::PeerLinkStatus| vec![("peer", l.node_id.clone()), ("link", l.link.clone())];
        let up = s.peer_links.iter().map(|l| (link_labels(l), ConstGauge::new(flag(l.up))));
        family(&mut e, "peer_link_up", "1 while this link carries the peer's heartbeats.", MetricType::Gauge, up)?;
        let downs = s.peer_links.iter().map(|l| (link_labels(l), ConstCounter::new(l.downs)));
        family(
            &mut e,
            "peer_link_downs",
            "Times this link stopped carrying the peer while another link still did.",
            MetricType::Counter,
            downs,
        )?;
        counter(&mut e, "heartbeats_sent", "Heartbeats sent.", s.heartbeats_sent)?;
        counter(&mut e, "kernel_events", "Events the kernel posted (--wake event).", s.kernel_events)?;
        counter(
            &mut e,
            "heartbeats_answered",
            "Peers' heartbeats the kernel answered with one of this node's own (XDP, --wake event, while holding).",
            s.heartbeats_answered,
        )?;
        counter(
            &mut e,
            "kernel_events_lost",
            "Events lost to a full ring buffer (--wake event): the next wake reads the table.",
            s.kernel_events_lost,
        )?;
        counter(
            &mut e,
            "heartbeat_send_errors",
            "Heartbeat sends the kernel refused (one per target), e.g. no route or the link down.",
            s.heartbeat_send_errors,
        )?;
        let late = LatenessHistogram(s.send_lateness);
        late.encode(e.encode_descriptor(
            "heartbeat_send_late_seconds",
            "How late scheduled heartbeats left: the sender's precision.",
            None,
            late.metric_type(),
        )?)?;
        gauge_f64(
            &mut e,
            "heartbeat_send_late_max_seconds",
            "The latest a scheduled heartbeat left since the start.",
            s.send_lateness.max_us as f64 / 1e6,
        )?;
        counter(
            &mut e,
            "event_lines_dropped",
            "Event lines `events` followers lost by not keeping up (the oldest unread go first).",
            self.0.dropped_event_lines(),
        )?;
        counter(
            &mut e,
            "heartbeats_received",
            "Valid heartbeats recorded (by XDP or the socket), all peers.",
            s.heartbeats_recorded,
        )?;
        let drops = s
            .drops
            .iter()
            .map(|(reason, n)| (vec![("path", s.rx_path.clone()), ("reason", reason.clone())], ConstCounter::new(*n)));
        family(
            &mut e,
            "heartbeat_drops",
            "Heartbeats refused by the receive path (xdp or socket), by reason.",
            MetricType::Counter,
            drops,
        )?;
        if let Some(n) = s.socket_buffer_drops {
            counter(
                &mut e,
                "socket_receive_buffer_drops",
                "Heartbeat datagrams the kernel dropped because the receive socket's buffer was full (--rx socket).",
                n,
            )?;
        }
        counter(
            &mut e,
            "foreign_claims",
            "Claims for a shared address by other MACs (gratuitous ARP, NA), seen by XDP.",
            s.foreign_claims,
        )?;
        counter(
            &mut e,
            "foreign_claims_defended",
            "Foreign claims this holder answered by announcing the address again.",
            s.foreign_claims_defended,
        )?;
        let peer = |p: &super::status::PeerStatus| vec![("node", p.node_id.clone())];
        let heard = s.peers.iter().map(|p| (peer(p), ConstGauge::new(p.age_ms / 1e3)));
        family(
            &mut e,
            "peer_last_heard_seconds",
            "Seconds since each peer's last heartbeat.",
            MetricType::Gauge,
            heard,
        )?;
        let received = s.peers.iter().map(|p| (peer(p), ConstCounter::new(p.received)));
        family(
            &mut e,
            "peer_heartbeats_received",
            "Valid heartbeats recorded from each peer.",
            MetricType::Counter,
            received,
        )?;
        let priority = s.peers.iter().map(|p| (peer(p), ConstGauge::new(i64::from(p.priority))));
        family(&mut e, "peer_priority", "Each peer's announced priority.", MetricType::Gauge, priority)?;
        let live = s.peers.iter().map(|p| (peer(p), ConstGauge::new(flag(p.live))));
        family(&mut e, "peer_live", "1 while a peer is heard within its silence limit.", MetricType::Gauge, live)?;
        let loss = s.peers.iter().filter_map(|p| Some((peer(p), ConstGauge::new(p.loss_pct? / 100.0))));
        family(
            &mut e,
            "peer_loss_ratio",
            "Estimated share of each peer's heartbeats lost lately.",
            MetricType::Gauge,
            loss,
        )?;
        let limit = s.peers.iter().filter_map(|p| Some((peer(p), ConstGauge::new(p.limit_ms? / 1e3))));
        family(
            &mut e,
            "peer_silence_limit_seconds",
            "How long each peer may be silent and still count as live: the tolerance, more under loss.",
            MetricType::Gauge,
            limit,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::status::{CheckStatus, PeerStatus};

    #[test]
    fn status_transitions_and_takeovers_are_exposed_in_text_format() {
        let (hub, _) = Hub::new();
        hub.update_status(|s| {
            s.node_id = "192.0.2.1".into();
            s.state = "ACTIVE".into();
            s.priority = 150;
            s.heartbeats_sent = 42;
            s.heartbeats_answered = 17;
            s.heartbeat_send_errors = 2;
            s.socket_buffer_drops = Some(5);
            s.foreign_claims = 4;
            s.foreign_claims_defended = 3;
            s.drops.insert("stale".into(), 3);
            s.rx_path = "xdp".into();
            let mut late = crate::ops::lateness::Lateness::default();
            for ns in [40_000, 50_000, 900_000] {
                late.record(ns);
            }
            s.send_lateness = late.summary();
            s.checks.push(CheckStatus { command: "test -e /x".into(), state: "failing".into(), ..Default::default() });
            s.peers.push(PeerStatus {
                node_id: "192.0.2.2".into(),
                age_ms: 250.0,
                received: 7,
                live: true,
                loss_pct: Some(10.0),
                limit_ms: Some(65.0),
                ..Default::default()
            });
        });
        let m = Metrics::new(hub);
        m.transition("STANDBY", "ACTIVE", "no_holder");
        m.takeover(0.0003);
        let text = m.encode();
        for line in [
            "ha_state{state=\"ACTIVE\"} 1",
            "ha_state{state=\"STANDBY\"} 0",
            "ha_priority 150",
            "ha_heartbeats_sent_total 42",
            "ha_heartbeats_answered_total 17",
            "ha_heartbeat_send_errors_total 2",
            "ha_socket_receive_buffer_drops_total 5",
            "ha_heartbeat_drops_total{path=\"xdp\",reason=\"stale\"} 3",
            "# TYPE ha_heartbeat_send_late_seconds histogram",
            "ha_heartbeat_send_late_seconds_bucket{le=\"3.2e-05\"} 0",
            "ha_heartbeat_send_late_seconds_bucket{le=\"6.4e-05\"} 2",
            "ha_heartbeat_send_late_seconds_bucket{le=\"+Inf\"} 3",
            "ha_heartbeat_send_late_seconds_count 3",
            "ha_heartbeat_send_late_max_seconds 0.0009",
            "ha_foreign_claims_total 4",
            "ha_foreign_claims_defended_total 3",
            "ha_check_failing{check=\"test -e /x\"} 1",
            "ha_peer_last_heard_seconds{node=\"192.0.2.2\"} 0.25",
            "ha_peer_heartbeats_received_total{node=\"192.0.2.2\"} 7",
            "ha_peer_loss_ratio{node=\"192.0.2.2\"} 0.1",
            "ha_peer_silence_limit_seconds{node=\"192.0.2.2\"} 0.065",
            "ha_transitions_total{from=\"STANDBY\",to=\"ACTIVE\",reason=\"no_holder\"} 1",
            "ha_takeover_duration_seconds_bucket{le=\"0.0005\"} 1",
            "ha_takeover_duration_seconds_count 1",
            "# TYPE ha_takeover_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
    }
}
