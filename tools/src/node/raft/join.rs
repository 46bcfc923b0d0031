//! `cell0 serve --join HOST:PORT`: ask a running cluster to take this node.
//!
//! The new node reads the cluster's members from `/raft/peers` on the node
//! it was pointed at (their addresses and keys: its transport will accept
//! only them), starts its replica empty, and then writes `add` to that
//! node's `/raft/ctl` with its own id, Raft address and key. The write
//! returns once the cluster committed the change; the leader then sends
//! the log (or a snapshot) over the transport.

use anyhow::{Context, bail};
use cellfs::raft::Member;
use ninep::Dialect;

use crate::client::{Client, Options, mode};
use crate::identity::{ClientToken, parse_hex32};

/// A 9P session with the node to join through.
pub struct Sponsor {
    client: Client,
    addr: String,
}

impl Sponsor {
    /// Attach to `addr` with `token` (it needs admin over `/raft`).
    pub fn connect(addr: &str, token: &ClientToken) -> anyhow::Result<Sponsor> {
        let opts = Options::new(Dialect::U).with_token(token);
        let client = Client::connect_with(addr, &opts)
            .with_context(|| format!("--join {addr}: connecting"))?;
        Ok(Sponsor {
            client,
            addr: addr.to_string(),
        })
    }

    fn read(&self, path: &str) -> anyhow::Result<String> {
        let bytes = self.client.read_file(path)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The cluster's members as its `/raft/peers` lists them (or, for a
    /// node joining a swarm, as `/swarm/nodes` does: a join token reaches
    /// only `/swarm`), waiting up to ten seconds for a node that is still
    /// starting to list any.
    pub fn members(&self, swarm: bool) -> anyhow::Result<Vec<Member>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (dir, file, addr) = if swarm {
            ("/swarm/nodes", "/status", "raft")
        } else {
            ("/raft/peers", "", "addr")
        };
        loop {
            // A swarm's learners never send a new learner anything: the
            // voters (one of which leads) are all it must let in at
            // first, and the log it then receives names the rest. Reading
            // them alone keeps a join into a hundred nodes to a few reads.
            let only = if swarm { Some(self.voters()?) } else { None };
            let members = self.members_now(dir, file, addr, only.as_deref())?;
            if !members.is_empty() {
                return Ok(members);
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "--join {}: that node lists no members in {dir}; is it a cluster node{}?",
                    self.addr,
                    if swarm {
                        " running a swarm (--swarm)"
                    } else {
                        ""
                    }
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Why `path` could not be read with the join token.
    fn unreachable(&self, path: &str) -> String {
        format!(
            "--join {}: {path} cannot be reached with the join token; it needs {}",
            self.addr,
            if path.starts_with("/swarm") {
                "read, write and create over /swarm (a join token: cap mint --scope /swarm --rights rwc)"
            } else {
                "admin over /raft"
            }
        )
    }

    /// The voters `/swarm/status` names (none before the swarm's log has
    /// any).
    fn voters(&self) -> anyhow::Result<Vec<String>> {
        let status = self
            .read("/swarm/status")
            .with_context(|| self.unreachable("/swarm/status"))?;
        Ok(status
            .lines()
            .find_map(|l| l.strip_prefix("voters "))
            .unwrap_or("")
            .split(',')
            .filter(|v| !v.is_empty() && *v != "-")
            .map(String::from)
            .collect())
    }

    /// The members listed in `dir` (those of `only`, when given: none
    /// until every one of them is listed), each read from
    /// `dir/NAME{file}`, with its Raft address under `addr_key`.
    fn members_now(
        &self,
        dir: &str,
        file: &str,
        addr_key: &str,
        only: Option<&[String]>,
    ) -> anyhow::Result<Vec<Member>> {
        let listing = {
            let c = &self.client;
            let fid = c.walk_path(dir).with_context(|| self.unreachable(dir))?;
            let r = c.list(fid);
            let _ = c.clunk(fid);
            r.with_context(|| format!("--join {}: listing {dir}", self.addr))?
        };
        let listing: Vec<String> = listing.into_iter().map(|(name, _)| name).collect();
        let listing = match only {
            Some(only) if only.is_empty() || only.iter().any(|o| !listing.contains(o)) => {
                return Ok(Vec::new());
            }
            Some(only) => only.to_vec(),
            None => listing,
        };
        let mut members = Vec::new();
        for name in listing {
            let path = format!("{dir}/{name}{file}");
            let text = self.read(&path)?;
            let field = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix(' ')))
                    .map(str::trim)
            };
            let (Some(id), Some(addr), Some(key)) = (field("id"), field(addr_key), field("key"))
            else {
                bail!("--join {}: {path} lacks id, {addr_key} or key", self.addr);
            };
            members.push(Member {
                id: id.parse().with_context(|| format!("{path}: id"))?,
                addr: addr.to_string(),
                key: parse_hex32(key).with_context(|| format!("{path}: key"))?,
            });
        }
        Ok(members)
    }

    /// Ask the cluster to add `me`; returns once the change committed.
    /// A cluster busy with another change (or an election) is asked again
    /// for up to ten seconds.
    pub fn add(&self, me: &Member) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match self.add_once(me) {
                Err(e)
                    if std::time::Instant::now() < deadline
                        && ["under way", "no raft leader"]
                            .iter()
                            .any(|w| format!("{e:#}").contains(w)) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                r => return r,
            }
        }
    }

    fn add_once(&self, me: &Member) -> anyhow::Result<()> {
        let line = format!(
            "add id={} addr={} key={}\n",
            me.id,
            me.addr,
            cellfs::cap::hex(&me.key)
        );
        self.write_ctl("/raft/ctl", &line)
    }

    /// Ask the swarm to admit `me` (`join` on `/swarm/ctl`); returns once
    /// the join committed. The leader then makes it a learner of the log,
    /// and sends it the log over the Raft transport.
    pub fn join_swarm(&self, me: &cellfs::swarm::NodeRecord) -> anyhow::Result<()> {
        let line = format!(
            "join id={} key={} addr={} gossip={} raft={} name={}\n",
            me.id,
            cellfs::cap::hex(&me.key),
            me.addr,
            me.gossip,
            me.raft,
            me.name
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match self.write_ctl("/swarm/ctl", &line) {
                Err(e)
                    if std::time::Instant::now() < deadline
                        && ["no raft leader", "try again"]
                            .iter()
                            .any(|w| format!("{e:#}").contains(w)) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                r => return r,
            }
        }
    }

    fn write_ctl(&self, path: &str, line: &str) -> anyhow::Result<()> {
        let c = &self.client;
        let fid = c.walk_path(path)?;
        let r = c
            .open(fid, mode::OWRITE)
            .and_then(|o| c.write_all(fid, 0, line.as_bytes(), o.iounit));
        let _ = c.clunk(fid);
        r.with_context(|| format!("--join {}: {}", self.addr, line.trim()))?;
        Ok(())
    }
}
