//! What a run prints: the operations, the faults injected with their
//! times, the checker's verdict per key and the lost-write check, and for
//! a key that is not linearizable, its history around where the search
//! got stuck.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::Config;
use super::appends::NodeAppends;
use super::faults::{FaultLog, Step};
use super::history::{Kind, Op, Outcome, Tally};
use super::linear::{Verdict, Witness};
use super::model::KeyVerdict;

/// Everything a run found.
pub struct Report {
    /// How it was run.
    pub config: Config,
    /// The history, by invocation time.
    pub ops: Vec<Op>,
    /// What the nemesis did.
    pub faults: FaultLog,
    /// The checker's verdict, key by key.
    pub keys: Vec<KeyVerdict>,
    /// The lost-write check, node by node.
    pub appends: Vec<NodeAppends>,
    /// Whether every node caught up before the appends were read.
    pub caught_up: bool,
    /// The whole run.
    pub elapsed: Duration,
    /// How long the linearizability checker took.
    pub check_time: Duration,
}

impl Report {
    /// Keys whose history is not linearizable.
    pub fn violations(&self) -> Vec<&KeyVerdict> {
        self.keys
            .iter()
            .filter(|k| matches!(k.verdict, Verdict::Violation(_)))
            .collect()
    }

    /// Keys the checker could not decide within its budget.
    pub fn unknown(&self) -> usize {
        self.keys
            .iter()
            .filter(|k| k.verdict == Verdict::Unknown)
            .count()
    }

    /// Nodes that lost an acknowledged write (or could not be read).
    pub fn lost(&self) -> Vec<&NodeAppends> {
        self.appends.iter().filter(|a| a.bad()).collect()
    }

    /// Whether the run found nothing wrong: every key linearizable, no
    /// acknowledged write lost, no node that failed by itself.
    pub fn passed(&self) -> bool {
        self.violations().is_empty()
            && self.lost().is_empty()
            && self.unknown() == 0
            && self.faults.node_failures.is_empty()
    }
}

/// The schedule as printed before a run.
pub fn schedule_text(schedule: &[Step]) -> String {
    let mut t = Duration::ZERO;
    let mut s = String::new();
    for step in schedule {
        t += step.gap;
        s.push_str(&format!(
            "  at ~{:>6.1} s  {} for {:.1} s\n",
            t.as_secs_f64(),
            step.fault,
            step.hold.as_secs_f64()
        ));
        t += step.hold;
    }
    s
}

/// The most common reasons operations failed or ended indeterminate
/// (numbers blanked out so that alike reasons count together).
fn reasons(f: &mut fmt::Formatter<'_>, ops: &[Op]) -> fmt::Result {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for o in ops {
        let (what, why) = match &o.outcome {
            Outcome::Failed(why) => ("failed", why),
            Outcome::Indeterminate(why) => ("indeterminate", why),
            Outcome::Ok(_) => continue,
        };
        let why: String = why
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        *counts.entry(format!("{what}: {why}")).or_default() += 1;
    }
    let mut by_count: Vec<(String, usize)> = counts.into_iter().collect();
    by_count.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    if !by_count.is_empty() {
        writeln!(
            f,
            "why operations failed or are indeterminate (most common):"
        )?;
    }
    for (why, n) in by_count.iter().take(REASONS) {
        writeln!(f, "  {n:>6}  {why}")?;
    }
    Ok(())
}

/// How many reasons [`reasons`] prints.
const REASONS: usize = 8;

/// The most operations of a counterexample's window printed.
const WINDOW: usize = 40;

/// The operations of `k` around where the search got stuck: from the
/// invocation of the earliest of the last few operations it could
/// linearize to the return of the one it could not.
fn counterexample(f: &mut fmt::Formatter<'_>, k: &KeyVerdict, w: &Witness) -> fmt::Result {
    let stuck = &k.ops[w.stuck];
    let tail: Vec<usize> = w.longest.iter().rev().take(6).rev().copied().collect();
    writeln!(
        f,
        "  key {}: not linearizable ({} operations checked)",
        k.key, k.checked
    )?;
    writeln!(
        f,
        "    the search linearized at most {} operations; the last of them, in order:",
        w.longest.len()
    )?;
    for &i in &tail {
        writeln!(f, "      {}", k.ops[i])?;
    }
    writeln!(
        f,
        "    and then could not place this one before it returned:"
    )?;
    writeln!(f, "      {stuck}")?;
    let from = tail
        .iter()
        .map(|&i| k.ops[i].call)
        .min()
        .unwrap_or(stuck.call)
        .min(stuck.call);
    let window: Vec<&Op> = k
        .ops
        .iter()
        .filter(|o| o.ret >= from && o.call <= stuck.ret)
        .collect();
    let shown = &window[window.len().saturating_sub(WINDOW)..];
    writeln!(
        f,
        "    the operations on {} in that window ({} of {}, the latest):",
        k.key,
        shown.len(),
        window.len()
    )?;
    for o in shown {
        writeln!(f, "      {o}")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "== nemesis run {}: {} nodes, seed {}, {} clients ({:?}), {} keys, reads by {:?}, {:.1} s ==",
            c.name,
            c.nodes,
            c.seed,
            c.workload.clients,
            c.workload.route,
            c.workload.keys,
            c.workload.reads,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "operations: {}", Tally::of(&self.ops, |_| true))?;
        for kind in [Kind::Create, Kind::Remove, Kind::Exists, Kind::Append] {
            let t = Tally::of(&self.ops, |o| o.kind == kind);
            if t.total() > 0 {
                writeln!(f, "  {kind:<7} {t}")?;
            }
        }
        reasons(f, &self.ops)?;
        writeln!(f, "faults injected: {}", self.faults.injected)?;
        for (ms, line) in &self.faults.lines {
            writeln!(f, "  {:>8.3} s  {line}", *ms as f64 / 1000.0)?;
        }
        if !self.faults.node_failures.is_empty() {
            writeln!(f, "node failures:")?;
            for o in &self.faults.node_failures {
                writeln!(f, "  {o}")?;
            }
        }
        let checked: usize = self.keys.iter().map(|k| k.checked).sum();
        writeln!(
            f,
            "linearizability: {} keys, {} operations checked in {:.2} s: {} linearizable, {} violations, {} unknown",
            self.keys.len(),
            checked,
            self.check_time.as_secs_f64(),
            self.keys
                .iter()
                .filter(|k| k.verdict == Verdict::Linearizable)
                .count(),
            self.violations().len(),
            self.unknown()
        )?;
        for k in &self.keys {
            if let Verdict::Violation(w) = &k.verdict {
                counterexample(f, k, w)?;
            }
        }
        let acked = self
            .ops
            .iter()
            .filter(|o| o.kind == Kind::Append && o.outcome == Outcome::Ok(true))
            .count();
        writeln!(
            f,
            "no acknowledged write lost: {} acknowledged appends{}",
            acked,
            if self.caught_up {
                ""
            } else {
                " (the nodes had not all caught up after 60 s)"
            }
        )?;
        for a in &self.appends {
            write!(
                f,
                "  n{}: {} messages read, {} acknowledged missing, {} duplicated, {} of the indeterminate present",
                a.node + 1,
                a.read,
                a.missing.len(),
                a.duplicated.len(),
                a.indeterminate_present
            )?;
            if !a.failed_but_present.is_empty() {
                write!(
                    f,
                    ", {} whose append failed present ({:?})",
                    a.failed_but_present.len(),
                    a.failed_but_present.iter().take(5).collect::<Vec<_>>()
                )?;
            }
            if !a.missing.is_empty() {
                write!(
                    f,
                    "; missing: {:?}",
                    a.missing.iter().take(10).collect::<Vec<_>>()
                )?;
            }
            if let Some(e) = &a.error {
                write!(f, "; could not read: {e}")?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "verdict: {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}
