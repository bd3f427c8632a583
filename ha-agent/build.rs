//! Embeds the XDP object built by `cargo xtask build-ebpf`. When it is missing the agent still
//! builds (so `cargo build --workspace` and unit tests work) and says at run time what to do.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ha_ebpf_missing)");
    println!("cargo:rerun-if-env-changed=HA_EBPF_OBJECT");
    let object = env::var_os("HA_EBPF_OBJECT").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bpf/bpfel-unknown-none/release/ha-ebpf")
    });
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("ha-ebpf.o");
    match fs::read(&object) {
        Ok(bytes) => fs::write(&out, bytes).expect("writing OUT_DIR/ha-ebpf.o"),
        Err(_) => {
            fs::write(&out, []).expect("writing OUT_DIR/ha-ebpf.o");
            println!("cargo:rustc-cfg=ha_ebpf_missing");
            println!("cargo:warning=no XDP object at {}: run `cargo xtask build-ebpf` first", object.display());
        }
    }
}
