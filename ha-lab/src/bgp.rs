//! BGP in a routed lab ([`Lab::with_router`]): one BIRD 2 process per namespace, the router's
//! and one beside each node's agent, each with a config written here. Each node's speaker peers
//! by eBGP (AS 65000 + i) with the router (AS 65000), with BFD for fast failure detection, and
//! exports only the host routes the agent put into its routing table; the router installs what
//! it learns into its main table, which is how the remote client reaches the holder. The
//! processes are [`Child`]ren: killed on drop, on a signal, and swept with the lab.
use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

use crate::{AgentSettings, Child, Lab, ROUTER_ADDR, netns};

/// The shared address of routed labs (TEST-NET-3): on no subnet of the lab.
pub const ROUTED_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 200);
/// The router's AS; node i's is `ROUTER_AS + i`.
pub const ROUTER_AS: u32 = 65000;

/// How the lab's speakers are configured.
#[derive(Clone, Debug)]
pub struct BgpSettings {
    /// The kernel table each node's agent puts its host routes into (`--route-table`).
    pub table: u32,
    /// The host routes a node may announce, e.g. `203.0.113.200/32`.
    pub prefixes: Vec<String>,
    /// BFD between each node and the router; `None`: BGP's own hold timer (3 s) only.
    pub bfd: Option<Bfd>,
}

/// BFD timers: a neighbour is down after `interval * multiplier` without a packet.
#[derive(Clone, Copy, Debug)]
pub struct Bfd {
    pub interval: Duration,
    pub multiplier: u32,
}

impl Default for BgpSettings {
    fn default() -> Self {
        Self {
            table: 100,
            prefixes: vec![format!("{ROUTED_VIP}/32")],
            // 100 ms: as long as the lab agents' tolerance, and loose enough for a loaded test machine.
            bfd: Some(Bfd { interval: Duration::from_millis(20), multiplier: 5 }),
        }
    }
}

/// The BIRD processes of a routed lab.
pub struct Speakers<'l> {
    lab: &'l Lab,
    pub settings: BgpSettings,
    dir: PathBuf,
    router: Child,
    nodes: Vec<Option<Child>>,
}

/// The `bird` binary (Debian's bird2 puts it in /usr/sbin, which a test's PATH may lack).
pub fn bird_binary() -> Result<PathBuf> {
    find_binary("bird")
}

fn find_binary(name: &str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').filter(|d| !d.is_empty()).map(PathBuf::from);
    dirs.chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("no `{name}` found: install BIRD 2 (`cargo xtask setup` does: apt-get install bird2)"))
}

impl<'l> Speakers<'l> {
    /// Starts the router's speaker and one beside each of nodes 1..=`nodes`.
    pub fn start(lab: &'l Lab, nodes: usize, settings: BgpSettings) -> Result<Self> {
        let router = lab.router().context("BGP speakers need a lab made by Lab::with_router")?;
        ensure!(nodes <= lab.nodes().len(), "{nodes} speakers for a lab of {} nodes", lab.nodes().len());
        let bird = bird_binary()?;
        let dir = lab.scratch_dir().join("bgp");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let spawn = |name: &str, host: &crate::Host, config: String| -> Result<Child> {
            let conf = dir.join(format!("{name}.conf"));
            std::fs::write(&conf, config).with_context(|| format!("writing {}", conf.display()))?;
            let mut cmd = host.command(&bird);
            cmd.arg("-f").arg("-c").arg(&conf).arg("-s").arg(socket(&dir, name));
            host.spawn(cmd)
        };
        let router = spawn("router", router, router_config(lab, nodes, &settings))?;
        let mut speakers = Vec::new();
        for i in 1..=nodes {
            speakers.push(Some(spawn(&format!("n{i}"), lab.node(i), node_config(lab, i, &settings))?));
        }
        Ok(Speakers { lab, settings, dir, router, nodes: speakers })
    }

    /// Node i's speaker's control socket (for `birdc -s`).
    pub fn socket(&self, i: usize) -> PathBuf {
        socket(&self.dir, &format!("n{i}"))
    }

    /// A shell command that exits 0 while node i's session to the router is established: an
    /// agent's `--check`, so that a node the router cannot hear is not chosen.
    pub fn established_check(&self, i: usize) -> Result<String> {
        let birdc = find_binary("birdc")?;
        Ok(format!("{} -s {} show protocols uplink | grep -q Established", birdc.display(), self.socket(i).display()))
    }

    /// Agent settings for routed mode with these speakers: the shared address [`ROUTED_VIP`] as
    /// a host route into the speakers' table, and a check that takes a node's priority to 0
    /// while its speaker has no session to the router (docs/routed.md): a node the router
    /// cannot hear is never chosen, so a returning node takes over only once its route can go
    /// out.
    pub fn agent_settings(&self, priorities: &[u32]) -> Result<AgentSettings> {
        let mut settings = AgentSettings::new(priorities);
        settings.vips = vec![format!("{ROUTED_VIP}/32")];
        settings.extra_args =
            vec!["--mode".into(), "routed".into(), "--route-table".into(), self.settings.table.to_string()];
        for i in 1..=priorities.len() {
            let check = self.established_check(i)?;
            // A slow birdc under load is no failure (timeout 1 s); one pass is proof enough.
            let args = ["--check", &check, "--check-interval", "100ms", "--check-timeout", "1s", "--check-rise", "1"];
            settings.node(i).args = args.map(String::from).to_vec();
        }
        Ok(settings)
    }

    /// Waits until the router has an established session with each of `nodes`.
    pub fn wait_established(&mut self, nodes: &[usize], timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let out = self.birdc("router", &["show", "protocols"]).unwrap_or_default();
            let up = |i: &usize| {
                out.lines().any(|l| l.split_whitespace().next() == Some(&format!("n{i}")) && l.contains("Established"))
            };
            if nodes.iter().all(up) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!("BGP sessions {nodes:?} not established within {timeout:?}:\n{out}\n{}", self.diagnostics());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The next hop the router's kernel uses for `addr` now (`None`: no route).
    pub fn next_hop(&self, addr: Ipv4Addr) -> Result<Option<Ipv4Addr>> {
        let router = self.lab.router().context("no router")?;
        let out = router.ip(&["-4", "route", "show", "exact", &format!("{addr}/32")])?;
        Ok(parse_via(&out))
    }

    /// Polls until the router routes `addr` via `want` (`None`: has no route for it).
    pub fn wait_next_hop(&self, addr: Ipv4Addr, want: Option<Ipv4Addr>, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let now = self.next_hop(addr)?;
            if now == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!("the router routes {addr} via {now:?}, not {want:?}, after {timeout:?}\n{}", self.diagnostics());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs node i's speaker (a crashed routing daemon).
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let child = self.nodes.get_mut(i.wrapping_sub(1)).and_then(Option::take);
        child.with_context(|| format!("node {i} has no speaker"))?.kill()?;
        Ok(())
    }

    /// The speakers' output and the router's view, for a failing assertion.
    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "--- router bird ---\n{}", self.router.output_so_far());
        for (i, child) in self.nodes.iter().enumerate() {
            if let Some(child) = child {
                let _ = writeln!(text, "--- node {} bird ---\n{}", i + 1, child.output_so_far());
            }
        }
        let protocols = self.birdc("router", &["show", "protocols"]).unwrap_or_else(|e| format!("{e:#}"));
        let _ = writeln!(text, "--- router protocols ---\n{protocols}");
        text
    }

    fn birdc(&self, name: &str, args: &[&str]) -> Result<String> {
        let birdc = find_binary("birdc")?;
        let sock = socket(&self.dir, name);
        let mut full = vec!["-s", sock.to_str().context("socket path is not UTF-8")?];
        full.extend_from_slice(args);
        netns::run(birdc.to_str().context("birdc path is not UTF-8")?, &full)
    }
}

fn socket(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.ctl"))
}

/// Fast session (re-)establishment: a lab cannot wait BIRD's default minutes after an error.
const TIMERS: &str = "hold time 3; keepalive time 1; connect delay time 1; connect retry time 1; error wait time 1, 2;";

fn bfd_block(settings: &BgpSettings) -> String {
    settings.bfd.map_or(String::new(), |b| {
        let ms = b.interval.as_millis();
        format!(
            "protocol bfd {{ interface \"eth0\" {{ min rx interval {ms} ms; min tx interval {ms} ms; \
             idle tx interval 100 ms; multiplier {}; }}; }}\n",
            b.multiplier
        )
    })
}

fn prefix_set(settings: &BgpSettings) -> String {
    settings.prefixes.join(", ")
}

/// The router: learns node routes for the shared prefixes only, installs them in its kernel.
pub fn router_config(lab: &Lab, nodes: usize, settings: &BgpSettings) -> String {
    let bfd = if settings.bfd.is_some() { "bfd on;" } else { "" };
    let mut c = format!(
        "log stderr all;\nrouter id {ROUTER_ADDR};\nprotocol device {{ }}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; }}\n{}\
         template bgp node {{\n  local {ROUTER_ADDR} as {ROUTER_AS};\n  {bfd}\n  {TIMERS}\n  \
         ipv4 {{ import filter {{ if net ~ [ {} ] then accept; reject; }}; export none; }};\n}}\n",
        bfd_block(settings),
        prefix_set(settings)
    );
    for i in 1..=nodes {
        let _ = writeln!(c, "protocol bgp n{i} from node {{ neighbor {} as {}; }}", lab.node(i).addr(), node_as(i));
    }
    c
}

/// The protocol number ha-agent gives a route it has handed over (ha-agent's `HANDED_OVER`).
pub const HANDED_OVER_PROTOCOL: u8 = 98;

/// Node i: learns the agent's host routes from its table, exports exactly those to the router,
/// a handed-over one with its AS path made longer.
pub fn node_config(lab: &Lab, i: usize, settings: &BgpSettings) -> String {
    let addr = lab.node(i).addr();
    let bfd = if settings.bfd.is_some() { "bfd on;" } else { "" };
    let set = prefix_set(settings);
    format!(
        "log stderr all;\nrouter id {addr};\nprotocol device {{ }}\n\
         protocol kernel ha {{ kernel table {}; learn; ipv4 {{ import filter {{ if net ~ [ {set} ] then accept; reject; }}; export none; }}; }}\n\
         {}protocol bgp uplink {{\n  local {addr} as {asn};\n  neighbor {ROUTER_ADDR} as {ROUTER_AS};\n  {bfd}\n  {TIMERS}\n  \
         ipv4 {{ import none; export filter {{\n    if ! (net ~ [ {set} ]) then reject;\n    \
         # handed over: still served for a grace, but the successor's route wins\n    \
         if krt_source = {handed_over} then bgp_path.prepend({asn});\n    accept;\n  }}; }};\n}}\n",
        settings.table,
        bfd_block(settings),
        handed_over = HANDED_OVER_PROTOCOL,
        asn = node_as(i),
    )
}

fn node_as(i: usize) -> u32 {
    ROUTER_AS + i as u32
}

/// `203.0.113.200 via 192.0.2.1 dev eth0 proto bird metric 32` -> 192.0.2.1.
fn parse_via(out: &str) -> Option<Ipv4Addr> {
    let mut toks = out.split_whitespace();
    while let Some(t) = toks.next() {
        if t == "via" {
            return toks.next()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_next_hop() {
        let out = "203.0.113.200 via 192.0.2.1 dev eth0 proto bird metric 32 \n";
        assert_eq!(parse_via(out), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(parse_via(""), None);
    }
}
