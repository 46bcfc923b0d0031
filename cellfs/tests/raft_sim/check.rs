//! The checkers: Raft's safety properties over what the nodes show, and
//! linearizability of the clients' operations on one FIFO channel.

use std::collections::BTreeMap;

/// What a client asked of the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Write one message (every value written in a run is unique).
    Send(Vec<u8>),
    /// Read (take) the next message.
    Take,
    /// Make channel NAME (`Ok(Some([1]))`: made; `[0]`: it existed).
    Make(String),
    /// Remove channel NAME (`[1]`: removed; `[0]`: it did not exist).
    Remove(String),
    /// Walk to channel NAME (`[1]`: there; `[0]`: not).
    Exists(String),
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No reply (its node crashed, or the run ended first): it may or may
    /// not have taken effect.
    Pending,
    /// Done; a take carries the message it received.
    Ok(Option<Vec<u8>>),
    /// An error that says nothing changed (no leader, log full).
    Failed(String),
    /// An error after which the change may or may not have been applied.
    Unknown(String),
}

/// One client operation with its real-time interval.
#[derive(Clone, Debug)]
pub struct Op {
    /// Which client.
    pub client: usize,
    /// What it asked.
    pub kind: OpKind,
    /// When it was sent (simulated ms).
    pub invoke: u64,
    /// When it was answered (`u64::MAX` if never).
    pub response: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// Whether an error text (the 9P Rerror of a [`cellfs::LogError`]) says
/// for sure that nothing was applied.
pub fn definite_failure(ename: &str) -> bool {
    ename.contains("no raft leader is reachable") || ename.contains("log is full")
}

/// One dequeue: the value, and its interval.
#[derive(Clone, Copy, Debug)]
struct Deq {
    invoke: u64,
    response: u64,
}

/// Check that the history of operations on one FIFO queue of unique values,
/// plus what the queue held at the end (`rest`, oldest first, read after
/// every operation was over), is linearizable. Reads block on an empty
/// queue, so a take never observes emptiness. The conditions (after
/// Henzinger, Sezgin and Vafeiadis, "Aspect-oriented linearizability
/// proofs", for queues with unique values) are:
///
/// - no value is received that was never sent, or whose send failed with
///   an error that says nothing changed, or before it was sent;
/// - no value is received twice;
/// - every acknowledged send is received or still queued, except as many
///   as there are takes whose result is unknown (they may have taken them);
/// - if send(a) was answered before send(b) was sent, and b was received,
///   then a was not received after b (in real time), nor left queued.
pub fn linearizable(ops: &[Op], rest: &[Vec<u8>], end: u64) -> Result<(), String> {
    let mut sends: BTreeMap<&[u8], usize> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        if let OpKind::Send(v) = &op.kind
            && sends.insert(v.as_slice(), i).is_some()
        {
            return Err(format!("harness bug: value {} sent twice", show(v)));
        }
    }
    // Every dequeue with a known value: completed takes, then the final
    // contents as if drained one by one after the end.
    let mut deqs: BTreeMap<&[u8], Deq> = BTreeMap::new();
    let mut unknown_takes = 0usize;
    let mut taken: Vec<(&[u8], Deq)> = Vec::new();
    for op in ops {
        if op.kind != OpKind::Take {
            continue;
        }
        match &op.outcome {
            Outcome::Ok(Some(v)) => taken.push((
                v.as_slice(),
                Deq {
                    invoke: op.invoke,
                    response: op.response,
                },
            )),
            Outcome::Ok(None) => return Err(format!("a take got no data: {op:?}")),
            Outcome::Pending | Outcome::Unknown(_) => unknown_takes += 1,
            Outcome::Failed(_) => {}
        }
    }
    for (i, v) in rest.iter().enumerate() {
        let t = end + 1 + i as u64;
        taken.push((
            v.as_slice(),
            Deq {
                invoke: t,
                response: t,
            },
        ));
    }
    for (v, d) in taken {
        let Some(&si) = sends.get(v) else {
            return Err(format!(
                "value {} was received (at {}) but never sent",
                show(v),
                d.response
            ));
        };
        let s = &ops[si];
        if let Outcome::Failed(why) = &s.outcome {
            return Err(format!(
                "value {} was received, but its send failed with \"{why}\" (nothing should have changed): {s:?}",
                show(v)
            ));
        }
        if d.response < s.invoke {
            return Err(format!(
                "value {} was received at {} before it was sent at {}",
                show(v),
                d.response,
                s.invoke
            ));
        }
        if let Some(prev) = deqs.insert(v, d) {
            return Err(format!(
                "value {} was received twice: at {:?} and {:?}",
                show(v),
                prev,
                d
            ));
        }
    }
    let lost: Vec<&Op> = ops
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Ok(_)))
        .filter(|op| matches!(&op.kind, OpKind::Send(v) if !deqs.contains_key(v.as_slice())))
        .collect();
    if lost.len() > unknown_takes {
        return Err(format!(
            "{} acknowledged sends were never received nor left queued, and only {unknown_takes} takes may have received them: first {:?}",
            lost.len(),
            lost[0]
        ));
    }
    // Real-time order: acknowledged sends sorted by response; a prefix
    // maximum of their dequeues' invocations.
    let mut acked: Vec<(u64, u64, &[u8])> = ops
        .iter()
        .filter_map(|op| match (&op.kind, &op.outcome) {
            (OpKind::Send(v), Outcome::Ok(_)) => deqs
                .get(v.as_slice())
                .map(|d| (op.response, d.invoke, v.as_slice())),
            _ => None,
        })
        .collect();
    acked.sort();
    let mut prefix_max: Vec<(u64, &[u8])> = Vec::with_capacity(acked.len());
    for &(_, inv, v) in &acked {
        let best = match prefix_max.last() {
            Some(&(m, mv)) if m >= inv => (m, mv),
            _ => (inv, v),
        };
        prefix_max.push(best);
    }
    for op in ops {
        let OpKind::Send(b) = &op.kind else { continue };
        let Some(db) = deqs.get(b.as_slice()) else {
            continue;
        };
        // Sends answered strictly before b was sent.
        let n = acked.partition_point(|&(resp, _, _)| resp < op.invoke);
        if n == 0 {
            continue;
        }
        let (inv_a, a) = prefix_max[n - 1];
        if inv_a > db.response {
            return Err(format!(
                "FIFO order broken: {} was sent after {} was acknowledged, but was received first (at {}; {} was received from {}{})",
                show(b),
                show(a),
                db.response,
                show(a),
                inv_a,
                if inv_a > end {
                    ", i.e. left queued"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(())
}

fn show(v: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(v))
}

/// Raft's safety properties, fed as the run goes.
#[derive(Default)]
pub struct Safety {
    /// The leader seen in each term.
    leaders: BTreeMap<u64, u64>,
    /// Every applied entry: index → (term, chain hash, the highest term
    /// seen anywhere when it was first seen applied).
    pub committed: BTreeMap<u64, (u64, [u8; 32], u64)>,
    /// The highest term any node has shown.
    pub max_term: u64,
}

impl Safety {
    /// Election safety: `id` says it leads `term`. Returns whether it is
    /// the first report of that term's leader.
    pub fn leader(&mut self, term: u64, id: u64) -> Result<bool, String> {
        self.max_term = self.max_term.max(term);
        match self.leaders.insert(term, id) {
            Some(other) if other != id => Err(format!(
                "election safety: nodes {other} and {id} both lead term {term}"
            )),
            Some(_) => Ok(false),
            None => Ok(true),
        }
    }

    /// The latest term a leader was seen in (0: none yet).
    pub fn latest_led(&self) -> u64 {
        self.leaders.keys().next_back().copied().unwrap_or(0)
    }

    /// State-machine safety: node `id` has applied the entry at `index`
    /// (term, chain hash through it). Every node must apply the same
    /// entry at an index; the chain hash covers all before it.
    pub fn applied(
        &mut self,
        id: u64,
        index: u64,
        term: u64,
        hash: [u8; 32],
    ) -> Result<(), String> {
        let max = self.max_term;
        let e = self.committed.entry(index).or_insert((term, hash, max));
        if (e.0, e.1) != (term, hash) {
            return Err(format!(
                "state-machine safety: node {id} applied entry {index} of term {term} (chain {}), another node applied term {} (chain {}) there",
                hex(&hash[..6]),
                e.0,
                hex(&e.1[..6])
            ));
        }
        Ok(())
    }

    /// Leader completeness: the log of the new leader of `term` (entries as
    /// (index, term) after `snap`) holds every entry committed in an
    /// earlier term.
    pub fn new_leader(
        &self,
        id: u64,
        term: u64,
        snap: u64,
        log: &[(u64, u64)],
    ) -> Result<(), String> {
        let by_index: BTreeMap<u64, u64> = log.iter().copied().collect();
        for (&index, &(t, _, seen)) in self.committed.range(snap + 1..) {
            if seen >= term {
                continue;
            }
            match by_index.get(&index) {
                Some(&lt) if lt == t => {}
                got => {
                    return Err(format!(
                        "leader completeness: node {id} leads term {term} but its log has {got:?} at index {index}, where entry of term {t} was committed (seen when the highest term was {seen})"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One node's stored log: its id, and (index, term, encoded body) entries.
pub type NodeLog = (u64, Vec<(u64, u64, Vec<u8>)>);

/// Log matching over the logs of every node: (index, term, body bytes).
/// If two logs hold an entry with the same index and term, they hold the
/// same entry there and the same entries before it.
pub fn log_matching(logs: &[NodeLog]) -> Result<(), String> {
    for (i, (a_id, a)) in logs.iter().enumerate() {
        for (b_id, b) in &logs[i + 1..] {
            let bmap: BTreeMap<u64, (u64, &[u8])> =
                b.iter().map(|(x, t, d)| (*x, (*t, d.as_slice()))).collect();
            // The last index where both hold the same term.
            let last = a
                .iter()
                .rev()
                .find(|(x, t, _)| bmap.get(x).is_some_and(|(bt, _)| bt == t))
                .map(|e| e.0);
            let Some(last) = last else { continue };
            for (x, t, d) in a.iter().filter(|e| e.0 <= last) {
                if let Some((bt, bd)) = bmap.get(x)
                    && (bt != t || *bd != d.as_slice())
                {
                    return Err(format!(
                        "log matching: nodes {a_id} and {b_id} agree on entry {last}'s term but differ at {x} (terms {t} and {bt})"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Hex of a few bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, invoke: u64, response: u64, outcome: Outcome) -> Op {
        Op {
            client: 0,
            kind,
            invoke,
            response,
            outcome,
        }
    }
    fn send(v: &str, i: u64, r: u64) -> Op {
        op(OpKind::Send(v.into()), i, r, Outcome::Ok(None))
    }
    fn take(v: &str, i: u64, r: u64) -> Op {
        op(OpKind::Take, i, r, Outcome::Ok(Some(v.into())))
    }

    #[test]
    fn the_checker_catches_what_it_should() {
        let ok = [send("a", 0, 1), send("b", 2, 3), take("a", 4, 5)];
        assert!(linearizable(&ok, &[b"b".to_vec()], 10).is_ok());
        // Overlapping sends may land in either order.
        let ok = [send("a", 0, 3), send("b", 1, 2), take("b", 4, 5)];
        assert!(linearizable(&ok, &[b"a".to_vec()], 10).is_ok());
        let bad = [send("a", 0, 1), send("b", 2, 3), take("b", 4, 5)];
        assert!(linearizable(&bad, &[b"a".to_vec()], 10).is_err());
        let lost = [send("a", 0, 1)];
        assert!(linearizable(&lost, &[], 10).is_err());
        let maybe = [
            send("a", 0, 1),
            op(OpKind::Take, 2, u64::MAX, Outcome::Pending),
        ];
        assert!(linearizable(&maybe, &[], 10).is_ok());
        let twice = [send("a", 0, 1), take("a", 2, 3)];
        assert!(linearizable(&twice, &[b"a".to_vec()], 10).is_err());
        let failed = [op(
            OpKind::Send("a".into()),
            0,
            1,
            Outcome::Failed("no leader".into()),
        )];
        assert!(linearizable(&failed, &[b"a".to_vec()], 10).is_err());
        let fresh = [take("z", 0, 1)];
        assert!(linearizable(&fresh, &[], 10).is_err());
    }
}
