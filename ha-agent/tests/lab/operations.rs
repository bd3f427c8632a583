//! Operators' features with real agents in the namespace lab: metrics scraped over HTTP, an
//! agent configured by file logging JSON lines (and nothing at steady state), hooks fired in
//! order on every transition, and health checks moving the address.
use std::{
    io::{Read, Write},
    net::{IpAddr, TcpStream},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use ha_lab::{AgentSet, AgentSettings, Lab, Prober, VIP};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu, status_json};

const METRICS_PORT: u16 = 9465;

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("ha-ops-").tempdir().expect("temp dir")
}

/// GET /metrics from inside node i's namespace, over its loopback.
fn scrape(lab: &Lab, i: usize) -> String {
    let reply = lab
        .node(i)
        .run_in(|| -> std::io::Result<String> {
            let addr = (std::net::Ipv4Addr::LOCALHOST, METRICS_PORT).into();
            let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            conn.set_read_timeout(Some(Duration::from_secs(5)))?;
            conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: ha\r\n\r\n")?;
            let mut reply = String::new();
            conn.read_to_string(&mut reply)?;
            Ok(reply)
        })
        .expect("entering the namespace")
        .expect("scraping /metrics");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    reply
}

/// The value of one series (`name{labels}`) in a scrape.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_agent_configured_by_file_serves_metrics_and_logs_json_lines_quietly() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(2);
        let dir = temp_dir();
        let file = dir.path().join("ha.toml");
        std::fs::write(&file, format!("metrics = \"127.0.0.1:{METRICS_PORT}\"\nlog-format = \"json\"\n"))
            .expect("config");
        let mut settings = AgentSettings::new(&[200, 100]);
        settings.extra_args = vec!["--config".into(), file.display().to_string()];
        let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
        agents.wait_sole_holder(1, WAIT).expect("most worthy holds");
        thread::sleep(Duration::from_millis(300)); // a few heartbeats each way

        let m1 = scrape(&lab, 1);
        assert_eq!(value(&m1, "ha_state{state=\"ACTIVE\"}"), 1.0);
        assert_eq!(value(&m1, "ha_state{state=\"STANDBY\"}"), 0.0);
        assert_eq!(value(&m1, "ha_priority"), 200.0);
        assert_eq!(value(&m1, "ha_transitions_total{from=\"STANDBY\",to=\"ACTIVE\",reason=\"no_holder\"}"), 1.0);
        assert_eq!(value(&m1, "ha_takeover_duration_seconds_count"), 1.0);
        assert!(value(&m1, "ha_takeover_duration_seconds_sum") < 1.0, "{m1}");
        assert!(value(&m1, "ha_heartbeats_sent_total") >= 5.0, "{m1}");
        assert!(value(&m1, "ha_heartbeats_received_total") >= 5.0, "{m1}");
        assert!(value(&m1, "ha_peer_last_heard_seconds{node=\"192.0.2.2\"}") < 1.0, "{m1}");
        assert_eq!(value(&m1, "ha_peer_live{node=\"192.0.2.2\"}"), 1.0);
        assert_eq!(value(&m1, "ha_heartbeat_drops_total{path=\"xdp\",reason=\"bad_magic\"}"), 0.0);
        let m2 = scrape(&lab, 2);
        assert_eq!(value(&m2, "ha_state{state=\"STANDBY\"}"), 1.0);
        assert_eq!(value(&m2, "ha_peer_priority{node=\"192.0.2.1\"}"), 200.0);

        // Nothing is logged per heartbeat: ~50 intervals pass without a line.
        let before = agents.output(1);
        thread::sleep(Duration::from_secs(1));
        let after = agents.output(1);
        assert_eq!(before, after, "logged at steady state:\n{}", &after[before.len()..]);
        let lines: Vec<serde_json::Value> = after
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect();
        let taken = lines.iter().find(|l| l["event"] == "transition").expect("a transition line");
        assert_eq!((taken["from"].as_str(), taken["to"].as_str()), (Some("STANDBY"), Some("ACTIVE")), "{taken}");
        assert_eq!(taken["reason"], "no_holder");
        assert!(taken["took_us"].is_u64() && taken["level"] == "INFO", "{taken}");
    });
}

#[test]
fn hooks_fire_in_order_on_every_transition_and_a_hanging_hook_delays_none() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(2);
        let dir = temp_dir();
        let d = dir.path().display().to_string();
        // Each hook appends "<hook> STATE REASON" ($1, $2 follow the command) to <dir>/<node>.log.
        let append = |hook: &str| format!("echo {hook} >> {d}/\"$HA_NODE\".log");
        let hang_on_link_down = format!("if [ \"$HA_REASON\" = link_down ]; then touch {d}/hanging; sleep 60; fi; ");
        let mut settings = AgentSettings::new(&[200, 100]);
        settings.extra_args = vec![
            "--on-active".into(),
            append("active"),
            "--on-standby".into(),
            hang_on_link_down + &append("standby"),
            "--notify".into(),
            append("notify"),
            "--hook-timeout".into(),
            "8s".into(),
        ];
        let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
        let hook_log =
            |i: usize| std::fs::read_to_string(dir.path().join(format!("192.0.2.{i}.log"))).unwrap_or_default();
        agents.wait_sole_holder(1, WAIT).expect("node 1 holds");

        // Split brain: node 2 stops hearing node 1 and takes the address too; node 1 still hears
        // node 2, keeps the address as the more worthy, and its hooks hear that it won.
        lab.netem(1, "loss 100%").expect("silence node 1");
        agents.wait_for("both hold", WAIT, |h| h == [1, 2]).expect("split brain");
        wait_until("node 1's hooks hear it won", WAIT, || hook_log(1).contains("notify ACTIVE split_brain_won"));
        lab.clear_netem(1).expect("heal");
        agents.wait_sole_holder(1, WAIT).expect("node 2 yields to node 1");

        // Node 1 loses its link: its on-standby hook hangs, yet node 1 takes the address back as
        // soon as the link returns, with the hook queue still stuck behind the hanging hook.
        lab.cut_link(1).expect("cut node 1");
        agents.wait_sole_holder(2, WAIT).expect("node 2 takes over");
        wait_until("the hook hangs", WAIT, || dir.path().join("hanging").exists());
        let hanging_since = Instant::now();
        lab.restore_link(1).expect("restore node 1");
        agents.wait_sole_holder(1, WAIT).expect("node 1 takes the address back");
        assert!(
            hanging_since.elapsed() < Duration::from_secs(7),
            "took {:?}: too slow to tell",
            hanging_since.elapsed()
        );
        assert!(!hook_log(1).contains("link_down"), "hooks queued behind the hanging one have not run yet");

        let node1 = [
            "active ACTIVE no_holder",
            "notify ACTIVE no_holder",
            "active ACTIVE split_brain_won",
            "notify ACTIVE split_brain_won",
            // on-standby for link_down was killed at the hook timeout, before writing its line.
            "notify FAULT link_down",
            // FAULT -> STANDBY (recovered) waited behind the hanging hook and was superseded
            // by STANDBY -> ACTIVE (preempt) before it started: skipped, only the newest runs.
            "active ACTIVE preempt",
            "notify ACTIVE preempt",
        ];
        let node2 = [
            "active ACTIVE holder_silent",
            "notify ACTIVE holder_silent",
            "standby STANDBY more_worthy_holder",
            "notify STANDBY more_worthy_holder",
            "active ACTIVE holder_silent",
            "notify ACTIVE holder_silent",
            "standby STANDBY more_worthy_holder",
            "notify STANDBY more_worthy_holder",
        ];
        wait_until("every hook ran", Duration::from_secs(20), || hook_log(1).lines().count() >= node1.len());
        assert_eq!(hook_log(1).lines().collect::<Vec<_>>(), node1, "{}", agents.diagnostics());
        wait_until("node 2's hooks ran", WAIT, || hook_log(2).lines().count() >= node2.len());
        assert_eq!(hook_log(2).lines().collect::<Vec<_>>(), node2, "{}", agents.diagnostics());
        assert!(
            agents.output(1).contains("hook on-standby for ACTIVE -> FAULT (link_down) failed: timed out after 8s")
        );
        assert!(
            agents.output(1).contains("hooks: skipped 1 transition(s) whose hooks had not started"),
            "{}",
            agents.output(1)
        );
    });
}

/// Two agents (200, 100) whose check passes while `<dir>/<node id>` exists.
fn checked_agents<'l>(lab: &'l Lab, dir: &Path, preempt: &str) -> AgentSet<'l> {
    for i in 1..=2 {
        std::fs::write(dir.join(format!("192.0.2.{i}")), b"").expect("healthy marker");
    }
    let mut settings = AgentSettings::new(&[200, 100]);
    settings.preempt = preempt.into();
    settings.extra_args = vec![
        "--check".into(),
        format!("test -e {}/\"$HA_NODE\"", dir.display()),
        "--check-interval".into(),
        "50ms".into(),
        "--check-fall".into(),
        "2".into(),
        "--check-rise".into(),
        "2".into(),
    ];
    AgentSet::start(lab, AGENT, settings).expect("agents")
}

#[test]
fn a_failing_check_hands_the_address_over_make_before_break_and_recovery_takes_it_back() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(2);
        let dir = temp_dir();
        let agents = checked_agents(&lab, dir.path(), "always");
        agents.wait_sole_holder(1, WAIT).expect("node 1 holds");
        wait_until("node 1's check passes", WAIT, || status_json(&lab, 1)["checks"][0]["state"] == "passing");
        assert_eq!(status_json(&lab, 1)["priority"], 200);
        let vip = IpAddr::V4(VIP);
        lab.client().ping(vip, Duration::from_secs(1)).expect("VIP answers");

        let prober = Prober::start(lab.client(), vip, Duration::from_millis(1)).expect("prober");
        thread::sleep(Duration::from_millis(100));
        std::fs::remove_file(dir.path().join("192.0.2.1")).expect("node 1 turns unhealthy");
        agents.wait_sole_holder(2, WAIT).expect("the healthy node takes over");
        thread::sleep(Duration::from_millis(200));
        let report = prober.stop();
        assert!(report.lost <= 2, "a check hand-over is make-before-break: {report:?}\n{}", agents.diagnostics());

        let s1 = status_json(&lab, 1);
        assert_eq!(s1["priority"], 0);
        // Its own fault is its reason (issue 12, item 11), and its state says it cannot serve.
        assert_eq!(s1["state"], "FAULT", "{s1}");
        assert_eq!(s1["reason"], "checks_failing", "{s1}");
        assert!(s1["detail"].as_str().is_some_and(|r| r.starts_with("health checks fail")), "{s1}");
        assert_eq!(s1["checks"][0]["state"], "failing");
        assert!(s1["checks"][0]["detail"].as_str().is_some_and(|d| d.starts_with("exit 1")), "{s1}");
        assert!(s1["priority_parts"][1][0].as_str().is_some_and(|p| p.contains("failing")), "{s1}");
        assert_eq!(s1["priority_parts"][1][1], -200);
        let s2 = status_json(&lab, 2);
        assert_eq!(s2["reason"], "holder_unhealthy", "{s2}");
        assert!(s2["detail"].as_str().is_some_and(|r| r.contains("unhealthy")), "{s2}");

        std::fs::write(dir.path().join("192.0.2.1"), b"").expect("node 1 recovers");
        agents.wait_sole_holder(1, WAIT).expect("preempt=always: the recovered node takes the address back");
        assert_eq!(status_json(&lab, 1)["priority"], 200);
    });
}

#[test]
fn with_preempt_never_an_unhealthy_holder_still_hands_over_and_the_address_stays_after_recovery() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(2);
        let dir = temp_dir();
        let agents = checked_agents(&lab, dir.path(), "never");
        agents.wait_sole_holder(1, WAIT).expect("node 1 holds");
        wait_until("node 1's check passes", WAIT, || status_json(&lab, 1)["checks"][0]["state"] == "passing");
        std::fs::remove_file(dir.path().join("192.0.2.1")).expect("node 1 turns unhealthy");
        agents.wait_sole_holder(2, WAIT).expect("an unhealthy holder hands over even with preempt=never");
        std::fs::write(dir.path().join("192.0.2.1"), b"").expect("node 1 recovers");
        wait_until("node 1's check passes again", WAIT, || status_json(&lab, 1)["priority"] == 200);
        thread::sleep(agents.settings.tolerance * 5);
        assert_eq!(
            agents.holders().expect("holders"),
            vec![2],
            "never: the healthy holder keeps it\n{}",
            agents.diagnostics()
        );
    });
}

/// The series names a scrape offers: every sample's name, and for families without samples yet
/// the names their type gives them (a counter `x` is sampled as `x_total`, a histogram as
/// `x_bucket`, `x_sum`, `x_count`).
fn exported_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(typed) = line.strip_prefix("# TYPE ") {
            let mut words = typed.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && line.starts_with("ha_") {
            names.insert(line.split(['{', ' ']).next().unwrap_or_default().to_string());
        }
    }
    names
}

/// The `ha_*` metric names a PromQL expression reads.
fn queried_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("ha_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_query_of_the_grafana_dashboard_reads_metrics_the_agent_exports() {
    let _cpu = shared_cpu();
    bounded(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/grafana-dashboard.json");
        let text = std::fs::read_to_string(&path).expect("dist/grafana-dashboard.json");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
        let mut queries: Vec<(String, String)> = Vec::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            if panel["type"] == "row" {
                continue;
            }
            let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
            for target in targets.unwrap_or_else(|| panic!("panel {title:?} has no query")) {
                let expr = target["expr"].as_str().unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
                assert!(!queried_names(expr).is_empty(), "panel {title:?} reads no ha_ metric: {expr}");
                queries.push((title.clone(), expr.to_string()));
            }
        }
        for var in dashboard["templating"]["list"].as_array().expect("templating") {
            if let Some(query) = var["query"]["query"].as_str() {
                queries.push((format!("variable {}", var["name"]), query.to_string()));
            }
        }
        for annotation in dashboard["annotations"]["list"].as_array().expect("annotations") {
            if let Some(expr) = annotation["expr"].as_str() {
                queries.push((format!("annotation {}", annotation["name"]), expr.to_string()));
            }
        }

        // A running pair with a hook and a check, after a takeover: every family has series;
        // node 2 receives on the socket, which has series of its own.
        let lab = lab(2);
        let mut settings = AgentSettings::new(&[200, 100]);
        settings.extra_args = vec![
            "--metrics".into(),
            format!("127.0.0.1:{METRICS_PORT}"),
            "--notify".into(),
            "true".into(),
            "--check".into(),
            "true".into(),
        ];
        settings.node(2).args = vec!["--rx".into(), "socket".into()];
        let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
        agents.wait_sole_holder(1, WAIT).expect("most worthy holds");
        wait_until("the hook ran", WAIT, || scrape(&lab, 1).contains("ha_hook_runs_total{"));
        let mut exported = exported_names(&scrape(&lab, 1));
        exported.extend(exported_names(&scrape(&lab, 2)));

        let unknown: Vec<String> = queries
            .iter()
            .flat_map(|(title, expr)| {
                queried_names(expr).into_iter().filter(|n| !exported.contains(n)).map(move |n| format!("{title}: {n}"))
            })
            .collect();
        assert!(
            unknown.is_empty(),
            "the dashboard reads metrics the agent does not export: {unknown:?}\nexported: {exported:?}"
        );
    });
}
