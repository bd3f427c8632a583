//! Where a shared address lives: `--vip ADDR/PREFIX[@IFACE]` as the operator writes it
//! ([`VipArg`]), and resolved against the heartbeat interface ([`Vip`]). An address on another
//! interface than the heartbeats' (a multi-homed server, keepalived's `dev`) moves with the
//! others: every address of a run is taken and given up together.
use std::{fmt, str::FromStr};

use thiserror::Error;

use super::{SharedAddr, SharedAddrError};

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
const MAX_IFACE_LEN: usize = 15;

/// `192.0.2.200/24`, or `198.51.100.10/32@eth1` for an address carried by `eth1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VipArg {
    pub addr: SharedAddr,
    /// The interface that carries it; None: the heartbeat interface (`--iface`).
    pub iface: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum VipArgError {
    #[error(transparent)]
    Addr(#[from] SharedAddrError),
    #[error("{input:?}: {iface:?} after @ is not an interface name (1 to 15 characters, no /, no blanks)")]
    BadIface { input: String, iface: String },
}

impl FromStr for VipArg {
    type Err = VipArgError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (addr, iface) = match input.split_once('@') {
            Some((addr, iface)) => (addr, Some(iface)),
            None => (input, None),
        };
        let iface = match iface {
            Some(name) if is_iface_name(name) => Some(name.to_string()),
            Some(name) => return Err(VipArgError::BadIface { input: input.into(), iface: name.into() }),
            None => None,
        };
        Ok(Self { addr: addr.parse()?, iface })
    }
}

impl fmt::Display for VipArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.iface {
            Some(iface) => write!(f, "{}@{iface}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

fn is_iface_name(name: &str) -> bool {
    (1..=MAX_IFACE_LEN).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c == '@' || c.is_whitespace() || c.is_control())
}

/// A shared address and the interface that carries it (the heartbeat interface unless given).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Vip {
    pub addr: SharedAddr,
    pub iface: String,
}

impl Vip {
    /// `arg` on its own interface, or on `heartbeat_iface`.
    pub fn resolve(arg: &VipArg, heartbeat_iface: &str) -> Self {
        Self { addr: arg.addr, iface: arg.iface.clone().unwrap_or_else(|| heartbeat_iface.to_string()) }
    }

    /// As the operator would write it next to `--iface heartbeat_iface`: no `@` on that interface.
    pub fn spelt(&self, heartbeat_iface: &str) -> String {
        if self.iface == heartbeat_iface { self.addr.to_string() } else { format!("{}@{}", self.addr, self.iface) }
    }
}

/// The distinct interfaces of `vips`, in order of first mention.
pub fn interfaces(vips: &[Vip]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for vip in vips {
        if !out.contains(&vip.iface.as_str()) {
            out.push(&vip.iface);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interface_after_at_is_kept_and_spelt_back() {
        let arg: VipArg = "198.51.100.10/32@eth1".parse().expect("valid");
        assert_eq!(arg.iface.as_deref(), Some("eth1"));
        assert_eq!(arg.addr.to_string(), "198.51.100.10/32");
        assert_eq!(arg.to_string(), "198.51.100.10/32@eth1");
        let plain: VipArg = "2001:db8::200/64".parse().expect("valid");
        assert_eq!((plain.iface, plain.addr.prefix), (None, 64));
    }

    #[test]
    fn bad_interface_names_and_bad_addresses_are_refused() {
        for s in ["192.0.2.1/24@", "192.0.2.1/24@a/b", "192.0.2.1/24@sixteen-letters-x", "192.0.2.1@eth0@eth1"] {
            let err = s.parse::<VipArg>().expect_err(s);
            assert!(matches!(err, VipArgError::BadIface { .. }), "{s}: {err:?}");
            assert!(err.to_string().contains("not an interface name"), "{err}");
        }
        assert!(matches!("192.0.2.300/24@eth1".parse::<VipArg>(), Err(VipArgError::Addr(_))));
    }

    #[test]
    fn resolved_addresses_name_their_interface_only_when_it_is_not_the_heartbeats() {
        let on = |s: &str| Vip::resolve(&s.parse().expect("valid"), "eth0");
        let (a, b, c) = (on("192.0.2.200/24"), on("198.51.100.10/32@eth1"), on("198.51.100.11/32@eth1"));
        assert_eq!(a.iface, "eth0");
        assert_eq!((a.spelt("eth0"), b.spelt("eth0")), ("192.0.2.200/24".into(), "198.51.100.10/32@eth1".into()));
        assert_eq!(interfaces(&[b, a, c]), ["eth1", "eth0"]);
    }
}
