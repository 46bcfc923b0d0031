//! False deaths under packet loss: a swarm whose every node drops a share
//! of its gossip, left alone for a while, and watched for members that
//! any view calls suspect or dead although none is.

use std::time::{Duration, Instant};

use super::events::Followers;
use super::view::Views;

/// What the watch saw.
#[derive(Default)]
pub struct Loss {
    /// `dead` lines on the members' `/events`: false deaths, since no
    /// member died.
    pub deaths: usize,
    /// Members whose view called some member dead at least once.
    pub saw_dead: usize,
    /// `suspect` lines on the members' `/events`.
    pub suspicions: usize,
    /// Members whose view called some member suspect at least once.
    pub saw_suspect: usize,
    /// Suspicions refuted: the sum of every member's rise in incarnation
    /// (a member raises it to answer a suspicion of itself).
    pub refuted: u64,
}

/// Follow every member's `/events` for `span`.
pub fn watch(views: &mut Views, followers: &Followers, span: Duration) -> Loss {
    let ids = views.ids();
    let incarnations = |v: &mut Views| -> Vec<u64> {
        ids.iter()
            .map(|&id| v.number(id, "/swarm/status", "incarnation").unwrap_or(0))
            .collect()
    };
    let first = incarnations(views);
    followers.drain();
    let seen = followers.collect_until(Instant::now() + span, |_| false);
    let last = incarnations(views);
    let count = |what: &str| seen.iter().filter(|s| s.what == what).count();
    let observers = |what: &str| {
        let mut o: Vec<u64> = (seen.iter().filter(|s| s.what == what))
            .map(|s| s.observer)
            .collect();
        o.sort_unstable();
        o.dedup();
        o.len()
    };
    Loss {
        deaths: count("dead"),
        saw_dead: observers("dead"),
        suspicions: count("suspect"),
        saw_suspect: observers("suspect"),
        refuted: last
            .iter()
            .zip(&first)
            .map(|(l, f)| l.saturating_sub(*f))
            .sum(),
    }
}
