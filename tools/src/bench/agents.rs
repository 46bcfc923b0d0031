//! `cell0 bench agents`: how fast a fresh node and its runner start
//! agents, how long making many takes, what each costs the node, and
//! whether the node still answers quickly with many running.
//!
//! Each agent runs a shell script that writes its name to a FIFO the
//! benchmark reads and then sleeps, so a spawn is timed from the `mkdir`
//! until the agent's own program runs (past its sandbox and the mount of
//! the tree made for it), not until the runner says so.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc;
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
        &Options::new(Dialect::P2000).with_token(&ClientToken {
            text: Some(owner.to_text()),
            explicit: true,
        }),
    )?;
    let dir = scratch_dir(&std::env::temp_dir(), "agents")?;
    let _cleanup = RemoveOnDrop(&dir);
    let fifo = dir.join("ready");
    make_fifo(&fifo)?;
    let script = dir.join("agent.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$CELL0_AGENT\" > {}\nexec sleep 3600\n",
            fifo.display()
        ),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let ready = follow_fifo(&fifo)?;

    println!(
        "cell0 bench agents: a fresh node and its runner; each agent a shell script that tells the benchmark it runs, then sleeps"
    );
    let rss_before = process.rss_kib().unwrap_or(0);

    // Spawns, one at a time, each timed until its program runs.
    let mut spawn_ns = Vec::with_capacity(plan.running);
    let mut asked_ns = Vec::with_capacity(plan.running);
    let exec = format!("exec {}\n", script.display());
    for i in 0..plan.running {
        let name = format!("a{i}");
        let t0 = Instant::now();
        mkdir_agent(&c, &name)?;
        ctl(&c, &name, &format!("{exec}start\n"))?;
        asked_ns.push(t0.elapsed().as_nanos() as u64);
        loop {
            match ready.recv_timeout(START_LIMIT) {
                Ok(n) if n == name => break,
                Ok(_) => continue,
                Err(_) => bail!(
                    "agent {name} did not run within {START_LIMIT:?}: see /agent/{name}/status"
                ),
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

    // The node's answers with every agent made and `running` running.
    let mut probe_ns = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let t0 = Instant::now();
        read_file(&c, "/status")?;
        probe_ns.push(t0.elapsed().as_nanos() as u64);
    }
    probe_ns.sort_unstable();
    let running = count_running(&c, plan.running)?;
    println!(
        "with {} agents, {running} running: /status read p50 {:.0} µs  p99 {:.0} µs",
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

/// `mkdir /agent/NAME`.
fn mkdir_agent(c: &Client, name: &str) -> anyhow::Result<()> {
    let fid = c.walk_path("/agent")?;
    let r = c.create(fid, name, ninep::stat::DMDIR | 0o755, mode::OREAD);
    let _ = c.clunk(fid);
    r.with_context(|| format!("mkdir /agent/{name}"))?;
    Ok(())
}

/// Write `lines` to agent `name`'s ctl in one write.
fn ctl(c: &Client, name: &str, lines: &str) -> anyhow::Result<()> {
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

/// Make a FIFO at `path`.
fn make_fifo(path: &Path) -> anyhow::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: mkfifo(3) reads the NUL-terminated path, which lives for
    // the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o666) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| path.display().to_string());
    }
    Ok(())
}

/// The names the agents write to the FIFO at `path`, as they come. The
/// FIFO is opened for reading and writing, so it never reads as ended
/// between two agents.
fn follow_fifo(path: &Path) -> anyhow::Result<mpsc::Receiver<String>> {
    let f = File::options()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| path.display().to_string())?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("bench-agents-fifo".into())
        .spawn(move || {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { return };
                if tx.send(line.trim().to_string()).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}

/// Removes the benchmark's scratch directory when the run ends.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0);
    }
}
