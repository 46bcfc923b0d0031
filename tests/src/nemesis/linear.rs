//! A linearizability checker: the Wing–Gong search as Lowe refined it and
//! Porcupine implements it, with memoization of (set of linearized
//! operations, model state).
//!
//! A history is a list of operations, each with the time it was invoked,
//! the time it returned (`None` when it never did: it timed out or its
//! connection broke, so it may or may not have taken effect) and what it
//! returned. The search walks the invocation and return events in time
//! order, tries to linearize each invoked operation in turn (the model
//! says whether it can take effect in the current state, and into which
//! state), and backtracks when it reaches the return of an operation it
//! has not linearized yet. A pair (linearized set, state) already seen
//! cannot lead anywhere new and is cut. An operation that never returned
//! has its return at the end of time and a model that accepts any result
//! for it, so it may be linearized anywhere after its invocation, or last
//! of all (which is the same as never).
//!
//! Callers split a history by key first (P-compositionality:
//! a history is linearizable if and only if each key's is), and check
//! each key alone.

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification: the states an object can be in and what
/// an operation does to one.
pub trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash;
    /// An operation with its recorded result (or an unknown one).
    type Op;
    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// The state after `op` takes effect in `state`, or `None` if `op`
    /// could not have returned what it did there.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// One operation of a history, with its real-time interval.
#[derive(Clone, Debug)]
pub struct Entry<O> {
    /// The operation and what it returned.
    pub op: O,
    /// When it was invoked (any monotonic unit).
    pub call: u64,
    /// When it returned; `None` if it never did.
    pub ret: Option<u64>,
}

/// What the search concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations, each at a point inside its interval,
    /// is legal for the model.
    Linearizable,
    /// No such order exists.
    Violation(Witness),
    /// The search gave up after its step budget; nothing is known.
    Unknown,
}

/// Where the search came closest to a linearization of a history that
/// has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    /// Indices (into the history) of the longest sequence of operations
    /// the search could linearize, in order.
    pub longest: Vec<usize>,
    /// The operation whose return the search reached (in the attempt that
    /// went furthest) without being able to linearize it.
    pub stuck: usize,
}

/// A set of operation indices, as bits.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// The doubly linked list of events the search lifts operations out of.
/// Node 0 is the head; node `2i + 1` is operation `i`'s call and `2i + 2`
/// its return.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
}

const NIL: usize = usize::MAX;

impl Events {
    fn new<O>(history: &[Entry<O>]) -> Events {
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(history.len() * 2);
        for (i, e) in history.iter().enumerate() {
            // At equal times a call sorts before a return: the two
            // operations are taken as concurrent, the lenient reading.
            order.push((e.call, 0, 2 * i + 1));
            order.push((e.ret.unwrap_or(u64::MAX), 1, 2 * i + 2));
        }
        order.sort_unstable();
        let len = history.len() * 2 + 1;
        let mut ev = Events {
            next: vec![NIL; len],
            prev: vec![NIL; len],
        };
        let mut last = 0;
        for &(_, _, node) in &order {
            ev.next[last] = node;
            ev.prev[node] = last;
            last = node;
        }
        ev
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    /// Take operation `op`'s call and return out of the list.
    fn lift(&mut self, op: usize) {
        self.unlink(2 * op + 1);
        self.unlink(2 * op + 2);
    }

    /// Put them back (in the reverse order of [`Events::lift`]).
    fn unlift(&mut self, op: usize) {
        self.relink(2 * op + 2);
        self.relink(2 * op + 1);
    }
}

/// Check `history` against `model`, taking at most `budget` search steps.
pub fn check<M: Model>(model: &M, history: &[Entry<M::Op>], budget: u64) -> Verdict {
    let n = history.len();
    let mut events = Events::new(history);
    let mut state = model.init();
    let mut linearized = Bits::new(n);
    let mut seen: HashSet<(Bits, M::State)> = HashSet::new();
    // (operation linearized, the state before it)
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut best: (Vec<usize>, usize) = (Vec::new(), 0);
    let mut node = events.next[0];
    let mut steps = 0u64;
    while events.next[0] != NIL {
        steps += 1;
        if steps > budget {
            return Verdict::Unknown;
        }
        let op = (node - 1) / 2;
        if node % 2 == 1 {
            // A call: try to linearize its operation here.
            if let Some(after) = model.step(&state, &history[op].op) {
                let mut with = linearized.clone();
                with.set(op);
                if seen.insert((with.clone(), after.clone())) {
                    stack.push((op, std::mem::replace(&mut state, after)));
                    linearized = with;
                    events.lift(op);
                    node = events.next[0];
                    continue;
                }
            }
            node = events.next[node];
        } else {
            // A return of an operation not yet linearized: undo the last
            // choice and try the next one.
            if stack.len() >= best.0.len() {
                best = (stack.iter().map(|(o, _)| *o).collect(), op);
            }
            let Some((undo, before)) = stack.pop() else {
                return Verdict::Violation(Witness {
                    longest: best.0,
                    stuck: best.1,
                });
            };
            state = before;
            linearized.clear(undo);
            events.unlift(undo);
            node = events.next[2 * undo + 1];
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register of one integer: `(Some(v), _)` writes v; `(None, r)`
    /// reads r (`r = None`: the read's result is unknown).
    struct Register;

    impl Model for Register {
        type State = u32;
        type Op = (Option<u32>, Option<u32>);
        fn init(&self) -> u32 {
            0
        }
        fn step(&self, s: &u32, op: &Self::Op) -> Option<u32> {
            match *op {
                (Some(v), _) => Some(v),
                (None, Some(r)) => (r == *s).then_some(*s),
                (None, None) => Some(*s),
            }
        }
    }

    fn w(v: u32, call: u64, ret: u64) -> Entry<(Option<u32>, Option<u32>)> {
        Entry {
            op: (Some(v), None),
            call,
            ret: Some(ret),
        }
    }
    fn r(v: u32, call: u64, ret: u64) -> Entry<(Option<u32>, Option<u32>)> {
        Entry {
            op: (None, Some(v)),
            call,
            ret: Some(ret),
        }
    }

    const BUDGET: u64 = 1_000_000;

    #[test]
    fn sequential_history_that_reads_what_was_written_is_linearizable() {
        let h = [w(1, 0, 1), r(1, 2, 3), w(2, 4, 5), r(2, 6, 7)];
        assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let h = [w(1, 0, 1), r(0, 2, 3)];
        match check(&Register, &h, BUDGET) {
            Verdict::Violation(wit) => {
                assert_eq!(wit.longest, vec![0]);
                assert_eq!(wit.stuck, 1);
            }
            v => panic!("expected a violation, got {v:?}"),
        }
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        for seen in [0, 1] {
            let h = [w(1, 0, 10), r(seen, 5, 6)];
            assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
        }
    }

    #[test]
    fn two_readers_may_not_see_a_concurrent_write_in_opposite_orders() {
        // Reader A sees 1 then 0; the write happened once: not linearizable.
        let h = [w(1, 0, 100), r(1, 10, 20), r(0, 30, 40)];
        assert!(matches!(
            check(&Register, &h, BUDGET),
            Verdict::Violation(_)
        ));
        // In the other order it is fine.
        let h = [w(1, 0, 100), r(0, 10, 20), r(1, 30, 40)];
        assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn an_operation_that_never_returned_may_or_may_not_take_effect() {
        let pending = Entry {
            op: (Some(7), None),
            call: 0,
            ret: None,
        };
        // It took effect...
        let h = [pending.clone(), r(7, 10, 11)];
        assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
        // ...or it did not...
        let h = [pending.clone(), r(0, 10, 11)];
        assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
        // ...but not both ways: once seen, it stays.
        let h = [pending.clone(), r(7, 10, 11), r(0, 12, 13)];
        assert!(matches!(
            check(&Register, &h, BUDGET),
            Verdict::Violation(_)
        ));
        // And never before it was invoked.
        let late = Entry {
            op: (Some(7), None),
            call: 20,
            ret: None,
        };
        let h = [r(7, 10, 11), late];
        assert!(matches!(
            check(&Register, &h, BUDGET),
            Verdict::Violation(_)
        ));
    }

    #[test]
    fn a_read_with_an_unknown_result_constrains_nothing() {
        let h = [
            w(1, 0, 1),
            Entry {
                op: (None, None),
                call: 2,
                ret: None,
            },
            r(1, 3, 4),
        ];
        assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn many_concurrent_operations_are_searched_without_blowing_up() {
        // 14 overlapping writes of distinct values and a read, after all of
        // them, of one written early in the search's order: linearizable,
        // and memoization keeps the search to the 2^14 sets of writes
        // although there are 14! (87 billion) orders.
        let mut h: Vec<_> = (0..14).map(|v| w(v + 1, v as u64, 1000)).collect();
        h.push(r(3, 2000, 2001));
        assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
        h.push(r(4, 3000, 3001));
        assert!(matches!(
            check(&Register, &h, BUDGET),
            Verdict::Violation(_)
        ));
    }

    #[test]
    fn the_budget_bounds_the_search() {
        let mut h: Vec<_> = (0..14).map(|v| w(v + 1, v as u64, 1000)).collect();
        h.push(r(3, 2000, 2001));
        assert_eq!(check(&Register, &h, 10), Verdict::Unknown);
    }
}
