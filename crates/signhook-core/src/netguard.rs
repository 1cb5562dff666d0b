//! Which addresses an endpoint may reach (DESIGN §4, SSRF guard). Without
//! `--dev`, a delivery may not be sent to loopback, private, link-local,
//! CGNAT, multicast, unspecified, documentation or cloud-metadata
//! addresses, nor to the IPv6 transition ranges that lead to them — the
//! places a webhook could be turned against the platform's own
//! network. The check runs on the addresses DNS actually returned, and the
//! sender connects only to a vetted one, so DNS rebinding does not pass.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address range such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a range's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an address range; write it like 10.0.0.0/8 or fd00::/8")]
pub struct CidrError(pub String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let bad = || CidrError(text.to_owned());
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Cidr {
            network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Cidr {
            network: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    /// Whether `ip` lies in this range (an IPv4 range never holds an IPv6
    /// address; callers unwrap IPv4-mapped addresses first).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The ranges no endpoint may reach, with the reason shown in the attempt.
const FORBIDDEN: &[(Cidr, &str)] = &[
    (Cidr::v4(0, 0, 0, 0, 8), "unspecified"),
    (Cidr::v4(10, 0, 0, 0, 8), "private"),
    (Cidr::v4(100, 64, 0, 0, 10), "carrier-grade NAT"),
    (Cidr::v4(127, 0, 0, 0, 8), "loopback"),
    (Cidr::v4(169, 254, 0, 0, 16), "link-local or cloud metadata"),
    (Cidr::v4(172, 16, 0, 0, 12), "private"),
    (Cidr::v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    (Cidr::v4(192, 0, 2, 0, 24), "documentation"),
    (Cidr::v4(192, 88, 99, 0, 24), "6to4 relay (deprecated)"),
    (Cidr::v4(192, 168, 0, 0, 16), "private"),
    (Cidr::v4(198, 18, 0, 0, 15), "benchmarking"),
    (Cidr::v4(198, 51, 100, 0, 24), "documentation"),
    (Cidr::v4(203, 0, 113, 0, 24), "documentation"),
    (Cidr::v4(224, 0, 0, 0, 4), "multicast"),
    (Cidr::v4(240, 0, 0, 0, 4), "reserved"),
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    // Transition and deprecated ranges: each embeds or tunnels to another
    // address (often IPv4) that the kernel or a relay may reach, so none is
    // judged by what it seems to contain.
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96), "IPv4-compatible (deprecated)"),
    (Cidr::v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96), "IPv4-mapped"),
    (Cidr::v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96), "IPv4-translated"),
    (Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), "local-use NAT64"),
    (Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard-only"),
    (Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), "Teredo tunnel"),
    (Cidr::v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48), "benchmarking"),
    (Cidr::v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28), "ORCHID (deprecated)"),
    (Cidr::v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28), "ORCHIDv2"),
    (Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), "6to4 tunnel"),
    (Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "site-local (deprecated)"),
    (Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "unique local (private)"),
    (Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
    (Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
];

/// Why an address may not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is a {reason} address, which endpoints may not use")]
pub struct Forbidden {
    /// The address.
    pub ip: IpAddr,
    /// What kind of address it is.
    pub reason: &'static str,
}

/// The operator's rule for endpoint addresses.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// `--dev`: every address is allowed.
    pub allow_all: bool,
    /// `--allow-endpoint-cidr`: ranges allowed despite the list above.
    pub allowed: Vec<Cidr>,
}

impl AddressPolicy {
    /// Whether `ip` may be reached. Well-known NAT64 addresses
    /// (`64:ff9b::/96`) are judged by the IPv4 address inside them; every
    /// other range that embeds or tunnels to another address is refused.
    pub fn check(&self, ip: IpAddr) -> Result<(), Forbidden> {
        if self.allow_all {
            return Ok(());
        }
        let ip = embedded_v4(ip).map_or(ip, IpAddr::V4);
        if self.allowed.iter().any(|range| range.contains(ip)) {
            return Ok(());
        }
        match FORBIDDEN.iter().find(|(range, _)| range.contains(ip)) {
            Some((_, reason)) => Err(Forbidden { ip, reason }),
            None => Ok(()),
        }
    }
}

/// The IPv4 address inside a well-known NAT64 (`64:ff9b::a.b.c.d`) IPv6
/// address: a public IPv4 service reached from an IPv6-only network.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses_table() {
        let policy = AddressPolicy::default();
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "192.0.2.10",
            "198.51.100.7",
            "203.0.113.9",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            // The transition and deprecated ranges of the hardening issue,
            // each with a public-looking address inside.
            "::8.8.8.8",
            "::7f00:1",
            "::ffff:93.184.216.34",
            "::ffff:0:7f00:1",
            "::ffff:0:808:808",
            "64:ff9b:1::a00:1",
            "64:ff9b:1::808:808",
            "2002:7f00:1::1",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "feff::1",
            "100::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "192.88.99.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(policy.check(ip).is_err(), "{ip} should be refused");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2a00:1450:4001::200e",
            "2001:4860:4860::8888",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(policy.check(ip), Ok(()), "{ip} should be allowed");
        }
    }

    #[test]
    fn reasons_name_the_kind_of_address() {
        let err = AddressPolicy::default()
            .check("169.254.169.254".parse().unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("cloud metadata"), "{err}");
    }

    #[test]
    fn operators_may_allow_a_range_and_dev_allows_all() {
        let policy = AddressPolicy {
            allow_all: false,
            allowed: vec!["10.1.0.0/16".parse().unwrap()],
        };
        assert_eq!(policy.check("10.1.2.3".parse().unwrap()), Ok(()));
        assert!(policy.check("10.2.0.1".parse().unwrap()).is_err());
        let dev = AddressPolicy {
            allow_all: true,
            allowed: vec![],
        };
        assert_eq!(dev.check("127.0.0.1".parse().unwrap()), Ok(()));
    }

    #[test]
    fn ranges_parse_and_refuse_nonsense() {
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert!("fd00::/8".parse::<Cidr>().unwrap().contains("fd00::1".parse().unwrap()));
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        for bad in ["10.0.0.0", "10.0.0.0/33", "ten/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
