//! The yardstick: an etcd cluster on loopback, written to through its
//! HTTP/JSON gateway.
//!
//! Each member gets a temporary data directory and two free ports, and
//! keeps etcd's defaults otherwise, so every PUT is fsynced to the WAL of a
//! majority before it is answered, as a Cell0 commit is. The members are
//! killed and their directories removed when the benchmark is done: there
//! is nothing in them to keep.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::http::{Http, json_str};
use super::load::Writer;
use crate::cmd::bench::servers::{Process, scratch_dir};

/// How long a member may take to answer a PUT after it starts.
const START_WAIT: Duration = Duration::from_secs(30);

/// Where the gateway takes PUTs in etcd 3.4 and later (3.3 had only
/// /v3beta, 3.2 only /v3alpha).
pub const PUT: &str = "/v3/kv/put";

/// Where the gateway takes range reads (linearizable unless asked to be
/// serializable).
pub const RANGE: &str = "/v3/kv/range";

/// The gateway's status call, which names the leader and the member.
const STATUS: &str = "/v3/maintenance/status";

/// One running member.
struct Member {
    /// Where it takes client requests (HOST:PORT).
    client: String,
    process: Process,
}

/// A running etcd cluster.
pub struct Etcd {
    members: Vec<Member>,
}

/// The installed etcd's version (`etcd --version`), or how to install it.
pub fn version() -> anyhow::Result<String> {
    crate::cmd::bench::servers::peer_version(
        "etcd",
        "install etcd-server: apt-get install etcd-server (or leave etcd out with --no-etcd)",
        |text| {
            text.lines()
                .find_map(|l| l.strip_prefix("etcd Version:"))
                .map(|v| v.trim().to_string())
        },
    )
}

impl Etcd {
    /// Start `n` members as one new cluster and wait until each takes a PUT.
    pub fn start(n: usize) -> anyhow::Result<Etcd> {
        let addrs = crate::config::free_loopback_addrs(2 * n)?;
        let clients: Vec<&String> = addrs.iter().step_by(2).collect();
        let peers: Vec<&String> = addrs.iter().skip(1).step_by(2).collect();
        let initial: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("e{}=http://{p}", i + 1))
            .collect();
        let token = format!("cell0-bench-{}", std::process::id());
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let dir = scratch_dir(&std::env::temp_dir(), &format!("etcd{}", i + 1))?;
            let log = std::fs::File::create(dir.join("etcd.log"))?;
            let (client, peer) = (clients[i], peers[i]);
            let child = Command::new("etcd")
                .args(["--name", &format!("e{}", i + 1), "--data-dir"])
                .arg(dir.join("data"))
                .args(["--listen-client-urls", &format!("http://{client}")])
                .args(["--advertise-client-urls", &format!("http://{client}")])
                .args(["--listen-peer-urls", &format!("http://{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(["--logger", "zap", "--log-level", "error"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting etcd")?;
            members.push(Member {
                client: client.clone(),
                process: Process::new(child, dir),
            });
        }
        let mut etcd = Etcd { members };
        etcd.wait_ready()?;
        Ok(etcd)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_WAIT;
        for m in &mut self.members {
            loop {
                let put = Http::connect(&m.client).and_then(|mut h| h.post(PUT, &put_body(0)));
                match put {
                    Ok(_) => break,
                    Err(e) => {
                        if let Some(s) = m.process.exited() {
                            bail!(
                                "etcd at {} exited ({s}); its log is {}",
                                m.client,
                                m.process.dir.join("etcd.log").display()
                            );
                        }
                        if Instant::now() > deadline {
                            return Err(e).context(format!(
                                "etcd at {} took no PUT within {START_WAIT:?}",
                                m.client
                            ));
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
        Ok(())
    }

    /// The client address of the member that leads now.
    pub fn leader(&self) -> anyhow::Result<String> {
        let first = status(&self.members[0].client)?;
        let leader = json_str(&first, "leader")
            .context("etcd's status names no leader")?
            .to_string();
        for m in &self.members {
            if json_str(&status(&m.client)?, "member_id") == Some(leader.as_str()) {
                return Ok(m.client.clone());
            }
        }
        bail!("no member of the etcd cluster has the leader's id {leader}")
    }
}

impl Etcd {
    /// SIGKILL the member that leads and time how long the others take to
    /// name one new leader between them (within `wait`).
    pub fn leader_failover(&mut self, wait: Duration) -> anyhow::Result<Duration> {
        let addr = self.leader()?;
        let old = json_str(&status(&addr)?, "member_id")
            .context("etcd's status names no member_id")?
            .to_string();
        let i = self
            .members
            .iter()
            .position(|m| m.client == addr)
            .context("the etcd leader is not one of the members")?;
        self.members[i].process.kill();
        let killed = Instant::now();
        let others: Vec<String> = (self.members.iter().enumerate())
            .filter(|(j, _)| *j != i)
            .map(|(_, m)| m.client.clone())
            .collect();
        loop {
            // Each survivor's own view; an error (an election under way)
            // counts as no leader yet.
            let leaders: Vec<Option<String>> = others
                .iter()
                .map(|a| {
                    let s = status(a).ok()?;
                    json_str(&s, "leader").map(str::to_string)
                })
                .collect();
            let first = &leaders[0];
            if first.as_deref().is_some_and(|l| l != old && l != "0")
                && leaders.iter().all(|l| l == first)
            {
                return Ok(killed.elapsed());
            }
            if killed.elapsed() > wait {
                bail!(
                    "etcd named no new leader within {wait:?} of its leader's death; its logs are under {}",
                    std::env::temp_dir().display()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The gateway's status JSON of the member at `addr`.
fn status(addr: &str) -> anyhow::Result<String> {
    let body = Http::connect(addr)?.post(STATUS, b"{}")?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The JSON of a PUT of a small value under writer `i`'s own key.
fn put_body(i: usize) -> Vec<u8> {
    format!(
        r#"{{"key":"{}","value":"{}"}}"#,
        BASE64.encode(format!("bench/{i}")),
        BASE64.encode("note bench")
    )
    .into_bytes()
}

/// A client with its own keep-alive connection, PUTting its own key over
/// and over.
pub struct EtcdWriter {
    http: Http,
    body: Vec<u8>,
}

impl EtcdWriter {
    /// Writer `i`, connected to `addr`.
    pub fn open(addr: &str, i: usize) -> anyhow::Result<EtcdWriter> {
        Ok(EtcdWriter {
            http: Http::connect(addr)?,
            body: put_body(i),
        })
    }
}

impl Writer for EtcdWriter {
    fn commit(&mut self) -> anyhow::Result<()> {
        let reply = self.http.post(PUT, &self.body)?;
        // A PUT's answer is its header (with the new revision); anything
        // else would be an error the gateway passed on as 200.
        anyhow::ensure!(
            reply.starts_with(b"{\"header\""),
            "etcd answered a PUT with {}",
            String::from_utf8_lossy(&reply)
        );
        Ok(())
    }
}

/// A client with its own keep-alive connection, reading one key with
/// etcd's default (linearizable) range request over and over.
pub struct EtcdReader {
    http: Http,
    body: Vec<u8>,
}

impl EtcdReader {
    /// A reader connected to `addr`.
    pub fn open(addr: &str) -> anyhow::Result<EtcdReader> {
        Ok(EtcdReader {
            http: Http::connect(addr)?,
            body: format!(r#"{{"key":"{}"}}"#, BASE64.encode("bench/0")).into_bytes(),
        })
    }
}

impl Writer for EtcdReader {
    fn commit(&mut self) -> anyhow::Result<()> {
        let reply = self.http.post(RANGE, &self.body)?;
        anyhow::ensure!(
            reply.starts_with(b"{\"header\""),
            "etcd answered a range read with {}",
            String::from_utf8_lossy(&reply)
        );
        Ok(())
    }
}
