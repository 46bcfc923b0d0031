//! A network for a cluster under test: each node in its own network
//! namespace, joined by a veth pair to a bridge in the test's namespace,
//! and nftables rules in a node's namespace to cut it off from other nodes
//! (a partition) or to drop some of its packets (loss). The host kernel
//! has no netem; nftables' `numgen random` does the loss.
//!
//! Clients run in the test's namespace and reach every node over the
//! bridge; the rules name only the other nodes' addresses, so a node cut
//! off from its peers still answers its clients (as in Jepsen's
//! partitions). Everything is removed when the [`Net`] is dropped, also
//! on a panic.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The nftables table the rules live in (in each node's namespace).
const TABLE: &str = "nemesis";

/// Run a command, returning its standard error if it fails.
fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Run a command that must succeed.
fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("{e}");
    }
}

/// Fail the test, saying what to install, unless this process can make
/// namespaces and nftables rules (root, `ip` from iproute2, `nft` from
/// nftables).
pub fn require_tools() {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "the nemesis tests need root (network namespaces, nftables): run them as root, as CI does"
    );
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = Command::new(tool).arg("-V").output().is_ok();
        assert!(
            found,
            "the nemesis tests need `{tool}`: apt-get install {package} (tests/run installs it)"
        );
    }
}

/// The namespaces, bridge and veth pairs of one cluster.
pub struct Net {
    /// The namespace of each node.
    names: Vec<String>,
    /// Each node's address on the bridge.
    ips: Vec<String>,
    bridge: String,
    /// Whether each node's rules table exists.
    ruled: Vec<bool>,
}

impl Net {
    /// Make `n` namespaces, each with `eth0` on a fresh /24 shared with a
    /// new bridge in this namespace. Names and addresses differ between
    /// test processes and between the nets of one process.
    pub fn new(n: usize) -> Net {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{}", pid % 100_000, serial % 10);
        let subnet = format!("10.{}.{}", 100 + serial % 100, pid % 250);
        let bridge = format!("c0b{tag}");
        let mut net = Net {
            names: Vec::new(),
            ips: Vec::new(),
            bridge: bridge.clone(),
            ruled: vec![false; n],
        };
        // Left over from a crashed run of a process with this pid.
        let _ = run(&["ip", "link", "del", &bridge]);
        must(&["ip", "link", "add", &bridge, "type", "bridge"]);
        let gw = format!("{subnet}.254/24");
        must(&["ip", "addr", "add", &gw, "dev", &bridge]);
        must(&["ip", "link", "set", &bridge, "up"]);
        for i in 0..n {
            let ns = format!("c0nem-{tag}-{}", i + 1);
            let _ = run(&["ip", "netns", "del", &ns]);
            must(&["ip", "netns", "add", &ns]);
            net.names.push(ns.clone());
            let host = format!("c0v{tag}{}", i + 1);
            let peer = format!("c0p{tag}{}", i + 1);
            must(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer,
            ]);
            must(&["ip", "link", "set", &peer, "netns", &ns]);
            must(&["ip", "link", "set", &host, "master", &bridge]);
            must(&["ip", "link", "set", &host, "up"]);
            let ip = format!("{subnet}.{}", i + 1);
            let inside = |args: &[&str]| {
                let mut all = vec!["ip", "-n", ns.as_str()];
                all.extend_from_slice(args);
                must(&all);
            };
            inside(&["link", "set", &peer, "name", "eth0"]);
            inside(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            inside(&["link", "set", "eth0", "up"]);
            inside(&["link", "set", "lo", "up"]);
            net.ips.push(ip);
        }
        net
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: usize) -> &str {
        &self.ips[i]
    }

    /// How many nodes the net has.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the net has no nodes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Run `nft` in node `i`'s namespace with `script` as its input.
    fn nft(&self, i: usize, script: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.names[i], "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nft runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft in {} failed: {}\n{script}",
            self.names[i],
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Replace node `i`'s rules with `rules` (lines of an nftables chain
    /// body), applied to packets in and out.
    fn set_rules(&mut self, i: usize, input: &[String], output: &[String]) {
        let mut s = String::new();
        if self.ruled[i] {
            s.push_str(&format!("delete table inet {TABLE}\n"));
        }
        s.push_str(&format!("table inet {TABLE} {{\n"));
        s.push_str("  chain input { type filter hook input priority 0; policy accept;\n");
        for r in input {
            s.push_str(&format!("    {r}\n"));
        }
        s.push_str("  }\n  chain output { type filter hook output priority 0; policy accept;\n");
        for r in output {
            s.push_str(&format!("    {r}\n"));
        }
        s.push_str("  }\n}\n");
        self.nft(i, &s);
        self.ruled[i] = true;
    }

    /// The addresses of `nodes`, as an nftables set.
    fn set_of(&self, nodes: &[usize]) -> String {
        let ips: Vec<&str> = nodes.iter().map(|&j| self.ips[j].as_str()).collect();
        format!("{{ {} }}", ips.join(", "))
    }

    /// Cut the nodes of each group off from the nodes of every other
    /// group (packets both ways dropped); clients still reach every node.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        for (g, group) in groups.iter().enumerate() {
            let others: Vec<usize> = groups
                .iter()
                .enumerate()
                .filter(|&(h, _)| h != g)
                .flat_map(|(_, o)| o.iter().copied())
                .collect();
            if others.is_empty() {
                continue;
            }
            let set = self.set_of(&others);
            for &i in group {
                self.set_rules(
                    i,
                    &[format!("ip saddr {set} drop")],
                    &[format!("ip daddr {set} drop")],
                );
            }
        }
    }

    /// Drop `percent` of the packets between every pair of nodes, chosen
    /// at random, in each direction.
    pub fn lose(&mut self, percent: u32) {
        for i in 0..self.len() {
            let others: Vec<usize> = (0..self.len()).filter(|&j| j != i).collect();
            let set = self.set_of(&others);
            let rule = |dir: &str| format!("ip {dir} {set} numgen random mod 100 < {percent} drop");
            self.set_rules(i, &[rule("saddr")], &[rule("daddr")]);
        }
    }

    /// Remove every rule: each node reaches every other again.
    pub fn heal(&mut self) {
        for i in 0..self.len() {
            if self.ruled[i] {
                self.nft(i, &format!("delete table inet {TABLE}\n"));
                self.ruled[i] = false;
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, which
        // deletes the other end; then the bridge.
        for ns in &self.names {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}
