//! The sequential specification of one key: a channel that exists or not
//! (a set-membership register), and how a key's history is checked
//! against it.

use std::collections::BTreeMap;

use super::history::{Kind, Op, Outcome};
use super::linear::{Entry, Model, Verdict, check};

/// A channel name that exists or not; create, remove and exists act on it.
pub struct Membership;

/// An operation on the key and what it returned (`None`: unknown).
pub type MemberOp = (Kind, Option<bool>);

impl Model for Membership {
    type State = bool;
    type Op = MemberOp;

    fn init(&self) -> bool {
        false
    }

    fn step(&self, exists: &bool, op: &MemberOp) -> Option<bool> {
        let exists = *exists;
        match *op {
            (Kind::Create, Some(created)) => (created != exists).then_some(true),
            (Kind::Create, None) => Some(true),
            (Kind::Remove, Some(removed)) => (removed == exists).then_some(false),
            (Kind::Remove, None) => Some(false),
            (Kind::Exists, Some(seen)) => (seen == exists).then_some(exists),
            (Kind::Exists, None) | (Kind::Append, _) => Some(exists),
        }
    }
}

/// The entries of a key's operations the checker needs: results become
/// outputs, indeterminate operations never return (and an indeterminate
/// `exists`, which changes nothing, is left out), and failed ones are
/// left out: they changed nothing. Returns the entries and, for each, the
/// index of its operation in `ops`.
pub fn entries(ops: &[Op]) -> (Vec<Entry<MemberOp>>, Vec<usize>) {
    let mut out = Vec::new();
    let mut index = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        let entry = match (&o.outcome, o.kind) {
            (_, Kind::Append) | (Outcome::Failed(_), _) => continue,
            (Outcome::Indeterminate(_), Kind::Exists) => continue,
            (Outcome::Ok(v), k) => Entry {
                op: (k, Some(*v)),
                call: o.call,
                ret: Some(o.ret),
            },
            (Outcome::Indeterminate(_), k) => Entry {
                op: (k, None),
                call: o.call,
                ret: None,
            },
        };
        out.push(entry);
        index.push(i);
    }
    (out, index)
}

/// The verdict for one key.
#[derive(Debug)]
pub struct KeyVerdict {
    /// The key.
    pub key: String,
    /// Its operations (all of them, by invocation time).
    pub ops: Vec<Op>,
    /// How many of them the checker weighed.
    pub checked: usize,
    /// What the checker said, with indices into the weighed entries
    /// mapped back to `ops`.
    pub verdict: Verdict,
}

/// Split the membership operations of `ops` by key and check each key.
pub fn check_keys(ops: &[Op], budget: u64) -> Vec<KeyVerdict> {
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for o in ops.iter().filter(|o| o.kind != Kind::Append) {
        by_key.entry(&o.key).or_default().push(o.clone());
    }
    by_key
        .into_iter()
        .map(|(key, mut ops)| {
            ops.sort_by_key(|o| o.call);
            let (es, index) = entries(&ops);
            let verdict = match check(&Membership, &es, budget) {
                Verdict::Violation(mut w) => {
                    w.longest = w.longest.iter().map(|&i| index[i]).collect();
                    w.stuck = index[w.stuck];
                    Verdict::Violation(w)
                }
                v => v,
            };
            KeyVerdict {
                key: key.to_string(),
                checked: es.len(),
                ops,
                verdict,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, kind: Kind, call: u64, ret: u64, outcome: Outcome) -> Op {
        Op {
            client,
            node: 0,
            kind,
            key: "k".into(),
            call,
            ret,
            outcome,
        }
    }

    fn verdict(ops: &[Op]) -> Verdict {
        let v = check_keys(ops, 1_000_000);
        assert_eq!(v.len(), 1);
        v.into_iter().next().unwrap().verdict
    }

    #[test]
    fn create_exists_remove_in_turn_is_linearizable() {
        let h = [
            op(0, Kind::Create, 0, 10, Outcome::Ok(true)),
            op(1, Kind::Exists, 20, 30, Outcome::Ok(true)),
            op(0, Kind::Create, 40, 50, Outcome::Ok(false)),
            op(1, Kind::Remove, 60, 70, Outcome::Ok(true)),
            op(0, Kind::Exists, 80, 90, Outcome::Ok(false)),
            op(1, Kind::Remove, 100, 110, Outcome::Ok(false)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn missing_an_acknowledged_create_is_a_violation() {
        // The follower case: created and acknowledged through one node,
        // then not there through another.
        let h = [
            op(0, Kind::Create, 0, 10, Outcome::Ok(true)),
            op(1, Kind::Exists, 20, 30, Outcome::Ok(false)),
        ];
        match verdict(&h) {
            Verdict::Violation(w) => assert_eq!((w.longest, w.stuck), (vec![0], 1)),
            v => panic!("expected a violation, got {v:?}"),
        }
    }

    #[test]
    fn two_creates_that_both_succeed_need_a_remove_between() {
        let h = [
            op(0, Kind::Create, 0, 10, Outcome::Ok(true)),
            op(1, Kind::Create, 20, 30, Outcome::Ok(true)),
        ];
        assert!(matches!(verdict(&h), Verdict::Violation(_)));
        let h = [
            op(0, Kind::Create, 0, 10, Outcome::Ok(true)),
            op(
                2,
                Kind::Remove,
                5,
                25,
                Outcome::Indeterminate("timeout".into()),
            ),
            op(1, Kind::Create, 20, 30, Outcome::Ok(true)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn failed_operations_changed_nothing() {
        let h = [
            op(0, Kind::Create, 0, 10, Outcome::Failed("no leader".into())),
            op(1, Kind::Exists, 20, 30, Outcome::Ok(false)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn an_indeterminate_create_may_show_up_later_but_not_vanish_again() {
        let lost = || {
            op(
                0,
                Kind::Create,
                0,
                10,
                Outcome::Indeterminate("timeout".into()),
            )
        };
        let h = [lost(), op(1, Kind::Exists, 20, 30, Outcome::Ok(false))];
        assert_eq!(verdict(&h), Verdict::Linearizable);
        let h = [
            lost(),
            op(1, Kind::Exists, 20, 30, Outcome::Ok(false)),
            op(1, Kind::Exists, 40, 50, Outcome::Ok(true)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
        let h = [
            lost(),
            op(1, Kind::Exists, 20, 30, Outcome::Ok(true)),
            op(1, Kind::Exists, 40, 50, Outcome::Ok(false)),
        ];
        assert!(matches!(verdict(&h), Verdict::Violation(_)));
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut a = op(0, Kind::Create, 0, 10, Outcome::Ok(true));
        a.key = "a".into();
        let mut b = op(1, Kind::Exists, 20, 30, Outcome::Ok(false));
        b.key = "b".into();
        let v = check_keys(&[a, b], 1000);
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|k| k.verdict == Verdict::Linearizable));
    }
}
