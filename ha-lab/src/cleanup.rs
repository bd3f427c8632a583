//! Making sure a lab leaves nothing behind: the RAII registration every lab owns, a
//! process-global registry of live labs and children for SIGINT/SIGTERM, and a sweep for what
//! crashed runs (SIGKILL, abort) left.

use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use anyhow::{Context, Result};

use crate::{bpffs, netns};

/// Prefix of every lab's namespaces and pin dirs: `halab-<pid>-<seq>...`.
pub const PREFIX: &str = "halab-";

#[derive(Default)]
struct Registry {
    labs: HashMap<u64, LabEntry>,
    children: HashMap<u64, i32>,
}

struct LabEntry {
    namespaces: Vec<String>,
    pin_root: PathBuf,
    scratch: PathBuf,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
static TOKENS: AtomicU64 = AtomicU64::new(0);

fn registry() -> MutexGuard<'static, Option<Registry>> {
    // A panic while holding the lock leaves the maps consistent (single inserts/removes).
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut g = registry();
    f(g.get_or_insert_with(Registry::default))
}

/// Owns a lab's namespaces, pin dir and scratch dir: dropping it kills whatever runs inside,
/// deletes the namespaces (their veths and bridges go with them) and both dirs. Registered
/// globally so the signal handler can do the same.
pub struct Registration {
    token: u64,
    namespaces: Vec<String>,
    pin_root: PathBuf,
    scratch: PathBuf,
}

/// Where lab `id` keeps its files (key files, configs): `$TMPDIR/<id>`.
pub fn scratch_dir(id: &str) -> PathBuf {
    std::env::temp_dir().join(id)
}

impl Registration {
    /// Registers lab `id`, whose pins go under `pin_root`, and creates its scratch dir (0700).
    pub fn new(id: &str, pin_root: PathBuf) -> Result<Registration> {
        let scratch = scratch_dir(id);
        // Left by a crashed run with our recycled pid (ours would not exist yet).
        for stale in [&pin_root, &scratch] {
            if let Err(e) = remove_tree(stale) {
                eprintln!("ha-lab: removing stale {}: {e}", stale.display());
            }
        }
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        with_registry(|r| {
            r.labs.insert(
                token,
                LabEntry { namespaces: Vec::new(), pin_root: pin_root.clone(), scratch: scratch.clone() },
            )
        });
        let reg = Registration { token, namespaces: Vec::new(), pin_root, scratch };
        // Registered first, so a signal from here on removes it.
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&reg.scratch)
            .with_context(|| format!("creating {}", reg.scratch.display()))?;
        Ok(reg)
    }

    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// Registers the name first, then creates it: a signal in between only finds a name that
    /// does not exist yet, which deletion tolerates.
    pub fn add_namespace(&mut self, name: &str) -> Result<()> {
        self.namespaces.push(name.to_string());
        let token = self.token;
        with_registry(|r| {
            if let Some(l) = r.labs.get_mut(&token) {
                l.namespaces.push(name.to_string());
            }
        });
        // Our pid and a fresh seq, yet it exists: a crashed run that had our (recycled) pid.
        let stale = [name.to_string()];
        if netns::path(name).exists() {
            netns::kill_pids_in(&stale);
            netns::delete(name)?;
        }
        netns::add(name)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        destroy(&self.namespaces, &self.pin_root, &self.scratch);
        with_registry(|r| r.labs.remove(&self.token));
    }
}

/// Best-effort teardown; reports problems on stderr because it runs in Drop and signal paths.
fn destroy(namespaces: &[String], pin_root: &Path, scratch: &Path) {
    netns::kill_pids_in(namespaces);
    for ns in namespaces {
        if let Err(e) = netns::delete(ns) {
            eprintln!("ha-lab: {e:#}");
        }
    }
    for dir in [pin_root, scratch] {
        if let Err(e) = remove_tree(dir) {
            eprintln!("ha-lab: removing {}: {e}", dir.display());
        }
    }
    remove_agent_files(|name| name.starts_with(&flat(pin_root)));
}

/// Where agents keep per-instance files (lock, control socket; maintenance marker), named after
/// their pin directory with '/' as '_'.
const AGENT_FILE_DIRS: [&str; 2] = ["/run/ha-agent", "/var/lib/ha-agent"];

fn flat(pin_root: &Path) -> String {
    format!("{}_", pin_root.to_string_lossy().trim_matches('/').replace('/', "_"))
}

/// Removes agent files whose names `matches`; returns their paths.
fn remove_agent_files(matches: impl Fn(&str) -> bool) -> Vec<String> {
    let mut removed = Vec::new();
    for dir in AGENT_FILE_DIRS {
        let Ok(rd) = fs::read_dir(dir) else { continue };
        for entry in rd.filter_map(|e| e.ok()) {
            if entry.file_name().to_str().is_some_and(&matches) && fs::remove_file(entry.path()).is_ok() {
                removed.push(entry.path().display().to_string());
            }
        }
    }
    removed
}

fn remove_tree(p: &Path) -> io::Result<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Registers a spawned child's pid (its own process group) for signal cleanup.
pub fn register_child(pid: i32) -> u64 {
    let token = TOKENS.fetch_add(1, Ordering::Relaxed);
    with_registry(|r| r.children.insert(token, pid));
    token
}

pub fn unregister_child(token: u64) {
    with_registry(|r| r.children.remove(&token));
}

/// SIGKILLs a child and its process group (ha-lab starts children as group leaders).
pub fn kill_group(pid: i32) {
    // SAFETY: plain syscalls; the pid is still ours (unreaped) when callers use this.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Kills registered children and deletes every registered lab. Keeps the registry locked
/// (forgets the guard) so no new lab can register while the process exits.
fn cleanup_all_and_exit(code: i32) -> ! {
    let mut g = registry();
    if let Some(r) = g.as_mut() {
        for pid in r.children.values() {
            kill_group(*pid);
        }
        for lab in r.labs.values() {
            destroy(&lab.namespaces, &lab.pin_root, &lab.scratch);
        }
    }
    std::mem::forget(g);
    std::process::exit(code)
}

static SIGNALS_INSTALLED: Mutex<bool> = Mutex::new(false);

/// Installs a SIGINT/SIGTERM handler that tears down every live lab and child, then exits
/// with 130. Idempotent. A second signal while cleanup runs exits at once. Uses signal-hook,
/// so it coexists with other handlers in the process.
pub fn install_signal_cleanup() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut installed = SIGNALS_INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if *installed {
        return Ok(());
    }
    let again = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the conditional exit must see the flag set by an earlier signal only.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&again))
            .context("installing second-signal exit")?;
        signal_hook::flag::register(sig, Arc::clone(&again)).context("installing signal flag")?;
    }
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing SIGINT/SIGTERM handler")?;
    std::thread::Builder::new()
        .name("ha-lab-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!("ha-lab: signal {sig}: removing labs");
                cleanup_all_and_exit(130);
            }
        })
        .context("starting signal thread")?;
    *installed = true;
    Ok(())
}

/// Files agents keep for the instances whose pin dirs lie under `pin_root` (locks, control
/// sockets, maintenance markers); a cleanly stopped agent should have removed its own.
pub fn agent_files_under(pin_root: &Path) -> Vec<String> {
    let prefix = flat(pin_root);
    let mut found = Vec::new();
    for dir in AGENT_FILE_DIRS {
        let Ok(rd) = fs::read_dir(dir) else { continue };
        for entry in rd.filter_map(|e| e.ok()) {
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// What a lab with id `lab_id` left behind once it is gone: its namespaces, its pin root, agent
/// files of its pin dirs, and which of `pids` still run. Empty when it cleaned up.
pub fn left_behind(lab_id: &str, pids: &[u32]) -> Result<Vec<String>> {
    let mut left: Vec<String> = netns::list()?
        .into_iter()
        .filter(|n| n.strip_prefix(lab_id).is_some_and(|rest| rest.starts_with('-')))
        .map(|n| format!("namespace {n}"))
        .collect();
    let pin_root = Path::new(bpffs::ROOT).join(lab_id);
    if pin_root.exists() {
        left.push(format!("pin dir {}", pin_root.display()));
    }
    let scratch = scratch_dir(lab_id);
    if scratch.exists() {
        left.push(format!("scratch dir {}", scratch.display()));
    }
    left.extend(agent_files_under(&pin_root).into_iter().map(|f| format!("agent file {f}")));
    for &pid in pids {
        // A zombie counts as gone: it holds nothing but its exit status.
        let running = fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')));
        if running {
            left.push(format!("process {pid}"));
        }
    }
    Ok(left)
}

/// Kills every registered child and removes every live lab, then exits with `code`: for a
/// watchdog that gives up on a hung run.
pub fn cleanup_and_exit(code: i32) -> ! {
    cleanup_all_and_exit(code)
}

/// The pid encoded in a `halab-<pid>-...` name.
fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, tail) = rest.split_once('-')?;
    if tail.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes leftovers of dead processes: namespaces `halab-<pid>-*` (killing anything still
/// running inside), bpffs pin dirs `/sys/fs/bpf/halab-<pid>-*` and scratch dirs
/// `$TMPDIR/halab-<pid>-*`, only where `<pid>` is no
/// longer alive. Returns what it removed. A recycled pid makes a leftover look alive; it is
/// then kept (never remove another live process's lab).
pub fn sweep_leftovers() -> Result<Vec<String>> {
    let dead = |name: &str| owner_pid(name).is_some_and(|pid| !pid_alive(pid));
    let mut removed = Vec::new();
    let stale: Vec<String> = netns::list()?.into_iter().filter(|n| dead(n)).collect();
    netns::kill_pids_in(&stale);
    for ns in stale {
        netns::delete(&ns).with_context(|| format!("sweeping namespace {ns}"))?;
        removed.push(ns);
    }
    let root = Path::new(bpffs::ROOT);
    if bpffs::is_bpffs(root) {
        let rd = fs::read_dir(root).with_context(|| format!("listing {}", root.display()))?;
        for entry in rd.filter_map(|e| e.ok()) {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if dead(&name) {
                let p = entry.path();
                remove_tree(&p).with_context(|| format!("sweeping {}", p.display()))?;
                removed.push(p.display().to_string());
            }
        }
    }
    if let Ok(rd) = fs::read_dir(std::env::temp_dir()) {
        for entry in rd.filter_map(|e| e.ok()) {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && entry.file_name().to_str().is_some_and(dead) {
                let p = entry.path();
                remove_tree(&p).with_context(|| format!("sweeping {}", p.display()))?;
                removed.push(p.display().to_string());
            }
        }
    }
    let pin_prefix = format!("{}_", root.to_string_lossy().trim_matches('/').replace('/', "_"));
    removed.extend(remove_agent_files(|name| name.strip_prefix(&pin_prefix).is_some_and(dead)));
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_lab_names() {
        assert_eq!(owner_pid("halab-1234-0-sw"), Some(1234));
        assert_eq!(owner_pid("halab-1234-0"), Some(1234));
        assert_eq!(owner_pid("halab-1234-"), None);
        assert_eq!(owner_pid("halab-12a4-0"), None);
        assert_eq!(owner_pid("halab--0"), None);
        assert_eq!(owner_pid("other-1234-0"), None);
    }

    #[test]
    fn own_pid_is_alive() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(0));
    }
}
