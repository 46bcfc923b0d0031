//! `cell0 bench conns`: many connections held at once. It opens
//! `--connections` connections (10,000 by default) to a fresh node, each a
//! 9P2000.L session attached with the owner's capability, and prints what
//! they cost the node (resident memory per connection) and what a client
//! of its own sees meanwhile (`/status` read latency); then adds
//! `--slowloris` connections that each send half a frame and stall, times
//! `/status` again and counts those the node closes. Last, every held
//! connection must answer once more: the count answered is printed
//! ("answered N/N"), and the run fails if any did not. The same is done
//! against diod, a 9P2000.L file server, as a yardstick. Timings are
//! printed, never asserted.
//!
//! The limits this needs from the host are raised first, or the run stops
//! saying how to raise them (see [`limits`]).

mod limits;
mod open;
mod probe;
mod slowloris;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::servers::{self, Target};
use open::Dial;
use probe::Latency;

/// What the benchmark does.
pub struct Plan {
    /// Connections held at once.
    pub connections: usize,
    /// Slowloris connections added while they are held.
    pub slowloris: usize,
    /// `/status` reads per latency figure.
    pub reads: usize,
    /// Whether to measure diod too.
    pub diod: bool,
}

/// Descriptors beyond the connections each process may need (the node's
/// log and listener, the probe, the runtime).
const SPARE_FDS: u64 = 1_000;
/// Connections opened at once against a node: its listen queue holds
/// 1024 (tokio's default).
const NODE_IN_FLIGHT: usize = 256;
/// Connections opened at once against diod, whose listen queue holds 5:
/// more, and SYNs are dropped and retried only after seconds.
const DIOD_IN_FLIGHT: usize = 4;
/// How long the stalled connections are watched: a node closes strangers
/// after 10 s (cellfs(4) LIMITS).
const WATCH: Duration = Duration::from_secs(15);
/// How long a server is given to free what closed connections held
/// before its memory is read again (a node trims once a second).
const SETTLE: Duration = Duration::from_secs(2);

/// The figures of one server, for the ratios.
struct Outcome {
    /// Connections that answered at the end.
    answered: usize,
    /// KiB of resident memory per held connection.
    per_conn_kib: Option<f64>,
    /// `/status` latency with the connections held.
    held: Option<Latency>,
}

/// Run the benchmark and print its figures.
pub fn run(plan: &Plan) -> anyhow::Result<()> {
    anyhow::ensure!(plan.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(plan.reads > 0, "there must be reads to time");
    let need = (plan.connections + plan.slowloris) as u64 + SPARE_FDS;
    let limit = limits::descriptors(need)?;
    let (sources, per) = limits::sources(plan.connections)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the client's runtime")?;
    println!(
        "cell0 bench conns: {} connections held at once, each a 9P2000.L session (Tversion, Tattach) over loopback TCP from one client process",
        plan.connections
    );
    println!(
        "descriptor limit {limit} (this process and the servers); source address{} {}",
        if sources.len() == 1 { "" } else { "es" },
        sources
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "latency: {} Treads at offset 0 of /status on a fid opened once, from a client of its own after 100 untimed ones (one round trip each)",
        plan.reads
    );
    println!(
        "cell0: a fresh node; each connection attached with the owner's capability (aname token=...); {NODE_IN_FLIGHT} opened at a time"
    );
    if plan.diod {
        println!(
            "diod:  a 150-byte file named status on tmpfs, attached by path; {DIOD_IN_FLIGHT} opened at a time (its listen queue holds 5)"
        );
    }
    println!();
    let dial = |t: &Target, in_flight| -> anyhow::Result<Dial> {
        Ok(Dial {
            addr: t
                .addr
                .parse::<SocketAddr>()
                .with_context(|| format!("{} is not HOST:PORT", t.addr))?,
            aname: Arc::from(t.aname.as_str()),
            sources: Arc::from(sources.as_slice()),
            per,
            in_flight,
        })
    };
    let (node, _owner) = servers::start_node()?;
    let cell0 = measure(&rt, &node, &dial(&node, NODE_IN_FLIGHT)?, plan)?;
    drop(node);
    let diod = if plan.diod {
        println!();
        diod_note(plan.connections);
        match servers::start_diod() {
            Ok(d) => Some(measure(&rt, &d, &dial(&d, DIOD_IN_FLIGHT)?, plan)?),
            Err(e) => {
                println!("diod: not measured: {e:#}");
                None
            }
        }
    } else {
        None
    };
    if let Some(diod) = &diod {
        println!();
        print_ratios(plan.connections, &cell0, diod);
    }
    anyhow::ensure!(
        cell0.answered == plan.connections,
        "the node answered {} of {} connections",
        cell0.answered,
        plan.connections
    );
    Ok(())
}

/// Hold the connections against `t` and print its figures.
fn measure(
    rt: &tokio::runtime::Runtime,
    t: &Target,
    dial: &Dial,
    plan: &Plan,
) -> anyhow::Result<Outcome> {
    let name = t.name;
    let process = t
        .process
        .as_ref()
        .context("the benchmark measures servers it started")?;
    let idle = probe::reads(t, plan.reads)?;
    println!("{name}: /status read, idle: {}", show(idle));
    let before = process.rss_kib();
    let held = rt.block_on(open::open_all(dial, plan.connections));
    let after = process.rss_kib();
    let opened = held.streams.len();
    let secs = held.elapsed.as_secs_f64();
    println!(
        "{name}: opened and attached {opened}/{} in {secs:.2} s ({:.0}/s){}",
        plan.connections,
        opened as f64 / secs.max(1e-9),
        failed(&held.failures)
    );
    let per_conn_kib = match (before, after) {
        (Some(b), Some(a)) if opened > 0 => {
            let per = (a as f64 - b as f64) / opened as f64;
            println!(
                "{name}: resident memory {} before, {} with {opened} held: {per:.1} KiB per connection",
                mib(b),
                mib(a)
            );
            Some(per)
        }
        _ => {
            println!("{name}: resident memory unknown (no /proc/PID/status)");
            None
        }
    };
    let with_held = match probe::reads(t, plan.reads) {
        Ok(l) => {
            println!("{name}: /status read with {opened} held: {}", show(l));
            Some(l)
        }
        Err(e) => {
            println!("{name}: /status read with {opened} held: failed: {e:#}");
            None
        }
    };
    if plan.slowloris > 0 {
        slowloris_phase(t, plan, opened);
    }
    let (streams, failures) = rt.block_on(open::check_all(held.streams));
    let answered = streams.len() - failures.count;
    println!(
        "{name}: answered {answered}/{} (a Twalk of the root on each held connection, after all of the above){}",
        plan.connections,
        failed(&failures)
    );
    // Closed with a reset: closed politely, each would sit in TIME_WAIT
    // for a minute, and tens of thousands of those slow down choosing a
    // source port for the connections of the next phase and the next run.
    for s in &streams {
        let _ = s.set_zero_linger();
    }
    drop(streams);
    std::thread::sleep(SETTLE);
    if let Some(kib) = process.rss_kib() {
        println!(
            "{name}: resident memory {} once they are all closed",
            mib(kib)
        );
    }
    Ok(Outcome {
        answered,
        per_conn_kib,
        held: with_held,
    })
}

/// Add the slowloris connections, time `/status` again, and watch the
/// server close them (or not).
fn slowloris_phase(t: &Target, plan: &Plan, opened: usize) {
    let name = t.name;
    let stalled = match slowloris::open(&t.addr, plan.slowloris) {
        Ok(s) => s,
        Err(e) => {
            println!("{name}: slowloris connections could not all be opened: {e:#}");
            return;
        }
    };
    let (sent, of) = stalled.sent;
    println!(
        "{name}: {} slowloris connections, each sent {sent} bytes of a {of}-byte Tversion and stalled (opened one after the other in {:.2} s)",
        plan.slowloris,
        stalled.opening.as_secs_f64()
    );
    match probe::reads(t, plan.reads) {
        Ok(l) => println!(
            "{name}: /status read with {opened} held and {} stalled: {}",
            plan.slowloris,
            show(l)
        ),
        Err(e) => println!(
            "{name}: /status read with {opened} held and {} stalled: failed: {e:#}",
            plan.slowloris
        ),
    }
    let closed = stalled.watch(WATCH);
    let when = match (closed.shortest, closed.longest) {
        (Some(f), Some(l)) => format!(
            " (each after {:.1} to {:.1} s)",
            f.as_secs_f64(),
            l.as_secs_f64()
        ),
        _ => String::new(),
    };
    println!(
        "{name}: stalled connections the server closed: {}/{} within {} s{when}",
        closed.count,
        plan.slowloris,
        WATCH.as_secs()
    );
}

/// Say so beforehand when diod, which starts a thread per connection,
/// cannot have as many threads as there are connections.
fn diod_note(connections: usize) {
    let read =
        |path: &str| -> Option<usize> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let (Some(pids), Some(threads)) = (
        read("/proc/sys/kernel/pid_max"),
        read("/proc/sys/kernel/threads-max"),
    ) else {
        return;
    };
    if connections >= pids.min(threads) {
        println!(
            "diod: starts a thread per connection, and this host allows {} (kernel.pid_max {pids}, kernel.threads-max {threads}): it cannot hold {connections}",
            pids.min(threads)
        );
    }
}

fn print_ratios(connections: usize, cell0: &Outcome, diod: &Outcome) {
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".to_string(),
    };
    println!(
        "cell0/diod with {connections} held: resident memory per connection {}, /status read p50 {}, p99 {}",
        ratio(cell0.per_conn_kib, diod.per_conn_kib),
        ratio(cell0.held.map(|l| l.p50), diod.held.map(|l| l.p50)),
        ratio(cell0.held.map(|l| l.p99), diod.held.map(|l| l.p99)),
    );
    if diod.answered < connections {
        println!(
            "(diod answered {} of the {connections}: its figures are for those it held)",
            diod.answered
        );
    }
}

fn show(l: Latency) -> String {
    format!("p50 {:.1} µs, p99 {:.1} µs", l.p50, l.p99)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn failed(f: &open::Failures) -> String {
    let mut said = match &f.first {
        Some(e) => format!("; {} failed, the first: {e}", f.count),
        None => String::new(),
    };
    if f.skipped > 0 {
        said += &format!(
            "; {} not tried once {} had failed",
            f.skipped,
            open::GIVE_UP
        );
    }
    said
}
