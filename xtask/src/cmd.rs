//! Running external commands: echo what runs, turn failures into one-line errors.
use std::{
    env,
    ffi::{OsStr, OsString},
    fmt::Write as _,
    io::ErrorKind,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
};

use anyhow::{Context, Result, anyhow, bail};

/// The workspace root (parent of xtask's manifest dir).
pub fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's CARGO_MANIFEST_DIR has no parent directory")
}

/// Cargo's target directory for host builds: `$CARGO_TARGET_DIR` (relative to the directory
/// cargo was invoked from) or `<workspace>/target`.
pub fn host_target_dir() -> Result<PathBuf> {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                Ok(dir)
            } else {
                Ok(env::current_dir().context("reading the current directory")?.join(dir))
            }
        }
        _ => Ok(workspace_root()?.join("target")),
    }
}

/// Effective uid of this process (from /proc; no libc dependency).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Finds an executable in `$PATH`, then in the sbin directories (which non-root PATHs often lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Exit code of a finished process as a shell would report it.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

/// A command that echoes itself (`$ VAR=x prog args`) to stderr before running.
pub struct Cmd {
    inner: Command,
    program: String,
    shown_env: Vec<(String, String)>,
    echo: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let program_ref = program.as_ref();
        Self {
            inner: Command::new(program_ref),
            program: program_ref.to_string_lossy().into_owned(),
            shown_env: Vec::new(),
            echo: true,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.inner.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable and shows it in the echo.
    pub fn env(mut self, key: &str, val: impl AsRef<OsStr>) -> Self {
        self.shown_env.push((key.to_string(), val.as_ref().to_string_lossy().into_owned()));
        self.inner.env(key, val);
        self
    }

    /// Sets an environment variable without showing it (e.g. PATH).
    pub fn env_quiet(mut self, key: &str, val: impl AsRef<OsStr>) -> Self {
        self.inner.env(key, val);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.inner.env_remove(key);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.inner.current_dir(dir);
        self
    }

    /// Don't echo (for quick probes).
    pub fn quiet(mut self) -> Self {
        self.echo = false;
        self
    }

    /// The command line as shown to the user.
    pub fn display(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.shown_env {
            let _ = write!(s, "{k}={} ", shell_quote(v));
        }
        s.push_str(&shell_quote(&self.program));
        for a in self.inner.get_args() {
            s.push(' ');
            s.push_str(&shell_quote(&a.to_string_lossy()));
        }
        s
    }

    fn spawn_error(&self, e: std::io::Error) -> anyhow::Error {
        if e.kind() == ErrorKind::NotFound {
            anyhow!("`{}` not found in PATH", self.program)
        } else {
            anyhow!("could not run `{}`: {e}", self.program)
        }
    }

    /// Runs with inherited stdio; returns the exit status whatever it is.
    pub fn status(mut self) -> Result<ExitStatus> {
        if self.echo {
            eprintln!("$ {}", self.display());
        }
        self.inner.status().map_err(|e| self.spawn_error(e))
    }

    /// Runs with inherited stdio; a non-zero exit is an error.
    pub fn run(self) -> Result<()> {
        let shown = self.display();
        let status = self.status()?;
        if !status.success() {
            bail!("`{shown}` failed ({})", describe(status));
        }
        Ok(())
    }

    /// Runs capturing stdout (stderr is discarded); a non-zero exit is an error.
    pub fn read(mut self) -> Result<String> {
        if self.echo {
            eprintln!("$ {}", self.display());
        }
        let out = self.inner.stdin(Stdio::null()).stderr(Stdio::null()).output().map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            bail!("`{}` failed ({})", self.display(), describe(out.status));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// `dir` prepended to `$PATH`.
pub fn path_with(dir: &Path) -> OsString {
    let old = env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(env::split_paths(&old));
    env::join_paths(dirs).unwrap_or(old)
}
