//! Each member's `/events`, followed by a thread of its own: the swarm
//! lines (`swarm dead node=ID`, `suspect`, `alive`, `promote`, …) and the
//! failovers (`raft leader node=ID`) with the member's own
//! Unix-millisecond stamp.
//!
//! Stamped events time what a member saw to the millisecond however long
//! a poll of a hundred members takes (seconds, on two busy cores), and a
//! blocked read costs a node nothing while there is no news, so following
//! does not load the swarm it measures.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ninep::Dialect;

use crate::client::{Client, Options};
use crate::cmd::cluster::LocalCluster;
use crate::identity::ClientToken;

/// One swarm line one member wrote.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The member whose view it is.
    pub observer: u64,
    /// When, by its clock (the machine's: every node runs here).
    pub unix_ms: u64,
    /// `dead`, `suspect`, `alive`, `refuted`, …
    pub what: String,
    /// The member it is about.
    pub node: u64,
}

/// Followers of the members' `/events`, all feeding one channel with
/// the lines `parse` keeps (the swarm's, [`Seen`], unless told).
pub struct Followers<T = Seen> {
    opts: Options,
    addrs: Vec<(u64, String)>,
    parse: fn(u64, &str) -> Option<T>,
    tx: Sender<T>,
    rx: Receiver<T>,
}

impl Followers {
    /// Follow every member of `cluster` for its swarm lines.
    pub fn new(cluster: &LocalCluster) -> anyhow::Result<Followers> {
        Followers::with_parser(cluster, parse)
    }
}

impl<T: Send + 'static> Followers<T> {
    /// Follow every member of `cluster`, keeping what `parse` makes of a
    /// line (given the member's id and the line).
    pub fn with_parser(
        cluster: &LocalCluster,
        parse: fn(u64, &str) -> Option<T>,
    ) -> anyhow::Result<Followers<T>> {
        let token = ClientToken::resolve(Some(cluster.token()), None)?;
        let (tx, rx) = channel();
        let f = Followers {
            opts: Options::new(Dialect::U).with_token(&token),
            addrs: cluster
                .nodes()
                .iter()
                .map(|n| (n.id, n.addr.clone()))
                .collect(),
            parse,
            tx,
            rx,
        };
        for &(id, _) in &f.addrs {
            f.follow(id)?;
        }
        Ok(f)
    }

    /// Know member `id`, which joined at `addr` since [`Followers::new`]
    /// (then [`Followers::follow`] it).
    pub fn add(&mut self, id: u64, addr: &str) {
        self.addrs.push((id, addr.to_string()));
    }

    /// Follow member `id` (again, after a restart) from now on: its
    /// `/events` is open when this returns. The thread ends when the
    /// member's connection does.
    pub fn follow(&self, id: u64) -> anyhow::Result<()> {
        let addr = &self
            .addrs
            .iter()
            .find(|(i, _)| *i == id)
            .with_context(|| format!("no node {id}"))?
            .1;
        let c = Client::connect_with(addr, &self.opts)
            .with_context(|| format!("connecting to node {id} at {addr} to follow /events"))?;
        let fid = c.walk_path("/events")?;
        let opened = c.open(fid, ninep::mode::OREAD)?;
        let count = c.effective_iounit(opened.iounit);
        let tx = self.tx.clone();
        let parse = self.parse;
        std::thread::spawn(move || {
            // The cursor is the fid's own; the offset is not used.
            while let Ok(bytes) = c.read(fid, 0, count) {
                for line in String::from_utf8_lossy(&bytes).lines() {
                    if let Some(seen) = parse(id, line)
                        && tx.send(seen).is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(())
    }

    /// What arrived by now, without waiting.
    pub fn drain(&self) -> Vec<T> {
        self.rx.try_iter().collect()
    }

    /// The next line, waiting at most `wait` for it.
    pub fn next(&self, wait: Duration) -> Option<T> {
        self.rx.recv_timeout(wait).ok()
    }

    /// Collect lines until `done` says the ones collected are enough, or
    /// `until` passes; all collected.
    pub fn collect_until(&self, until: Instant, done: impl Fn(&[T]) -> bool) -> Vec<T> {
        let mut got = Vec::new();
        while !done(&got) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(s) => got.push(s),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        got
    }
}

/// Now, in Unix milliseconds, as the nodes stamp their events.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A `SEQ MS swarm WHAT node=ID …` line.
fn parse(observer: u64, line: &str) -> Option<Seen> {
    let mut w = line.split_whitespace();
    let (_seq, ms, kind, what) = (w.next()?, w.next()?, w.next()?, w.next()?);
    // `raft leader node=N term=T`: a failover, as the member saw it.
    if kind != "swarm" && !(kind == "raft" && what == "leader") {
        return None;
    }
    let node = w.find_map(|x| x.strip_prefix("node="))?.parse().ok()?;
    Some(Seen {
        observer,
        unix_ms: ms.parse().ok()?,
        what: what.to_string(),
        node,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_lines_are_parsed() {
        let s = parse(2, "17 1765000000123 swarm dead node=5").unwrap();
        assert_eq!(
            (s.observer, s.unix_ms, s.what.as_str(), s.node),
            (2, 1765000000123, "dead", 5)
        );
        assert!(parse(2, "18 1765000000124 note hello").is_none());
        assert!(parse(2, "19 1765000000125 swarm voters 5").is_none());
        let l = parse(3, "20 1765000000126 raft leader node=4 term=2").unwrap();
        assert_eq!((l.what.as_str(), l.node), ("leader", 4));
    }
}
