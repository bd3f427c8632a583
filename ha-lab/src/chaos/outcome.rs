//! What a chaos run found: every fault with what the client saw, every violation, and the
//! summary by kind that the report prints.
use std::time::Duration;

use super::fault::{Allowance, FaultKind};

/// One injected fault and what the client saw while it lasted (and settled).
#[derive(Clone, Debug)]
pub struct FaultRecord {
    /// 1-based, in injection order.
    pub index: usize,
    /// From the start of the run to the injection.
    pub at: Duration,
    pub kind: FaultKind,
    /// The node it hit (None: every node, as a key reload).
    pub node: Option<usize>,
    pub hit_holder: bool,
    pub detail: String,
    pub allowance: Allowance,
    /// The longest silence limit the other nodes applied to the holder when the fault began
    /// (the tolerance on a clean link; wider after recent loss).
    pub silence_limit: Duration,
    pub sent: u64,
    pub lost: u64,
    /// Every outage the client saw, longest first.
    pub outages: Vec<Duration>,
}

impl FaultRecord {
    pub fn longest_outage(&self) -> Duration {
        self.outages.first().copied().unwrap_or_default()
    }

    pub fn target(&self) -> String {
        match self.node {
            Some(n) if self.hit_holder => format!("node {n} (holder)"),
            Some(n) => format!("node {n}"),
            None => "all nodes".into(),
        }
    }
}

/// Which assertion a violation broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// Not exactly one node answers ARP for the address once a fault settled.
    ArpAnswerers,
    /// Exactly one answers, but not the most worthy node, after the fault was undone.
    Holder,
    /// An outage longer than the fault's allowance.
    Outage,
    /// Something outlived the run (namespaces, pins, processes, agent files).
    Leftover,
    /// The run itself failed (an agent would not restart, a command failed).
    Error,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::ArpAnswerers => "ARP answerers",
            Check::Holder => "holder",
            Check::Outage => "outage",
            Check::Leftover => "leftover",
            Check::Error => "error",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Violation {
    /// Index of the fault it happened under (0: setup or teardown).
    pub fault: usize,
    pub kind: Option<FaultKind>,
    /// From the start of the run.
    pub at: Duration,
    pub check: Check,
    /// What was seen, with the known issue it matches where there is one.
    pub what: String,
}

/// How often one finding was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViolationCount {
    pub check: Check,
    pub kind: Option<FaultKind>,
    pub finding: String,
    pub count: usize,
}

/// A whole run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub seed: u64,
    pub interval: Duration,
    pub tolerance: Duration,
    pub settle: Duration,
    pub priorities: Vec<u32>,
    pub elapsed: Duration,
    pub faults: Vec<FaultRecord>,
    pub violations: Vec<Violation>,
    /// Why the run stopped before its time, if it did.
    pub aborted: Option<String>,
}

/// Per fault kind: how often, how hard, how many violations.
#[derive(Clone, Debug, PartialEq)]
pub struct KindSummary {
    pub kind: FaultKind,
    pub faults: usize,
    pub on_holder: usize,
    /// Faults during which the client lost at least one probe.
    pub with_loss: usize,
    /// Median of the longest outage (zero without loss) over the faults that hit the holder
    /// (over all of the kind if none did), and the maximum over all of the kind.
    pub outage_median: Duration,
    pub outage_max: Duration,
    pub lost_max: u64,
    pub violations: usize,
}

impl Outcome {
    pub fn by_kind(&self) -> Vec<KindSummary> {
        FaultKind::ALL
            .iter()
            .map(|&kind| {
                let of: Vec<&FaultRecord> = self.faults.iter().filter(|f| f.kind == kind).collect();
                let mut longest: Vec<Duration> = of.iter().map(|f| f.longest_outage()).collect();
                longest.sort_unstable();
                let mut on_holder: Vec<Duration> =
                    of.iter().filter(|f| f.hit_holder).map(|f| f.longest_outage()).collect();
                on_holder.sort_unstable();
                KindSummary {
                    kind,
                    faults: of.len(),
                    on_holder: of.iter().filter(|f| f.hit_holder).count(),
                    with_loss: of.iter().filter(|f| f.lost > 0).count(),
                    outage_median: median(if on_holder.is_empty() { &longest } else { &on_holder }),
                    outage_max: longest.last().copied().unwrap_or_default(),
                    lost_max: of.iter().map(|f| f.lost).max().unwrap_or(0),
                    violations: self.violations.iter().filter(|v| v.kind == Some(kind)).count(),
                }
            })
            .collect()
    }

    /// Violations counted by check, fault kind and finding (the text before the first `: `,
    /// which names the known issue where there is one), most frequent first.
    pub fn violation_counts(&self) -> Vec<ViolationCount> {
        let mut counts: Vec<ViolationCount> = Vec::new();
        for v in &self.violations {
            let finding = v.what.split(": ").next().unwrap_or(&v.what).to_string();
            match counts.iter_mut().find(|c| c.check == v.check && c.kind == v.kind && c.finding == finding) {
                Some(c) => c.count += 1,
                None => counts.push(ViolationCount { check: v.check, kind: v.kind, finding, count: 1 }),
            }
        }
        counts.sort_by(|a, b| b.count.cmp(&a.count).then(a.check.cmp(&b.check)).then(a.kind.cmp(&b.kind)));
        counts
    }

    /// One line per kind plus the violations, for a terminal.
    pub fn summary_text(&self) -> String {
        let mut s = format!(
            "chaos seed {}: {} faults in {:.1} s, {} violations{}\n",
            self.seed,
            self.faults.len(),
            self.elapsed.as_secs_f64(),
            self.violations.len(),
            self.aborted.as_ref().map(|a| format!(" (stopped early: {a})")).unwrap_or_default()
        );
        s.push_str(&format!(
            "{:<22} {:>6} {:>7} {:>9} {:>10} {:>8} {:>10}\n",
            "fault", "count", "holder", "with loss", "median ms", "max ms", "violations"
        ));
        for k in self.by_kind() {
            s.push_str(&format!(
                "{:<22} {:>6} {:>7} {:>9} {:>10.1} {:>8.1} {:>10}\n",
                k.kind.name(),
                k.faults,
                k.on_holder,
                k.with_loss,
                ms(k.outage_median),
                ms(k.outage_max),
                k.violations
            ));
        }
        for v in &self.violations {
            s.push_str(&format!(
                "  VIOLATION at {:.1} s, fault #{} ({}): {}: {}\n",
                v.at.as_secs_f64(),
                v.fault,
                v.kind.map_or("-", FaultKind::name),
                v.check.name(),
                v.what
            ));
        }
        s
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median of sorted values (the lower middle for an even count; zero when empty).
fn median(sorted: &[Duration]) -> Duration {
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[(n - 1) / 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: FaultKind, outage_ms: u64, hit_holder: bool) -> FaultRecord {
        FaultRecord {
            index: 1,
            at: Duration::ZERO,
            kind,
            node: Some(1),
            hit_holder,
            detail: String::new(),
            allowance: Allowance::Takeover,
            silence_limit: Duration::from_millis(40),
            sent: 100,
            lost: outage_ms.saturating_sub(1),
            outages: if outage_ms > 0 { vec![Duration::from_millis(outage_ms)] } else { vec![] },
        }
    }

    #[test]
    fn summaries_by_kind() {
        let o = Outcome {
            seed: 1,
            interval: Duration::from_millis(10),
            tolerance: Duration::from_millis(40),
            settle: Duration::from_millis(400),
            priorities: vec![3, 2, 1],
            elapsed: Duration::from_secs(1),
            faults: vec![
                record(FaultKind::LinkFlap, 0, false),
                record(FaultKind::LinkFlap, 40, true),
                record(FaultKind::LinkFlap, 30, true),
            ],
            violations: vec![Violation {
                fault: 2,
                kind: Some(FaultKind::LinkFlap),
                at: Duration::ZERO,
                check: Check::Outage,
                what: "outage beyond allowance: 40 ms".into(),
            }],
            aborted: None,
        };
        let k = &o.by_kind()[0];
        assert_eq!((k.kind, k.faults, k.on_holder, k.with_loss, k.violations), (FaultKind::LinkFlap, 3, 2, 2, 1));
        assert_eq!(
            (k.outage_median, k.outage_max, k.lost_max),
            (Duration::from_millis(30), Duration::from_millis(40), 39)
        );
        assert_eq!(o.by_kind()[1].faults, 0);
        assert_eq!(
            o.violation_counts(),
            vec![ViolationCount {
                check: Check::Outage,
                kind: Some(FaultKind::LinkFlap),
                finding: "outage beyond allowance".into(),
                count: 1
            }]
        );
        assert!(o.summary_text().contains("VIOLATION at 0.0 s, fault #2 (link flap): outage"));
    }
}
