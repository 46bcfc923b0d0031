//! The invariant "no acknowledged write lost": after the faults are
//! healed and every node has caught up, every message whose append was
//! acknowledged is in the channel on every node; a message whose append
//! failed (changing nothing, by the node's word) is in none.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::history::{Kind, Op, Outcome};
use super::nodes::NemCluster;
use super::workload::APPEND_CHAN;
use crate::cluster::field;

/// What one node's copy of the append channel holds, against the history.
#[derive(Debug)]
pub struct NodeAppends {
    /// The node (0-based).
    pub node: usize,
    /// Messages read back.
    pub read: usize,
    /// Acknowledged messages missing (lost).
    pub missing: Vec<String>,
    /// Messages present more than once.
    pub duplicated: Vec<String>,
    /// Messages present whose append failed with "nothing changed".
    pub failed_but_present: Vec<String>,
    /// Indeterminate appends that did take effect.
    pub indeterminate_present: usize,
    /// Why the channel could not be read, if it could not.
    pub error: Option<String>,
}

impl NodeAppends {
    /// Whether this node breaks the invariant (or could not be checked).
    pub fn bad(&self) -> bool {
        self.error.is_some() || !self.missing.is_empty() || !self.failed_but_present.is_empty()
    }
}

/// Wait (up to `limit`) until every node has applied the same index as
/// the highest commit index any of them knows; whether they did.
pub fn wait_caught_up(c: &NemCluster, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let idx: Vec<Option<(u64, u64)>> = (0..c.len())
            .map(|i| {
                let s = c.status(i)?;
                let num = |k: &str| field(&s, k)?.parse::<u64>().ok();
                Some((num("commit")?, num("applied")?))
            })
            .collect();
        if let Some(all) = idx.iter().copied().collect::<Option<Vec<_>>>() {
            let top = all.iter().map(|&(commit, _)| commit).max().unwrap_or(0);
            if c.leader().is_some() && all.iter().all(|&(_, applied)| applied == top) {
                return true;
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every message the channel retains on node `i`, one per line.
fn read_all(c: &NemCluster, i: usize) -> Result<Vec<String>, String> {
    let limit = Duration::from_secs(20);
    let deadline = Instant::now() + limit;
    let mut conn = c
        .conn(i, Duration::from_secs(2))
        .ok_or("cannot attach to it")?;
    let status = conn
        .cat(&format!("/chan/{APPEND_CHAN}/status"), deadline)
        .map_err(|e| format!("status: {e:?}"))?;
    let retained: usize = field(&status, "retained")
        .and_then(|v| v.parse().ok())
        .ok_or("no retained count in its status")?;
    if retained == 0 {
        return Ok(Vec::new());
    }
    let data = conn
        .read_until(&format!("/chan/{APPEND_CHAN}/data"), deadline, |b| {
            b.iter().filter(|&&c| c == b'\n').count() >= retained
        })
        .map_err(|e| format!("data: {e:?}"))?;
    Ok(String::from_utf8_lossy(&data)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Check every node's copy against the appends of `ops`.
pub fn check(c: &NemCluster, ops: &[Op]) -> Vec<NodeAppends> {
    let appends: HashMap<&str, &Outcome> = ops
        .iter()
        .filter(|o| o.kind == Kind::Append)
        .map(|o| (o.key.as_str(), &o.outcome))
        .collect();
    (0..c.len())
        .map(|i| {
            let mut r = NodeAppends {
                node: i,
                read: 0,
                missing: Vec::new(),
                duplicated: Vec::new(),
                failed_but_present: Vec::new(),
                indeterminate_present: 0,
                error: None,
            };
            let lines = match read_all(c, i) {
                Ok(l) => l,
                Err(e) => {
                    r.error = Some(e);
                    return r;
                }
            };
            r.read = lines.len();
            let mut seen = HashSet::new();
            for l in &lines {
                if !seen.insert(l.as_str()) {
                    r.duplicated.push(l.clone());
                }
                match appends.get(l.as_str()) {
                    Some(Outcome::Failed(_)) => r.failed_but_present.push(l.clone()),
                    Some(Outcome::Indeterminate(_)) => r.indeterminate_present += 1,
                    _ => {}
                }
            }
            let mut missing: Vec<String> = appends
                .iter()
                .filter(|(k, o)| matches!(o, Outcome::Ok(_)) && !seen.contains(*k))
                .map(|(k, _)| k.to_string())
                .collect();
            missing.sort();
            r.missing = missing;
            r
        })
        .collect()
}
