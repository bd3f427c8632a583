//! A shared address as the operator writes it (`192.0.2.200/24`): a value type with its
//! parsing, kept apart from the netlink code so the configuration depends on no I/O.
use std::{fmt, net::IpAddr, str::FromStr};

use thiserror::Error;

/// An address with its prefix length, e.g. `192.0.2.200/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SharedAddr {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Why a string is not a usable shared address.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SharedAddrError {
    #[error("{input:?} is not an IP address (expected e.g. 192.0.2.200/24 or 2001:db8::200/64)")]
    NotAnAddress { input: String },
    #[error("prefix length {prefix:?} in {input:?} is not a number")]
    BadPrefix { input: String, prefix: String },
    #[error("prefix length /{prefix} in {input:?} is out of range: use /1 to /{max} for this address family")]
    PrefixOutOfRange { input: String, prefix: u32, max: u8 },
    #[error("{addr} cannot be a shared address: it is not a unicast address")]
    NotUnicast { addr: IpAddr },
}

impl SharedAddr {
    /// Longest prefix for the address family (also the default prefix).
    pub fn max_prefix(addr: IpAddr) -> u8 {
        match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }
}

impl FromStr for SharedAddr {
    type Err = SharedAddrError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (addr_part, prefix_part) = match input.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (input, None),
        };
        let addr: IpAddr = addr_part.parse().map_err(|_| SharedAddrError::NotAnAddress { input: input.to_owned() })?;
        if !is_unicast(addr) {
            return Err(SharedAddrError::NotUnicast { addr });
        }
        let max = Self::max_prefix(addr);
        let prefix = match prefix_part {
            None => max,
            Some(p) => parse_prefix(input, p, max)?,
        };
        Ok(SharedAddr { addr, prefix })
    }
}

fn parse_prefix(input: &str, text: &str, max: u8) -> Result<u8, SharedAddrError> {
    // Parse wider than u8 so "/300" is reported as out of range, not garbage.
    let value: u32 =
        text.parse().map_err(|_| SharedAddrError::BadPrefix { input: input.to_owned(), prefix: text.to_owned() })?;
    // /0 would make the shared address cover the whole address space.
    match u8::try_from(value) {
        Ok(p) if (1..=max).contains(&p) => Ok(p),
        _ => Err(SharedAddrError::PrefixOutOfRange { input: input.to_owned(), prefix: value, max }),
    }
}

fn is_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

impl fmt::Display for SharedAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn parse(s: &str) -> Result<SharedAddr, SharedAddrError> {
        s.parse()
    }

    #[test]
    fn parses_ipv4_with_prefix() {
        let a = parse("192.0.2.200/24").expect("valid");
        assert_eq!(a.addr, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)));
        assert_eq!(a.prefix, 24);
        assert_eq!(a.to_string(), "192.0.2.200/24");
    }

    #[test]
    fn parses_ipv6_with_prefix() {
        let a = parse("2001:db8::200/64").expect("valid");
        assert_eq!(a.addr, "2001:db8::200".parse::<IpAddr>().expect("literal"));
        assert_eq!(a.prefix, 64);
        assert_eq!(a.to_string(), "2001:db8::200/64");
    }

    #[test]
    fn prefix_defaults_to_host_route() {
        assert_eq!(parse("192.0.2.200").expect("valid").prefix, 32);
        assert_eq!(parse("2001:db8::200").expect("valid").prefix, 128);
    }

    #[test]
    fn display_round_trips() {
        for s in ["10.0.0.1/8", "192.0.2.200/32", "fe80::1/64", "2001:db8::200/128"] {
            assert_eq!(parse(s).expect("valid").to_string(), s);
        }
    }

    #[test]
    fn rejects_prefix_out_of_range() {
        for (s, prefix, max) in [
            ("192.0.2.200/33", 33, 32),
            ("192.0.2.200/0", 0, 32),
            ("2001:db8::200/129", 129, 128),
            ("192.0.2.200/300", 300, 32),
        ] {
            let err = parse(s).expect_err(s);
            assert_eq!(err, SharedAddrError::PrefixOutOfRange { input: s.into(), prefix, max });
            assert!(err.to_string().contains("out of range"), "{err}");
        }
    }

    #[test]
    fn rejects_non_numeric_prefix() {
        for s in ["192.0.2.200/", "192.0.2.200/abc", "192.0.2.200/24/1", "192.0.2.200/-1"] {
            let err = parse(s).expect_err(s);
            assert!(matches!(err, SharedAddrError::BadPrefix { .. }), "{s}: {err:?}");
            assert!(err.to_string().contains("not a number"), "{err}");
        }
    }

    #[test]
    fn rejects_non_addresses() {
        for s in ["", "eth0", "192.0.2/24", "192.0.2.300/24", "host.example/24", " 192.0.2.1"] {
            let err = parse(s).expect_err(s);
            assert!(matches!(err, SharedAddrError::NotAnAddress { .. }), "{s}: {err:?}");
            assert!(err.to_string().contains("is not an IP address"), "{err}");
        }
    }

    #[test]
    fn rejects_non_unicast() {
        for s in ["0.0.0.0/24", "224.0.0.18/32", "255.255.255.255", "::/64", "ff02::1/128"] {
            let err = parse(s).expect_err(s);
            assert!(matches!(err, SharedAddrError::NotUnicast { .. }), "{s}: {err:?}");
        }
    }
}
