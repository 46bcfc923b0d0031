//! `cell0 bench agents`: how fast a fresh node and its runner start
//! agents, how long making many takes, what each costs the node, and
//! whether the node still answers quickly with many running.
//!
//! Each agent runs a shell script that sleeps; a spawn is timed from the
//! `mkdir` until the kernel execs the agent's program in its sandbox
//! (seen with fanotify, see `execs`: the sandbox reaches nothing of the
//! host's through which the program could say so), not until the runner
//! says so. Beside it, the same machine's bare namespaces (`unshare
//! -pfmn sh -c true`) and bubblewrap sandbox (`bwrap --unshare-all …
//! sh -c true`), in the same run.
//!
//! `--agents 10000 --running 1000` is the scale case: 10,000 agents made
//! on one node, 1,000 of them running, while a client of its own times
//! `/status`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ninep::Dialect;

use super::servers::{self, scratch_dir};
use super::workload::percentile_us;
use crate::client::{Client, Options, mode};
use crate::identity::ClientToken;

/// What the benchmark does.
pub struct Plan {
    /// Agents made in all.
    pub agents: usize,
    /// Of those, how many are started (one after the other, each timed)
    /// and left running.
    pub running: usize,
    /// Started with no limits (`limit cpu=max mem=max pids=max`) instead
    /// of the defaults.
    pub unlimited: bool,
}

/// The longest one agent may take to start before the run gives up.
const START_LIMIT: Duration = Duration::from_secs(30);
/// `/status` reads timed while the agents run.
const PROBES: usize = 200;

/// Run the benchmark and print its figures.
pub fn run(plan: &Plan) -> anyhow::Result<()> {
    anyhow::ensure!(
        plan.running <= plan.agents && plan.agents > 0,
        "--agents must be at least 1 and at least --running"
    );
    let (node, owner) = servers::start_node()?;
    let process = node
        .process
        .as_ref()
        .context("the benchmark's node is its own process")?;
    let c = Client::connect_with(
        &node.addr,
        &Options::new(Dialect::U).with_token(&ClientToken {
            text: Some(owner.to_text()),
            explicit: true,
        }),
    )?;
    let dir = scratch_dir(&std::env::temp_dir(), "agents")?;
    let _cleanup = RemoveOnDrop(&dir);
    let script = dir.join("agent.sh");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 3600\n")?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let ready = super::execs::watch(&script)?;

    println!(
        "cell0 bench agents: a fresh node and its runner; each agent a shell script that sleeps, timed until it is exec'd in its sandbox; limits: {}",
        if plan.unlimited {
            "none (--unlimited)"
        } else {
            "the defaults"
        }
    );
    let rss_before = process.rss_kib().unwrap_or(0);

    // Spawns, one at a time, each timed until its program runs.
    let mut spawn_ns = Vec::with_capacity(plan.running);
    let mut asked_ns = Vec::with_capacity(plan.running);
    let exec = format!("exec {}\n", script.display());
    let limits = if plan.unlimited {
        "limit cpu=max mem=max pids=max\n"
    } else {
        ""
    };
    for i in 0..plan.running {
        let name = format!("a{i}");
        let t0 = Instant::now();
        mkdir_agent(&c, &name)?;
        ctl(&c, &name, &format!("{exec}{limits}start\n"))?;
        asked_ns.push(t0.elapsed().as_nanos() as u64);
        loop {
            match ready.recv_timeout(START_LIMIT) {
                Ok(n) if n == name => break,
                Ok(_) => continue,
                Err(_) => {
                    let status = read_file(&c, &format!("/agent/{name}/status"))
                        .map(|s| String::from_utf8_lossy(&s).into_owned())
                        .unwrap_or_default();
                    bail!("agent {name} did not run within {START_LIMIT:?}; its status:\n{status}")
                }
            }
        }
        spawn_ns.push(t0.elapsed().as_nanos() as u64);
    }
    spawn_ns.sort_unstable();
    asked_ns.sort_unstable();
    if !spawn_ns.is_empty() {
        println!(
            "spawn (mkdir + exec + start until the program runs), {} agents one after another: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            spawn_ns.len(),
            percentile_us(&spawn_ns, 0.50) / 1000.0,
            percentile_us(&spawn_ns, 0.99) / 1000.0,
            percentile_us(&spawn_ns, 1.0) / 1000.0,
        );
        println!(
            "  of which the mkdir and the ctl write, committed: p50 {:.2} ms  p99 {:.2} ms",
            percentile_us(&asked_ns, 0.50) / 1000.0,
            percentile_us(&asked_ns, 0.99) / 1000.0,
        );
    }

    peers(plan.running.max(1), spawn_ns.as_slice())?;

    // The rest are made and given a program, not started.
    let t0 = Instant::now();
    for i in plan.running..plan.agents {
        let name = format!("a{i}");
        mkdir_agent(&c, &name)?;
        ctl(&c, &name, &exec)?;
    }
    let made = plan.agents - plan.running;
    if made > 0 {
        let took = t0.elapsed();
        println!(
            "create {made} agents (mkdir + exec, not started): {:.2} s, {:.2} ms each",
            took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / made as f64
        );
    }

    // The node's answers with every agent made and `running` running,
    // to a client that made none of them (its own connection).
    let probe = Client::connect_with(
        &node.addr,
        &Options::new(Dialect::U).with_token(&ClientToken {
            text: Some(owner.to_text()),
            explicit: true,
        }),
    )?;
    let mut probe_ns = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let t0 = Instant::now();
        read_file(&probe, "/status")?;
        probe_ns.push(t0.elapsed().as_nanos() as u64);
    }
    probe_ns.sort_unstable();
    drop(probe);
    let running = count_running(&c, plan.running)?;
    println!(
        "with {} agents, {running} running: /status read by another client, {PROBES} reads: p50 {:.0} µs  p99 {:.0} µs",
        plan.agents,
        percentile_us(&probe_ns, 0.50),
        percentile_us(&probe_ns, 0.99),
    );
    let rss_after = process.rss_kib().unwrap_or(0);
    println!(
        "node memory (RSS, its runner included): {:.1} MiB before, {:.1} MiB with {} agents: {:.1} KiB per agent",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        plan.agents,
        rss_after.saturating_sub(rss_before) as f64 / plan.agents as f64,
    );
    drop(c);
    // The node is killed with its runner; its agents' processes end
    // with it (see agent(3)).
    drop(node);
    Ok(())
}

/// The bubblewrap sandbox the peer run makes: new user, pid, mount,
/// network, UTS, IPC and cgroup namespaces, the system directories
/// read-only, its own /proc, /dev and /tmp (what an agent's sandbox holds,
/// less the tree's mount, seccomp and the cgroup).
const BWRAP: &[&str] = &[
    "--unshare-all",
    "--die-with-parent",
    "--ro-bind",
    "/usr",
    "/usr",
    "--ro-bind",
    "/etc",
    "/etc",
    "--symlink",
    "usr/bin",
    "/bin",
    "--symlink",
    "usr/sbin",
    "/sbin",
    "--symlink",
    "usr/lib",
    "/lib",
    "--symlink",
    "usr/lib64",
    "/lib64",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "sh",
    "-c",
    "true",
];

/// The bare namespaces: new pid, mount and network namespaces (and a
/// fork into the pid one), as root; no user namespace, root, `/proc`,
/// privileges given up or cgroup. What any sandbox's namespaces cost
/// here, at least.
const UNSHARE: &[&str] = &["-pfmn", "sh", "-c", "true"];

/// The peers: `runs` bare namespaces and `runs` bubblewrap sandboxes,
/// one after another, beside cell0's spawns (`spawn_ns`, sorted), and
/// the ratios.
fn peers(runs: usize, spawn_ns: &[u64]) -> anyhow::Result<()> {
    for (name, label, ns) in [
        (
            "unshare",
            "unshare -pfmn sh -c true",
            timed_runs("unshare", UNSHARE, runs)?,
        ),
        ("bwrap", BWRAP_LABEL, bwrap_runs(runs)?),
    ] {
        let Some(ns) = ns else {
            println!("peer: {name} is not installed: no {name} figures");
            continue;
        };
        let (p50, p99) = (percentile_us(&ns, 0.50), percentile_us(&ns, 0.99));
        println!(
            "peer: {label} until it has run and exited, {runs} runs: p50 {:.2} ms  p99 {:.2} ms",
            p50 / 1000.0,
            p99 / 1000.0,
        );
        if !spawn_ns.is_empty() {
            println!(
                "cell0/{name} spawn: p50 {:.2}, p99 {:.2}",
                percentile_us(spawn_ns, 0.50) / p50,
                percentile_us(spawn_ns, 0.99) / p99,
            );
        }
    }
    Ok(())
}

/// How the peer's sandbox is named in the figures.
pub(super) const BWRAP_LABEL: &str =
    "bwrap --unshare-all (ro system, proc, dev, tmpfs /tmp, no caps) sh -c true";

/// `runs` bubblewrap sandboxes ([`BWRAP`]) one after another, each timed
/// from its start until `true` in it has run and it has ended (an upper
/// bound on its spawn), in ns, sorted; `None` if bwrap is not installed.
pub(super) fn bwrap_runs(runs: usize) -> anyhow::Result<Option<Vec<u64>>> {
    timed_runs("bwrap", BWRAP, runs)
}

/// `runs` runs of `program` with `args`, one after another, each timed
/// from its start until it has ended, in ns, sorted; `None` if
/// `program` is not installed.
fn timed_runs(program: &str, args: &[&str], runs: usize) -> anyhow::Result<Option<Vec<u64>>> {
    if !crate::config::on_path(program) {
        return Ok(None);
    }
    let mut ns = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("running {program}"))?;
        if !out.status.success() {
            bail!(
                "peer: {program} {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        ns.push(t0.elapsed().as_nanos() as u64);
    }
    ns.sort_unstable();
    Ok(Some(ns))
}

/// `mkdir /agent/NAME`.
pub(super) fn mkdir_agent(c: &Client, name: &str) -> anyhow::Result<()> {
    let fid = c.walk_path("/agent")?;
    let r = c.create(fid, name, ninep::stat::DMDIR | 0o755, mode::OREAD);
    let _ = c.clunk(fid);
    r.with_context(|| format!("mkdir /agent/{name}"))?;
    Ok(())
}

/// Write `lines` to agent `name`'s ctl in one write.
pub(super) fn ctl(c: &Client, name: &str, lines: &str) -> anyhow::Result<()> {
    let path = format!("/agent/{name}/ctl");
    c.write_file(&path, lines.as_bytes())
        .with_context(|| format!("{path}: {}", lines.trim_end()))
}

/// A whole small file.
fn read_file(c: &Client, path: &str) -> anyhow::Result<Vec<u8>> {
    c.read_file(path).with_context(|| path.to_string())
}

/// How many of the first `n` agents their status says run.
fn count_running(c: &Client, n: usize) -> anyhow::Result<usize> {
    let mut running = 0;
    for i in 0..n {
        let status = read_file(c, &format!("/agent/a{i}/status"))?;
        if String::from_utf8_lossy(&status)
            .lines()
            .any(|l| l == "state running")
        {
            running += 1;
        }
    }
    Ok(running)
}

/// Removes the benchmark's scratch directory when the run ends.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0);
    }
}
