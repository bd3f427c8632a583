//! Building the XDP object (and the release agent, for demo/bench).
use std::{env, fs, path::PathBuf};

use anyhow::{Context, Result, bail};

use crate::{
    cmd::{self, Cmd},
    setup,
};

pub const TARGET: &str = "bpfel-unknown-none";

/// Where the object lands. ha-agent's build.rs embeds this path: it is a contract.
pub fn object_path() -> Result<PathBuf> {
    Ok(cmd::workspace_root()?.join("target/bpf").join(TARGET).join("release/ha-ebpf"))
}

/// Ensures prerequisites (unless `skip_setup`), builds the XDP object, prints its path and size.
pub fn build(skip_setup: bool) -> Result<PathBuf> {
    let tc = setup::Toolchain::load()?;
    if skip_setup {
        setup::check_xtask_toolchain(&tc)?;
    } else {
        setup::run()?;
    }
    let root = cmd::workspace_root()?;
    let linker =
        setup::bpf_linker_path().context("bpf-linker not found: run `cargo xtask setup` (or drop --skip-setup)")?;

    let mut c = Cmd::new("cargo")
        .current_dir(&root)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", root.join("target/bpf"))
        .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_RUSTFLAGS", "-Cdebuginfo=2 -Clink-arg=--btf")
        // These would take precedence over the target-scoped flags above and drop --btf.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args(["build", "-p", "ha-ebpf", "--release", "--target", TARGET, "-Z", "build-std=core"]);
    // rustc looks up `bpf-linker` in PATH; make sure it finds the one we checked.
    if let Some(dir) = linker.parent().filter(|d| cmd::which("bpf-linker").as_deref() != Some(&d.join("bpf-linker"))) {
        c = c.env_quiet("PATH", cmd::path_with(dir));
    }
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
        if env::var_os(var).is_some_and(|v| !v.is_empty()) {
            eprintln!("build-ebpf: note: ignoring {var} for the eBPF build");
        }
    }
    c.run().context("building the eBPF object failed (see cargo's output above)")?;

    let obj = object_path()?;
    let bytes = fs::read(&obj).with_context(|| format!("cargo succeeded but {} is missing", obj.display()))?;
    println!("eBPF object: {} ({} bytes)", obj.display(), bytes.len());
    if !bytes.starts_with(b"\x7fELF") {
        bail!("{} is not an ELF object", obj.display());
    }
    if !elf64_section_names(&bytes).is_some_and(|names| names.iter().any(|n| n == ".BTF")) {
        eprintln!("build-ebpf: warning: {} has no .BTF section; loading will likely fail", obj.display());
    }
    Ok(obj)
}

/// `cargo build --release -p ha-agent`; returns the binary's path.
pub fn build_agent_release() -> Result<PathBuf> {
    let root = cmd::workspace_root()?;
    Cmd::new("cargo")
        .current_dir(&root)
        .args(["build", "--release", "-p", "ha-agent"])
        .run()
        .context("building ha-agent failed (see cargo's output above)")?;
    let bin = cmd::host_target_dir()?.join("release/ha-agent");
    if !bin.is_file() {
        bail!("cargo succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

/// Section names of a little-endian ELF64 object (None if it does not parse).
fn elf64_section_names(b: &[u8]) -> Option<Vec<String>> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| usize::try_from(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?)).ok();
    if b.get(4..6)? != [2, 1] {
        return None; // not ELFCLASS64 + ELFDATA2LSB
    }
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let header = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let strtab = header(shstrndx)?;
    let (str_off, str_size) = (u64_at(strtab + 0x18)?, u64_at(strtab + 0x20)?);
    let names = b.get(str_off..str_off.checked_add(str_size)?)?;
    (0..shnum)
        .map(|i| {
            let name = names.get(u32_at(header(i)?)?..)?;
            let end = name.iter().position(|&c| c == 0)?;
            Some(String::from_utf8_lossy(&name[..end]).into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::elf64_section_names;

    #[test]
    fn parses_own_binary_sections() -> anyhow::Result<()> {
        let bytes = std::fs::read(std::env::current_exe()?)?;
        let names = elf64_section_names(&bytes).ok_or_else(|| anyhow::anyhow!("no parse"))?;
        assert!(names.iter().any(|n| n == ".text"), "{names:?}");
        assert!(!names.iter().any(|n| n == ".BTF"));
        assert!(elf64_section_names(b"\x7fELF").is_none());
        Ok(())
    }
}
