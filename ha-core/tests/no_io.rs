//! The core decides; it must not be able to do I/O. Its dependency tree (normal edges, the
//! code that ships) holds no crate that touches the system.
use std::process::Command;

const FORBIDDEN: [&str; 8] = ["aya", "tokio", "libc", "netlink", "rtnetlink", "socket2", "mio", "nix"];

#[test]
fn the_core_depends_on_nothing_that_does_io() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "-p", "ha-core", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(crates.contains(&"ha-core") && crates.contains(&"ha-common"), "unexpected tree:\n{tree}");
    let bad: Vec<&&str> =
        crates.iter().filter(|c| FORBIDDEN.iter().any(|f| c == &f || c.contains("netlink"))).collect();
    assert!(bad.is_empty(), "ha-core depends on I/O crates {bad:?}:\n{tree}");
}
