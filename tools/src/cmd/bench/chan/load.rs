//! Timing writers and readers of one channel: the same driver for Cell0
//! and the yardstick, so both are timed alike.
//!
//! Every message is 64 bytes and carries who sent it, its number, and the
//! time just before it was sent (nanoseconds since a base `Instant` shared
//! by every thread, since writers and readers are one process). A reader
//! takes a message's latency the moment it has it, and marks its number
//! off, so a message any reader never got is counted, and so is one that
//! came twice or out of order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::super::workload::percentile_us;

/// Bytes in every message.
pub const MESSAGE: usize = 64;

/// Writes a writer keeps unanswered on its connection. Enough that the
/// writer is never waiting on a round trip while the server could take
/// more; the server answers each only once the message is in its log.
pub const WINDOW: usize = 32;

/// How long readers wait for messages still on their way once the writers
/// stopped, counted from the last one that came.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// The longest readers go on after the writers stopped, however slowly
/// messages still come.
const DRAIN_MAX: Duration = Duration::from_secs(30);

/// One writer's connection, able to keep several messages unanswered.
pub trait Sender: Send + 'static {
    /// Put `msg` in the batch the next [`Sender::flush`] sends.
    fn queue(&mut self, msg: &[u8; MESSAGE]) -> anyhow::Result<()>;
    /// Send the batch.
    fn flush(&mut self) -> anyhow::Result<()>;
    /// Wait until the system has answered at least one message sent;
    /// how many it answered.
    fn acks(&mut self) -> anyhow::Result<usize>;
}

/// One reader's connection, subscribed before any writer starts.
pub trait Receiver: Send + 'static {
    /// The next message, or `None` when none came within a short poll
    /// interval (so the caller can tell whether to go on waiting).
    fn recv(&mut self) -> anyhow::Result<Option<&[u8]>>;
}

/// What one case measured.
pub struct Delivery {
    /// Messages the writers sent and the system acknowledged.
    pub sent: u64,
    /// Deliveries: messages each reader received, counting each message
    /// once per reader.
    pub delivered: u64,
    /// Deliveries that should have happened and did not: a message some
    /// reader never received.
    pub lost: u64,
    /// Messages a reader received a second time.
    pub duplicates: u64,
    /// Messages a reader received after a later one from the same writer.
    pub reordered: u64,
    /// From the writers' start to the last delivery (at least the span
    /// the writers ran).
    pub elapsed: Duration,
    /// Sorted nanoseconds from just before a message was sent to its
    /// delivery, one per delivery.
    pub latencies: Vec<u64>,
}

impl Delivery {
    /// Deliveries per second.
    pub fn per_sec(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p` quantile of a delivery's latency, in microseconds.
    pub fn latency_us(&self, p: f64) -> f64 {
        percentile_us(&self.latencies, p)
    }
}

/// Message `seq` of writer `writer`, sent `sent_ns` after the base.
fn stamp(msg: &mut [u8; MESSAGE], writer: u32, seq: u64, sent_ns: u64) {
    msg[0..8].copy_from_slice(&sent_ns.to_le_bytes());
    msg[8..16].copy_from_slice(&seq.to_le_bytes());
    msg[16..20].copy_from_slice(&writer.to_le_bytes());
}

/// Who sent `msg`, its number and when, if it is one of ours.
fn unstamp(msg: &[u8]) -> Option<(u32, u64, u64)> {
    if msg.len() != MESSAGE {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(msg[i..i + 8].try_into().unwrap_or_default());
    let writer = u32::from_le_bytes(msg[16..20].try_into().unwrap_or_default());
    Some((writer, u64_at(8), u64_at(0)))
}

/// Start every reader, then every writer together; stop the writers after
/// `span` and wait for the readers to receive everything the writers sent
/// (or to stop hearing anything).
pub fn measure<S: Sender, R: Receiver>(
    senders: Vec<S>,
    receivers: Vec<R>,
    span: Duration,
) -> anyhow::Result<Delivery> {
    let writers = senders.len();
    anyhow::ensure!(
        writers > 0 && !receivers.is_empty(),
        "a case needs writers and readers"
    );
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // Messages every reader should get; unknown until the writers stop.
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    // Nanoseconds after the base when the writers stopped (0: not yet).
    let stopped_at = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(writers + 1));
    let reader_threads: Vec<_> = receivers
        .into_iter()
        .map(|r| {
            let (expected, stopped_at) = (expected.clone(), stopped_at.clone());
            std::thread::spawn(move || read_all(r, writers, base, &expected, &stopped_at))
        })
        .collect();
    let writer_threads: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let (stop, start) = (stop.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                write_until(s, i as u32, base, &stop)
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    std::thread::sleep(span);
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    let mut failed = None;
    for t in writer_threads {
        match t.join() {
            Ok(Ok(n)) => sent += n,
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(_) => failed = failed.or(Some(anyhow::anyhow!("a writer thread panicked"))),
        }
    }
    // Readers must stop even when a writer failed, or they wait forever.
    expected.store(sent, Ordering::Relaxed);
    stopped_at.store((base.elapsed().as_nanos() as u64).max(1), Ordering::Relaxed);
    let mut d = Delivery {
        sent,
        delivered: 0,
        lost: 0,
        duplicates: 0,
        reordered: 0,
        elapsed: t0.elapsed(),
        latencies: Vec::new(),
    };
    for t in reader_threads {
        let got = match t.join() {
            Ok(Ok(got)) => got,
            Ok(Err(e)) => {
                failed = failed.or(Some(e));
                continue;
            }
            Err(_) => {
                failed = failed.or(Some(anyhow::anyhow!("a reader thread panicked")));
                continue;
            }
        };
        d.delivered += got.distinct;
        d.lost += sent.saturating_sub(got.distinct);
        d.duplicates += got.duplicates;
        d.reordered += got.reordered;
        if let Some(last) = got.last {
            d.elapsed = d.elapsed.max(last.saturating_duration_since(t0));
        }
        d.latencies.extend(got.latencies);
    }
    if let Some(e) = failed {
        return Err(e);
    }
    d.latencies.sort_unstable();
    Ok(d)
}

/// Keep [`WINDOW`] messages unanswered until `stop`, then wait for the
/// answers still due; how many messages were answered.
fn write_until<S: Sender>(
    mut s: S,
    writer: u32,
    base: Instant,
    stop: &AtomicBool,
) -> anyhow::Result<u64> {
    let mut msg = [b'm'; MESSAGE];
    // A line: a Cell0 reader gets as many as fit in one read (chan(3)).
    msg[MESSAGE - 1] = b'\n';
    let (mut seq, mut unanswered) = (0u64, 0usize);
    while !stop.load(Ordering::Relaxed) {
        while unanswered < WINDOW {
            stamp(&mut msg, writer, seq, base.elapsed().as_nanos() as u64);
            s.queue(&msg)?;
            seq += 1;
            unanswered += 1;
        }
        s.flush()?;
        unanswered -= s.acks()?.min(unanswered);
    }
    while unanswered > 0 {
        unanswered -= s.acks()?.min(unanswered);
    }
    Ok(seq)
}

/// What one reader received.
struct Got {
    distinct: u64,
    duplicates: u64,
    reordered: u64,
    last: Option<Instant>,
    latencies: Vec<u64>,
}

/// Receive until every message the writers sent has come, or none has
/// come for [`DRAIN_IDLE`] since the writers stopped.
fn read_all<R: Receiver>(
    mut r: R,
    writers: usize,
    base: Instant,
    expected: &AtomicU64,
    stopped_at: &AtomicU64,
) -> anyhow::Result<Got> {
    // One bit per message number, per writer: marks what came.
    let mut seen: Vec<Vec<u64>> = vec![Vec::with_capacity(1 << 12); writers];
    let mut newest = vec![0u64; writers];
    let mut got = Got {
        distinct: 0,
        duplicates: 0,
        reordered: 0,
        last: None,
        latencies: Vec::with_capacity(1 << 18),
    };
    loop {
        if got.distinct >= expected.load(Ordering::Relaxed) {
            return Ok(got);
        }
        let stopped = stopped_at.load(Ordering::Relaxed);
        if stopped != 0 {
            let since_stop = base.elapsed().saturating_sub(Duration::from_nanos(stopped));
            let since_last = got.last.map_or(since_stop, |l| l.elapsed().min(since_stop));
            if since_last > DRAIN_IDLE || since_stop > DRAIN_MAX {
                return Ok(got);
            }
        }
        let Some(msg) = r.recv()? else { continue };
        let now = base.elapsed().as_nanos() as u64;
        let (writer, seq, sent_ns) = unstamp(msg)
            .filter(|&(w, _, _)| (w as usize) < writers)
            .ok_or_else(|| {
                anyhow::anyhow!("a reader received {} bytes no writer sent", msg.len())
            })?;
        got.last = Some(Instant::now());
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        let marks = &mut seen[writer as usize];
        if marks.len() <= word {
            marks.resize(word + 1, 0);
        }
        if marks[word] & bit != 0 {
            got.duplicates += 1;
            continue;
        }
        marks[word] |= bit;
        got.distinct += 1;
        got.latencies.push(now.saturating_sub(sent_ns));
        let w = &mut newest[writer as usize];
        if seq + 1 < *w {
            got.reordered += 1;
        }
        *w = (*w).max(seq + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A channel in memory: every message to every reader, after `lose`
    /// every fifth message is dropped for reader 0.
    struct MemSender {
        to: Vec<mpsc::Sender<[u8; MESSAGE]>>,
        queued: Vec<[u8; MESSAGE]>,
        unacked: usize,
        count: u64,
        lose: bool,
    }

    impl Sender for MemSender {
        fn queue(&mut self, msg: &[u8; MESSAGE]) -> anyhow::Result<()> {
            self.queued.push(*msg);
            Ok(())
        }
        fn flush(&mut self) -> anyhow::Result<()> {
            for m in self.queued.drain(..) {
                self.count += 1;
                for (i, to) in self.to.iter().enumerate() {
                    if !(self.lose && i == 0 && self.count.is_multiple_of(5)) {
                        to.send(m)?;
                    }
                }
                self.unacked += 1;
            }
            Ok(())
        }
        fn acks(&mut self) -> anyhow::Result<usize> {
            std::thread::sleep(Duration::from_micros(50));
            Ok(std::mem::take(&mut self.unacked))
        }
    }

    struct MemReceiver {
        from: mpsc::Receiver<[u8; MESSAGE]>,
        msg: [u8; MESSAGE],
    }

    impl Receiver for MemReceiver {
        fn recv(&mut self) -> anyhow::Result<Option<&[u8]>> {
            match self.from.recv_timeout(Duration::from_millis(20)) {
                Ok(m) => {
                    self.msg = m;
                    Ok(Some(&self.msg))
                }
                Err(_) => Ok(None),
            }
        }
    }

    fn fan_out(writers: usize, readers: usize, lose: bool) -> Delivery {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..readers).map(|_| mpsc::channel()).unzip();
        let senders = (0..writers)
            .map(|_| MemSender {
                to: tx.clone(),
                queued: Vec::new(),
                unacked: 0,
                count: 0,
                lose,
            })
            .collect();
        let receivers = rx
            .into_iter()
            .map(|from| MemReceiver {
                from,
                msg: [0; MESSAGE],
            })
            .collect();
        drop(tx);
        measure(senders, receivers, Duration::from_millis(100)).unwrap()
    }

    #[test]
    fn every_reader_counts_every_message() {
        let d = fan_out(2, 3, false);
        assert!(d.sent > 0);
        assert_eq!(d.delivered, 3 * d.sent);
        assert_eq!((d.lost, d.duplicates, d.reordered), (0, 0, 0));
        assert_eq!(d.latencies.len() as u64, d.delivered);
        assert!(d.per_sec() > 0.0 && d.latency_us(0.99) >= d.latency_us(0.5));
    }

    #[test]
    fn a_message_a_reader_missed_is_lost() {
        let d = fan_out(1, 2, true);
        assert_eq!(d.lost, d.sent / 5);
        assert_eq!(d.delivered + d.lost, 2 * d.sent);
    }
}
