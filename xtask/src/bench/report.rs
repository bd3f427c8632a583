//! `docs/benchmarks.md` and its plots, generated from one results file: every figure on the page
//! comes from the file; the prose around them only says how they were measured.
use std::{fmt::Write as _, path::Path};

use anyhow::{Context, Result};

use super::{
    plots, relative,
    results::{FailoverSeries, IdleWindow, Implementation, RestBaseline, RestRun, Results, Scenario, StabilityRun},
    stats::{self, ScenarioSummary},
};
use crate::cmd;

/// One line of the targets table.
struct Target {
    what: String,
    measured: String,
    met: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Met,
    NotMet,
    /// No figure in this run.
    NotMeasured,
    /// Figures there are, but the target's bound lies within their noise or resolution, or
    /// their noise was not measured (the measured text says which).
    NotJudged,
}

impl From<Option<bool>> for Verdict {
    fn from(met: Option<bool>) -> Verdict {
        match met {
            Some(true) => Verdict::Met,
            Some(false) => Verdict::NotMet,
            None => Verdict::NotMeasured,
        }
    }
}

fn verdict(met: impl Into<Verdict>) -> &'static str {
    match met.into() {
        Verdict::Met => "met",
        Verdict::NotMet => "**not met**",
        Verdict::NotMeasured => "not measured",
        Verdict::NotJudged => "not judged",
    }
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v == 0.0 {
        "0".into()
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn summary_of(s: &FailoverSeries, scenario: Scenario) -> Option<ScenarioSummary> {
    s.scenarios.iter().find(|r| r.scenario == scenario).filter(|r| !r.runs.is_empty()).map(stats::scenario)
}

/// keepalived's fastest setting measured (smallest advert interval).
fn keepalived_fastest(res: &Results) -> Option<&FailoverSeries> {
    res.failover
        .iter()
        .filter(|s| s.implementation == Implementation::Keepalived)
        .min_by(|a, b| a.interval_ms.total_cmp(&b.interval_ms))
}

fn targets(res: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let ours: Vec<&FailoverSeries> = res.failover.iter().filter(|s| s.implementation == Implementation::Ha).collect();
    // Hard failure against keepalived's fastest, for each of our settings that detects a death
    // at least as fast (a longer tolerance is a choice to wait longer; the ratio table shows all).
    let ka = keepalived_fastest(res).and_then(|k| Some((k, summary_of(k, Scenario::HardFailure)?)));
    let comparable = |s: &&&FailoverSeries| ka.as_ref().is_none_or(|(k, _)| s.tolerance_ms <= k.tolerance_ms);
    for s in ours.iter().filter(comparable) {
        let what = format!("hard failure median ≤ 1/3 of keepalived's fastest, ha at {}", s.setting);
        let mine = summary_of(s, Scenario::HardFailure);
        match (&ka, mine) {
            (Some((k, theirs)), Some(mine)) => {
                let ratio = mine.outage.median / theirs.outage.median;
                t.push(Target {
                    what,
                    measured: format!(
                        "{} ms vs {} ms ({}): ratio {:.2}",
                        ms(mine.outage.median),
                        ms(theirs.outage.median),
                        k.setting,
                        ratio
                    ),
                    met: Some(ratio <= 1.0 / 3.0).into(),
                });
            }
            _ => t.push(Target {
                what,
                measured: "keepalived not measured in this run".into(),
                met: Verdict::NotMeasured,
            }),
        }
    }
    for scenario in [Scenario::CleanStop, Scenario::Preemption] {
        let mut parts = Vec::new();
        let mut met = !ours.is_empty();
        for s in &ours {
            if let Some(st) = summary_of(s, scenario) {
                let few = if st.runs < 10 { " (fewer than 10 reps)" } else { "" };
                parts.push(format!("{}: {}/{}{few}", s.setting, st.no_loss, st.runs));
                met &= st.runs >= 10 && st.no_loss * 10 >= st.runs * 9;
            }
        }
        t.push(Target {
            what: format!("{}: no lost probe in ≥ 9 of 10 reps, every setting", scenario.title()),
            measured: if parts.is_empty() { "-".into() } else { parts.join(", ") },
            met: (!parts.is_empty()).then_some(met).into(),
        });
    }
    let loss = res.stability.iter().find(|r| {
        r.implementation == Implementation::Ha
            && r.condition.starts_with("loss")
            && r.tolerance_ms >= 4.0 * r.interval_ms
    });
    t.push(Target {
        what: "no false takeover under 10% loss, tolerance ≥ 4 intervals".into(),
        measured: loss.map_or("-".into(), |r| {
            format!("{} in {:.0} s at {} ({} transitions)", r.false_takeovers, r.duration_s, r.setting, r.transitions)
        }),
        met: loss.map(|r| r.false_takeovers == 0).into(),
    });
    fast_targets(res, &ours, &mut t);
    // The default wake mode's run (event where measured), else a schema-1 point.
    let at_10ms = |r: &&RestRun| {
        r.implementation == Implementation::Ha && (r.interval_ms - 10.0).abs() < 1e-9 && !r.setting.ends_with(" groups")
    };
    let run = res.rest_runs.iter().filter(at_10ms).min_by_key(|r| r.mode != "event");
    let rest = run.map(|r| (r.cpu_pct.clone(), r.rss_mib.clone())).or_else(|| {
        res.rest.iter().find(|p| (p.interval_ms - 10.0).abs() < 1e-9).map(|p| (p.cpu_pct.clone(), p.rss_mib.clone()))
    });
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    t.push(Target {
        what: "at rest, 10 ms interval: agent CPU < 1% of one core".into(),
        measured: rest.as_ref().map_or("-".into(), |(cpu, _)| format!("{:.2}% (busiest node)", max(cpu))),
        met: rest.as_ref().map(|(cpu, _)| max(cpu) < 1.0).into(),
    });
    t.push(Target {
        what: "at rest, 10 ms interval: agent RSS < 20 MiB".into(),
        measured: rest.as_ref().map_or("-".into(), |(_, rss)| format!("{:.1} MiB (largest)", max(rss))),
        met: rest.as_ref().map(|(_, rss)| max(rss) < 20.0).into(),
    });
    issue13_targets(res, &mut t);
    two_links_targets(res, &mut t);
    groups_target(res, &mut t);
    for c in &res.xdp {
        t.push(Target {
            what: format!("XDP {}: ≤ {:.0} ns/packet (program alone)", c.case, c.target_ns),
            measured: format!("{:.0} ns ({:.0} ns with the test loop)", c.program_ns, c.measured_ns),
            met: Some(c.program_ns <= c.target_ns).into(),
        });
    }
    t
}

/// Groups (issue 14): 16 groups in one agent cost about what one does at rest (one heartbeat
/// carries them all): within 1.5× the one-group run of the same mode and interval, both nodes.
fn groups_target(res: &Results, t: &mut Vec<Target>) {
    let Some(many) = res.rest_runs.iter().find(|r| r.setting.ends_with(" groups")) else { return };
    let one = res.rest_runs.iter().find(|r| {
        r.implementation == Implementation::Ha
            && r.mode == many.mode
            && (r.interval_ms - many.interval_ms).abs() < 1e-9
            && !r.setting.ends_with(" groups")
    });
    let total = |r: &RestRun| r.cpu_pct.iter().sum::<f64>();
    t.push(Target {
        what: format!("at rest, {}: CPU ≤ 1.5× one group's (both nodes, own processes)", many.setting),
        measured: one.map_or("- (no one-group run)".into(), |o| {
            format!("{:.2}% vs {:.2}%: {:.2}×", total(many), total(o), total(many) / total(o))
        }),
        met: one.map(|o| total(many) <= 1.5 * total(o)).into(),
    });
}

/// Two heartbeat links: one cut changes nothing; both cut fail over as a hard failure does
/// (the successor takes over within the tolerance plus 2 ms; the client's outage adds the
/// announcement).
fn two_links_targets(res: &Results, t: &mut Vec<Target>) {
    let Some(s) = res.failover.iter().find(|s| s.implementation == Implementation::HaTwoLinks) else { return };
    if let Some(st) = summary_of(s, Scenario::OneLinkCut) {
        t.push(Target {
            what: format!("two links ({}): one cut, no lost probe in any rep", s.setting),
            measured: format!("{}/{} reps without a lost probe", st.no_loss, st.runs),
            met: Some(st.runs > 0 && st.no_loss == st.runs).into(),
        });
    }
    if let Some(st) = summary_of(s, Scenario::HardFailure) {
        let bound = s.tolerance_ms + 2.0 + s.interval_ms;
        t.push(Target {
            what: format!("two links ({}): both cut, outage median ≤ tolerance + interval + 2 ms", s.setting),
            measured: format!(
                "{} ms median, {} ms max (bound {} ms)",
                ms(st.outage.median),
                ms(st.outage.max),
                ms(bound)
            ),
            met: Some(st.outage.median <= bound).into(),
        });
    }
}

fn targets_table(res: &Results) -> String {
    let mut s = String::from("| target | measured | verdict |\n|---|---|---|\n");
    for t in targets(res) {
        let _ = writeln!(s, "| {} | {} | {} |", t.what, t.measured, verdict(t.met));
    }
    s
}

/// What the routed-mode series measures, when the run has one.
fn routed_note(res: &Results) -> &'static str {
    if !res.failover.iter().any(|s| s.implementation == Implementation::HaRouted) {
        return "";
    }
    "**ha routed** is routed mode (docs/routed.md): the client sits behind a router on a subnet \
     of its own, with no L2 to the nodes, and reaches the holder through the host route that the \
     holder's BIRD announces to the router's BIRD by eBGP, BFD on; a node's priority is 0 while \
     its BGP session is down, so after a hard failure node 1 preempts only once its session is \
     back. No crash scenario: a killed agent's route stays announced until `ha-agent cleanup` or \
     a restart removes it.\n\n"
}

/// The failover tables, one per setting.
fn failover_tables(res: &Results) -> String {
    let mut s = String::new();
    for series in &res.failover {
        let reps = series.scenarios.first().map_or(0, |r| r.runs.len());
        let _ = writeln!(
            s,
            "**{} {}** (takes over after {} ms of silence; {} repetitions)\n",
            series.implementation.name(),
            series.setting,
            ms(series.tolerance_ms),
            reps
        );
        s.push_str(
            "| scenario | min | median | p90 | max | lost probes: median / max | runs with no lost probe | 1 ms probes: median (max) |\n",
        );
        s.push_str("|---|---|---|---|---|---|---|---|\n");
        for r in &series.scenarios {
            if r.runs.is_empty() {
                continue;
            }
            let st = stats::scenario(r);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.0} / {:.0} | {}/{} | {} |",
                r.scenario.title(),
                ms(st.outage.min),
                ms(st.outage.median),
                ms(st.outage.p90),
                ms(st.outage.max),
                st.lost.median,
                st.lost.max,
                st.no_loss,
                st.runs,
                st.outage_1ms.map_or("-".into(), |c| format!("{} ({})", ms(c.median), ms(c.max)))
            );
        }
        s.push('\n');
    }
    s
}

/// Ours/keepalived ratios of median outages, for pairs of settings measured in this run.
fn ratio_table(res: &Results) -> String {
    let pairs: Vec<(&FailoverSeries, &FailoverSeries)> = {
        let mut v = Vec::new();
        let ka: Vec<&FailoverSeries> =
            res.failover.iter().filter(|s| s.implementation == Implementation::Keepalived).collect();
        for ours in res.failover.iter().filter(|s| s.implementation == Implementation::Ha) {
            // Each of ours against keepalived's fastest, and against the one whose takeover
            // delay is closest (comparable tolerance), when that is another.
            let Some(fastest) = ka.iter().min_by(|a, b| a.interval_ms.total_cmp(&b.interval_ms)) else { break };
            v.push((ours, *fastest));
            if let Some(close) = ka.iter().min_by(|a, b| {
                (a.tolerance_ms / ours.tolerance_ms)
                    .ln()
                    .abs()
                    .total_cmp(&(b.tolerance_ms / ours.tolerance_ms).ln().abs())
            }) && !std::ptr::eq(*close, *fastest)
            {
                v.push((ours, *close));
            }
        }
        v
    };
    if pairs.is_empty() {
        return "keepalived was not measured in this run, so there are no ratios.\n".into();
    }
    let mut s = String::from("| ha | keepalived |");
    for sc in Scenario::ALL {
        let _ = write!(s, " {} |", sc.title());
    }
    s.push_str("\n|---|---|---|---|---|---|\n");
    for (ours, theirs) in pairs {
        let _ = write!(s, "| {} | {} |", ours.setting, theirs.setting);
        for sc in Scenario::ALL {
            let cell = match (summary_of(ours, sc), summary_of(theirs, sc)) {
                (Some(a), Some(b)) if b.outage.median > 0.0 => format!(
                    "{:.2} ({} / {} ms)",
                    a.outage.median / b.outage.median,
                    ms(a.outage.median),
                    ms(b.outage.median)
                ),
                (Some(a), Some(_)) if a.outage.median == 0.0 => "both 0".into(),
                (Some(a), Some(_)) => format!("- ({} / 0 ms)", ms(a.outage.median)),
                _ => "-".into(),
            };
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    s
}

fn stability_table(res: &Results) -> String {
    if res.stability.is_empty() {
        return "Not measured in this run.\n".into();
    }
    let mut s = String::from(
        "| implementation | setting | takes over after | condition | period | false takeovers | transitions | then a real failure taken over after | stalls meanwhile: p50 / p99 / max |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &res.stability {
        let stall = r
            .stall
            .as_ref()
            .map_or("-".into(), |st| format!("{:.0} / {:.0} / {:.0} µs", st.p50_us, st.p99_us, st.max_us));
        let _ = writeln!(
            s,
            "| {} | {} | {} ms ({:.1} intervals) | {} | {:.0} s | {} | {} | {} | {stall} |",
            r.implementation.name(),
            r.setting,
            ms(r.tolerance_ms),
            r.tolerance_ms / r.interval_ms,
            r.condition,
            r.duration_s,
            r.false_takeovers,
            r.transitions,
            r.failure_taken_over_ms.map_or("-".into(), |t| format!("{} ms", ms(t)))
        );
    }
    s
}

fn scale_table(res: &Results) -> String {
    if res.scale.is_empty() {
        return "Not measured in this run.\n".into();
    }
    let mut s = String::from(
        "| nodes | one holder after | agent CPU per node: mean / max | agent RSS: mean / max | XDP CPU, all nodes | XDP per packet | heartbeats received/s |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for p in &res.scale {
        let _ = writeln!(
            s,
            "| {} | {:.0} ms | {:.2}% / {:.2}% | {:.1} / {:.1} MiB | {:.2}% | {:.0} ns | {:.0} |",
            p.nodes,
            p.converge_ms,
            p.cpu_pct_mean,
            p.cpu_pct_max,
            p.rss_mib_mean,
            p.rss_mib_max,
            p.xdp_cpu_pct_total,
            p.xdp_ns_per_packet,
            p.xdp_packets_per_s
        );
    }
    s
}

/// Issue 13: at 10 ms, <= 0.5x keepalived both ways, holder and standby (each agent mode);
/// at 1 ms, <= 1% of a core per node counted machine-wide; 64 nodes stable, one successor.
fn issue13_targets(res: &Results, t: &mut Vec<Target>) {
    let ka = res.rest_runs.iter().find(|r| r.implementation == Implementation::Keepalived);
    // One group each: the groups run has its own target (`groups_target`).
    let ours = |i: f64| {
        res.rest_runs.iter().filter(move |r| {
            r.implementation == Implementation::Ha
                && (r.interval_ms - i).abs() < 1e-9
                && !r.setting.ends_with(" groups")
        })
    };
    for r in ours(10.0) {
        let mode = if r.mode.is_empty() { String::new() } else { format!(" ({})", r.mode) };
        let what =
            format!("at rest, 10 ms{mode}: CPU ≤ 0.5× keepalived (advert 0.01 s), holder and standby, both ways");
        let Some(k) = ka else {
            t.push(Target { what, measured: "- (no keepalived)".into(), met: Verdict::NotMeasured });
            continue;
        };
        let parts = [
            ("holder", own_cpu(r, 0), own_cpu(k, 0)),
            ("standby", own_cpu(r, 1), own_cpu(k, 1)),
            ("machine", machine(r), machine(k)),
        ];
        let judged: Vec<(Verdict, String)> = parts
            .iter()
            .map(|(name, a, b)| {
                let (v, text) = ratio_at_most(*a, *b, 0.5);
                (v, format!("{name} {text}"))
            })
            .collect();
        let measured = judged.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>().join("; ");
        t.push(Target {
            what,
            measured: format!("{measured}{}", floor_note(res, 10.0, Some(k))),
            met: all_of(judged.iter().map(|(v, _)| *v)),
        });
    }
    for r in ours(1.0) {
        let mode = if r.mode.is_empty() { String::new() } else { format!(" ({})", r.mode) };
        let per_node = machine(r).scaled(0.5);
        let get = |i: usize| r.wakes_per_s.get(i).copied().unwrap_or(f64::NAN);
        t.push(Target {
            what: format!("at rest, 1 ms{mode}: ≤ 1% of a core per node, machine-wide"),
            measured: format!(
                "{} per node ({:.0} / {:.0} wakes/s){}",
                per_node.pct(),
                get(0),
                get(1),
                floor_note(res, 1.0, None)
            ),
            met: per_node.at_most(1.0),
        });
    }
    if let Some(b) = &res.scale_stability {
        t.push(Target {
            what: format!(
                "{} nodes at 10 ms: 0 false takeovers; one successor within tolerance + 2 ms of the holder's node's death",
                b.nodes
            ),
            measured: format!(
                "{} in {:.0} s; successor after {}, at most {} holder(s)",
                b.false_takeovers,
                b.duration_s,
                b.successor_ms.map_or("-".into(), |m| format!("{m:.1} ms")),
                b.max_holders_after_kill
            ),
            met: Some(
                b.false_takeovers == 0
                    && b.max_holders_after_kill == 1
                    && b.successor_ms.is_some_and(|m| m <= b.tolerance_ms + 2.0),
            )
            .into(),
        });
    }
}

/// What the lab's floor runs at `interval_ms` cost, machine-wide per node (and as a ratio to
/// keepalived's `ka`): the least any design of each shape costs on this machine.
fn floor_note(res: &Results, interval_ms: f64, ka: Option<&RestRun>) -> String {
    let shapes = [
        ("Echo", "a timer-woken echo"),
        ("PacedEcho", "a kernel-paced echo"),
        ("PacedOneWay", "kernel-paced, one way"),
    ];
    let parts: Vec<String> = shapes
        .iter()
        .filter_map(|(mode, name)| {
            let r = res.rest_runs.iter().find(|r| {
                r.implementation == Implementation::Floor
                    && r.mode == *mode
                    && (r.interval_ms - interval_ms).abs() < 1e-9
            })?;
            let ratio = ka.map_or(String::new(), |k| format!(", {}", ratio_cell(machine(r), machine(k))));
            Some(format!("{name} {}{ratio}", machine(r).scaled(0.5).pct()))
        })
        .collect();
    if parts.is_empty() { String::new() } else { format!(". The lab's floor per node: {}", parts.join("; ")) }
}

/// The fast settings (issue 13): hard failure no worse than before at 1/4 and 2/8 ms, 2.5 ms at
/// 0.5/2 ms, and no false takeover at rest (10 minutes at 1/4 ms).
fn fast_targets(res: &Results, ours: &[&FailoverSeries], t: &mut Vec<Target>) {
    let at_rest = |interval_ms: f64| {
        res.stability.iter().find(|r| {
            r.implementation == Implementation::Ha
                && r.condition == "at rest"
                && (r.interval_ms - interval_ms).abs() < 1e-9
        })
    };
    let rest_words = |r: Option<&StabilityRun>| {
        r.map_or("not watched at rest".into(), |r| {
            format!("{} false takeovers in {:.0} s at rest", r.false_takeovers, r.duration_s)
        })
    };
    // The medians before event wake (issue 13: 4.2 and 8.0 ms), and its target at 0.5/2 ms.
    for (interval_ms, bound_ms, why) in
        [(1.0, 4.2, "no worse than before"), (2.0, 8.0, "no worse than before"), (0.5, 2.5, "")]
    {
        let Some(s) = ours.iter().find(|s| (s.interval_ms - interval_ms).abs() < 1e-9) else { continue };
        let Some(st) = summary_of(s, Scenario::HardFailure) else { continue };
        let median = ms(st.outage.median);
        let (what, measured) = if why.is_empty() {
            (
                format!("hard failure at {}: median ≤ {bound_ms} ms, with its false takeovers at rest", s.setting),
                format!("{median} ms; {}", rest_words(at_rest(interval_ms))),
            )
        } else {
            (format!("hard failure at {}: median ≤ {bound_ms} ms ({why})", s.setting), format!("{median} ms"))
        };
        // Judged at the figures' precision (0.1 ms); the probes are 0.2 ms apart.
        t.push(Target { what, measured, met: Some((st.outage.median * 10.0).round() <= bound_ms * 10.0).into() });
    }
    if let Some(r) = at_rest(1.0) {
        let judged = r.duration_s >= 600.0 || r.false_takeovers > 0;
        t.push(Target {
            what: "at rest at 1/4 ms: 0 false takeovers over 10 minutes".into(),
            measured: format!(
                "{}{}",
                rest_words(Some(r)),
                r.stall
                    .as_ref()
                    .map_or(String::new(), |st| format!("; stalls p99 {:.0} µs, max {:.0} µs", st.p99_us, st.max_us))
            ),
            met: judged.then_some(r.false_takeovers == 0).into(),
        });
    }
}

/// A figure (% of one core) and how far off it may be: ± `u`. `u` is 0 for a precise figure
/// and None when its noise was not measured.
#[derive(Debug, Clone, Copy)]
struct Fig {
    v: f64,
    u: Option<f64>,
    /// What `u` is, in words.
    u_is: &'static str,
}

impl Fig {
    fn scaled(self, k: f64) -> Fig {
        Fig { v: self.v * k, u: self.u.map(|u| u * k), ..self }
    }

    fn pct(self) -> String {
        // + 0.0 turns -0.0 into 0.0.
        let v = self.v + 0.0;
        match self.u {
            Some(u) if u > 0.0 => format!("{v:.3}% ± {u:.3}"),
            Some(_) => format!("{v:.3}%"),
            None => format!("{v:.3}% (noise not measured)"),
        }
    }

    /// ≤ `bound`, judged only where the bound lies outside the figure's noise.
    fn at_most(self, bound: f64) -> Verdict {
        match self.u {
            _ if self.v.is_nan() => Verdict::NotMeasured,
            None => Verdict::NotJudged,
            Some(u) if self.v + u <= bound => Verdict::Met,
            Some(u) if self.v - u > bound => Verdict::NotMet,
            Some(_) => Verdict::NotJudged,
        }
    }
}

/// Node `i`'s own processes: ns clocks are precise; clock ticks (schema 2) are good to one
/// tick per window.
fn own_cpu(r: &RestRun, i: usize) -> Fig {
    let v = r.cpu_pct.get(i).copied().unwrap_or(f64::NAN);
    let tick = 100.0 / (TICKS_PER_S * r.window_s.max(1e-9));
    if r.cpu_ns { Fig { v, u: Some(0.0), u_is: "" } } else { Fig { v, u: Some(tick), u_is: "one clock tick" } }
}

/// USER_HZ: /proc's clock ticks per second.
const TICKS_PER_S: f64 = 100.0;

/// The machine above idle, both nodes together.
fn machine(r: &RestRun) -> Fig {
    Fig { v: r.machine_pct_above_idle, u: r.machine_noise_pct, u_is: "the idle noise" }
}

/// a / b, as `0.42×` (or `0.42× (0.30-0.61)` where the figures are noisy), and whether it is
/// at most `bound`: judged from the whole range the noise allows, not judged when b is within
/// its own noise (or resolution) of zero.
fn ratio_at_most(a: Fig, b: Fig, bound: f64) -> (Verdict, String) {
    if a.v.is_nan() || b.v.is_nan() {
        return (Verdict::NotMeasured, "-".into());
    }
    let (Some(ua), Some(ub)) = (a.u, b.u) else {
        return (Verdict::NotJudged, format!("{:.2}× (noise not measured)", a.v / b.v));
    };
    if b.v - ub <= 0.0 {
        return (Verdict::NotJudged, format!("- (keepalived's {:.3}% is within {} of 0)", b.v, b.u_is));
    }
    let r = a.v / b.v;
    let (lo, hi) = ((a.v - ua).max(0.0) / (b.v + ub), (a.v + ua) / (b.v - ub));
    let text = if ua == 0.0 && ub == 0.0 { format!("{r:.2}×") } else { format!("{r:.2}× ({lo:.2}–{hi:.2})") };
    let v = if hi <= bound {
        Verdict::Met
    } else if lo > bound {
        Verdict::NotMet
    } else {
        Verdict::NotJudged
    };
    (v, text)
}

/// Met when every part is, not met when any is, else not judged.
fn all_of(parts: impl Iterator<Item = Verdict>) -> Verdict {
    parts.fold(Verdict::Met, |acc, v| match (acc, v) {
        (Verdict::NotMet, _) | (_, Verdict::NotMet) => Verdict::NotMet,
        (Verdict::NotMeasured, _) | (_, Verdict::NotMeasured) => Verdict::NotMeasured,
        (Verdict::NotJudged, _) | (_, Verdict::NotJudged) => Verdict::NotJudged,
        _ => Verdict::Met,
    })
}

/// A ratio cell of the rest table: the ratio (and its range), or why there is none.
fn ratio_cell(a: Fig, b: Fig) -> String {
    ratio_at_most(a, b, f64::INFINITY).1
}

/// The idle windows of the run: the spread of the machine's figure with nothing of ours
/// running, whole and less the unrelated processes (the figure used).
fn idle_windows_table(b: &RestBaseline) -> String {
    let stats = |v: Vec<f64>| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        let min = v.iter().copied().fold(f64::NAN, f64::min);
        let max = v.iter().copied().fold(f64::NAN, f64::max);
        format!("{mean:.3}% | {sd:.3}% | {min:.3}% – {max:.3}%")
    };
    let mut s = format!(
        "| {} idle windows of {:.0} s, % of one core | mean | standard deviation | range |\n|---|---|---|---|\n",
        b.windows.len(),
        b.window_s
    );
    let _ = writeln!(s, "| the whole machine busy | {} |", stats(b.windows.iter().map(|w| w.busy_pct).collect()));
    let _ = writeln!(
        s,
        "| less the unrelated processes (the figure used) | {} |",
        stats(b.windows.iter().map(IdleWindow::residual_pct).collect())
    );
    s
}

/// The issue-13 accounting: own processes and machine above idle, wake-ups, ratios to
/// keepalived; the idle windows and the stall distribution.
fn rest_runs_table(res: &Results) -> String {
    let mut s = String::new();
    if let Some(b) = &res.rest_baseline {
        if b.windows.len() >= 2 {
            s.push_str(&idle_windows_table(b));
            s.push('\n');
        } else {
            let _ = writeln!(
                s,
                "Idle baseline of the machine: {:.2}% of a core busy over {:.0} s, measured once at the start.\n",
                b.machine_busy_pct, b.window_s
            );
        }
        let _ = writeln!(
            s,
            "Stalls of a thread sleeping {:.0} µs in a loop over {:.0} s ({} samples): oversleep p50 {:.0} µs, p99 \
             {:.0} µs, max {:.0} µs.\n",
            b.stall.period_us, b.window_s, b.stall.samples, b.stall.p50_us, b.stall.p99_us, b.stall.max_us
        );
    }
    if res.rest_runs.is_empty() {
        return s;
    }
    s.push_str(
        "| daemon | setting | CPU holder / standby (own processes) | × keepalived | machine above idle, per node | × keepalived | wakes/s holder / standby | RSS holder / standby | unrelated processes meanwhile |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let ka = res.rest_runs.iter().find(|r| r.implementation == Implementation::Keepalived);
    let get = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(f64::NAN);
    for r in &res.rest_runs {
        // keepalived's own row has no ratio.
        let ka = ka.filter(|_| r.implementation != Implementation::Keepalived);
        let own = |f: fn(Fig, Fig) -> String| {
            ka.map_or("-".into(), |k| {
                format!("{} / {}", f(own_cpu(r, 0), own_cpu(k, 0)), f(own_cpu(r, 1), own_cpu(k, 1)))
            })
        };
        let cpu = |i: usize| {
            let d = if r.cpu_ns { 3 } else { 2 };
            format!("{:.d$}%", get(&r.cpu_pct, i))
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} / {} | {} | {} | {} | {:.0} / {:.0} | {:.1} / {:.1} MiB | {} |",
            r.implementation.name(),
            r.setting,
            cpu(0),
            cpu(1),
            own(ratio_cell),
            machine(r).scaled(0.5).pct(),
            ka.map_or("-".into(), |k| ratio_cell(machine(r), machine(k))),
            get(&r.wakes_per_s, 0),
            get(&r.wakes_per_s, 1),
            get(&r.rss_mib, 0),
            get(&r.rss_mib, 1),
            r.background_pct.map_or("-".into(), |b| format!("{b:.1}%"))
        );
    }
    s
}

/// Schema 1's agent-only points, rendered for old results.
fn rest_table(res: &Results) -> String {
    let mut s = String::from(
        "| interval / tolerance | CPU: holder / standby | RSS: holder / standby | XDP CPU, both nodes | XDP per packet |\n\
         |---|---|---|---|---|\n",
    );
    let get = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(f64::NAN);
    for p in &res.rest {
        let _ = writeln!(
            s,
            "| {}/{} ms | {:.2}% / {:.2}% | {:.1} / {:.1} MiB | {:.3}% | {:.0} ns |",
            p.interval_ms,
            p.tolerance_ms,
            get(&p.cpu_pct, 0),
            get(&p.cpu_pct, 1),
            get(&p.rss_mib, 0),
            get(&p.rss_mib, 1),
            p.xdp_cpu_pct_total,
            p.xdp_ns_per_packet
        );
    }
    s
}

fn xdp_table(res: &Results) -> String {
    if res.xdp.is_empty() {
        return "Not measured in this run.\n".into();
    }
    let mut s = String::from("| case | measured | program alone | target | verdict |\n|---|---|---|---|---|\n");
    for c in &res.xdp {
        let _ = writeln!(
            s,
            "| {} | {:.0} ns | {:.0} ns | ≤ {:.0} ns | {} |",
            c.case,
            c.measured_ns,
            c.program_ns,
            c.target_ns,
            verdict(Some(c.program_ns <= c.target_ns))
        );
    }
    let _ = writeln!(
        s,
        "\nThe kernel's test loop alone (an empty XDP program) costs {:.0} ns/packet; \"program alone\" subtracts it.",
        res.xdp.first().map_or(f64::NAN, |c| c.loop_ns)
    );
    s
}

/// For the console at the end of a run: targets and the failover medians.
pub fn summary_text(res: &Results) -> String {
    let mut s = String::from("Targets:\n");
    s.push_str(&targets_table(res));
    if !res.failover.is_empty() {
        s.push_str("\nMedian client-observed outage, ms (lost probes, median):\n| setting |");
        for sc in Scenario::ALL {
            let _ = write!(s, " {} |", sc.title());
        }
        s.push_str("\n|---|---|---|---|---|\n");
        for series in &res.failover {
            let _ = write!(s, "| {} {} |", series.implementation.name(), series.setting);
            for sc in Scenario::ALL {
                let cell = summary_of(series, sc)
                    .map_or("-".into(), |st| format!("{} ({:.0})", ms(st.outage.median), st.lost.median));
                let _ = write!(s, " {cell} |");
            }
            s.push('\n');
        }
    }
    if res.rest_baseline.is_some() || !res.rest_runs.is_empty() {
        s.push_str("\nCost at rest:\n");
        s.push_str(&rest_runs_table(res));
    }
    let _ = writeln!(s, "\nTotal run time: {:.1} min.", res.duration_s / 60.0);
    s
}

/// Writes docs/benchmarks.md and docs/benchmarks/*.svg from `res` (read from `source`).
pub fn write(res: &Results, source: &Path) -> Result<()> {
    let docs = cmd::workspace_root()?.join("docs");
    let img = docs.join("benchmarks");
    std::fs::create_dir_all(&img).with_context(|| format!("creating {}", img.display()))?;
    let mut plots_made = Vec::new();
    if !res.xdp.is_empty() {
        plots::xdp(&res.xdp, &img.join("xdp.svg"))?;
        plots_made.push("xdp");
    }
    if !res.failover.is_empty() {
        plots::failover(&res.failover, &img.join("failover.svg"))?;
        plots_made.push("failover");
    }
    if !res.scale.is_empty() {
        plots::scale(&res.scale, &img.join("scale.svg"))?;
        plots_made.push("scale");
    }
    if !res.rest.is_empty() {
        plots::rest(&res.rest, &img.join("rest.svg"))?;
        plots_made.push("rest");
    }
    let page = render(res, &relative(source), &plots_made);
    let path = docs.join("benchmarks.md");
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    println!("report written to {} (plots: {})", path.display(), plots_made.join(", "));
    Ok(())
}

fn render(res: &Results, source: &str, plots_made: &[&str]) -> String {
    let m = &res.machine;
    let plot = |name: &str, alt: &str| {
        if plots_made.contains(&name) { format!("![{alt}](benchmarks/{name}.svg)\n\n") } else { String::new() }
    };
    let ka = match (&res.keepalived.version, &res.keepalived.skipped) {
        (Some(v), _) => v.clone(),
        (None, Some(why)) => format!("not run: {why}"),
        (None, None) => "not run".into(),
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "# Benchmarks\n\n\
         Generated by `cargo xtask bench` on {date} from {link} (commit `{commit}`). \
         Every figure below comes from that file; do not edit this page by hand: rerun the benchmark, \
         or `cargo xtask bench report` to render a results file again.\n\n\
         The whole run took **{mins:.1} minutes** (builds included).\n\n",
        date = res.date,
        link = if source.starts_with('/') { format!("`{source}`") } else { format!("[`{source}`](../{source})") },
        commit = res.commit,
        mins = res.duration_s / 60.0
    );
    let _ = write!(
        s,
        "## Machine\n\n| | |\n|---|---|\n| CPU | {nproc} × {cpu} |\n| kernel | {kernel} |\n| memory | {mem} MiB |\n\
         | load average (1/5/15 min) at start | {l0:.2} / {l1:.2} / {l2:.2} |\n| load average at end | {e0:.2} / {e1:.2} / {e2:.2} |\n\
         | keepalived | {ka} |\n| agents | release build, {rt}, {auth} |\n\n\
         Everything runs on this one machine: the nodes, the client and the switch are network \
         namespaces joined by veth pairs and a bridge (`ha-lab`).\n\n",
        nproc = m.nproc,
        cpu = m.cpu_model,
        kernel = m.kernel,
        mem = m.memory_mib,
        l0 = m.load_start[0],
        l1 = m.load_start[1],
        l2 = m.load_start[2],
        e0 = m.load_end[0],
        e1 = m.load_end[1],
        e2 = m.load_end[2],
        rt = if res.options.realtime { "with --realtime (SCHED_FIFO)" } else { "default scheduling (no --realtime)" },
        auth = match res.options.agent_auth.as_str() {
            "lab key" => "heartbeats authenticated (SipHash tags, the lab's key)",
            "none" => "heartbeats not authenticated (--insecure-no-auth)",
            "" => "authentication not recorded",
            _ => "authentication set by hand",
        },
    );
    let o = &res.options;
    let _ = write!(
        s,
        "## How to rerun\n\n```sh\n\
         cargo xtask bench                 # everything (as root): writes bench/results/<date>.json and this page\n\
         cargo xtask bench failover --reps 5 --interval 2ms --tolerance 8ms   # one part, one setting\n\
         cargo xtask bench report          # render this page again from the newest results file\n```\n\n\
         Parts: `xdp`, `failover`, `routed`, `links`, `keepalived`, `stability`, `scale`, `rest`. Options used for this \
         run: `--reps {reps} --stability-secs {stab} --rest-secs {rest} --window-secs {win} --nodes {nodes}`{rt}. \
         keepalived is installed with apt-get when missing (`--no-install` skips the comparison \
         instead, `--no-keepalived` leaves it out).\n\n",
        reps = o.reps,
        stab = o.stability_secs,
        rest = o.rest_secs,
        win = o.window_secs,
        nodes = o.scale_nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        rt = if o.realtime { " --realtime" } else { "" },
    );
    let _ = write!(
        s,
        "## Targets\n\nThe hard-failure target is judged at our settings whose tolerance is no longer than \
         keepalived's detection time (3 adverts plus skew); the ratio table under Failover has every \
         setting.\n\n{}\n",
        targets_table(res)
    );
    if !res.notes.is_empty() {
        s.push_str("## Measured again\n\n");
        for n in &res.notes {
            let _ = writeln!(s, "- {n}");
        }
        s.push('\n');
    }
    if !res.errors.is_empty() {
        s.push_str("## Failures during this run\n\nThese parts stopped early; what they measured before is shown.\n\n");
        for e in &res.errors {
            let _ = writeln!(s, "- {e}");
        }
        s.push('\n');
    }
    let _ = write!(
        s,
        "## XDP program per packet\n\nThe real program on crafted frames through `BPF_PROG_TEST_RUN` \
         (1,000,000 repeats, best of 3; the `ha-agent` bench target `xdp`).\n\n{}\n{}",
        xdp_table(res),
        plot("xdp", "XDP ns per packet")
    );
    let _ = write!(
        s,
        "## Failover\n\nTwo nodes (priorities 200 and 100) and a client that sends an ICMP echo to the \
         shared address every 0.2 ms. The outage is the longest gap between answered probes (0 when \
         none was lost; a reply later than 100 ms counts as lost), so it is known to about 0.2 ms. \
         The last column is what a client probing every 1 ms saw in the same runs (every fifth \
         probe), the measure of runs before 2026-11-30: it reads an outage in whole 1 ms steps, \
         usually one step above the finer figure. Each repetition: node 1's switch \
         port goes down (**hard failure**), comes back (**preemption**: node 1 takes the address \
         back), node 1's daemon gets SIGTERM (**clean stop**), is restarted, gets SIGKILL (**crash**: \
         the address stays on node 1, node 2 must take over and announce it), and is restarted. Each \
         setting runs in a fresh lab; keepalived (VRRPv3, multicast adverts, its default preemption) \
         runs in the same kind of lab in the same run.\n\n{}{}{}\
         Dots are medians, bars span min to max, triangles mark p90; a run without loss is drawn at \
         the bottom edge ({} ms) of the log scale.\n\n\
         ### ha / keepalived\n\nRatios of median outages measured in this run (below 1: ours is shorter); \
         each of our settings against keepalived's fastest and against the keepalived setting with \
         the closest takeover delay.\n\n{}\n",
        routed_note(res),
        failover_tables(res),
        plot("failover", "client-observed outage per scenario and setting"),
        plots::OUTAGE_FLOOR_MS,
        ratio_table(res)
    );
    let _ = write!(
        s,
        "## Stability\n\nA healthy two-node cluster left alone for a fixed period under 10% random loss \
         on every node's egress (an eBPF drop program on the interface, as this kernel has no \
         sch_netem) or with a busy loop on every core. Transitions are counted from the daemons' own \
         log lines (ours: `STANDBY -> ACTIVE: reason`; keepalived: `Entering MASTER STATE`); a false \
         takeover is the standby becoming active while the holder is alive. VRRP always takes over \
         after 3 adverts plus a skew, so keepalived cannot be given 4 intervals of tolerance. At the \
         end of each period, still under the condition, the holder's link is cut and the time until \
         the standby holds the address is shown (polled every 5 ms): what riding out the condition \
         costs when the failure is real. Our silence limit grows with the measured loss (up to \
         `--max-tolerance`, 2 tolerances by default). The runs \"at rest\" leave our agents alone at \
         the fast settings (`--rest-secs` at 1/4 ms, a fifth of it at 0.5/2 ms) while a thread sleeping \
         1 ms in a loop samples how late this machine wakes a thread in the same period: at a 4 ms \
         tolerance a holder descheduled for 4 ms is silent for its peer, so these false takeovers \
         are read against those stalls.\n\n{}\n",
        stability_table(res)
    );
    let _ = write!(
        s,
        "## Scale\n\nOne cluster of N nodes at a 10 ms interval (tolerance 35 ms), node 1 the most worthy. \
         \"One holder after\" runs from starting the first agent until node 1 alone holds the address. \
         CPU is {cpu} over a {win} s window after a 2 s warm-up; RSS is \
         VmRSS from `/proc/<pid>/status`; XDP time comes from the kernel's BPF statistics \
         (`run_time_ns`/`run_cnt`, enabled only while measuring) of the programs attached to the \
         nodes' interfaces. In place, the XDP program runs on cold caches (a packet every few \
         milliseconds per node) and its statistics add two clock reads, so it costs more per packet \
         than in the hot loop of `BPF_PROG_TEST_RUN` above.\n\n{}\n{}",
        scale_table(res),
        plot("scale", "convergence, CPU and memory per cluster size"),
        win = res.options.window_secs,
        cpu = if res.schema >= 3 {
            "each agent's CPU-time clock (all its threads, in ns)"
        } else {
            "utime+stime from `/proc/<pid>/stat` (whole 10 ms clock ticks)"
        },
    );
    s.push_str(&rest_section(res, &plot("rest", "agent CPU and memory at rest per interval")));
    s
}

/// "Cost at rest": what the rest bench measured, and how, in the words that fit the results
/// (schema 3's accounting, or the older one for older files).
fn rest_section(res: &Results, plot: &str) -> String {
    let mut s = String::from("## Cost at rest\n\n");
    if res.rest_runs.is_empty() && res.rest.is_empty() {
        s.push_str("Not measured in this run.\n\n");
        return s;
    }
    s.push_str(
        "Two idle nodes (one holder, one standby). In event mode the holder is answered for by its \
         kernel (XDP answers the standby's heartbeat with one of the holder's, to the multicast group, \
         so the lab's client namespace receives it too) and wakes only to renew those answers; the standby wakes for each heartbeat it sends (from this process: no \
         kernel-side sender runs on this machine), and its look at the table every half tolerance falls \
         on one of those wakes. In poll mode each node also wakes every tick, and the holder sends its \
         own heartbeats and stamps its liveness for the fence. The 16-group run has node 1 preferred for \
         every group. keepalived at advert 0.01 s runs in the same kind of lab in the same run, measured \
         the same way, so every figure has a ratio.\n\n",
    );
    if !res.rest.is_empty() {
        let _ = write!(s, "Agent only (utime + stime, as in the scale bench):\n\n{}\n{plot}", rest_table(res));
    }
    if res.rest_runs.is_empty() {
        return s;
    }
    s.push_str("### Counted both ways\n\n");
    if res.rest_runs.iter().any(|r| r.cpu_ns) {
        s.push_str(
            "**Own processes.** The CPU time of every process of each node's daemon (keepalived forks a \
             VRRP child): each process's CPU-time clock, which the kernel keeps in nanoseconds for all its \
             threads, those that exited included. The processes are listed at the start and at the end of \
             the window, so one born in it counts too. (utime + stime of `/proc/<pid>/stat`, used before, \
             count whole 10 ms clock ticks: 0.05% of a core over 20 s, which was all keepalived's standby \
             used.) Wake-ups are the voluntary context switches of all their threads.\n\n\
             **Machine above idle.** Everything the CPUs did during the window, the kernel's work for the \
             daemons included (softirq, XDP, timers, io_uring, kworkers), less what demonstrably is not \
             theirs: the CPU time of every other userspace process (builds, other labs, this bench itself; \
             one that ended during the window counts through the parent that reaped it) and of the \
             kernel's memory housekeeping threads (kdamond, khugepaged, kcompactd, kswapd). kworkers, \
             ksoftirqd and the RCU threads stay in, as they may work for the daemons. What is left still \
             holds the kernel's own background work; that is measured in idle windows of the same length \
             with no lab running, one just before and one just after each run, and the run's figure is \
             what it left above the mean of those two. A CPU's busy time is its time less its idle time, \
             which this tickless kernel keeps in nanoseconds and which does not count interrupts and \
             softirqs as idle (`/proc/timer_list`, read on each CPU in turn).\n\n\
             **Noise.** The idle windows below show how much the machine's figure moves with nothing of ours \
             running, whole and less the unrelated processes. A run's machine figure is given ± twice the \
             standard deviation of a window less the mean of two others. A target is judged only where its \
             bound lies outside that range; a ratio whose denominator is within its noise of zero is not \
             judged. Others using the machine at the same time have their programs' CPU time taken out, \
             but not what the kernel does for them (their network traffic, disk writes) nor what they cost \
             the daemons through shared caches. The idle windows show the first; the last column of the \
             table shows how busy those others kept the machine during each run (in % of one core), so a \
             run made beside a build can be read as such.\n\n",
        );
    } else {
        s.push_str(
            "Every process of each node's daemon (utime + stime, in whole 10 ms clock ticks, and \
             wake-ups: voluntary context switches of all its threads), and the whole machine above an \
             idle baseline measured once at the start (/proc/stat: softirq, timers, XDP and io_uring work \
             included). A ratio whose denominator is at most one clock tick is not judged; the machine's \
             figures are not judged, as their noise was not measured in this run.\n\n",
        );
    }
    if res.rest_runs.iter().any(|r| r.implementation == Implementation::Floor) {
        s.push_str(
            "**The lab's floor.** Rows without a daemon: node 2 sends an ICMP echo request to node 1 \
             every interval and node 1's kernel answers it, the shape of a standby's heartbeat and the \
             holder's XDP answer, without signing, XDP or any decision. The requests leave either from \
             a timer wake per interval (as our standby's do) or queued a hundred at a time behind a \
             token bucket (TBF) on node 2's interface that releases one per interval, so that they \
             leave on kernel timers and the sender wakes once per hundred. A timer wake that sends \
             nothing, and kernel-paced requests node 1 ignores, split the cost into its parts. Node 1 \
             counts the requests it receives, and a run whose rate is off by more than 5% fails. No \
             design of a shape can cost less here than its floor; the targets table quotes them.\n\n",
        );
    }
    s.push_str(&rest_runs_table(res));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::{Run, ScenarioRuns, StabilityRun};

    fn series(imp: Implementation, setting: &str, tol: f64, outage: f64) -> FailoverSeries {
        FailoverSeries {
            implementation: imp,
            setting: setting.into(),
            interval_ms: tol / 4.0,
            tolerance_ms: tol,
            scenarios: Scenario::ALL
                .iter()
                .map(|&scenario| ScenarioRuns {
                    scenario,
                    runs: (0..10)
                        .map(|_| {
                            let o = if scenario == Scenario::HardFailure { outage } else { 0.0 };
                            Run {
                                outage_ms: o,
                                lost: o as u64,
                                sent: 300,
                                settled_ms: o,
                                outage_1ms: None,
                                lost_1ms: None,
                            }
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn targets_are_judged_from_the_numbers() {
        let mut res = Results {
            failover: vec![
                series(Implementation::Ha, "2/8 ms", 8.0, 9.0),
                series(Implementation::Keepalived, "advert 0.01 s", 36.0, 32.0),
            ],
            ..Results::default()
        };
        res.stability.push(StabilityRun {
            implementation: Implementation::Ha,
            condition: "loss 10%".into(),
            setting: "10/40 ms".into(),
            interval_ms: 10.0,
            tolerance_ms: 40.0,
            duration_s: 60.0,
            false_takeovers: 1,
            transitions: 2,
            failure_taken_over_ms: Some(70.0),
            stall: None,
        });
        let at_rest = |duration_s, false_takeovers| StabilityRun {
            implementation: Implementation::Ha,
            condition: "at rest".into(),
            setting: "1/4 ms".into(),
            interval_ms: 1.0,
            tolerance_ms: 4.0,
            duration_s,
            false_takeovers,
            transitions: 0,
            failure_taken_over_ms: None,
            stall: None,
        };
        res.stability.push(at_rest(600.0, 0));
        let t = targets(&res);
        assert_eq!(t[0].met, Verdict::Met, "{}", t[0].measured); // 9 <= 32/3
        assert_eq!(t[1].met, Verdict::Met); // clean stop 10/10
        assert_eq!(t[3].met, Verdict::NotMet); // one false takeover
        assert_eq!((t[4].met, t[4].measured.as_str()), (Verdict::NotMet, "9.0 ms")); // 2/8 ms: 9 > 8
        assert_eq!(t[5].met, Verdict::Met, "{}", t[5].measured); // 10 minutes at rest, none
        assert_eq!(t[6].met, Verdict::NotMeasured); // rest not measured
        res.stability.pop();
        res.stability.push(at_rest(120.0, 0));
        assert_eq!(targets(&res)[5].met, Verdict::NotMeasured, "under 10 minutes without a false takeover: not judged");
        res.stability.pop();
        res.stability.push(at_rest(120.0, 1));
        assert_eq!(targets(&res)[5].met, Verdict::NotMet, "a false takeover fails it however short the watch");
        let page = render(&res, "bench/results/x.json", &[]);
        assert!(page.contains("| 2/8 ms | advert 0.01 s | 0.28 (9.0 / 32 ms)"), "{page}");
    }

    fn rest_run(imp: Implementation, interval_ms: f64, cpu: [f64; 2], machine: f64, noise: Option<f64>) -> RestRun {
        RestRun {
            implementation: imp,
            mode: if imp == Implementation::Ha { "event".into() } else { String::new() },
            setting: format!("{interval_ms} ms"),
            interval_ms,
            tolerance_ms: interval_ms * 3.5,
            cpu_pct: cpu.to_vec(),
            cpu_ns: noise.is_some(),
            wakes_per_s: vec![50.0, 100.0],
            rss_mib: vec![8.0, 8.0],
            machine_pct_above_idle: machine,
            window_s: 20.0,
            machine_busy_pct: None,
            background_pct: None,
            idle_before_pct: None,
            idle_after_pct: None,
            machine_noise_pct: noise,
        }
    }

    fn rest_target<'a>(t: &'a [Target], what: &str) -> &'a Target {
        t.iter().find(|t| t.what.starts_with(what)).unwrap_or_else(|| panic!("no target {what}"))
    }

    #[test]
    fn rest_targets_are_judged_within_the_noise() {
        let ka = rest_run(Implementation::Keepalived, 10.0, [0.40, 0.20], 1.0, Some(0.1));
        let mut res = Results { rest_runs: vec![ka.clone()], ..Results::default() };
        // Holder 0.15/0.40, standby 0.08/0.20, machine (0.3 ± 0.1) / (1.0 ± 0.1) ≤ 0.44: met.
        res.rest_runs.push(rest_run(Implementation::Ha, 10.0, [0.15, 0.08], 0.3, Some(0.1)));
        let at_10 = "at rest, 10 ms (event)";
        assert_eq!(
            rest_target(&targets(&res), at_10).met,
            Verdict::Met,
            "{}",
            rest_target(&targets(&res), at_10).measured
        );
        // The machine's range straddles 0.5: not judged (0.45 ± 0.1 over 1.0 ± 0.1 spans 0.32-0.61).
        res.rest_runs[1].machine_pct_above_idle = 0.45;
        assert_eq!(rest_target(&targets(&res), at_10).met, Verdict::NotJudged);
        // A standby over half of keepalived's, precisely: not met whatever the machine says.
        res.rest_runs[1].cpu_pct[1] = 0.11;
        assert_eq!(rest_target(&targets(&res), at_10).met, Verdict::NotMet);
        // keepalived's machine figure within its noise of 0: no ratio to judge.
        res.rest_runs[1].cpu_pct[1] = 0.08;
        res.rest_runs[1].machine_pct_above_idle = 0.0;
        res.rest_runs[0].machine_pct_above_idle = 0.05;
        let t = targets(&res);
        assert_eq!(rest_target(&t, at_10).met, Verdict::NotJudged);
        assert!(
            rest_target(&t, at_10).measured.contains("within the idle noise of 0"),
            "{}",
            rest_target(&t, at_10).measured
        );
        // 1 ms, per node (half of the two nodes' figure): 2.6 ± 0.4 → 1.3 ± 0.2 > 1: not met;
        // 1.8 ± 0.4 → 0.9 ± 0.2: not judged; 1.4 ± 0.4 → 0.7 ± 0.2: met.
        res.rest_runs.push(rest_run(Implementation::Ha, 1.0, [0.3, 3.0], 2.6, Some(0.4)));
        let at_1 = "at rest, 1 ms (event)";
        assert_eq!(rest_target(&targets(&res), at_1).met, Verdict::NotMet);
        res.rest_runs[2].machine_pct_above_idle = 1.8;
        assert_eq!(rest_target(&targets(&res), at_1).met, Verdict::NotJudged);
        res.rest_runs[2].machine_pct_above_idle = 1.4;
        assert_eq!(rest_target(&targets(&res), at_1).met, Verdict::Met);
        // Clock ticks (schema 2): keepalived's standby at one tick over 20 s is no denominator,
        // and the machine's noise was not measured.
        let old = Results {
            rest_runs: vec![
                rest_run(Implementation::Keepalived, 10.0, [0.40, 0.05], -0.4, None),
                rest_run(Implementation::Ha, 10.0, [0.55, 0.65], 0.25, None),
                rest_run(Implementation::Ha, 1.0, [0.25, 5.1], 4.45, None),
            ],
            ..Results::default()
        };
        let t = targets(&old);
        assert_eq!(rest_target(&t, at_10).met, Verdict::NotMet, "holder 1.37x, ticks and all");
        assert!(
            rest_target(&t, at_10).measured.contains("within one clock tick of 0"),
            "{}",
            rest_target(&t, at_10).measured
        );
        assert_eq!(rest_target(&t, at_1).met, Verdict::NotJudged);
        let page = render(&res, "bench/results/x.json", &[]);
        let rest = page.split("## Cost at rest").nth(1).unwrap_or_default();
        assert!(!rest.contains("Not measured"), "{rest}");
        assert!(rest.contains("| ha | 1 ms | 0.300% / 3.000% |"), "{rest}");
        assert!(rest.contains("| 8.0 / 8.0 MiB | - |"), "{rest}");
        assert!(render(&Results::default(), "x.json", &[]).contains("## Cost at rest\n\nNot measured in this run."));
    }

    #[test]
    fn the_cost_targets_quote_the_labs_floor_at_their_interval() {
        let ka = rest_run(Implementation::Keepalived, 10.0, [0.40, 0.20], 1.0, Some(0.1));
        let ours = rest_run(Implementation::Ha, 10.0, [0.15, 0.80], 1.5, Some(0.1));
        let mut res = Results { rest_runs: vec![ka, ours], ..Results::default() };
        let at_10 = "at rest, 10 ms (event)";
        assert!(!rest_target(&targets(&res), at_10).measured.contains("floor"));
        let mut floor = |interval_ms: f64, mode: &str, machine: f64| {
            let mut r = rest_run(Implementation::Floor, interval_ms, [0.0, 0.5], machine, Some(0.1));
            r.mode = mode.into();
            res.rest_runs.push(r);
        };
        floor(10.0, "Echo", 0.9);
        floor(10.0, "PacedEcho", 0.6);
        floor(1.0, "Echo", 3.0);
        let measured = rest_target(&targets(&res), at_10).measured.clone();
        assert!(
            measured.ends_with("The lab's floor per node: a timer-woken echo 0.450% ± 0.050, 0.90× (0.73–1.11); a kernel-paced echo 0.300% ± 0.050, 0.60× (0.45–0.78)"),
            "{measured}"
        );
        assert!(!measured.contains("1.500%"), "the 1 ms floor is not quoted at 10 ms: {measured}");
    }
}
