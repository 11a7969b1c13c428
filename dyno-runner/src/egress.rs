//! The egress policy of dynos: the internet yes; the host, link-local addresses (a cloud's
//! metadata service at 169.254.169.254) and private ranges no, unless the operator allows a
//! range (`OURO_EGRESS_ALLOW=10.1.0.0/16,…`). The one port of the host a dyno may reach is
//! the API's (builds and add-on providers call it; it wants a token like from anywhere else).
//!
//! Enforced with iptables (the nf_tables backend Docker uses here), in two chains of our own,
//! each rule bound to one app network's bridge (`-i br-<id>`), so that what the runner adds for
//! one network never touches another's or anything outside Ouro:
//! - `OURO-FORWARD`, jumped to first from Docker's `DOCKER-USER`: traffic a dyno sends through
//!   the host (routed): its own network (the app and the add-on servers on it) and replies
//!   pass; allowed ranges pass; private and link-local destinations are dropped; the rest (the
//!   internet, through Docker's masquerade) passes.
//! - `OURO-INPUT`, jumped to first from `INPUT`: traffic a dyno sends to the host itself (its
//!   gateway, any address of the host): replies and the API's port pass, the rest is dropped.
//!
//! The runner applies a network's rules when it makes sure of the network (once per network and
//! runner process) and, at its start, drops the rules of bridges that are gone. Builds run on
//! the builder's network and obey the same policy.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Mutex;

/// Jumped to from `DOCKER-USER` (routed traffic) and `INPUT` (traffic to the host).
const FORWARD_CHAIN: &str = "OURO-FORWARD";
const INPUT_CHAIN: &str = "OURO-INPUT";

/// Destinations no dyno reaches unless allowed: RFC 1918, shared address space (CGNAT),
/// link-local, loopback, and the "this network" block (one list with the API's drains).
pub use ouro_types::egress::PRIVATE_RANGES;

/// The policy, and which bridges already have it in this process.
pub struct Egress {
    /// The host's port dynos may reach (the API's), if any.
    api_port: Option<u16>,
    /// Ranges the operator allows (`OURO_EGRESS_ALLOW`).
    allow: Vec<String>,
    /// The host's DNS resolvers (`/etc/resolv.conf`): Docker's embedded DNS forwards a dyno's
    /// queries to them from the dyno's own network, so they stay reachable on port 53 even in
    /// a private range.
    resolvers: Vec<String>,
    confined: Mutex<HashSet<String>>,
    hooked: Mutex<bool>,
}

impl Egress {
    pub fn new(api_port: Option<u16>, allow: Vec<String>, resolvers: Vec<String>) -> Egress {
        Egress { api_port, allow, resolvers, confined: Mutex::default(), hooked: Mutex::new(false) }
    }

    /// Puts `bridge` (an app network's interface) under the policy, once per process.
    /// Blocking (runs iptables): call it from the blocking pool.
    pub fn confine(&self, bridge: &str) -> Result<(), String> {
        if self.confined.lock().unwrap_or_else(|e| e.into_inner()).contains(bridge) {
            return Ok(());
        }
        // Tried once per bridge: a failure is said once, not at every dyno's start.
        self.confined.lock().unwrap_or_else(|e| e.into_inner()).insert(bridge.to_string());
        self.hook()?;
        for (chain, rule) in rules(bridge, self.api_port, &self.allow, &self.resolvers) {
            ensure_rule(chain, &rule)?;
        }
        Ok(())
    }

    /// Our chains exist and are jumped to first. Idempotent.
    fn hook(&self) -> Result<(), String> {
        let mut hooked = self.hooked.lock().unwrap_or_else(|e| e.into_inner());
        if *hooked {
            return Ok(());
        }
        for (chain, from) in [(FORWARD_CHAIN, "DOCKER-USER"), (INPUT_CHAIN, "INPUT")] {
            // Exists already (another runner, an earlier start): fine.
            let _ = iptables(&["-N", chain]);
            if iptables(&["-C", from, "-j", chain]).is_err() {
                iptables(&["-I", from, "1", "-j", chain])?;
            }
        }
        *hooked = true;
        Ok(())
    }

    /// Removes the rules of bridges that no longer exist (networks removed while no runner
    /// ran, or by another installation). Blocking.
    pub fn prune(&self) {
        for chain in [FORWARD_CHAIN, INPUT_CHAIN] {
            let Ok(listed) = iptables(&["-S", chain]) else { continue };
            for line in listed.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                let Some(bridge) = words.windows(2).find(|w| w[0] == "-i").map(|w| w[1]) else { continue };
                if words.first() != Some(&"-A") || std::path::Path::new("/sys/class/net").join(bridge).exists() {
                    continue;
                }
                let mut delete = words.clone();
                delete[0] = "-D";
                let _ = iptables(&delete);
            }
        }
    }
}

/// The rules of one bridge, in order: (chain, rule without the chain).
pub fn rules(
    bridge: &str,
    api_port: Option<u16>,
    allow: &[String],
    resolvers: &[String],
) -> Vec<(&'static str, Vec<String>)> {
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let on = |rest: &str| words(&format!("-i {bridge} {rest}"));
    let mut rules = vec![
        (FORWARD_CHAIN, on(&format!("-o {bridge} -j RETURN"))),
        (FORWARD_CHAIN, on("-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")),
    ];
    rules.extend(allow.iter().map(|range| (FORWARD_CHAIN, on(&format!("-d {range} -j RETURN")))));
    let dns = |chain: &'static str| {
        resolvers.iter().flat_map(move |address| {
            ["udp", "tcp"].map(|protocol| (chain, on(&format!("-d {address} -p {protocol} --dport 53 -j RETURN"))))
        })
    };
    rules.extend(dns(FORWARD_CHAIN));
    rules.extend(PRIVATE_RANGES.iter().map(|range| (FORWARD_CHAIN, on(&format!("-d {range} -j DROP")))));
    rules.push((INPUT_CHAIN, on("-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")));
    // An allowed range may hold one of the host's own addresses (a service the operator runs).
    rules.extend(allow.iter().map(|range| (INPUT_CHAIN, on(&format!("-d {range} -j RETURN")))));
    rules.extend(dns(INPUT_CHAIN));
    if let Some(port) = api_port {
        rules.push((INPUT_CHAIN, on(&format!("-p tcp --dport {port} -j RETURN"))));
    }
    rules.push((INPUT_CHAIN, on("-j DROP")));
    rules
}

/// Ranges from `OURO_EGRESS_ALLOW` (comma-separated IPv4 CIDRs), each checked.
pub fn parse_allow(value: &str) -> Result<Vec<String>, String> {
    Ok(ouro_types::egress::parse_allow(value)?.iter().map(ToString::to_string).collect())
}

/// The IPv4 nameservers of a `resolv.conf`.
pub fn resolvers(resolv_conf: &str) -> Vec<String> {
    resolv_conf
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .filter(|address| address.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
        .collect()
}

/// The bridge interface Docker gives a bridge network of this id.
pub fn bridge_of(network_id: &str) -> String {
    format!("br-{}", &network_id[..network_id.len().min(12)])
}

fn ensure_rule(chain: &str, rule: &[String]) -> Result<(), String> {
    let check: Vec<&str> = ["-C", chain].into_iter().chain(rule.iter().map(String::as_str)).collect();
    if iptables(&check).is_ok() {
        return Ok(());
    }
    let append: Vec<&str> = ["-A", chain].into_iter().chain(rule.iter().map(String::as_str)).collect();
    iptables(&append).map(|_| ())
}

/// Runs `iptables` (waiting for the xtables lock) and returns its output, or why it failed.
fn iptables(args: &[&str]) -> Result<String, String> {
    let output = Command::new("iptables")
        .arg("-w")
        .arg("5")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run iptables: {e} (install it, or run the runner where it is)"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let said = String::from_utf8_lossy(&output.stderr);
        Err(format!("iptables {}: {}", args.join(" "), said.lines().last().unwrap_or_default().trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridge_keeps_its_own_network_and_the_internet_and_loses_the_host_and_private_ranges() {
        let rules = rules("br-0123456789ab", Some(7700), &["10.1.0.0/16".to_string()], &["10.255.255.53".to_string()]);
        let shown: Vec<String> = rules.iter().map(|(chain, rule)| format!("{chain} {}", rule.join(" "))).collect();
        assert_eq!(shown[0], "OURO-FORWARD -i br-0123456789ab -o br-0123456789ab -j RETURN");
        assert_eq!(shown[1], "OURO-FORWARD -i br-0123456789ab -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN");
        // The operator's range before the private ones it lies in.
        assert_eq!(shown[2], "OURO-FORWARD -i br-0123456789ab -d 10.1.0.0/16 -j RETURN");
        // The host's resolver, for DNS only, before the private ranges it lies in.
        assert_eq!(shown[3], "OURO-FORWARD -i br-0123456789ab -d 10.255.255.53 -p udp --dport 53 -j RETURN");
        assert_eq!(shown[4], "OURO-FORWARD -i br-0123456789ab -d 10.255.255.53 -p tcp --dport 53 -j RETURN");
        assert_eq!(shown[5], "OURO-FORWARD -i br-0123456789ab -d 10.0.0.0/8 -j DROP");
        assert!(shown.contains(&"OURO-FORWARD -i br-0123456789ab -d 169.254.0.0/16 -j DROP".to_string()));
        assert_eq!(
            shown[shown.len() - 6..],
            [
                "OURO-INPUT -i br-0123456789ab -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
                "OURO-INPUT -i br-0123456789ab -d 10.1.0.0/16 -j RETURN",
                "OURO-INPUT -i br-0123456789ab -d 10.255.255.53 -p udp --dport 53 -j RETURN",
                "OURO-INPUT -i br-0123456789ab -d 10.255.255.53 -p tcp --dport 53 -j RETURN",
                "OURO-INPUT -i br-0123456789ab -p tcp --dport 7700 -j RETURN",
                "OURO-INPUT -i br-0123456789ab -j DROP",
            ]
        );
        assert!(rules.iter().all(|(_, rule)| rule[..2] == ["-i", "br-0123456789ab"]), "every rule is the bridge's own");
    }

    #[test]
    fn allowed_ranges_are_checked() {
        assert_eq!(parse_allow(" 10.1.0.0/16, 192.168.5.7 ,").unwrap(), ["10.1.0.0/16", "192.168.5.7/32"]);
        assert!(parse_allow("10.1.0.0/33").unwrap_err().contains("`10.1.0.0/33`"));
        assert!(parse_allow("example.com").is_err());
        assert_eq!(bridge_of("0123456789abcdef"), "br-0123456789ab");
        let conf = "# generated\nnameserver 10.255.255.53\nnameserver ::1\nsearch example\n";
        assert_eq!(resolvers(conf), ["10.255.255.53"]);
    }
}
