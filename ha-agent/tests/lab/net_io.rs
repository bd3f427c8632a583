//! The shared address and its announcements against real kernels: a throw-away namespace
//! lab (ha-lab). Needs root; skipped with a message otherwise.
//!
//! Objects are created inside a node's namespace with `run_in` and then used from the test
//! thread: their sockets stay in the namespace they were opened in.

use std::{
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use ha_agent::{
    netlink::{
        SharedAddr,
        address::{AddrEvent, AddressError, AddressManager, AddressWatcher},
    },
    tx::announce::Announcer,
};
use ha_lab::{Host, Lab, PREFIX, PREFIX6, VIP, VIP6};

use crate::support::shared_cpu;

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
/// How long a neighbour may take to follow an announcement.
const SWITCH_LIMIT: Duration = SEC;
/// A fresh IPv6 address joins its solicited-node group asynchronously, so the first
/// neighbour solicitation can be missed; the kernel retries after 1 s.
const PING_LIMIT: Duration = Duration::from_secs(3);
/// Long enough that a kernel-sent announcement would have arrived: proves ours did it.
const CONTROL_WAIT: Duration = Duration::from_millis(200);

fn v4() -> SharedAddr {
    SharedAddr { addr: IpAddr::V4(VIP), prefix: PREFIX }
}

fn v6() -> SharedAddr {
    SharedAddr { addr: IpAddr::V6(VIP6), prefix: PREFIX6 }
}

fn is_root() -> bool {
    // SAFETY: plain getter.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a root-only test body on its own thread, failing if it takes longer than `limit`.
fn within(limit: Duration, body: impl FnOnce() -> Result<()> + Send + 'static) {
    if !is_root() {
        eprintln!("skipping: the namespace lab needs root");
        return;
    }
    ha_lab::within(limit, body);
}

/// Polls `check` every 10 ms until it holds or `limit` passes; true if it held.
fn eventually(limit: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        if check()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        thread::sleep(10 * MS);
    }
}

fn manager(host: &Host) -> Result<AddressManager> {
    let iface = host.iface().to_owned();
    Ok(host.run_in(move || AddressManager::new(&iface))??)
}

fn announcer(host: &Host) -> Result<Announcer> {
    let iface = host.iface().to_owned();
    Ok(host.run_in(move || Announcer::new(&iface))??)
}

/// The `ip -o addr show dev eth0` line for `a`, if present.
fn ip_addr_line(host: &Host, a: &SharedAddr) -> Result<Option<String>> {
    let out = host.ip(&["-o", "addr", "show", "dev", host.iface()])?;
    let needle = format!(" {a} ");
    Ok(out.lines().find(|l| l.contains(&needle)).map(str::to_owned))
}

fn mac_text(mac: Option<[u8; 6]>) -> String {
    mac.map_or("none".into(), |m| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

/// Next event about `addr`, skipping unrelated ones, within `limit`.
fn event_for(w: &mut AddressWatcher, addr: IpAddr, limit: Duration) -> Result<Option<AddrEvent>> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match w.next_event(left)? {
            Some(e) if e.addr == addr => return Ok(Some(e)),
            Some(_) => continue,
            None => return Ok(None),
        }
    }
}

#[test]
fn ipv4_add_remove_is_idempotent_and_labelled() {
    let _cpu = shared_cpu();
    within(60 * SEC, || {
        let lab = Lab::new(1)?;
        let node = lab.node(1);
        let m = manager(node)?;
        let a = v4();

        assert_eq!(m.mac()?, node.mac(), "mac() reads eth0's MAC");
        assert_eq!(m.primary_ipv4()?, Some(node.addr()));
        assert!(!m.is_present(&a)?);

        m.add(&a)?;
        m.add(&a).context("a second add must be a no-op")?;
        assert!(m.is_present(&a)?);
        assert!(node.has_addr(a.addr)?, "the kernel has {a}");
        let line = ip_addr_line(node, &a)?.context("no `ip addr` line for the VIP")?;
        assert!(line.contains("eth0:ha"), "label missing: {line}");
        assert_eq!(m.primary_ipv4()?, Some(node.addr()), "the VIP is never the primary address");

        m.remove(&a)?;
        m.remove(&a).context("a second remove must be a no-op")?;
        assert!(!m.is_present(&a)?);
        assert!(!node.has_addr(a.addr)?);
        Ok(())
    });
}

#[test]
fn ipv6_add_is_never_tentative() {
    let _cpu = shared_cpu();
    within(60 * SEC, || {
        let lab = Lab::new(1)?;
        let node = lab.node(1);
        // The lab turns DAD off everywhere; turn it back on for eth0, or "not tentative"
        // would prove nothing. A control address added without nodad must be tentative.
        node.sysctl("net.ipv6.conf.eth0.accept_dad", "1")?;
        let control: SharedAddr = "2001:db8::201/64".parse()?;
        node.ip(&["addr", "add", &control.to_string(), "dev", "eth0"])?;
        let line = ip_addr_line(node, &control)?.context("control address missing")?;
        ensure!(line.contains("tentative"), "DAD is not active, the check is void: {line}");

        let m = manager(node)?;
        let a = v6();
        m.add(&a)?;
        m.add(&a).context("a second add must be a no-op")?;
        assert!(m.is_present(&a)?);
        let line = ip_addr_line(node, &a)?.context("no `ip addr` line for the VIP6")?;
        assert!(!line.contains("tentative"), "VIP6 is tentative: {line}");
        assert!(line.contains("nodad"), "{line}");

        m.remove(&a)?;
        m.remove(&a).context("a second remove must be a no-op")?;
        assert!(!m.is_present(&a)?);
        assert!(!node.has_addr(a.addr)?);
        Ok(())
    });
}

#[test]
fn missing_interface_is_named() {
    let _cpu = shared_cpu();
    within(60 * SEC, || {
        let lab = Lab::new(1)?;
        match lab.node(1).run_in(|| AddressManager::new("nosuch0"))? {
            Err(e @ AddressError::NoSuchInterface(_)) => {
                assert_eq!(e.to_string(), "no interface named nosuch0");
            }
            Err(e) => bail!("unexpected error: {e}"),
            Ok(_) => bail!("nosuch0 should not exist"),
        }
        let err = lab.node(1).run_in(|| Announcer::new("nosuch0"))?.err().context("should fail")?;
        assert!(err.to_string().contains("nosuch0"), "{err}");
        Ok(())
    });
}

#[test]
fn watcher_reports_our_changes_and_foreign_removal() {
    let _cpu = shared_cpu();
    within(60 * SEC, || {
        let lab = Lab::new(1)?;
        let node = lab.node(1);
        let m = manager(node)?;
        let mut w = node.run_in(|| m.watch())??;

        for a in [v4(), v6()] {
            m.add(&a)?;
            let e = event_for(&mut w, a.addr, SEC)?.context("no event for the add")?;
            assert_eq!(e, AddrEvent { added: true, addr: a.addr, prefix: a.prefix });
            // Someone else deletes it: exactly what the watcher is for.
            node.ip(&["addr", "del", &a.to_string(), "dev", "eth0"])?;
            let e = event_for(&mut w, a.addr, SEC)?.context("no event for the removal")?;
            assert_eq!(e, AddrEvent { added: false, addr: a.addr, prefix: a.prefix });
        }
        assert_eq!(w.next_event(50 * MS)?, None, "no further events");
        Ok(())
    });
}

#[test]
fn gratuitous_arp_moves_the_clients_neighbour_entry() {
    let _cpu = shared_cpu();
    within(60 * SEC, || {
        let lab = Lab::new(2)?;
        let (n1, n2, client) = (lab.node(1), lab.node(2), lab.client());
        let a = v4();

        // The client learns the VIP at node 2, the way it would before a failover.
        let m2 = manager(n2)?;
        m2.add(&a)?;
        client.ping(a.addr, PING_LIMIT).context("client pinging the VIP on node 2")?;
        assert_eq!(client.neigh_mac(a.addr)?, Some(n2.mac()));
        m2.remove(&a)?;

        // Node 1 takes over. Adding the address alone must not move the client...
        let m1 = manager(n1)?;
        m1.add(&a)?;
        thread::sleep(CONTROL_WAIT);
        assert_eq!(client.neigh_mac(a.addr)?, Some(n2.mac()), "moved without our announcement");

        // ...one announcement round must.
        let ann = announcer(n1)?;
        assert_eq!(ann.mac(), n1.mac());
        ann.announce(&[a.addr])?;
        let moved = eventually(SWITCH_LIMIT, || Ok(client.neigh_mac(a.addr)? == Some(n1.mac())))?;
        let now = client.neigh_mac(a.addr)?;
        ensure!(moved, "client still maps {} to {} after {SWITCH_LIMIT:?}", a.addr, mac_text(now));
        client.ping(a.addr, PING_LIMIT).context("client pinging the VIP on node 1")?;
        Ok(())
    });
}

#[test]
fn unsolicited_na_moves_the_clients_neighbour_entry() {
    let _cpu = shared_cpu();
    within(60 * SEC, || {
        let lab = Lab::new(2)?;
        let (n1, n2, client) = (lab.node(1), lab.node(2), lab.client());
        let a = v6();

        let m2 = manager(n2)?;
        m2.add(&a)?;
        client.ping(a.addr, PING_LIMIT).context("client pinging the VIP6 on node 2")?;
        assert_eq!(client.neigh_mac(a.addr)?, Some(n2.mac()));
        m2.remove(&a)?;

        let m1 = manager(n1)?;
        m1.add(&a)?;
        thread::sleep(CONTROL_WAIT);
        assert_eq!(client.neigh_mac(a.addr)?, Some(n2.mac()), "moved without our announcement");

        // ...one announcement round must.
        announcer(n1)?.announce(&[a.addr])?;
        let moved = eventually(SWITCH_LIMIT, || Ok(client.neigh_mac(a.addr)? == Some(n1.mac())))?;
        let now = client.neigh_mac(a.addr)?;
        ensure!(moved, "client still maps {} to {} after {SWITCH_LIMIT:?}", a.addr, mac_text(now));
        client.ping(a.addr, PING_LIMIT).context("client pinging the VIP6 on node 1")?;
        Ok(())
    });
}
