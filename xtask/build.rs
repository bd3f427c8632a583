//! Records which rustc compiled xtask, so `cargo xtask setup` can check that xtask runs on the
//! toolchain pinned in rust-toolchain.toml (and not under a `+toolchain` override).
use std::{env, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC");
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let release = Command::new(rustc)
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("release:").map(|v| v.trim().to_string())))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=XTASK_RUSTC_RELEASE={release}");
}
