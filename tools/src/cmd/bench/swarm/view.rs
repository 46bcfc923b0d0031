//! Each member's own view of the swarm, read over 9P, and waiting until
//! every member's view says something.
//!
//! One connection per member stays open between reads, so a poll of a
//! hundred members costs a hundred round trips rather than a hundred
//! connections (which, on two cores, would disturb the gossip being
//! measured more than the reads themselves).

use std::time::{Duration, Instant};

use ninep::Dialect;

use crate::client::{Client, Options};
use crate::cmd::cluster::LocalCluster;
use crate::identity::ClientToken;

/// Pause between two polls of every member: short next to the second
/// scale of what is measured, long enough to leave the cores to the nodes.
const POLL: Duration = Duration::from_millis(10);

/// A question asked of one member's view (by id): whether it holds yet.
pub type Check<'a> = &'a mut dyn FnMut(&mut Views, u64) -> bool;

/// Connections to the members of one cluster.
pub struct Views {
    opts: Options,
    members: Vec<Member>,
}

struct Member {
    id: u64,
    addr: String,
    client: Option<Client>,
}

impl Views {
    /// Views of every node of `cluster` (connected on first read).
    pub fn new(cluster: &LocalCluster) -> anyhow::Result<Views> {
        let token = ClientToken::resolve(Some(cluster.token()), None)?;
        Ok(Views {
            opts: Options::new(Dialect::U).with_token(&token),
            members: cluster
                .nodes()
                .iter()
                .map(|n| Member {
                    id: n.id,
                    addr: n.addr.clone(),
                    client: None,
                })
                .collect(),
        })
    }

    /// Every member's id, node 1 first.
    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// The text of `path` on member `id`, or `None` if it cannot be read
    /// now (down, or not serving yet: the next read connects afresh).
    pub fn read(&mut self, id: u64, path: &str) -> Option<String> {
        let m = self.members.iter_mut().find(|m| m.id == id)?;
        if m.client.is_none() {
            m.client = Client::connect_with(&m.addr, &self.opts).ok();
        }
        match m.client.as_ref()?.read_file(path) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(_) => {
                m.client = None;
                None
            }
        }
    }

    /// Drop the connection to member `id` (after killing it).
    pub fn forget(&mut self, id: u64) {
        if let Some(m) = self.members.iter_mut().find(|m| m.id == id) {
            m.client = None;
        }
    }

    /// Poll `members` until each satisfies every one of `checks` (each
    /// check is asked of a member until it first holds there, then no
    /// more) or `wait` passes since `since`. For each check, for each
    /// member in order: when it first held, counted from `since`.
    pub fn watch(
        &mut self,
        since: Instant,
        wait: Duration,
        members: &[u64],
        checks: &mut [Check<'_>],
    ) -> Vec<Vec<Option<Duration>>> {
        let mut seen = vec![vec![None; members.len()]; checks.len()];
        loop {
            for (c, check) in checks.iter_mut().enumerate() {
                for (m, &id) in members.iter().enumerate() {
                    if seen[c][m].is_none() && check(self, id) {
                        seen[c][m] = Some(since.elapsed());
                    }
                }
            }
            let done = seen.iter().flatten().all(Option::is_some);
            if done || since.elapsed() > wait {
                return seen;
            }
            std::thread::sleep(POLL);
        }
    }

    /// A `key value` field of `path` on member `id`, as a number.
    pub fn number(&mut self, id: u64, path: &str, key: &str) -> Option<u64> {
        field(&self.read(id, path)?, key)?.parse().ok()
    }
}

/// The value of `key` in `key value` lines.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(str::trim)
}

/// The ids in a comma-separated list (`voters 1,2,3`); none for `-` or
/// an empty value.
pub fn ids(list: &str) -> Vec<u64> {
    list.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// The worst of per-member times: `None` if any member never got there.
pub fn worst(times: &[Option<Duration>]) -> Option<Duration> {
    times
        .iter()
        .try_fold(Duration::ZERO, |w, t| Some(w.max((*t)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_lists() {
        let s = "voters 1,2,3\nvoters-wanted 3\nlearners -\n";
        assert_eq!(field(s, "voters"), Some("1,2,3"));
        assert_eq!(ids(field(s, "voters").unwrap()), vec![1, 2, 3]);
        assert!(ids(field(s, "learners").unwrap()).is_empty());
        let t = [Some(Duration::from_secs(1)), Some(Duration::from_secs(2))];
        assert_eq!(worst(&t), Some(Duration::from_secs(2)));
        assert_eq!(worst(&[t[0], None]), None);
    }
}
