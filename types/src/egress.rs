//! The egress policy's ranges, one definition for the runner (dynos' and builds' traffic, as
//! iptables rules) and the API (log drains, checked before each connection): the internet
//! yes; private, shared (CGNAT), link-local (a cloud's metadata service), loopback and
//! unspecified addresses no, unless an operator allows a range (`OURO_EGRESS_ALLOW`).

use std::net::{IpAddr, Ipv4Addr};

/// IPv4 destinations refused unless allowed, as CIDRs.
pub const PRIVATE_RANGES: [&str; 7] =
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8", "0.0.0.0/8"];

/// An IPv4 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub address: Ipv4Addr,
    pub bits: u8,
}

impl Cidr {
    /// `a.b.c.d/n` or `a.b.c.d` (a /32).
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, bits) = text.split_once('/').unwrap_or((text, "32"));
        let cidr = Cidr { address: address.parse().ok()?, bits: bits.parse().ok().filter(|b| *b <= 32)? };
        Some(cidr)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.bits == 0 { 0 } else { u32::MAX << (32 - u32::from(self.bits)) };
        u32::from(ip) & mask == u32::from(self.address) & mask
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.bits)
    }
}

/// The ranges of `OURO_EGRESS_ALLOW` (comma-separated IPv4 CIDRs), each checked.
pub fn parse_allow(value: &str) -> Result<Vec<Cidr>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|range| {
            Cidr::parse(range)
                .ok_or_else(|| format!("OURO_EGRESS_ALLOW: `{range}` is not an IPv4 range like 10.1.0.0/16"))
        })
        .collect()
}

/// Whether the policy lets the platform connect to `ip` on a tenant's behalf.
pub fn permits(ip: IpAddr, allow: &[Cidr]) -> bool {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => {
                let segments = v6.segments();
                let unique_local = segments[0] & 0xfe00 == 0xfc00;
                let link_local = segments[0] & 0xffc0 == 0xfe80;
                return !(v6.is_loopback() || v6.is_unspecified() || unique_local || link_local);
            }
        },
    };
    if allow.iter().any(|range| range.contains(v4)) {
        return true;
    }
    !PRIVATE_RANGES.iter().filter_map(|range| Cidr::parse(range)).any(|range| range.contains(v4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_refused_unless_allowed() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for refused in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "127.0.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!permits(ip(refused), &[]), "{refused}");
        }
        for permitted in ["203.0.113.80", "172.32.0.1", "8.8.8.8", "2001:db8::1"] {
            assert!(permits(ip(permitted), &[]), "{permitted}");
        }
        let allow = parse_allow("10.1.0.0/16, 127.0.0.1").unwrap();
        assert!(permits(ip("10.1.9.9"), &allow) && permits(ip("127.0.0.1"), &allow));
        assert!(!permits(ip("10.2.0.1"), &allow) && !permits(ip("127.0.0.2"), &allow));
        assert!(parse_allow("10.0.0.0/33").unwrap_err().contains("`10.0.0.0/33`"));
        assert!(parse_allow("example.com").is_err());
        assert_eq!(Cidr::parse("192.168.5.7").unwrap().to_string(), "192.168.5.7/32");
    }
}
