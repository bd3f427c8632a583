//! Lab behaviour as the agent's tests rely on it. Needs root (CI runs as root).

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use ha_lab::{ArpWatcher, Lab, Prober};
use socket2::{Domain, Protocol, Socket, Type};

fn lab_namespaces(id: &str) -> Vec<String> {
    let prefix = format!("{id}-");
    ha_lab::namespaces().unwrap_or_default().into_iter().filter(|n| n.starts_with(&prefix)).collect()
}

fn ip(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

const SEC: Duration = Duration::from_secs(1);

#[test]
fn nodes_reach_each_other_and_the_client() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(2)?;
        let pid = std::process::id();
        ensure!(lab.id().starts_with(&format!("halab-{pid}-")), "id {}", lab.id());
        let mut names = lab_namespaces(lab.id());
        names.sort();
        let id = lab.id();
        assert_eq!(names, [format!("{id}-c"), format!("{id}-n1"), format!("{id}-n2"), format!("{id}-sw")]);

        let (n1, n2, c) = (lab.node(1), lab.node(2), lab.client());
        assert_eq!(n1.addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(c.addr(), Ipv4Addr::new(192, 0, 2, 100));
        assert_eq!(c.addr6().to_string(), "2001:db8::100");
        assert_eq!(n1.iface(), "eth0");
        assert_eq!(n1.netns_path(), Path::new("/run/netns").join(n1.name()));
        assert!(n1.has_addr(ip(n1.addr()))?);
        assert!(!n1.has_addr(ip(ha_lab::VIP))?);

        n1.ping(ip(n2.addr()), 2 * SEC).context("node1 -> node2")?;
        n1.ping(ip(c.addr()), 2 * SEC).context("node1 -> client")?;
        n1.ping(IpAddr::V6(n2.addr6()), 2 * SEC).context("node1 -> node2 over IPv6")?;
        // The system ping, started through Host::command's setns.
        n1.exec("ping", &["-c", "1", "-W", "2", &n2.addr().to_string()]).context("ping binary")?;

        assert_eq!(n1.neigh_mac(ip(n2.addr()))?, Some(n2.mac()));
        assert_eq!(n1.neigh_mac(ip(Ipv4Addr::new(192, 0, 2, 77)))?, None);
        Ok(())
    });
}

#[test]
fn a_second_lan_and_a_cable_carry_traffic_and_are_cut_and_restored() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(2)?;
        let lan = lab.add_lan("eth1", "10.9.0", true)?;
        let cable = lab.add_cable(1, 2, "hb1", "10.77.0")?;
        let client = lan.client().context("client on the LAN")?;
        assert_eq!(lan.node(2).addr(), Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(lan.node(1).mac(), lab.node(1).link_mac("eth1")?);
        client.ping(ip(lan.node(2).addr()), SEC)?;
        lab.node(1).ping(ip(cable.node(2).addr()), SEC)?;
        lab.cut_lan_link(&lan, 2)?;
        ensure!(client.ping(ip(lan.node(2).addr()), Duration::from_millis(200)).is_err(), "the cut LAN port passes");
        lab.node(1).ping(ip(Ipv4Addr::new(192, 0, 2, 2)), SEC).context("eth0 is not affected")?;
        lab.restore_lan_link(&lan, 2)?;
        client.ping(ip(lan.node(2).addr()), SEC)?;
        lab.cut_lan_link(&cable, 1)?;
        let far_end = lab.node(2).ip(&["-o", "link", "show", "hb1"])?;
        ensure!(far_end.contains("NO-CARRIER"), "the cable's other end keeps carrier: {far_end}");
        lab.restore_lan_link(&cable, 1)?;
        lab.node(2).ping(ip(cable.node(1).addr()), SEC)?;
        Ok(())
    });
}

#[test]
fn run_in_and_command_see_only_the_namespace() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(1)?;
        let n1 = lab.node(1);
        let devs = n1.run_in(|| std::fs::read_to_string("/proc/thread-self/net/dev"))??;
        let mut names: Vec<&str> = devs.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
        names.sort();
        assert_eq!(names, ["eth0", "lo"]);

        let out = n1.exec("ip", &["-o", "-4", "addr", "show"])?;
        assert!(out.contains("192.0.2.1/24") && !out.contains("192.0.2.100"), "{out}");
        // Only the network namespace changes: the mount namespace (and bpffs) is shared.
        let mnt = n1.exec("readlink", &["/proc/self/ns/mnt"])?;
        assert_eq!(mnt.trim(), std::fs::read_link("/proc/self/ns/mnt")?.to_string_lossy());

        // A panic inside run_in propagates to the caller.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| n1.run_in(|| panic!("inside"))));
        assert!(r.is_err());
        Ok(())
    });
}

#[test]
fn multicast_from_node1_reaches_node2() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(2)?;
        let group = Ipv4Addr::new(239, 255, 72, 65);
        let port = 7265;
        let (a1, a2) = (lab.node(1).addr(), lab.node(2).addr());
        let rx: UdpSocket = lab.node(2).run_in(|| -> Result<UdpSocket> {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
            s.join_multicast_v4(&group, &a2)?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            Ok(s.into())
        })??;
        let tx: UdpSocket = lab.node(1).run_in(|| -> Result<UdpSocket> {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_multicast_if_v4(&a1)?;
            s.set_multicast_ttl_v4(1)?;
            Ok(s.into())
        })??;
        let deadline = Instant::now() + 5 * SEC;
        let mut buf = [0u8; 64];
        while Instant::now() < deadline {
            tx.send_to(b"ha-lab hello", (group, port))?;
            if let Ok((n, from)) = rx.recv_from(&mut buf)
                && &buf[..n] == b"ha-lab hello"
                && from.ip() == ip(a1)
            {
                return Ok(());
            }
        }
        bail!("no multicast datagram from node1 reached node2");
    });
}

#[test]
fn prober_sees_no_loss_then_the_cut_link() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(2)?;
        let target = ip(lab.node(1).addr());
        let p = Prober::start(lab.client(), target, Duration::from_millis(10))?;
        thread::sleep(Duration::from_millis(300));
        let r = p.stop();
        ensure!(r.lost == 0 && r.sent >= 20, "healthy link: {r}");
        assert_eq!(r.longest_outage, Duration::ZERO);

        lab.cut_link(1)?;
        let p = Prober::start(lab.client(), target, Duration::from_millis(10))?;
        thread::sleep(Duration::from_millis(300));
        let r = p.stop();
        ensure!(r.lost > 0 && r.longest_outage > Duration::from_millis(100), "cut link: {r}");
        ensure!(!r.outages.is_empty());

        lab.restore_link(1)?;
        lab.client().ping(target, 2 * SEC).context("after restore_link")?;

        // An outage in the middle of a run is bounded by answered probes on both sides.
        let p = Prober::start(lab.client(), target, Duration::from_millis(10))?;
        thread::sleep(Duration::from_millis(100));
        lab.cut_link(1)?;
        thread::sleep(Duration::from_millis(200));
        lab.restore_link(1)?;
        thread::sleep(Duration::from_millis(150));
        let r = p.stop();
        ensure!(r.outages.len() == 1, "one cut, one outage: {r} {:?}", r.outages);
        let o = &r.outages[0];
        ensure!(o.lost >= 10 && o.duration >= Duration::from_millis(150), "{o:?}");
        ensure!(r.answered >= 15, "{r}");

        // IPv6 probing works too.
        let p = Prober::start(lab.client(), IpAddr::V6(lab.node(2).addr6()), Duration::from_millis(10))?;
        thread::sleep(Duration::from_millis(150));
        let r = p.stop();
        ensure!(r.lost == 0 && r.sent >= 10, "IPv6: {r}");
        Ok(())
    });
}

#[test]
fn partition_separates_groups_and_heal_rejoins() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(3)?;
        let t = Duration::from_millis(300);
        let (n1, n2, n3, c) = (lab.node(1), lab.node(2), lab.node(3), lab.client());
        lab.partition(&[&[1], &[2, 3]])?;
        ensure!(n1.ping(ip(n2.addr()), t).is_err(), "node1 reached node2 across the partition");
        n2.ping(ip(n3.addr()), 2 * SEC).context("node2 -> node3 in one group")?;
        c.ping(ip(n1.addr()), 2 * SEC).context("client stays with group 0")?;
        ensure!(c.ping(ip(n3.addr()), t).is_err(), "client reached group 1");
        lab.heal()?;
        n1.ping(ip(n2.addr()), 2 * SEC).context("after heal")?;
        c.ping(ip(n3.addr()), 2 * SEC).context("after heal")?;
        ensure!(lab.partition(&[&[1], &[1]]).is_err());
        ensure!(lab.partition(&[&[4]]).is_err());
        Ok(())
    });
}

#[test]
fn netem_loss_drops_node_egress() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(2)?;
        let target = ip(lab.node(2).addr());
        lab.netem(1, "loss 100%")?;
        ensure!(lab.node(1).ping(target, Duration::from_millis(300)).is_err(), "100% loss let a ping through");
        lab.netem(1, "loss 0%")?;
        lab.node(1).ping(target, 2 * SEC).context("after loss 0%")?;
        lab.netem(1, "loss 100%")?;
        lab.clear_netem(1)?;
        lab.node(1).ping(target, 2 * SEC).context("after clear_netem")?;
        // Delay needs sch_netem; without it the error must say so.
        match lab.netem(1, "loss 10% delay 1ms 1ms") {
            Ok(()) => lab.clear_netem(1)?,
            Err(e) => ensure!(format!("{e:#}").contains("sch_netem"), "{e:#}"),
        }
        Ok(())
    });
}

#[test]
fn children_run_inside_and_die_with_their_guard_or_the_lab() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(1)?;
        let n1 = lab.node(1);
        let mut cmd = n1.command("sh");
        cmd.args(["-c", "ip -o -4 addr show dev eth0; echo to-stderr >&2; exec sleep 30"]);
        let mut child = n1.spawn(cmd)?;
        let pid = child.pid();
        let deadline = Instant::now() + 5 * SEC;
        while !(child.output_so_far().contains("192.0.2.1/24") && child.output_so_far().contains("to-stderr")) {
            ensure!(Instant::now() < deadline, "output: {:?}", child.output_so_far());
            thread::sleep(Duration::from_millis(10));
        }
        assert!(child.wait_timeout(Duration::from_millis(50)).is_none());
        child.signal(libc::SIGTERM)?;
        let st = child.wait_timeout(5 * SEC).context("SIGTERM did not stop the child")?;
        assert!(!st.success());
        assert!(child.signal(libc::SIGTERM).is_err(), "signalling a reaped child");
        drop(child);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());

        // Guard drop kills.
        let mut cmd = n1.command("sleep");
        cmd.arg("30");
        let child = n1.spawn(cmd)?;
        let pid = child.pid();
        drop(child);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "guard drop left {pid}");

        // A plain child inside a lab namespace dies with the lab.
        let mut plain = n1.command("sleep").arg("30").spawn()?;
        drop(lab);
        let deadline = Instant::now() + 5 * SEC;
        while plain.try_wait()?.is_none() {
            ensure!(Instant::now() < deadline, "plain child survived the lab");
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    });
}

#[test]
fn drop_removes_namespaces_and_pin_dir() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(1)?;
        let id = lab.id().to_string();
        let pin = lab.pin_dir(1);
        assert_eq!(pin, Path::new("/sys/fs/bpf").join(&id).join("n1"));
        ensure!(!pin.exists(), "pin_dir is only a path");
        std::fs::create_dir_all(pin.join("maps"))?;
        let scratch = lab.scratch_dir().to_path_buf();
        std::fs::write(scratch.join("keys"), "1 00\n")?;
        assert_eq!(lab_namespaces(&id).len(), 3);
        drop(lab);
        assert_eq!(lab_namespaces(&id), Vec::<String>::new());
        ensure!(!Path::new("/sys/fs/bpf").join(&id).exists(), "pin root left behind");
        ensure!(!scratch.exists(), "scratch dir left behind");
        Ok(())
    });
}

#[test]
fn left_behind_names_what_outlives_a_lab() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(1)?;
        let id = lab.id().to_string();
        std::fs::create_dir_all(lab.pin_dir(1))?;
        let mut sleeper = Command::new("sleep").arg("30").spawn()?;
        let alive = sleeper.id();
        let before = ha_lab::left_behind(&id, &[])?;
        ensure!(
            before.len() == 5
                && before.iter().any(|l| l.starts_with("pin dir"))
                && before.iter().any(|l| l.starts_with("scratch dir")),
            "a live lab: {before:?}"
        );
        drop(lab);
        assert_eq!(ha_lab::left_behind(&id, &[])?, Vec::<String>::new());
        assert_eq!(ha_lab::left_behind(&id, &[alive])?, [format!("process {alive}")]);
        sleeper.kill()?;
        sleeper.wait()?;
        assert_eq!(ha_lab::left_behind(&id, &[alive])?, Vec::<String>::new());
        Ok(())
    });
}

#[test]
fn arp_watcher_sees_who_answers_and_leaves_the_client_alone() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(2)?;
        let vip = ha_lab::VIP;
        let w = ArpWatcher::start(lab.client(), vip, Duration::from_millis(5), 20 * SEC)?;
        let answered = |want: &[[u8; 6]]| -> Result<()> {
            let want: BTreeSet<[u8; 6]> = want.iter().copied().collect();
            let deadline = Instant::now() + 2 * SEC;
            loop {
                let seen = w.answered_during(Duration::from_millis(100));
                if seen == want {
                    return Ok(());
                }
                ensure!(Instant::now() < deadline, "answering {seen:?}, want {want:?}");
            }
        };
        answered(&[])?;
        let add = |i: usize| lab.node(i).ip(&["addr", "add", &format!("{vip}/32"), "dev", "eth0"]);
        add(1)?;
        answered(&[lab.node(1).mac()])?;
        add(2)?;
        answered(&[lab.node(1).mac(), lab.node(2).mac()])?;
        // Node 1's eth0 down: it cannot answer.
        lab.iface_down(1)?;
        answered(&[lab.node(2).mac()])?;
        lab.iface_up(1)?;
        answered(&[lab.node(1).mac(), lab.node(2).mac()])?;
        ensure!(w.is_running());
        // The replies went to the watcher's own MAC: the client's table knows nothing of them.
        assert_eq!(lab.client().neigh_mac(ip(vip))?, None);
        w.stop()
    });
}

#[test]
fn a_panicking_test_still_cleans_up() {
    ha_lab::within(30 * SEC, || {
        let id = std::sync::Mutex::new(String::new());
        let r = std::panic::catch_unwind(|| {
            let lab = Lab::new(2).expect("lab");
            *id.lock().unwrap_or_else(|p| p.into_inner()) = lab.id().to_string();
            panic!("test failure while the lab is up");
        });
        ensure!(r.is_err());
        let id = id.into_inner().unwrap_or_else(|p| p.into_inner());
        ensure!(!id.is_empty());
        assert_eq!(lab_namespaces(&id), Vec::<String>::new());
        Ok(())
    });
}

/// Deletes a fake namespace even if the test fails.
struct FakeNs(String);
impl Drop for FakeNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).stderr(Stdio::null()).status();
    }
}

fn fake_ns(name: &str) -> Result<FakeNs> {
    let st = Command::new("ip").args(["netns", "add", name]).status()?;
    ensure!(st.success(), "ip netns add {name}");
    Ok(FakeNs(name.to_string()))
}

#[test]
fn sweep_removes_only_dead_runs_leftovers() {
    ha_lab::within(30 * SEC, || {
        let mut done = Command::new("true").spawn()?;
        let dead_pid = done.id();
        done.wait()?;
        let mut alive = Command::new("sleep").arg("30").spawn()?;
        let live_pid = alive.id();

        let dead = fake_ns(&format!("halab-{dead_pid}-0-sw"))?;
        let live = fake_ns(&format!("halab-{live_pid}-0-sw"))?;
        ha_lab::ensure_bpffs()?;
        let dead_pins = Path::new("/sys/fs/bpf").join(format!("halab-{dead_pid}-0"));
        std::fs::create_dir_all(dead_pins.join("n1"))?;

        let removed = ha_lab::sweep_leftovers()?;
        let names = ha_lab::namespaces()?;
        let _ = alive.kill();
        let _ = alive.wait();
        ensure!(!names.contains(&dead.0), "dead run's namespace kept (removed {removed:?})");
        ensure!(names.contains(&live.0), "live process's namespace swept");
        ensure!(!dead_pins.exists(), "dead run's pin dir kept");
        Ok(())
    });
}

const HELPER_ENV: &str = "HA_LAB_SIGNAL_HELPER";

/// Not a test on its own: the child process of `sigterm_removes_labs_and_exits_130`.
#[test]
fn signal_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let run = || -> Result<()> {
        ha_lab::install_signal_cleanup()?;
        ha_lab::install_signal_cleanup()?; // idempotent
        let lab = Lab::new(1)?;
        let mut cmd = lab.node(1).command("sleep");
        cmd.arg("30");
        let child = lab.node(1).spawn(cmd)?;
        println!("READY {} {}", lab.id(), child.pid());
        thread::sleep(20 * SEC);
        bail!("no signal came");
    };
    if let Err(e) = run() {
        println!("FAILED {e:#}");
    }
}

#[test]
fn sigterm_removes_labs_and_exits_130() {
    ha_lab::within(40 * SEC, || {
        let mut helper = Command::new(std::env::current_exe()?)
            .args(["signal_helper", "--exact", "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = helper.stdout.take().context("helper stdout")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                let _ = tx.send(line);
            }
        });
        let ready = loop {
            match rx.recv_timeout(20 * SEC) {
                // libtest prints `test signal_helper ... ` before the helper's own output.
                Ok(l) if l.contains("READY ") => break l,
                Ok(l) if l.contains("FAILED ") => {
                    let _ = helper.kill();
                    let _ = helper.wait();
                    bail!("helper: {l}");
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = helper.kill();
                    let _ = helper.wait();
                    bail!("helper never got ready: {e}");
                }
            }
        };
        let mut parts = ready.split("READY ").nth(1).context("READY line")?.split_whitespace();
        let id = parts.next().context("id")?.to_string();
        let child_pid: i32 = parts.next().context("pid")?.parse()?;
        ensure!(lab_namespaces(&id).len() == 3, "helper lab missing");

        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(helper.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + 10 * SEC;
        let status = loop {
            if let Some(st) = helper.try_wait()? {
                break st;
            }
            if Instant::now() > deadline {
                let _ = helper.kill();
                let _ = helper.wait();
                bail!("helper ignored SIGTERM");
            }
            thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(130));
        assert_eq!(lab_namespaces(&id), Vec::<String>::new());
        ensure!(!std::env::temp_dir().join(&id).exists(), "scratch dir left behind by the signal cleanup");
        // SAFETY: signal 0 only probes existence.
        let alive = unsafe { libc::kill(child_pid, 0) } == 0;
        ensure!(!alive || is_zombie(child_pid), "helper's child {child_pid} survived");
        Ok(())
    });
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

#[test]
fn the_address_watcher_sees_an_address_added_in_its_namespace_only() {
    ha_lab::within(30 * SEC, || {
        let lab = Lab::new(2)?;
        let (n1, n2) = (lab.node(1), lab.node(2));
        let watch = ha_lab::addr_watch::AddrWatch::start(n1, ha_lab::VIP)?;
        n2.ip(&["addr", "add", &format!("{}/32", ha_lab::VIP), "dev", n2.iface()])?;
        ensure!(watch.added_within(SEC / 2).is_none(), "an address of another namespace was reported");
        let before = Instant::now();
        n1.ip(&["addr", "add", &format!("{}/32", ha_lab::VIP), "dev", n1.iface()])?;
        let at = watch.added_within(2 * SEC).context("the address was added but not reported")?;
        ensure!(at >= before, "reported before it was added");
        Ok(())
    });
}
