//! `cargo xtask package`: a Debian package of the agent, built with `dpkg-deb` from a staged
//! tree, then checked: lintian finds nothing to warn about, and the packaged binary runs.
//!
//! Built by hand rather than with cargo-deb: the package is a handful of files this module
//! lists anyway (cargo-deb would need the same list as metadata), and cargo-deb is not in
//! Debian, so it would cost a `cargo install` of a few minutes on every fresh machine, where
//! `dpkg-deb` and `dpkg-shlibdeps` come with dpkg.
use std::{
    fmt::Write as _,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;

use crate::{
    cmd::{self, Cmd},
    ebpf, setup,
};

#[derive(Debug, Args)]
pub struct PackageArgs {
    /// Skip the prerequisite checks (toolchain, bpf-linker, lintian).
    #[arg(long)]
    pub skip_setup: bool,
}

const NAME: &str = "ha-agent";
/// The Debian revision of this packaging of the crate's version.
const REVISION: &str = "1";
const MAINTAINER: &str = "ha developers <ha-agent@example.org>";
/// Where the packaged binary lives; the unit's ExecStart is rewritten to it.
const BIN: &str = "usr/sbin/ha-agent";
const UNIT: &str = "usr/lib/systemd/system/ha-agent.service";
const CONFIG: &str = "etc/ha-agent/ha-agent.toml";
const DOC: &str = "usr/share/doc/ha-agent";
const MAN: &str = "usr/share/man/man8/ha-agent.8.gz";
const LINTIAN_OVERRIDES: &str = "usr/share/lintian/overrides/ha-agent";
/// What the unit says when installed by hand (README); the package puts the binary in /usr/sbin.
const UNIT_BIN_BY_HAND: &str = "/usr/local/bin/ha-agent";

pub fn run(args: PackageArgs) -> Result<()> {
    let deb = build(args.skip_setup)?;
    check(&deb)
}

/// Builds the package; returns its path.
pub fn build(skip_setup: bool) -> Result<PathBuf> {
    let start = Instant::now();
    // The agent embeds the XDP object: without it the package would ship a socket-only agent.
    ebpf::build(skip_setup)?;
    if !skip_setup {
        setup::packaging_tools()?;
    }
    let root = cmd::workspace_root()?;
    Cmd::new("cargo")
        .current_dir(&root)
        .args(["build", "--profile", "dist", "-p", NAME])
        .run()
        .context("building ha-agent failed (see cargo's output above)")?;
    let target = cmd::host_target_dir()?;
    let binary = target.join("dist").join(NAME);
    let object = fs::read(ebpf::object_path()?).context("reading the XDP object")?;
    ensure!(
        contains(&fs::read(&binary).context("reading the binary")?, &object),
        "{} does not embed the XDP object: rebuild after `cargo xtask build-ebpf`",
        binary.display()
    );

    let version = format!("{}-{REVISION}", crate_version(&root)?);
    let arch = Cmd::new("dpkg").arg("--print-architecture").quiet().read()?.trim().to_string();
    let out_dir = target.join("package");
    let stage = out_dir.join(format!("{NAME}_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let put = |rel: &str, bytes: &[u8], mode: u32| -> Result<()> {
        let path = stage.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        Ok(())
    };

    put(BIN, &fs::read(&binary)?, 0o755)?;
    // The compiler's version notes: nothing reads them (lintian: binary-has-unneeded-section).
    Cmd::new("objcopy").args(["--remove-section", ".comment"]).arg(stage.join(BIN)).quiet().run()?;
    let unit = fs::read_to_string(root.join("dist/ha-agent.service"))?;
    ensure!(unit.contains(UNIT_BIN_BY_HAND), "dist/ha-agent.service no longer runs {UNIT_BIN_BY_HAND}");
    put(UNIT, packaged_unit(&unit).as_bytes(), 0o644)?;
    put(CONFIG, &fs::read(root.join("examples/ha-agent.toml"))?, 0o644)?;
    put(&format!("{DOC}/copyright"), copyright().as_bytes(), 0o644)?;
    put(&format!("{DOC}/changelog.Debian.gz"), &gzip(changelog(&root, &version)?.as_bytes())?, 0o644)?;
    for doc in docs(&root)? {
        let name = doc.file_name().context("doc name")?.to_string_lossy().into_owned();
        put(&format!("{DOC}/{name}"), &fs::read(&doc)?, 0o644)?;
    }
    put(MAN, &gzip(man_page(&stage.join(BIN), &version)?.as_bytes())?, 0o644)?;
    put(LINTIAN_OVERRIDES, lintian_overrides().as_bytes(), 0o644)?;

    let depends = shlib_depends(&stage.join(BIN))?;
    let control = control(&version, &arch, &depends, installed_kib(&stage)?);
    put("DEBIAN/control", control.as_bytes(), 0o644)?;
    put("DEBIAN/conffiles", format!("/{CONFIG}\n").as_bytes(), 0o644)?;
    put("DEBIAN/md5sums", md5sums(&stage)?.as_bytes(), 0o644)?;
    for dir in walk(&stage)?.into_iter().filter(|p| p.is_dir()) {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    }
    fs::set_permissions(&stage, fs::Permissions::from_mode(0o755))?;

    let deb = out_dir.join(format!("{NAME}_{version}_{arch}.deb"));
    // File times from the commit packaged, not the build: the same tree gives the same package.
    let epoch = Cmd::new("git").current_dir(&root).args(["log", "-1", "--format=%ct"]).quiet().read()?;
    Cmd::new("dpkg-deb")
        .env("SOURCE_DATE_EPOCH", epoch.trim())
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb)
        .run()
        .context("dpkg-deb --build failed")?;
    println!(
        "package: {} ({} KiB; binary {} KiB) in {:.0} s",
        deb.display(),
        fs::metadata(&deb)?.len() / 1024,
        fs::metadata(stage.join(BIN))?.len() / 1024,
        start.elapsed().as_secs_f64()
    );
    Ok(deb)
}

/// lintian finds no error or warning; the packaged binary runs: `--version`, `keygen`,
/// `check-config` on the packaged example configuration.
pub fn check(deb: &Path) -> Result<()> {
    let start = Instant::now();
    let lintian = Cmd::new("lintian")
        .args(["--fail-on", "error,warning", "--display-info", "--tag-display-limit", "0"])
        .arg(deb)
        .status()?;
    ensure!(lintian.success(), "lintian found errors or warnings in {} (above)", deb.display());

    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let root = dir.path().join("root");
    Cmd::new("dpkg-deb").arg("-x").arg(deb).arg(&root).run()?;
    let binary = root.join(BIN);
    for rel in [UNIT, CONFIG, MAN, &format!("{DOC}/copyright") as &str] {
        ensure!(root.join(rel).is_file(), "the package lacks /{rel}");
    }
    let unit = fs::read_to_string(root.join(UNIT))?;
    ensure!(unit.contains(&format!("ExecStart=/{BIN} ")), "the packaged unit does not run /{BIN}:\n{unit}");

    let version = Cmd::new(&binary).arg("--version").quiet().read()?;
    let want = format!("{NAME} {}", crate_version(&cmd::workspace_root()?)?);
    ensure!(version.trim() == want, "`ha-agent --version` says {version:?}, want {want:?}");

    let key = dir.path().join("heartbeat.key");
    Cmd::new(&binary).arg("keygen").arg("--out").arg(&key).quiet().read()?;
    let text = fs::read_to_string(&key)?;
    let mode = fs::metadata(&key)?.permissions().mode() & 0o777;
    let hex = text.trim().strip_prefix("1 ").unwrap_or_default();
    ensure!(mode == 0o600, "keygen wrote mode {mode:o}, want 600");
    ensure!(hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()), "keygen wrote {text:?}");
    let again = std::process::Command::new(&binary).arg("keygen").arg("--out").arg(&key).output()?;
    let refusal = String::from_utf8_lossy(&again.stderr);
    ensure!(
        !again.status.success() && refusal.contains("exists") && fs::read_to_string(&key)? == text,
        "keygen over an existing key: {}, {refusal:?}",
        again.status
    );

    // The packaged example configuration passes the packaged binary's check (on `lo`, which
    // every machine has, with the key just made); a refused value fails it.
    let check_config = |extra: &[&str]| -> Result<std::process::Output> {
        let mut c = std::process::Command::new(&binary);
        c.args(["check-config", "--config"]).arg(root.join(CONFIG)).arg("--key-file").arg(&key);
        Ok(c.args(["--iface", "lo"]).args(extra).output()?)
    };
    let ok = check_config(&[])?;
    let said = String::from_utf8_lossy(&ok.stdout);
    ensure!(
        ok.status.success() && said.contains("configuration OK"),
        "check-config refused the packaged example: {said}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = check_config(&["--priority", "0"])?;
    ensure!(!bad.status.success(), "check-config accepted --priority 0");
    println!("package: lintian clean; the packaged binary runs (checked in {:.0} s)", start.elapsed().as_secs_f64());
    Ok(())
}

/// The unit as the package installs it: the binary in /usr/sbin, and without the comment on
/// installing by hand that heads the file in dist/.
fn packaged_unit(unit: &str) -> String {
    let body: Vec<&str> = unit.lines().skip_while(|l| l.starts_with('#')).collect();
    format!("# Installed by the ha-agent package.\n{}\n", body.join("\n").replace(UNIT_BIN_BY_HAND, &format!("/{BIN}")))
}

fn crate_version(root: &Path) -> Result<String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml"))?;
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| {
            l.trim().strip_prefix("version")?.trim().strip_prefix('=').map(|v| v.trim().trim_matches('"').to_string())
        })
        .context("no version in [workspace.package] of Cargo.toml")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn docs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut docs = vec![root.join("README.md")];
    let mut pages: Vec<PathBuf> = fs::read_dir(root.join("docs"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    docs.extend(pages);
    Ok(docs)
}

/// Every path under `dir`, parents before children.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        out.push(path.clone());
        if path.is_dir() {
            out.extend(walk(&path)?);
        }
    }
    Ok(out)
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("f");
    fs::write(&file, bytes)?;
    // -n: no name or time stamp, so the package does not change with the build time.
    Cmd::new("gzip").args(["-9", "-n"]).arg(&file).quiet().run()?;
    Ok(fs::read(dir.path().join("f.gz"))?)
}

fn md5sums(stage: &Path) -> Result<String> {
    let files: Vec<PathBuf> = walk(stage)?
        .into_iter()
        .filter(|p| p.is_file() && !p.strip_prefix(stage).is_ok_and(|r| r.starts_with("DEBIAN")))
        .collect();
    let mut sums = Cmd::new("md5sum").current_dir(stage);
    for f in &files {
        sums = sums.arg(f.strip_prefix(stage)?);
    }
    sums.quiet().read()
}

fn installed_kib(stage: &Path) -> Result<u64> {
    let mut bytes = 0;
    for p in walk(stage)? {
        if p.is_file() {
            bytes += fs::metadata(&p)?.len().div_ceil(1024) * 1024;
        }
    }
    Ok(bytes / 1024)
}

/// The binary's library dependencies as Debian package versions (libc6 (>= 2.34), ...).
fn shlib_depends(binary: &Path) -> Result<String> {
    let dir = tempfile::tempdir()?;
    fs::create_dir(dir.path().join("debian"))?;
    fs::write(
        dir.path().join("debian/control"),
        format!("Source: {NAME}\nMaintainer: {MAINTAINER}\n\nPackage: {NAME}\nArchitecture: any\n"),
    )?;
    let out = Cmd::new("dpkg-shlibdeps")
        .current_dir(dir.path())
        .arg("-O")
        .arg(format!("-e{}", binary.display()))
        .quiet()
        .read()?;
    match out.lines().find_map(|l| l.strip_prefix("shlibs:Depends=")) {
        Some(deps) if !deps.trim().is_empty() => Ok(deps.trim().to_string()),
        _ => bail!("dpkg-shlibdeps named no dependencies for {}: {out}", binary.display()),
    }
}

fn control(version: &str, arch: &str, depends: &str, installed_kib: u64) -> String {
    format!(
        "Package: {NAME}
Version: {version}
Architecture: {arch}
Maintainer: {MAINTAINER}
Installed-Size: {installed_kib}
Depends: {depends}
Section: net
Priority: optional
Description: eBPF-assisted failover of a shared IP address
 The agent moves a shared (virtual) IP address between two or more Linux
 servers on one LAN, like keepalived's VRRP. Every node sends an
 authenticated heartbeat every few milliseconds; an XDP program records
 them in the kernel, and the most worthy live node holds the address.
 Planned moves are make-before-break: clients lose no packet.
 .
 The package ships the agent (with its XDP program), a systemd unit
 (not enabled), an example configuration in /etc/ha-agent and the
 documentation. Start with: ha-agent keygen; edit
 /etc/ha-agent/ha-agent.toml; systemctl enable --now ha-agent.
"
    )
}

fn copyright() -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ha
Upstream-Contact: {MAINTAINER}

Files: *
Copyright: 2026 the ha developers
License: MIT or Apache-2.0

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the \"Software\"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the \"License\"); you may not
 use this file except in compliance with the License.
 .
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
"
    )
}

fn changelog(root: &Path, version: &str) -> Result<String> {
    // The date of the commit packaged: the same tree gives the same package.
    let date = Cmd::new("git").current_dir(root).args(["log", "-1", "--format=%cD"]).quiet().read()?;
    Ok(format!(
        "{NAME} ({version}) unstable; urgency=medium\n\n  * Built by `cargo xtask package` from the ha workspace.\n\n -- {MAINTAINER}  {}\n",
        date.trim()
    ))
}

/// Tags lintian raises that do not apply, each with why (shipped in the package, as lintian
/// expects overrides to be).
fn lintian_overrides() -> String {
    format!(
        "# Built outside Debian's archive and never uploaded to it: there is no ITP bug to close.
{NAME}: initial-upload-closes-no-bugs [usr/share/doc/{NAME}/changelog.Debian.gz:1]
"
    )
}

/// A man page from the binary's own help: `ha-agent --help` and each command's.
fn man_page(binary: &Path, version: &str) -> Result<String> {
    let help = Cmd::new(binary).arg("--help").quiet().read()?;
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    ensure!(!commands.is_empty(), "no commands in `ha-agent --help`:\n{help}");
    let mut page = String::new();
    writeln!(page, ".TH HA-AGENT 8 \"\" \"ha-agent {version}\" \"System Administration\"")?;
    writeln!(page, ".SH NAME\nha-agent \\- eBPF-assisted failover of a shared IP address")?;
    writeln!(page, ".SH SYNOPSIS\n.B ha-agent\n.I command\n[options]")?;
    writeln!(
        page,
        ".SH DESCRIPTION\nThe agent moves a shared IP address between Linux servers on one LAN. \
         The commands and their options follow, as \\fBha-agent\\fR \\fIcommand\\fR \\fB\\-\\-help\\fR prints them. \
         The full documentation is in /usr/share/doc/ha-agent."
    )?;
    writeln!(page, ".SH OPTIONS\n.nf\n{}\n.fi", roff_text(&help))?;
    for command in &commands {
        let text = Cmd::new(binary).args([command.as_str(), "--help"]).quiet().read()?;
        writeln!(page, ".SS {command}\n.nf\n{}\n.fi", roff_text(&text))?;
    }
    writeln!(page, ".SH FILES\n.TP\n/etc/ha-agent/ha-agent.toml\nthe configuration the systemd unit runs with")?;
    writeln!(page, ".TP\n/etc/ha-agent/heartbeat.key\nthe heartbeat key (\\fBha-agent keygen\\fR)")?;
    writeln!(page, ".SH SEE ALSO\n.BR systemctl (1),\n.BR journalctl (1)")?;
    Ok(page)
}

/// Literal text for a no-fill block: backslashes, leading dots and quotes, and minus signs
/// escaped.
fn roff_text(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') { format!("\\&{l}") } else { l }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_unit_runs_the_packaged_binary() -> Result<()> {
        let unit = fs::read_to_string(cmd::workspace_root()?.join("dist/ha-agent.service"))?;
        let packaged = packaged_unit(&unit);
        assert!(packaged.contains("\nExecStart=/usr/sbin/ha-agent run "), "{packaged}");
        assert!(!packaged.contains("/usr/local") && !packaged.contains("install -m"), "{packaged}");
        assert!(packaged.lines().nth(1) == Some("[Unit]"), "{packaged}");
        Ok(())
    }

    #[test]
    fn roff_escapes_what_groff_would_read_as_requests() {
        assert_eq!(roff_text(".x\n'y\n--a \\b"), "\\&.x\n\\&'y\n\\-\\-a \\eb");
    }

    #[test]
    fn the_version_is_the_workspace_s() -> Result<()> {
        let v = crate_version(&cmd::workspace_root()?)?;
        assert!(v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()), "{v}");
        Ok(())
    }

    #[test]
    fn the_control_file_has_what_dpkg_requires() {
        let c = control("0.1.0-1", "amd64", "libc6 (>= 2.34)", 4000);
        for field in
            ["Package: ha-agent\n", "Version: 0.1.0-1\n", "Architecture: amd64\n", "Maintainer: ", "Description: "]
        {
            assert!(c.contains(field), "{field} in\n{c}");
        }
        assert!(
            c.lines()
                .skip_while(|l| !l.starts_with("Description"))
                .skip(1)
                .all(|l| l.starts_with(' ') && l.len() <= 80)
        );
    }
}
