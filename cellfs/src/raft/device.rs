//! `/raft`: the replicated log as files. See raft(3).
//!
//! `ctl` takes one change per write (`add id=ID addr=HOST:PORT key=HEX`,
//! `remove id=ID`, `transfer id=ID`, `snapshot`), which the server hands
//! to [`crate::Log::change`]; `status` shows the node's view of the log;
//! `log` the committed entries ([`super::journal`]); `peers/ID` one member
//! each, merging the log's live view with the committed configuration.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::cap::Right;
use crate::command::Command;
use crate::ctl::{self, CtlLine, Verb};
use crate::dev::{self, Aux, Ctx, Device, Entry, Info, ReadOutcome, Table};
use crate::error::Error;
use crate::file::{File, MAX_OBJ};
use crate::log::{Change, PeerStatus};
use crate::raft::Member;
use crate::root;

/// The raft device's number in [`crate::devices::DEVICES`].
pub const DEV: u8 = 4;
const K_TOP: u8 = 0;
const K_CTL: u8 = 1;
const K_STATUS: u8 = 2;
const K_LOG: u8 = 3;
const K_PEERS: u8 = 4;
const K_PEER: u8 = 5;

/// `/raft` itself.
pub const TOP: File = File::new(DEV, K_TOP, 0);
const PEERS: File = File::new(DEV, K_PEERS, 0);

/// The files of `/raft`: name, kind, permissions.
const FILES: Table = Table(&[
    Entry::file("ctl", K_CTL, 0o222),
    Entry::file("log", K_LOG, 0o444),
    Entry::dir("peers", K_PEERS, 0o555),
    Entry::file("status", K_STATUS, 0o444),
]);

/// Where errors about `/raft/ctl` say they come from.
const OBJECT: &str = "/raft/ctl";

/// The verbs of `/raft/ctl`.
pub const CTL_VERBS: &[Verb] = &[
    Verb {
        name: "add",
        min_args: 0,
        max_args: 0,
        keys: &["id", "addr", "key"],
        usage: "add id=ID addr=HOST:PORT key=PUBKEYHEX",
    },
    Verb {
        name: "remove",
        min_args: 0,
        max_args: 0,
        keys: &["id"],
        usage: "remove id=ID",
    },
    Verb {
        name: "transfer",
        min_args: 0,
        max_args: 0,
        keys: &["id"],
        usage: "transfer id=ID",
    },
    Verb {
        name: "snapshot",
        min_args: 0,
        max_args: 0,
        keys: &[],
        usage: "snapshot",
    },
    Verb {
        name: "learner",
        min_args: 0,
        max_args: 0,
        keys: &["id", "addr", "key"],
        usage: "learner id=ID addr=HOST:PORT key=PUBKEYHEX",
    },
    Verb {
        name: "promote",
        min_args: 0,
        max_args: 0,
        keys: &["id"],
        usage: "promote id=ID",
    },
    Verb {
        name: "demote",
        min_args: 0,
        max_args: 0,
        keys: &["id"],
        usage: "demote id=ID",
    },
    Verb {
        name: "replace",
        min_args: 0,
        max_args: 0,
        keys: &["out", "with"],
        usage: "replace out=ID with=ID",
    },
];

/// Parse one `/raft/ctl` write into the change it asks for. A write holds
/// exactly one change: each is a separate step of the log.
pub fn parse_change(data: &[u8]) -> Result<Change, Error> {
    let line = &ctl::parse_one(OBJECT, CTL_VERBS, data, "the log")?;
    let verb = CTL_VERBS.iter().find(|v| v.name == line.verb);
    let usage = verb.map_or("", |v| v.usage);
    Ok(match line.verb {
        "add" => Change::Add {
            id: id(line, usage)?,
            addr: addr(line, usage)?,
            key: key(line, usage)?,
        },
        "remove" => Change::Remove {
            id: id(line, usage)?,
        },
        "transfer" => Change::Transfer {
            id: id(line, usage)?,
        },
        "learner" => Change::Learner {
            id: id(line, usage)?,
            addr: addr(line, usage)?,
            key: key(line, usage)?,
        },
        "promote" => Change::Promote {
            id: id(line, usage)?,
        },
        "demote" => Change::Demote {
            id: id(line, usage)?,
        },
        "replace" => Change::Replace {
            out: id_at(line, "out", usage)?,
            with: id_at(line, "with", usage)?,
        },
        _ => Change::Snapshot,
    })
}

fn invalid(line: &CtlLine<'_>, why: String) -> Error {
    Error::Invalid(format!("{OBJECT}: {}: {why}", line.verb))
}

fn need<'a>(line: &CtlLine<'a>, key: &str, usage: &str) -> Result<&'a str, Error> {
    line.kv
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| invalid(line, format!("{key}= is missing; usage: {usage}")))
}

fn id(line: &CtlLine<'_>, usage: &str) -> Result<u64, Error> {
    id_at(line, "id", usage)
}

/// The raft id given as `name=`.
fn id_at(line: &CtlLine<'_>, name: &str, usage: &str) -> Result<u64, Error> {
    let v = need(line, name, usage)?;
    match v.parse::<u64>() {
        Ok(n) if n > 0 && n <= MAX_OBJ => Ok(n),
        _ => Err(invalid(
            line,
            format!("{name}=\"{v}\" is not a raft id: a whole number from 1 to {MAX_OBJ}"),
        )),
    }
}

fn addr(line: &CtlLine<'_>, usage: &str) -> Result<String, Error> {
    let v = need(line, "addr", usage)?;
    if !ctl::is_host_port(v) {
        return Err(invalid(
            line,
            format!(
                "addr=\"{v}\" is not HOST:PORT (a host name or address, a colon, a port from 1 to 65535)"
            ),
        ));
    }
    Ok(String::from(v))
}

fn key(line: &CtlLine<'_>, usage: &str) -> Result<[u8; 32], Error> {
    let v = need(line, "key", usage)?;
    ctl::parse_key(v).ok_or_else(|| {
        invalid(
            line,
            format!(
                "key=\"{v}\" is not an ed25519 public key: 64 hex digits (the node's /cap/key)"
            ),
        )
    })
}

/// The admin right over `/raft`, which every change needs (and, for an
/// agent, an intent granting it there: see agent(3)).
fn need_admin(cx: &Ctx<'_>) -> Result<(), Error> {
    cx.need(Right::Admin, "/raft", OBJECT)
}

/// One member as `/raft/peers/ID` shows it: the log's live view where it
/// has one, the committed configuration for the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Raft id.
    pub id: u64,
    /// Transport address (`none` if neither view knows it).
    pub addr: String,
    /// Public key, if known.
    pub key: Option<[u8; 32]>,
    /// `voter`, `joining`, `leaving`, `non-voter`, or `unknown`.
    pub role: &'static str,
    /// Highest index known replicated on it (leader only; else 0).
    pub match_index: u64,
    /// Milliseconds since this node last heard from it.
    pub last_contact_ms: Option<u64>,
    /// `up`, `down`, or `unknown` (not in the log's live view).
    pub state: &'static str,
}

impl Peer {
    /// The text of `/raft/peers/ID`.
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(192);
        let _ = writeln!(s, "id {}", self.id);
        let _ = writeln!(
            s,
            "addr {}",
            if self.addr.is_empty() {
                "none"
            } else {
                &self.addr
            }
        );
        match &self.key {
            Some(k) => {
                let _ = writeln!(s, "key {}", crate::hex::encode(k));
            }
            None => s.push_str("key none\n"),
        }
        let _ = writeln!(s, "role {}", self.role);
        let _ = writeln!(s, "match {}", self.match_index);
        match self.last_contact_ms {
            Some(ms) => {
                let _ = writeln!(s, "last_contact_ms {ms}");
            }
            None => s.push_str("last_contact_ms never\n"),
        }
        let _ = writeln!(s, "state {}", self.state);
        s
    }
}

/// The role the committed configuration gives `id`.
pub fn committed_role(cx: &Ctx<'_>, id: u64) -> Option<&'static str> {
    let m = &cx.state.membership;
    let old = m.voters.contains(&id);
    let joint = !m.new_voters.is_empty();
    let new = m.new_voters.contains(&id);
    if old && (!joint || new) {
        Some("voter")
    } else if old {
        Some("leaving")
    } else if new {
        Some("joining")
    } else if m.non_voters.contains(&id) {
        Some("non-voter")
    } else {
        None
    }
}

/// Every Raft id either view names, ascending, without repeats.
fn peer_ids(cx: &Ctx<'_>) -> Vec<u64> {
    let m = &cx.state.membership;
    let mut ids: Vec<u64> = cx
        .raft
        .peers
        .iter()
        .map(|p| p.id)
        .chain(m.voters.iter().copied())
        .chain(m.new_voters.iter().copied())
        .chain(m.non_voters.iter().copied())
        .chain(m.members.iter().map(|x| x.id))
        .filter(|&id| id <= MAX_OBJ)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The members `/raft/peers` lists: those either view names whose name
/// the journal holds (every id a committed configuration has named).
fn listed(cx: &Ctx<'_>) -> Vec<u64> {
    peer_ids(cx)
        .into_iter()
        .filter(|&id| cx.state.journal.name(id).is_some())
        .collect()
}

/// Member `id`, merged from both views; `None` if neither names it.
pub fn peer(cx: &Ctx<'_>, id: u64) -> Option<Peer> {
    let live: Option<&PeerStatus> = cx.raft.peers.iter().find(|p| p.id == id);
    let member: Option<&Member> = cx.state.membership.members.iter().find(|m| m.id == id);
    let role = committed_role(cx, id);
    if live.is_none() && member.is_none() && role.is_none() {
        return None;
    }
    let addr = live
        .map(|p| p.addr.as_str())
        .filter(|a| !a.is_empty())
        .or(member.map(|m| m.addr.as_str()))
        .unwrap_or_default();
    let key = live
        .map(|p| p.key)
        .filter(|k| *k != [0; 32])
        .or(member.map(|m| m.key));
    Some(Peer {
        id,
        addr: String::from(addr),
        key,
        role: live
            .map(|p| p.role)
            .filter(|r| !r.is_empty())
            .or(role)
            .unwrap_or("unknown"),
        match_index: live.map_or(0, |p| p.match_index),
        last_contact_ms: live.and_then(|p| p.last_contact_ms),
        state: live
            .map(|p| p.state)
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown"),
    })
}

/// The text of `/raft/status`.
pub fn status_text(cx: &Ctx<'_>) -> String {
    let r = cx.raft;
    let mut s = String::with_capacity(160);
    let role = if r.role.is_empty() { "none" } else { r.role };
    let _ = writeln!(s, "id {}\nrole {role}\nterm {}", r.id, r.term);
    match r.leader {
        Some(l) => {
            let _ = writeln!(s, "leader {l}");
        }
        None => s.push_str("leader none\n"),
    }
    match cx.lease_ms {
        Some(ms) => {
            let _ = writeln!(s, "lease {ms}");
        }
        None => s.push_str("lease -\n"),
    }
    let _ = write!(
        s,
        "commit {}\napplied {}\nlast_index {}\nsnapshot_index {}\nmembers {}\n",
        r.commit,
        cx.state.applied,
        r.last_index,
        r.snapshot_index,
        listed(cx).len()
    );
    let u = &r.storage;
    let _ = write!(
        s,
        "log_files {}\nlog_bytes {}\nsyncs {}\n",
        u.files, u.bytes, u.syncs
    );
    s
}

/// The `/raft` device.
pub struct RaftDev;

impl Device for RaftDev {
    fn rendered(&self, node: File) -> bool {
        node.kind == K_STATUS
    }

    fn top(&self) -> Option<(&'static str, File)> {
        Some(("raft", TOP))
    }

    fn info<'a>(&self, cx: &Ctx<'a>, node: File) -> Option<Info<'a>> {
        let mtime = cx.unix_ms / 1000;
        let version = cx.state.applied as u32;
        let dir = |name: &'a str| Info {
            name,
            dir: true,
            perm: 0o555,
            length: 0,
            version: 0,
            mtime,
        };
        match node.kind {
            K_TOP if node.obj == 0 => Some(dir("raft")),
            K_PEERS if node.obj == 0 => Some(dir("peers")),
            K_CTL | K_STATUS | K_LOG if node.obj == 0 => {
                let f = FILES.kind(node.kind)?;
                Some(Info {
                    name: f.name,
                    dir: false,
                    perm: f.perm,
                    length: 0,
                    version,
                    mtime,
                })
            }
            K_PEER => {
                let name = cx.state.journal.name(node.obj)?;
                peer_ids(cx).binary_search(&node.obj).ok()?;
                Some(Info {
                    name,
                    dir: false,
                    perm: 0o444,
                    length: 0,
                    version,
                    mtime,
                })
            }
            _ => None,
        }
    }

    fn parent(&self, node: File) -> File {
        match node.kind {
            K_TOP => root::ROOT,
            K_PEER => PEERS,
            _ => TOP,
        }
    }

    fn lookup(&self, cx: &Ctx<'_>, dir: File, name: &str) -> Option<File> {
        match dir.kind {
            K_TOP => FILES.lookup(DEV, 0, name),
            K_PEERS => {
                let id: u64 = name.parse().ok()?;
                // Only the canonical spelling names it ("01" does not).
                if cx.state.journal.name(id)? != name {
                    return None;
                }
                peer_ids(cx).binary_search(&id).ok()?;
                Some(File::new(DEV, K_PEER, id))
            }
            _ => None,
        }
    }

    fn list(&self, cx: &Ctx<'_>, dir: File, out: &mut Vec<File>) {
        match dir.kind {
            K_TOP => FILES.list(DEV, 0, out),
            K_PEERS => out.extend(listed(cx).into_iter().map(|id| File::new(DEV, K_PEER, id))),
            _ => {}
        }
    }

    fn open(&self, _cx: &Ctx<'_>, node: File, _read: bool, write: bool) -> Result<Aux, Error> {
        match node.kind {
            K_TOP | K_PEERS if write => Err(Error::IsDir),
            K_STATUS | K_LOG | K_PEER if write => Err(Error::Perm(String::from(
                "this /raft file is read-only; write changes to /raft/ctl",
            ))),
            _ => Ok(Aux::None),
        }
    }

    fn read(
        &self,
        cx: &Ctx<'_>,
        node: File,
        aux: &mut Aux,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<ReadOutcome, Error> {
        match node.kind {
            K_STATUS => Ok(dev::read_text(aux, offset, count, out, || status_text(cx))),
            K_LOG => Ok(dev::read_text(aux, offset, count, out, || {
                cx.state.journal.text()
            })),
            K_PEER => {
                // A member that left while the file was open reads as gone.
                let p = peer(cx, node.obj).ok_or(Error::Removed("raft peer"))?;
                Ok(dev::read_text(aux, offset, count, out, || p.text()))
            }
            K_CTL => Err(Error::Perm(String::from("/raft/ctl is write-only"))),
            _ => Err(Error::IsDir),
        }
    }

    fn write(&self, cx: &Ctx<'_>, node: File, data: &[u8]) -> Result<Command, Error> {
        if node.kind != K_CTL {
            return Err(Error::Perm(String::from(
                "only /raft/ctl can be written in /raft",
            )));
        }
        need_admin(cx)?;
        Ok(Command::Raft(parse_change(data)?))
    }

    fn create(
        &self,
        _cx: &Ctx<'_>,
        _dir: File,
        name: &str,
        _is_dir: bool,
    ) -> Result<Command, Error> {
        Err(dev::cannot_create(
            name,
            "/raft",
            "add members with 'add id=ID addr=HOST:PORT key=HEX' on /raft/ctl",
        ))
    }

    fn remove(&self, _cx: &Ctx<'_>, node: File) -> Result<Option<Command>, Error> {
        Err(Error::Perm(String::from(match node.kind {
            K_PEER => "members are not removed with rm: write 'remove id=ID' to /raft/ctl",
            _ => "cannot remove /raft or its files: they are part of the node",
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn err(text: &str) -> String {
        match parse_change(text.as_bytes()) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("parsed {c:?}"),
        }
    }

    #[test]
    fn changes_parse() {
        let key = "ab".repeat(32);
        assert_eq!(
            parse_change(format!("add id=2 addr=10.0.0.2:5642 key={key}\n").as_bytes()),
            Ok(Change::Add {
                id: 2,
                addr: "10.0.0.2:5642".into(),
                key: [0xab; 32]
            })
        );
        assert_eq!(
            parse_change(format!("add id=3 addr=[::1]:7 key={key}").as_bytes())
                .map(|c| matches!(c, Change::Add { id: 3, .. })),
            Ok(true)
        );
        assert_eq!(parse_change(b"remove id=2"), Ok(Change::Remove { id: 2 }));
        assert_eq!(
            parse_change(b"# c\ntransfer id=9\n"),
            Ok(Change::Transfer { id: 9 })
        );
        assert_eq!(parse_change(b"snapshot"), Ok(Change::Snapshot));
        assert_eq!(
            parse_change(format!("learner id=4 addr=10.0.0.4:5642 key={key}").as_bytes()),
            Ok(Change::Learner {
                id: 4,
                addr: "10.0.0.4:5642".into(),
                key: [0xab; 32]
            })
        );
        assert_eq!(parse_change(b"promote id=4"), Ok(Change::Promote { id: 4 }));
        assert_eq!(parse_change(b"demote id=2"), Ok(Change::Demote { id: 2 }));
        assert_eq!(
            parse_change(b"replace out=2 with=4"),
            Ok(Change::Replace { out: 2, with: 4 })
        );
    }

    #[test]
    fn new_changes_read_back_as_written() {
        let key = "ab".repeat(32);
        for text in [
            format!("learner id=4 addr=10.0.0.4:5642 key={key}"),
            "promote id=4".into(),
            "demote id=2".into(),
            "replace out=2 with=4".into(),
        ] {
            let change = parse_change(text.as_bytes()).unwrap();
            assert_eq!(change.to_string(), format!("/raft/ctl {text}"));
        }
    }

    #[test]
    fn bad_new_changes_say_what_was_expected() {
        assert!(
            err("replace out=2")
                .contains("replace: with= is missing; usage: replace out=ID with=ID")
        );
        assert!(err("replace out=0 with=4").contains("out=\"0\" is not a raft id"));
        assert!(err("promote").contains("id= is missing; usage: promote id=ID"));
        assert!(err("learner id=4 addr=x:1").contains("key= is missing"));
    }

    #[test]
    fn bad_changes_say_what_was_expected() {
        let key = "ab".repeat(32);
        assert_eq!(
            err("adds id=2"),
            "/raft/ctl: unknown verb \"adds\"; expected add, remove, transfer, snapshot, learner, promote, demote, replace"
        );
        assert!(err("remove id=0").contains("remove: id=\"0\" is not a raft id"));
        assert!(err("remove id=x").contains("id=\"x\""));
        assert!(err("remove").contains("remove: id= is missing; usage: remove id=ID"));
        assert!(err("transfer who=2").contains("unknown key \"who\"; expected id"));
        assert!(
            err(&format!("add id=2 addr=host key={key}"))
                .contains("add: addr=\"host\" is not HOST:PORT")
        );
        assert!(err(&format!("add id=2 addr=h:0 key={key}")).contains("addr=\"h:0\""));
        assert!(err(&format!("add id=2 addr=:5 key={key}")).contains("addr=\":5\""));
        assert!(err("add id=2 addr=h:5 key=abc").contains("add: key=\"abc\" is not an ed25519"));
        assert!(err(&format!("add id=2 addr=h:5 key={}", "g".repeat(64))).contains("key=\"ggg"));
        assert!(err("snapshot\nsnapshot").contains("one change at a time"));
        assert!(err("snapshot now").contains("unexpected argument \"now\""));
    }
}
