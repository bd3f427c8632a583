//! Prerequisites: the pinned Rust toolchain (+ rust-src), bpf-linker, and the apt tools the lab
//! tests and demo use. Each is checked cheaply; only what is missing gets installed.
use std::{env, fs, path::PathBuf};

use anyhow::{Context, Result, bail};

use crate::cmd::{self, Cmd};

/// bpf-linker release to install (`--version` must report this major.minor).
pub const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_SERIES: &str = "0.13.";
/// LLVM that bpf-linker links against; must match the pinned rustc's LLVM.
pub const LLVM_MAJOR: u32 = 22;
/// Rustc that compiled this xtask binary (see build.rs).
const XTASK_RUSTC_RELEASE: &str = env!("XTASK_RUSTC_RELEASE");

/// (command the tests/demo run, Debian package that provides it)
const APT_TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("bpftool", "bpftool"),
    ("ping", "iputils-ping"),
    ("tcpdump", "tcpdump"),
    ("arping", "arping"),
    // The test suite runs `promtool check metrics` on a scrape; the package also ships the
    // Prometheus server, which setup stops again (see `stop_package_service`).
    ("promtool", "prometheus"),
    // The routed-mode lab runs BIRD 2 as every node's and the router's BGP speaker, each in its
    // namespace; the package's own daemon in the root namespace is stopped again likewise.
    ("bird", "bird2"),
];

/// The toolchain pinned by rust-toolchain.toml.
pub struct Toolchain {
    pub channel: String,
    pub components: Vec<String>,
}

impl Toolchain {
    pub fn load() -> Result<Self> {
        let path = cmd::workspace_root()?.join("rust-toolchain.toml");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        // Tiny parser for the two keys we need; avoids a toml dependency.
        let value = |key: &str| {
            text.lines().map(str::trim).find_map(|l| {
                let rest = l.strip_prefix(key)?.trim_start().strip_prefix('=')?;
                Some(rest.trim().to_string())
            })
        };
        let channel = value("channel")
            .map(|v| v.trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
            .with_context(|| format!("no `channel = \"...\"` in {}", path.display()))?;
        let components = value("components")
            .map(|v| {
                v.trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(|c| c.trim().trim_matches('"').to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self { channel, components })
    }

    fn install_hint(&self) -> String {
        let mut s = format!("rustup toolchain install {} --profile minimal", self.channel);
        for c in &self.components {
            s.push_str(" -c ");
            s.push_str(c);
        }
        s
    }
}

/// Fails unless this xtask binary was compiled by the pinned toolchain. Cheap; no subprocess.
pub fn check_xtask_toolchain(tc: &Toolchain) -> Result<()> {
    let pinned_is_version = tc.channel.split('.').all(|p| p.parse::<u32>().is_ok());
    if pinned_is_version && XTASK_RUSTC_RELEASE != tc.channel {
        bail!(
            "xtask was compiled by rustc {XTASK_RUSTC_RELEASE} but rust-toolchain.toml pins {ch}; \
             run `{hint}` if needed, then re-run plain `cargo xtask ...` from the repo \
             (no `cargo +toolchain`, no RUSTUP_TOOLCHAIN override)",
            ch = tc.channel,
            hint = tc.install_hint(),
        );
    }
    Ok(())
}

/// Checks every prerequisite and installs what is missing.
pub fn run() -> Result<()> {
    let tc = Toolchain::load()?;
    let mut oks: Vec<String> = Vec::new();
    let mut installed_any = false;

    // 1. Rust toolchain and components.
    let rustup = find_tool("rustup").context(
        "`rustup` not found in PATH: install rustup (https://rustup.rs) and make sure \
         ~/.cargo/bin is in PATH",
    )?;
    let toolchains = Cmd::new(&rustup).args(["toolchain", "list"]).quiet().read()?;
    let have_toolchain = toolchains.lines().any(|l| {
        let name = l.split_whitespace().next().unwrap_or("");
        name == tc.channel || name.starts_with(&format!("{}-", tc.channel))
    });
    if !have_toolchain {
        step(&format!("installing Rust toolchain {}", tc.channel));
        Cmd::new(&rustup)
            .args(["toolchain", "install", &tc.channel, "--profile", "minimal"])
            .args(tc.components.iter().flat_map(|c| ["-c", c.as_str()]))
            .run()
            .with_context(|| {
                format!(
                    "could not install Rust {} (is static.rust-lang.org reachable?); \
                     retry or run `{}` by hand",
                    tc.channel,
                    tc.install_hint()
                )
            })?;
        installed_any = true;
    } else {
        let installed =
            Cmd::new(&rustup).args(["component", "list", "--installed", "--toolchain", &tc.channel]).quiet().read()?;
        let missing: Vec<&str> = tc
            .components
            .iter()
            .map(String::as_str)
            .filter(|c| !installed.lines().map(str::trim).any(|l| l == *c || l.starts_with(&format!("{c}-"))))
            .collect();
        if missing.is_empty() {
            oks.push(format!("Rust {} ({})", tc.channel, tc.components.join(", ")));
        } else {
            step(&format!("adding components to Rust {}: {}", tc.channel, missing.join(" ")));
            Cmd::new(&rustup)
                .args(["component", "add", "--toolchain", &tc.channel])
                .args(&missing)
                .run()
                .with_context(|| {
                    format!(
                        "could not add {} to Rust {} (is static.rust-lang.org reachable?)",
                        missing.join(" "),
                        tc.channel
                    )
                })?;
            installed_any = true;
        }
    }
    check_xtask_toolchain(&tc)?;

    // 2. What apt must provide: the lab tools, plus llvm-N-dev if bpf-linker must be built.
    let linker_ok = bpf_linker_version().filter(|v| v.starts_with(BPF_LINKER_SERIES));
    let mut apt_missing: Vec<&str> = Vec::new();
    let mut tools_ok: Vec<&str> = Vec::new();
    for (tool, pkg) in APT_TOOLS {
        if find_tool(tool).is_some() {
            tools_ok.push(tool);
        } else {
            apt_missing.push(pkg);
        }
    }
    let llvm_dev = format!("llvm-{LLVM_MAJOR}-dev");
    let llvm_prefix = format!("/usr/lib/llvm-{LLVM_MAJOR}");
    if linker_ok.is_none() && !dpkg_installed(&llvm_dev) {
        apt_missing.push(&llvm_dev);
    }
    if !tools_ok.is_empty() {
        oks.push(tools_ok.join(", "));
    }
    if !apt_missing.is_empty() {
        apt_install(&apt_missing)?;
        installed_any = true;
        if apt_missing.contains(&"prometheus") {
            stop_package_service("prometheus.service");
        }
        if apt_missing.contains(&"bird2") {
            stop_package_service("bird.service");
        }
        for (tool, pkg) in APT_TOOLS {
            if apt_missing.contains(pkg) && find_tool(tool).is_none() {
                bail!("installed {pkg} but `{tool}` is still not found in PATH or /usr/sbin");
            }
        }
    }

    // 3. bpf-linker.
    match linker_ok {
        Some(v) => oks.push(format!("bpf-linker {v}")),
        None => {
            match bpf_linker_version() {
                Some(v) => {
                    step(&format!("bpf-linker {v} found, need {BPF_LINKER_SERIES}x: installing {BPF_LINKER_VERSION}"))
                }
                None => step(&format!("installing bpf-linker {BPF_LINKER_VERSION} (takes ~1 min)")),
            }
            let cargo = env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| "cargo".into());
            Cmd::new(cargo)
                .env("LLVM_PREFIX", &llvm_prefix)
                .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--locked"])
                .args(["--no-default-features", "--features", &format!("llvm-{LLVM_MAJOR}")])
                .arg("--force")
                .env_remove("CARGO_TARGET_DIR")
                // Installing with the pinned toolchain is intended; skip cargo's hint about it.
                .env_remove("RUSTUP_TOOLCHAIN_SOURCE")
                .current_dir(cmd::workspace_root()?)
                .run()
                .with_context(|| {
                    format!(
                        "could not build bpf-linker (is crates.io reachable? is {llvm_dev} \
                         installed in {llvm_prefix}?)"
                    )
                })?;
            installed_any = true;
            match bpf_linker_version() {
                Some(v) if v.starts_with(BPF_LINKER_SERIES) => {}
                Some(v) => bail!(
                    "installed bpf-linker {BPF_LINKER_VERSION} but `bpf-linker --version` says {v}: \
                     another bpf-linker shadows it in PATH"
                ),
                None => bail!("installed bpf-linker but cannot run it: add {} to PATH", cargo_bin().display()),
            }
        }
    }

    if installed_any {
        for ok in &oks {
            println!("ok: {ok}");
        }
        println!("prerequisites installed");
    } else {
        println!("prerequisites present: {}", oks.join("; "));
    }
    Ok(())
}

/// (command, Debian package) that `cargo xtask package` needs beyond the build: the library
/// dependencies of the binary (dpkg-shlibdeps) and Debian's package checker.
const PACKAGING_TOOLS: &[(&str, &str)] = &[("dpkg-shlibdeps", "dpkg-dev"), ("lintian", "lintian")];

/// Installs what packaging needs, when it is missing; only packaging asks for it.
pub fn packaging_tools() -> Result<()> {
    let missing: Vec<&str> =
        PACKAGING_TOOLS.iter().filter(|(tool, _)| find_tool(tool).is_none()).map(|(_, pkg)| *pkg).collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    for (tool, pkg) in PACKAGING_TOOLS {
        if find_tool(tool).is_none() {
            bail!("installed {pkg} but `{tool}` is still not found in PATH or /usr/sbin");
        }
    }
    Ok(())
}

fn step(msg: &str) {
    println!("setup: {msg}");
}

/// `$CARGO_HOME/bin` (where `cargo install` puts binaries).
pub fn cargo_bin() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// Path of the bpf-linker rustc will use: from PATH, else `$CARGO_HOME/bin`.
pub fn bpf_linker_path() -> Option<PathBuf> {
    if pretend_missing("bpf-linker") {
        return None;
    }
    cmd::which("bpf-linker").or_else(|| {
        let p = cargo_bin().join("bpf-linker");
        cmd::is_executable(&p).then_some(p)
    })
}

/// Finds a tool like `cmd::which`, but honours `XTASK_PRETEND_MISSING` (comma-separated
/// names, e.g. `bpf-linker,tcpdump`, or `root` to pretend not to be root). That variable only
/// exists to exercise the install/failure paths without uninstalling anything.
fn find_tool(name: &str) -> Option<PathBuf> {
    if pretend_missing(name) {
        return None;
    }
    cmd::which(name)
}

fn pretend_missing(name: &str) -> bool {
    env::var("XTASK_PRETEND_MISSING").is_ok_and(|v| v.split(',').any(|n| n.trim() == name))
}

fn is_root() -> bool {
    cmd::is_root() && !pretend_missing("root")
}

/// `bpf-linker --version` → "0.13.0", or None if it is missing or does not run.
fn bpf_linker_version() -> Option<String> {
    let path = bpf_linker_path()?;
    let out = Cmd::new(path).arg("--version").quiet().read().ok()?;
    out.split_whitespace().nth(1).map(str::to_string)
}

/// Installing `prometheus` (for promtool) or `bird2` enables and starts its daemon under
/// systemd: nothing here needs it outside the lab's namespaces, so it is stopped and disabled
/// again (best effort: without systemd it never started).
fn stop_package_service(unit: &str) {
    if fs::metadata("/run/systemd/system").is_ok()
        && let Some(systemctl) = find_tool("systemctl")
    {
        let _ = Cmd::new(&systemctl).args(["disable", "--now", unit]).quiet().run();
    }
}

fn dpkg_installed(pkg: &str) -> bool {
    Cmd::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .quiet()
        .read()
        .is_ok_and(|s| s.contains("install ok installed"))
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    let list = pkgs.join(" ");
    let apt = find_tool("apt-get");
    let debian = fs::metadata("/etc/debian_version").is_ok();
    let Some(apt) = apt.filter(|_| debian) else {
        bail!(
            "missing {list}, and this is not a Debian system with apt-get: install them with your package manager and retry"
        );
    };
    if !is_root() {
        bail!(
            "missing {list}: run `sudo apt-get update && sudo apt-get install -y {list}` (or run this as root) and retry"
        );
    }
    step(&format!("installing apt packages: {list}"));
    Cmd::new(&apt)
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .context("`apt-get update` failed: check network access and /etc/apt/sources.list*")?;
    Cmd::new(&apt)
        .args(["install", "-y", "-q"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .with_context(|| format!("could not apt-get install {list}: check network access and that the packages exist (llvm-{LLVM_MAJOR}-dev is in bookworm-security)"))?;
    Ok(())
}
