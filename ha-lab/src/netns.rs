//! Named network namespaces (`/run/netns/<name>`, the `ip netns` convention) and the one-shot
//! commands the lab runs against them. Creation goes through `ip netns add` (it sets up the
//! shared `/run/netns` mount correctly); deletion and process lookup are native so they also
//! work from the signal-cleanup thread without forking.

use std::{
    collections::HashSet,
    ffi::CString,
    fs,
    io::{self, Write},
    os::{
        fd::{AsRawFd, BorrowedFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
};

use anyhow::{Context, Result, bail};

/// Where `ip netns` keeps its bind-mounted namespace files.
pub const NETNS_DIR: &str = "/run/netns";

/// Serialises `ip netns add/del` within this process: the first `add` sets up the shared
/// `/run/netns` mount, and two racing first-time adds would stack two mounts.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Names of all namespaces in `/run/netns` (empty if the directory does not exist).
pub fn list() -> Result<Vec<String>> {
    let rd = match fs::read_dir(NETNS_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context(format!("listing {NETNS_DIR}")),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.context(format!("listing {NETNS_DIR}"))?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}

pub fn add(name: &str) -> Result<()> {
    let _g = NETNS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    run("ip", &["netns", "add", name]).with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Deletes a named namespace like `ip netns del` (lazy unmount + unlink). Missing is fine.
/// Devices inside die with the namespace once nothing else holds it.
pub fn delete(name: &str) -> Result<()> {
    let _g = NETNS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let p = path(name);
    let c = CString::new(p.as_os_str().as_bytes()).context("namespace path has a NUL byte")?;
    // SAFETY: valid C string.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // EINVAL: not a mount point (half-created); ENOENT: already gone.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
            return Err(e).context(format!("unmounting namespace {name}"));
        }
    }
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).context(format!("removing {}", p.display())),
    }
}

/// Opens the namespace file; the fd is what `setns` needs (close-on-exec).
pub fn open(name: &str) -> Result<OwnedFd> {
    let p = path(name);
    let f = fs::File::open(&p).with_context(|| format!("opening namespace {}", p.display()))?;
    Ok(OwnedFd::from(f))
}

/// Moves the calling thread into the network namespace `fd` refers to.
pub fn enter(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pids of processes (other than this one) whose network namespace is one of `names`:
/// children started with a plain `Command`, or leftovers of a crashed run.
pub fn pids_in(names: &[String]) -> Vec<i32> {
    let wanted: HashSet<(u64, u64)> =
        names.iter().filter_map(|n| fs::metadata(path(n)).ok()).map(|m| (m.dev(), m.ino())).collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| wanted.contains(&(m.dev(), m.ino()))).unwrap_or(false)
        })
        .collect()
}

/// SIGKILLs every process inside the namespaces (see [`pids_in`]).
pub fn kill_pids_in(names: &[String]) {
    for pid in pids_in(names) {
        // SAFETY: plain syscall.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Runs a one-shot command, returning stdout; the error carries the command line and stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    run_with_stdin(program, args, None)
}

pub fn run_with_stdin(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    output(cmd, stdin)
}

/// Runs a prepared command to completion (stdin fed from `stdin`), returning stdout or an error
/// naming the command and quoting its stderr.
pub fn output(mut cmd: Command, stdin: Option<&str>) -> Result<String> {
    let line = command_line(&cmd);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting `{line}`"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().context("stdin pipe missing")?;
        // A failed write shows up as a failed command below, with ip's own message.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().with_context(|| format!("waiting for `{line}`"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("`{line}` failed ({}): {}", out.status, stderr.trim());
    }
    Ok(stdout)
}

pub fn command_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `ip -n <ns> -batch -` with one command per line: one fork for a whole setup step.
pub fn ip_batch(ns: &str, lines: &[String]) -> Result<()> {
    let script = lines.join("\n") + "\n";
    run_with_stdin("ip", &["-n", ns, "-batch", "-"], Some(&script))
        .with_context(|| format!("configuring namespace {ns} with:\n{script}"))?;
    Ok(())
}
