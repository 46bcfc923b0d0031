//! `cell0 bench chan`: messages per second and delivery latency through
//! one channel of a fresh node, with one or many writers and readers, and
//! the same workload through Redis pub/sub as a yardstick.
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
mod redis;
mod wire;

use std::time::Duration;

use anyhow::Context;

use super::servers;
use load::{Delivery, Receiver, Sender};

/// The cases: writers, then readers, each on a connection of its own.
const CASES: [(usize, usize); 3] = [(1, 1), (16, 16), (1, 16)];

/// One row of the table.
struct Row {
    system: &'static str,
    case: String,
    delivery: Delivery,
}

/// Run every case against a node and against Redis, and print the table
/// and the ratios.
pub fn run(span: Duration) -> anyhow::Result<()> {
    // Before anything starts: a missing Redis is a setup error, not a
    // result to find out after the Cell0 cases ran.
    let redis_version = redis::version()?;
    let (node, _owner) = servers::start_node()?;
    let redis = redis::Redis::start()?;
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
        "latency: from just before a writer sends a message to a reader having it; delivered/s counts each message once per reader"
    );
    println!();
    println!(
        "{:<6} {:<6} {:>9} {:>10} {:>11} {:>8} {:>8} {:>8}",
        "system", "case", "sent", "delivered", "delivered/s", "p50 µs", "p99 µs", "lost"
    );
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let pid = std::process::id();
    for (w, r) in CASES {
        let name = format!("bench{pid}-{w}to{r}");
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
        rows.push(case("cell0", w, r, senders, receivers, span)?);
    }
    for (w, r) in CASES {
        let channel = format!("bench{pid}-{w}to{r}");
        let receivers = (0..r)
            .map(|_| redis::RedisReceiver::open(&redis.addr, &channel))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let senders = (0..w)
            .map(|_| redis::RedisSender::open(&redis.addr, &channel))
            .collect::<anyhow::Result<Vec<_>>>()?;
        rows.push(case("redis", w, r, senders, receivers, span)?);
    }
    print_notes(&rows, &notes);
    print_ratios(&rows);
    Ok(())
}

/// Measure one case and print its row.
fn case<S: Sender, R: Receiver>(
    system: &'static str,
    writers: usize,
    readers: usize,
    senders: Vec<S>,
    receivers: Vec<R>,
    span: Duration,
) -> anyhow::Result<Row> {
    let case = format!("{writers}→{readers}");
    let d = load::measure(senders, receivers, span)
        .with_context(|| format!("{system}, {writers} writers, {readers} readers"))?;
    println!(
        "{:<6} {:<6} {:>9} {:>10} {:>11.0} {:>8.0} {:>8.0} {:>8}",
        system,
        case,
        d.sent,
        d.delivered,
        d.per_sec(),
        d.latency_us(0.50),
        d.latency_us(0.99),
        d.lost
    );
    Ok(Row {
        system,
        case,
        delivery: d,
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

/// Cell0 against Redis, case by case.
fn print_ratios(rows: &[Row]) {
    let mut header = false;
    for c in rows.iter().filter(|r| r.system == "cell0") {
        let Some(o) = rows
            .iter()
            .find(|o| o.system == "redis" && o.case == c.case)
        else {
            continue;
        };
        if !header {
            println!();
            header = true;
        }
        println!(
            "cell0/redis, {}: throughput {:.2}, p99 latency {:.2}",
            c.case,
            c.delivery.per_sec() / o.delivery.per_sec(),
            c.delivery.latency_us(0.99) / o.delivery.latency_us(0.99),
        );
    }
}
