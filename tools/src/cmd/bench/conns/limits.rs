//! What holding tens of thousands of connections needs from the host,
//! checked (and raised where a process may) before anything starts.
//!
//! Descriptors: this process holds one per connection, and so does each
//! server it starts (they inherit its limits, and the node raises its soft
//! limit to the hard one itself). Ephemeral ports: every connection from
//! one source address to one server address takes a port of
//! `ip_local_port_range` (28,232 by default), so past that the held
//! connections are spread over several loopback source addresses.

use std::io;
use std::net::Ipv4Addr;

use anyhow::{Context, bail};

use crate::node::fds::get;

/// Ports of each source address left for connections other than the held
/// ones (the `/status` client, the slowloris ones, earlier runs' sockets
/// in TIME_WAIT).
const PORTS_SPARE: usize = 2_000;

/// Make at least `need` descriptors available to this process (and so to
/// the servers it starts): the soft limit raised to the hard one and, when
/// the hard one is short, the hard one raised too (only root may). Returns
/// the limit in force; fails, saying how to raise it, when the host
/// refuses.
pub fn descriptors(need: u64) -> anyhow::Result<u64> {
    let lim = get().context("reading the limit on open descriptors")?;
    let mut refused = None;
    if lim.rlim_max < need {
        let raised = libc::rlimit {
            rlim_cur: need,
            rlim_max: need,
        };
        // SAFETY: setrlimit reads the struct we pass. Raising the hard
        // limit takes CAP_SYS_RESOURCE and stops at fs.nr_open; a refusal
        // is reported below.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            refused = Some(io::Error::last_os_error());
        }
    }
    let now = crate::node::fds::raise_limit().context("raising the limit on open descriptors")?;
    if now < need {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        bail!(
            "this run needs {need} open descriptors per process (the connections, plus some to spare), \
             but the limit is {now} (hard limit {}){}; raise it: `ulimit -n {need}` in the shell that runs \
             the bench (as root, or after raising the hard limit), `* hard nofile {need}` and \
             `* soft nofile {need}` in /etc/security/limits.conf, or LimitNOFILE={need} in a systemd \
             unit; fs.nr_open ({nr_open}) caps them all; or ask for fewer with --connections",
            get().map_or(now, |l| l.rlim_max),
            refused.map(|e| refusal(&e)).unwrap_or_default(),
        );
    }
    Ok(now)
}

/// Why raising the hard limit was refused, as the error says it.
fn refusal(e: &io::Error) -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if e.raw_os_error() == Some(libc::EPERM) && root {
        format!(
            "; raising the hard limit was refused ({e}): even root needs CAP_SYS_RESOURCE for that, \
             and this process lacks it (a container may drop it: start the container with a higher \
             limit, such as docker run --ulimit nofile=N:N)"
        )
    } else {
        format!("; raising the hard limit was refused ({e})")
    }
}

/// The loopback source addresses `conns` held connections are spread
/// over, and how many each takes at most: 127.0.0.1 alone when its
/// ephemeral ports suffice, else 127.0.0.2, 127.0.0.3 and so on (all of
/// 127/8 is this host's on Linux), leaving 127.0.0.1's ports to the other
/// connections of the run.
pub fn sources(conns: usize) -> anyhow::Result<(Vec<Ipv4Addr>, usize)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .context("reading /proc/sys/net/ipv4/ip_local_port_range")?;
    let ports = match range
        .split_whitespace()
        .map(str::parse::<usize>)
        .collect::<Result<Vec<_>, _>>()
        .as_deref()
    {
        Ok([lo, hi]) if hi >= lo => hi - lo + 1,
        _ => bail!("ip_local_port_range reads {range:?}, not two port numbers"),
    };
    let per = ports.saturating_sub(PORTS_SPARE);
    if per < 1_000 {
        bail!(
            "ip_local_port_range leaves {ports} ephemeral ports, too few to spread connections over; \
             widen it (sysctl net.ipv4.ip_local_port_range)"
        );
    }
    let count = conns.div_ceil(per).max(1);
    if count == 1 {
        return Ok((vec![Ipv4Addr::LOCALHOST], per));
    }
    if count > 250 {
        bail!("{conns} connections need {count} loopback source addresses; at most 250 are used");
    }
    let addrs = (0..count)
        .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8))
        .collect();
    Ok((addrs, per))
}
