//! Killing members one at a time and timing how the swarm notices and
//! heals: every other member's view of the dead one, the voter count, the
//! leadership, and the member's return once restarted.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::events::{Followers, Seen, unix_ms};
use super::view::{Views, field, ids, worst};
use crate::cmd::cluster::LocalCluster;

/// Which member a kill takes, in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    /// A voter that does not lead.
    Voter,
    /// A non-voter.
    Learner,
    /// The leader.
    Leader,
}

impl Victim {
    /// The kind the `k`th kill (from 0) takes: voter, learner, leader, …
    pub fn nth(k: usize) -> Victim {
        [Victim::Voter, Victim::Learner, Victim::Leader][k % 3]
    }

    /// As the table names it.
    pub fn label(self) -> &'static str {
        match self {
            Victim::Voter => "voter",
            Victim::Learner => "learner",
            Victim::Leader => "leader",
        }
    }
}

/// What one kill measured; each time counted from the SIGKILL (the
/// return, from the restart), `None` where it did not happen in time.
pub struct Kill {
    /// The node killed.
    pub node: u64,
    /// What it was.
    pub victim: Victim,
    /// For each other member, when its `/events` first said `dead`.
    pub dead: Vec<Option<Duration>>,
    /// When every other member's `voters` was back to the count wanted,
    /// without the dead node (for a voter or the leader).
    pub voters: Option<Option<Duration>>,
    /// When every other member named a new leader (for the leader).
    pub leader: Option<Option<Duration>>,
    /// From the restart, when every other member's `/events` said it was
    /// alive again.
    pub back: Option<Duration>,
}

/// Kill a member of the kind `victim` (or, if the swarm has none, the
/// next kind), measure, restart it, and wait until every member sees
/// every other alive again. `wait` bounds each wait.
pub fn kill_one(
    cluster: &mut LocalCluster,
    views: &mut Views,
    followers: &Followers,
    victim: Victim,
    voters_wanted: usize,
    wait: Duration,
) -> anyhow::Result<Kill> {
    let all = views.ids();
    let leader = leader_seen(views, &all).context("no member names a leader")?;
    let status = views
        .read(leader, "/swarm/status")
        .with_context(|| format!("reading /swarm/status on the leader, node {leader}"))?;
    let voters = ids(field(&status, "voters").unwrap_or(""));
    let learners = ids(field(&status, "learners").unwrap_or(""));
    let voter = voters.iter().rev().copied().find(|&v| v != leader);
    let (victim, node) = match (victim, voter, learners.last()) {
        (Victim::Voter, Some(v), _) => (Victim::Voter, v),
        (Victim::Learner, _, Some(&l)) => (Victim::Learner, l),
        // No learner in a swarm of only voters: a voter instead.
        (Victim::Learner, Some(v), None) => (Victim::Voter, v),
        _ => (Victim::Leader, leader),
    };
    let was_voter = voters.contains(&node);
    let others: Vec<u64> = all.iter().copied().filter(|&id| id != node).collect();

    // What the members saw before this kill is no news of it.
    followers.drain();
    let kill_ms = unix_ms();
    cluster.kill(node)?;
    let killed = Instant::now();
    views.forget(node);
    // Everything comes stamped from the members' /events: the death
    // (`swarm dead node=N`), the promotion that restores the voters
    // (`swarm promote node=M`, when the member applies the change) and
    // the new leader (`raft leader node=M`), whatever a poll would cost.
    let dead_of = |s: &Seen| s.what == "dead" && s.node == node;
    let promoted = |s: &Seen| s.what == "promote" && s.node != node;
    let led = |s: &Seen| s.what == "leader" && s.node != node;
    let mut wanted: Vec<&dyn Fn(&Seen) -> bool> = vec![&dead_of];
    if was_voter {
        wanted.push(&promoted);
    }
    if victim == Victim::Leader {
        wanted.push(&led);
    }
    let got = followers.collect_until(killed + wait, |got| {
        wanted.iter().all(|hit| {
            others.iter().all(|o| {
                got.iter()
                    .any(|s| s.observer == *o && s.unix_ms >= kill_ms && hit(s))
            })
        })
    });
    let times = |hit: &dyn Fn(&Seen) -> bool| first_seen(&got, hit, &others, kill_ms);
    let dead = times(&dead_of);
    let voters = was_voter.then(|| worst(&times(&promoted)));
    let leader = (victim == Victim::Leader).then(|| worst(&times(&led)));

    let restart_ms = unix_ms();
    cluster
        .restart(node)
        .with_context(|| format!("restarting node {node} after killing it"))?;
    let alive = |s: &Seen| s.what == "alive" && s.node == node;
    let got = followers.collect_until(Instant::now() + wait, |got| {
        others.iter().all(|o| {
            got.iter()
                .any(|s| s.observer == *o && s.unix_ms >= restart_ms && alive(s))
        })
    });
    let back = worst(&first_seen(&got, &alive, &others, restart_ms));
    followers
        .follow(node)
        .with_context(|| format!("following node {node}'s /events after its restart"))?;
    settle(views, voters_wanted, wait);
    Ok(Kill {
        node,
        victim,
        dead,
        voters,
        leader,
        back,
    })
}

/// Wait (up to `wait`) until every member sees every member alive and
/// `voters_wanted` voters, so the next measurement starts from a whole
/// swarm (a kill right after forming could take the only voter yet);
/// whether it got there.
pub fn settle(views: &mut Views, voters_wanted: usize, wait: Duration) -> bool {
    let all = views.ids();
    let n = all.len() as u64;
    let mut whole = |v: &mut Views, id: u64| {
        v.read(id, "/swarm/status").is_some_and(|s| {
            field(&s, "alive").and_then(|a| a.parse().ok()) == Some(n)
                && ids(field(&s, "voters").unwrap_or("")).len() == voters_wanted
        })
    };
    worst(&views.watch(Instant::now(), wait, &all, &mut [&mut whole])[0]).is_some()
}

/// For each of `observers`, how long after `since_ms` its `/events` first
/// said what `hit` picks out, among the lines `got`.
pub fn first_seen(
    got: &[Seen],
    hit: &dyn Fn(&Seen) -> bool,
    observers: &[u64],
    since_ms: u64,
) -> Vec<Option<Duration>> {
    observers
        .iter()
        .map(|o| {
            got.iter()
                .filter(|s| s.observer == *o && s.unix_ms >= since_ms && hit(s))
                .map(|s| Duration::from_millis(s.unix_ms - since_ms))
                .min()
        })
        .collect()
}

/// The leader the first member that answers names.
fn leader_seen(views: &mut Views, members: &[u64]) -> Option<u64> {
    members.iter().find_map(|&id| {
        views
            .number(id, "/raft/status", "leader")
            .filter(|&l| l != 0)
    })
}
