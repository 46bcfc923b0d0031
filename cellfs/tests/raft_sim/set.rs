//! Linearizability of the tree's shape: per channel name, a register that
//! holds "present" or "absent", changed by mkdir and rmdir and read by a
//! walk. Checked by the search of Wing and Gong as Lowe refined it (the
//! algorithm of Knossos and Porcupine): linearize, one at a time, an
//! operation invoked before every pending one was answered, if the model
//! allows its result; backtrack; remember (linearized set, state) pairs
//! already explored. Names are independent, so each is checked alone.

use std::collections::{BTreeMap, HashSet};

use super::check::{Op, OpKind, Outcome};

/// What the model says of one operation in state `present`: the result
/// it must report and the state after, or `None` if it cannot happen.
fn step(kind: &OpKind, present: bool, result: Option<bool>) -> Option<bool> {
    let (says, after) = match kind {
        // Made: it was absent. "Exists": it was present.
        OpKind::Make(_) => (!present, true),
        // Removed: it was present. "Does not exist": it was absent.
        OpKind::Remove(_) => (present, false),
        OpKind::Exists(_) => (present, present),
        _ => return None,
    };
    match result {
        Some(r) if r != says => None,
        _ => Some(after),
    }
}

/// One operation on a name, as the search sees it.
#[derive(Clone, Debug)]
struct Call {
    op: usize,
    kind: OpKind,
    invoke: u64,
    /// `u64::MAX` for an operation whose result is unknown: it may take
    /// effect at any time after it was sent, or never.
    response: u64,
    result: Option<bool>,
}

/// Check every name's history; on failure, say which name and show its
/// operations.
pub fn linearizable(ops: &[Op]) -> Result<(), String> {
    let mut by_name: BTreeMap<&str, Vec<Call>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let name = match &op.kind {
            OpKind::Make(n) | OpKind::Remove(n) | OpKind::Exists(n) => n.as_str(),
            _ => continue,
        };
        let (response, result) = match &op.outcome {
            // Nothing changed: it is not part of the history.
            Outcome::Failed(_) => continue,
            Outcome::Ok(Some(v)) => (op.response, Some(v.first() == Some(&1))),
            Outcome::Ok(None) | Outcome::Pending | Outcome::Unknown(_) => (u64::MAX, None),
        };
        by_name.entry(name).or_default().push(Call {
            op: i,
            kind: op.kind.clone(),
            invoke: op.invoke,
            response,
            result,
        });
    }
    for (name, calls) in by_name {
        if !search(&calls) {
            let mut s = format!("the history of /chan/{name} is not linearizable:\n");
            for c in &calls {
                let o = &ops[c.op];
                s.push_str(&format!(
                    "  client {} {:?} [{}, {}] -> {:?}\n",
                    o.client, o.kind, o.invoke, o.response, o.outcome
                ));
            }
            return Err(s);
        }
    }
    Ok(())
}

/// Whether `calls` (one name's, starting absent) can be linearized.
fn search(calls: &[Call]) -> bool {
    let n = calls.len();
    let words = n.div_ceil(64);
    let mut seen: HashSet<(Vec<u64>, bool)> = HashSet::new();
    // Depth-first, with an explicit stack of (done set, state).
    let mut stack = vec![(vec![0u64; words], false, 0usize)];
    while let Some((done, present, count)) = stack.pop() {
        if count == n {
            return true;
        }
        if !seen.insert((done.clone(), present)) {
            continue;
        }
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // An operation may go next only if it was invoked before every
        // operation still to go was answered.
        let first_answer = (0..n)
            .filter(|&i| !is_done(i))
            .map(|i| calls[i].response)
            .min()
            .unwrap_or(u64::MAX);
        for i in (0..n).filter(|&i| !is_done(i)) {
            let c = &calls[i];
            if c.invoke > first_answer {
                continue;
            }
            if let Some(after) = step(&c.kind, present, c.result) {
                let mut next = done.clone();
                next[i / 64] |= 1 << (i % 64);
                stack.push((next, after, count + 1));
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, invoke: u64, response: u64, result: Option<bool>) -> Op {
        Op {
            client: 0,
            kind,
            invoke,
            response,
            outcome: match result {
                Some(r) => Outcome::Ok(Some(vec![u8::from(r)])),
                None => Outcome::Pending,
            },
        }
    }

    fn make(i: u64, r: u64, made: bool) -> Op {
        op(OpKind::Make("a".into()), i, r, Some(made))
    }

    fn exists(i: u64, r: u64, seen: bool) -> Op {
        op(OpKind::Exists("a".into()), i, r, Some(seen))
    }

    fn remove(i: u64, r: u64, removed: bool) -> Op {
        op(OpKind::Remove("a".into()), i, r, Some(removed))
    }

    #[test]
    fn the_set_checker_catches_what_it_should() {
        // Made, then seen: fine. Made, then (strictly later) not seen: a
        // stale walk.
        assert!(linearizable(&[make(0, 5, true), exists(6, 7, true)]).is_ok());
        assert!(linearizable(&[make(0, 5, true), exists(6, 7, false)]).is_err());
        // Overlapping, either order is possible.
        assert!(linearizable(&[make(0, 5, true), exists(1, 2, false)]).is_ok());
        // Two makes both succeeding with no remove between: impossible.
        assert!(linearizable(&[make(0, 5, true), make(1, 6, true)]).is_err());
        // ... unless a remove overlaps them.
        assert!(linearizable(&[make(0, 5, true), remove(1, 6, true), make(2, 7, true)]).is_ok());
        // A remove of something never made.
        assert!(linearizable(&[remove(0, 1, true)]).is_err());
        // An unknown make may have happened, later than it was sent.
        let unknown = op(OpKind::Make("a".into()), 0, u64::MAX, None);
        assert!(linearizable(&[unknown.clone(), exists(10, 11, true)]).is_ok());
        assert!(linearizable(&[unknown, exists(10, 11, false), exists(12, 13, true)]).is_ok());
        // Seen, then not seen, with nothing removing it: a read went back.
        assert!(
            linearizable(&[make(0, 1, true), exists(2, 3, true), exists(4, 5, false)]).is_err()
        );
        // Names are independent.
        let b = op(OpKind::Exists("b".into()), 6, 7, Some(false));
        assert!(linearizable(&[make(0, 5, true), b]).is_ok());
    }
}
