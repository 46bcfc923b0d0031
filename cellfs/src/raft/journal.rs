//! `/raft/log`: one line per committed entry, and the names of the Raft
//! ids that `/raft/peers` shows.
//!
//! Each committed entry is kept as `INDEX TERM ORIGIN COMMAND`, the
//! command rendered in the syntax that made it ([`render`]): `mkdir
//! /chan/alerts`, `write /chan/alerts/data 5 bytes`, `/chan/alerts/ctl
//! close`, `/cap/ctl revoke 3`, `members voters=1,2,3`. Message payloads
//! are never kept, only their length. The journal is part of the committed
//! state (and of its snapshots), so it keeps only the latest
//! [`MAX_LINES`] entries.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use core::fmt::Write;
use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::log::{Entry, Index, Term};
use crate::raft::Membership;

/// How many of the latest committed entries `/raft/log` keeps.
pub const MAX_LINES: usize = 4096;

pub use crate::ctl::MAX_NOTE;

/// One committed entry as `/raft/log` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Its index in the log.
    pub index: Index,
    /// The term it was appended in.
    pub term: Term,
    /// The Raft id of the node it was proposed on.
    pub origin: u64,
    /// The command, in ctl syntax ([`render`]).
    pub command: String,
}

/// The committed entries as `/raft/log` shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The latest entries, oldest first.
    lines: VecDeque<Line>,
    /// The decimal name of every Raft id a committed configuration has
    /// named: `/raft/peers/ID` borrows its directory entry from here.
    names: BTreeMap<u64, String>,
}

impl Journal {
    /// Record a committed entry (`cmd` is `None` when its bytes are not a
    /// command).
    pub fn push(&mut self, entry: &Entry, cmd: Option<&Command>) {
        let command = match cmd {
            Some(c) => render(c),
            None if entry.data.is_empty() => String::from("noop"),
            None => format!("undecodable {} bytes", entry.data.len()),
        };
        if let Some(Command::Members(m)) = cmd {
            self.name_members(m);
        }
        if self.lines.len() >= MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(Line {
            index: entry.index,
            term: entry.term,
            origin: entry.origin,
            command,
        });
    }

    /// The kept entries, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &Line> + '_ {
        self.lines.iter()
    }

    /// The whole of `/raft/log`: one `INDEX TERM ORIGIN COMMAND` line per
    /// kept entry.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            let _ = writeln!(s, "{} {} {} {}", l.index, l.term, l.origin, l.command);
        }
        s
    }

    /// The decimal name of Raft id `id`, if a committed configuration has
    /// named it.
    pub fn name(&self, id: u64) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    fn name_members(&mut self, m: &Membership) {
        let ids = m
            .voters
            .iter()
            .chain(&m.new_voters)
            .chain(&m.non_voters)
            .copied()
            .chain(m.members.iter().map(|x| x.id));
        for id in ids {
            self.names.entry(id).or_insert_with(|| id.to_string());
        }
    }
}

/// A command in the syntax of the write that made it, on one line (its
/// [`Display`](core::fmt::Display), with control characters shown as `?`
/// whatever the names held).
pub fn render(cmd: &Command) -> String {
    cmd.to_string()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentCmd, AgentOp};
    use crate::cap::CapOp;
    use crate::chan::{ChanCmd, ChanOp};
    use crate::log::Change;
    use crate::root::{RootCmd, RootOp};

    fn entry(index: Index, cmd: &Command) -> Entry {
        Entry {
            index,
            term: 2,
            origin: 3,
            data: cmd.encode(),
        }
    }

    #[test]
    fn every_command_renders_on_one_line() {
        let cases = [
            (
                Command::Chan(ChanCmd::Create {
                    name: "a".into(),
                    at: 1,
                }),
                "mkdir /chan/a",
            ),
            (
                Command::Chan(ChanCmd::Send {
                    name: "a".into(),
                    stamp: alloc::boxed::Box::new(
                        crate::chan::msg::Unsigned {
                            chan: "a",
                            time_ms: 1,
                            sender: "alice",
                            cap: 3,
                            intent: "w@/chan/a".into(),
                        }
                        .sign(&crate::cap::NodeKey::from_seed(&[1; 32]), b"hello"),
                    ),
                    data: b"hello".to_vec(),
                }),
                "write /chan/a/data 5 bytes sender=alice",
            ),
            (
                Command::Chan(ChanCmd::Take {
                    name: "a".into(),
                    group: "w".into(),
                    now_ms: 5,
                }),
                "read /chan/a/groups/w",
            ),
            (
                Command::Chan(ChanCmd::Unread {
                    name: "a".into(),
                    group: "w".into(),
                    seq: 4,
                }),
                "unread /chan/a/groups/w seq=4",
            ),
            (
                Command::Chan(ChanCmd::Ctl {
                    name: "a".into(),
                    ops: alloc::vec![ChanOp::Close, ChanOp::Connect("b".into())],
                }),
                "/chan/a/ctl close; connect b",
            ),
            (
                Command::Chan(ChanCmd::Remove { name: "a".into() }),
                "rm /chan/a",
            ),
            (
                Command::Root(RootCmd(alloc::vec![
                    RootOp::Note("hi\nthere".into()),
                    RootOp::Sync
                ])),
                "/ctl note hi?there; sync",
            ),
            (
                Command::Cap(crate::cap::CapCmd(alloc::vec![CapOp::Revoke(4)])),
                "/cap/ctl revoke 4",
            ),
            (
                Command::Members(Membership {
                    voters: alloc::vec![1, 2],
                    new_voters: alloc::vec![2, 3],
                    ..Membership::default()
                }),
                "members voters=1,2 new_voters=2,3",
            ),
            (
                Command::Raft(Change::Transfer { id: 2 }),
                "/raft/ctl transfer id=2",
            ),
            (Command::Raft(Change::Snapshot), "/raft/ctl snapshot"),
        ];
        for (cmd, want) in cases {
            assert_eq!(render(&cmd), want);
        }
        let long = "x".repeat(100);
        let r = render(&Command::Root(RootCmd(alloc::vec![RootOp::Note(long)])));
        assert_eq!(r, format!("/ctl note {}…", "x".repeat(MAX_NOTE)));
    }

    #[test]
    fn agent_commands_render_without_secrets() {
        use crate::agent::{Exec, Seed};
        let seed = Seed([5; 32]);
        let key = crate::hex::encode(&seed.public());
        let create = Command::Agent(AgentCmd::Create {
            name: "a".into(),
            seed: seed.clone(),
            at: 1,
        });
        assert_eq!(render(&create), format!("mkdir /agent/a key={key}"));
        let rm = Command::Agent(AgentCmd::Remove { name: "a".into() });
        assert_eq!(render(&rm), "rm /agent/a");
        let ctl = Command::Agent(AgentCmd::Ctl {
            name: "a".into(),
            ops: alloc::vec![
                AgentOp::Exec(Exec {
                    path: "/bin/w".into(),
                    args: alloc::vec!["x".repeat(100)],
                }),
                AgentOp::Env {
                    key: "TOKEN".into(),
                    value: Some("secret".into()),
                },
                AgentOp::Start,
                AgentOp::Spawn {
                    child: "b".into(),
                    seed,
                    intent: alloc::vec::Vec::new(),
                },
            ],
            at: 2,
        });
        let line = render(&ctl);
        assert!(line.starts_with("/agent/a/ctl exec /bin/w xxx"), "{line}");
        assert!(
            line.ends_with(&format!("…; env TOKEN=…; start; spawn b none key={key}")),
            "{line}"
        );
        assert!(!line.contains("secret"));
    }

    #[test]
    fn reports_and_drifts_render_without_output_or_stderr() {
        use crate::agent::{ExitHow, ExitReport, Recent, Report};
        let report = Command::Agent(AgentCmd::Ctl {
            name: "a".into(),
            ops: alloc::vec![
                AgentOp::Report(Report::Exit(ExitReport {
                    how: ExitHow::Signal("SEGV".into()),
                    restarting: true,
                    stderr: alloc::vec!["password=hunter2".into()],
                    ops: alloc::vec![],
                    before: None,
                })),
                AgentOp::Log("token=abc".into()),
                AgentOp::Log("more".into()),
            ],
            at: 2,
        });
        assert_eq!(
            render(&report),
            "/agent/a/ctl report exit signal=SEGV restarting=yes stderr=1 lines; log 2 lines"
        );
        let drift = Command::Agent(AgentCmd::Drift {
            name: "a".into(),
            op: "write".into(),
            path: "/chan/out/data".into(),
            at: 3,
            starts: 1,
            ops: alloc::vec![Recent {
                at: 2,
                text: "read /chan/in/data".into(),
                times: 1,
            }],
            before: None,
        });
        assert_eq!(render(&drift), "/agent/a drift write /chan/out/data");
    }

    #[test]
    fn keeps_the_latest_lines_and_names_members() {
        let mut j = Journal::default();
        let sync = Command::Root(RootCmd(alloc::vec![RootOp::Sync]));
        for i in 1..=(MAX_LINES as u64 + 2) {
            j.push(&entry(i, &sync), Some(&sync));
        }
        assert_eq!(j.lines().count(), MAX_LINES);
        assert_eq!(j.lines().next().map(|l| l.index), Some(3));
        let m = Command::Members(Membership {
            voters: alloc::vec![7],
            ..Membership::default()
        });
        j.push(&entry(99, &m), Some(&m));
        assert_eq!(j.name(7), Some("7"));
        assert_eq!(j.name(8), None);
        assert!(j.text().ends_with("99 2 3 members voters=7\n"));
        let raw = Entry {
            index: 100,
            term: 2,
            origin: 0,
            data: alloc::vec![0xff; 3],
        };
        j.push(&raw, None);
        assert!(j.text().ends_with("100 2 0 undecodable 3 bytes\n"));
    }
}
