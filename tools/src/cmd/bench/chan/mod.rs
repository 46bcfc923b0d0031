//! `cell0 bench chan`: messages per second and delivery latency through
//! one channel of a fresh node, with one or many writers and readers, and
//! the same workload through the systems a user would compare it with:
//! Redis pub/sub (fast, keeps nothing), a Redis stream on an append-only
//! file fsynced before each answer (durable), and NATS JetStream with file
//! storage (durable as far as its 2.9 store goes: see [`nats::SYNC_NOTE`]).
//! Each peer server runs alone, started before its cases and stopped after
//! them, and the peak resident memory of each server is printed.
//!
//! Every reader receives every message (fan-out), so a case of W writers
//! and R readers delivers R times what the writers sent. Readers are
//! subscribed before any writer starts and keep reading after the writers
//! stop until they have everything or nothing more comes; a delivery that
//! never happened is counted as lost and printed, never left out. The
//! writers pipeline (see [`load::WINDOW`]) so the client is not what is
//! timed. Figures are printed, never asserted.

mod cell0;
mod load;
mod nats;
mod redis;
mod redis_stream;
mod wire;

use std::time::Duration;

use anyhow::Context;

use super::servers::{self, Process};
use load::{Delivery, Receiver, Sender};
use redis::Persistence;

/// The cases: writers, then readers, each on a connection of its own.
const CASES: [(usize, usize); 3] = [(1, 1), (16, 16), (1, 16)];

/// The systems Cell0 is compared with, as the table names them.
const PEERS: [&str; 3] = ["redis", "redis-aof", "nats-js"];

/// One row of the table.
struct Row {
    system: &'static str,
    case: String,
    delivery: Delivery,
    /// The server's CPU time (all its threads) per message sent, in µs.
    cpu_per_msg: Option<f64>,
}

/// Run every case against a node and against each peer, and print the
/// table, the ratios and each server's peak resident memory.
pub fn run(span: Duration) -> anyhow::Result<()> {
    // Before anything starts: a missing peer is a setup error, not a
    // result to find out after the Cell0 cases ran.
    let redis_version = redis::version()?;
    let nats_version = nats::version()?;
    let (node, _owner) = servers::start_node()?;
    println!(
        "cell0 bench chan: {} s per case; {}-byte messages through one channel; every reader receives every message",
        span.as_secs(),
        load::MESSAGE
    );
    println!(
        "each writer and each reader is a thread with its own connection; a writer keeps up to {} writes unanswered",
        load::WINDOW
    );
    println!(
        "cell0: Twrite to /chan/NAME/data over 9P2000.L, answered once the message is in the node's log (fsynced); each reader its own fid of data, {} Treads outstanding",
        cell0::READS
    );
    println!(
        "redis {redis_version}: PUBLISH and SUBSCRIBE over RESP; pub/sub messages are neither logged nor fsynced; no subscriber is cut off for falling behind"
    );
    println!(
        "redis-aof {redis_version}: XADD to a stream, answered once in the append-only file (appendonly yes, appendfsync always: fsynced before the answer); each reader XREAD BLOCK from its own position"
    );
    println!(
        "nats-js {nats_version}: JetStream stream with file storage, PUB with a reply subject answered by its publish ack; each reader an ephemeral push consumer of its own (flow control on, no acks); {}",
        nats::SYNC_NOTE
    );
    println!(
        "latency: from just before a writer sends a message to a reader having it; delivered/s counts each message once per reader"
    );
    println!(
        "the node's log, redis-aof's file and nats-js's store are in {}",
        std::env::temp_dir().display()
    );
    println!();
    println!(
        "{:<9} {:<6} {:>9} {:>10} {:>11} {:>8} {:>8} {:>8} {:>9}",
        "system",
        "case",
        "sent",
        "delivered",
        "delivered/s",
        "p50 µs",
        "p99 µs",
        "lost",
        "CPU µs/msg"
    );
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut peaks = Vec::new();
    let pid = std::process::id();
    let name = |w: usize, r: usize| format!("bench{pid}-{w}to{r}");
    for (w, r) in CASES {
        let name = name(w, r);
        if let Some(note) = cell0::make_channel(&node, &name)? {
            notes.push(note);
        }
        // Readers first: each starts at the oldest retained message, and
        // the channel is empty until the writers start.
        let receivers = (0..r)
            .map(|_| cell0::Cell0Receiver::open(&node, &name))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let senders = (0..w)
            .map(|_| cell0::Cell0Sender::open(&node, &name))
            .collect::<anyhow::Result<Vec<_>>>()?;
        rows.push(case(
            "cell0",
            node.process.as_ref(),
            (w, r),
            senders,
            receivers,
            span,
        )?);
    }
    peaks.push((
        "cell0 node",
        node.process.as_ref().and_then(Process::peak_rss_kib),
    ));
    drop(node);
    let redis = redis::Redis::start(Persistence::None)?;
    for (w, r) in CASES {
        let channel = name(w, r);
        let receivers = (0..r)
            .map(|_| redis::RedisReceiver::open(&redis.addr, &channel))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let senders = (0..w)
            .map(|_| redis::RedisSender::open(&redis.addr, &channel))
            .collect::<anyhow::Result<Vec<_>>>()?;
        rows.push(case(
            "redis",
            Some(redis.process()),
            (w, r),
            senders,
            receivers,
            span,
        )?);
    }
    peaks.push(("redis (pub/sub)", redis.peak_rss_kib()));
    drop(redis);
    let redis = redis::Redis::start(Persistence::AppendFsyncAlways)?;
    for (w, r) in CASES {
        let key = name(w, r);
        // The stream starts empty: readers from its first entry.
        let receivers = (0..r)
            .map(|_| redis_stream::StreamReceiver::open(&redis.addr, &key))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let senders = (0..w)
            .map(|_| redis::RedisSender::xadd(&redis.addr, &key))
            .collect::<anyhow::Result<Vec<_>>>()?;
        rows.push(case(
            "redis-aof",
            Some(redis.process()),
            (w, r),
            senders,
            receivers,
            span,
        )?);
    }
    peaks.push(("redis-aof", redis.peak_rss_kib()));
    drop(redis);
    let nats = nats::Nats::start()?;
    for (w, r) in CASES {
        let stream = name(w, r);
        nats.create_stream(&stream)?;
        let receivers = (0..r)
            .map(|_| nats::NatsReceiver::open(&nats.addr, &stream))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let senders = (0..w)
            .map(|_| nats::NatsSender::open(&nats.addr, &stream))
            .collect::<anyhow::Result<Vec<_>>>()?;
        rows.push(case(
            "nats-js",
            Some(nats.process()),
            (w, r),
            senders,
            receivers,
            span,
        )?);
    }
    peaks.push(("nats-server", nats.peak_rss_kib()));
    drop(nats);
    print_notes(&rows, &notes);
    print_ratios(&rows);
    println!();
    for (server, kib) in peaks {
        match kib {
            Some(kib) => println!(
                "{server} peak resident memory: {:.1} MiB",
                kib as f64 / 1024.0
            ),
            None => println!("{server} peak resident memory: unknown (no /proc)"),
        }
    }
    Ok(())
}

/// Measure one case of `writers` and `readers` against `server` (whose
/// CPU time is counted) and print its row.
fn case<S: Sender, R: Receiver>(
    system: &'static str,
    server: Option<&Process>,
    (writers, readers): (usize, usize),
    senders: Vec<S>,
    receivers: Vec<R>,
    span: Duration,
) -> anyhow::Result<Row> {
    let case = format!("{writers}→{readers}");
    let before = server.and_then(Process::cpu_us);
    let d = load::measure(senders, receivers, span)
        .with_context(|| format!("{system}, {writers} writers, {readers} readers"))?;
    // CPU per message is steadier than rates on a shared machine: it
    // counts the work, not the waiting.
    let cpu_per_msg = match (before, server.and_then(Process::cpu_us)) {
        (Some(b), Some(a)) if d.sent > 0 => Some(a.saturating_sub(b) as f64 / d.sent as f64),
        _ => None,
    };
    println!(
        "{:<9} {:<6} {:>9} {:>10} {:>11.0} {:>8.0} {:>8.0} {:>8} {:>9}",
        system,
        case,
        d.sent,
        d.delivered,
        d.per_sec(),
        d.latency_us(0.50),
        d.latency_us(0.99),
        d.lost,
        cpu_per_msg.map_or_else(|| "-".to_string(), |c| format!("{c:.1}"))
    );
    Ok(Row {
        system,
        case,
        delivery: d,
        cpu_per_msg,
    })
}

/// What went wrong with deliveries, and what the node refused.
fn print_notes(rows: &[Row], notes: &[String]) {
    let mut lines = notes.to_vec();
    for r in rows {
        let d = &r.delivery;
        let due = d.delivered + d.lost;
        if d.lost > 0 {
            lines.push(format!(
                "{} {}: {} of {due} deliveries never happened ({:.3} %): a reader was still without them 1 s after the last message it got",
                r.system,
                r.case,
                d.lost,
                100.0 * d.lost as f64 / due as f64
            ));
        }
        if d.duplicates > 0 {
            lines.push(format!(
                "{} {}: {} messages came to the same reader twice",
                r.system, r.case, d.duplicates
            ));
        }
        if d.reordered > 0 {
            lines.push(format!(
                "{} {}: {} messages came after a later one from the same writer",
                r.system, r.case, d.reordered
            ));
        }
    }
    if !lines.is_empty() {
        println!();
    }
    for l in lines {
        println!("note: {l}");
    }
}

/// Cell0 against each peer, case by case.
fn print_ratios(rows: &[Row]) {
    for c in rows.iter().filter(|r| r.system == "cell0") {
        println!();
        for peer in PEERS {
            let Some(o) = rows.iter().find(|o| o.system == peer && o.case == c.case) else {
                continue;
            };
            let cpu = match (c.cpu_per_msg, o.cpu_per_msg) {
                (Some(a), Some(b)) if b > 0.0 => format!(", server CPU per message {:.2}", a / b),
                _ => String::new(),
            };
            println!(
                "cell0/{peer}, {}: throughput {:.2}, p99 latency {:.2}{cpu}",
                c.case,
                c.delivery.per_sec() / o.delivery.per_sec(),
                c.delivery.latency_us(0.99) / o.delivery.latency_us(0.99),
            );
        }
    }
}
