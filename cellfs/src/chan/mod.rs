//! `/chan`: channels. `mkdir /chan/NAME` makes one; each has `ctl`, `data`
//! and `status`. See chan(3).
//!
//! This is the basic channel of the spine: an ordered, bounded, durable
//! queue whose reads consume. Signing, QoS and routing grow here later.

mod queue;

pub use queue::{Chan, ChanCmd, ChanOp, Chans, MAX_BYTES, MAX_MESSAGES};

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::command::Command;
use crate::ctl::{self, Verb};
use crate::dev::{self, Aux, Ctx, Device, Info, ReadOutcome};
use crate::error::Error;
use crate::node::Node;
use crate::root;

/// The channel device's number in [`dev::DEVICES`].
pub const DEV: u8 = 1;
const K_TOP: u8 = 0;
const K_DIR: u8 = 1;
const K_CTL: u8 = 2;
const K_DATA: u8 = 3;
const K_STATUS: u8 = 4;

/// `/chan` itself.
pub const TOP: Node = Node::new(DEV, K_TOP, 0);

/// The files of every channel directory: name, kind, permissions.
const FILES: [(&str, u8, u32); 3] = [
    ("ctl", K_CTL, 0o220),
    ("data", K_DATA, 0o660),
    ("status", K_STATUS, 0o444),
];

/// The verbs of a channel's `ctl`.
pub const CTL_VERBS: &[Verb] = &[
    Verb {
        name: "clear",
        min_args: 0,
        max_args: 0,
        keys: &[],
        usage: "clear",
    },
    Verb {
        name: "close",
        min_args: 0,
        max_args: 0,
        keys: &[],
        usage: "close",
    },
    Verb {
        name: "open",
        min_args: 0,
        max_args: 0,
        keys: &[],
        usage: "open",
    },
];

/// Longest channel name.
pub const MAX_NAME: usize = 64;

fn dir_node(id: u64) -> Node {
    Node::new(DEV, K_DIR, id)
}

fn data_node(id: u64) -> Node {
    Node::new(DEV, K_DATA, id)
}

/// Check a new channel's name: 1–64 of `[A-Za-z0-9._-]`, not starting with
/// a dot.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > MAX_NAME
        || name.starts_with('.')
        || !name.chars().all(ok_char)
    {
        return Err(Error::BadName(format!(
            "chan \"{}\": names are 1-{MAX_NAME} of A-Z a-z 0-9 . _ - and do not start with '.'",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// The channel device.
pub struct ChanDev;

impl ChanDev {
    fn chan<'a>(cx: &Ctx<'a>, node: Node) -> Result<&'a Chan, Error> {
        cx.state
            .chans
            .get(node.obj)
            .ok_or(Error::Removed("channel"))
    }
}

impl Device for ChanDev {
    fn top(&self) -> Option<(&'static str, Node)> {
        Some(("chan", TOP))
    }

    fn info<'a>(&self, cx: &Ctx<'a>, node: Node) -> Option<Info<'a>> {
        if node == TOP {
            let mtime = cx.unix_ms / 1000;
            return Some(Info {
                name: "chan",
                dir: true,
                perm: 0o755,
                length: 0,
                version: 0,
                mtime,
            });
        }
        let chan = cx.state.chans.get(node.obj)?;
        let (name, dir, perm) = match node.kind {
            K_DIR => (chan.name.as_str(), true, 0o755),
            kind => FILES
                .iter()
                .find(|f| f.1 == kind)
                .map(|f| (f.0, false, f.2))?,
        };
        Some(Info {
            name,
            dir,
            perm,
            length: 0,
            version: chan.version,
            mtime: chan.created,
        })
    }

    fn parent(&self, node: Node) -> Node {
        match node.kind {
            K_TOP => root::ROOT,
            K_DIR => TOP,
            _ => dir_node(node.obj),
        }
    }

    fn lookup(&self, cx: &Ctx<'_>, dir: Node, name: &str) -> Option<Node> {
        match dir.kind {
            K_TOP => cx.state.chans.id(name).map(dir_node),
            K_DIR => {
                cx.state.chans.get(dir.obj)?;
                FILES
                    .iter()
                    .find(|f| f.0 == name)
                    .map(|f| Node::new(DEV, f.1, dir.obj))
            }
            _ => None,
        }
    }

    fn list(&self, cx: &Ctx<'_>, dir: Node, out: &mut Vec<Node>) {
        match dir.kind {
            K_TOP => out.extend(cx.state.chans.ids().map(dir_node)),
            K_DIR if cx.state.chans.get(dir.obj).is_some() => {
                out.extend(FILES.iter().map(|f| Node::new(DEV, f.1, dir.obj)));
            }
            _ => {}
        }
    }

    fn open(&self, cx: &Ctx<'_>, node: Node, read: bool, write: bool) -> Result<Aux, Error> {
        if node.kind != K_TOP {
            Self::chan(cx, node)?;
        }
        match node.kind {
            K_TOP | K_DIR if write => Err(Error::IsDir),
            K_CTL if read => Err(Error::Perm(String::from("chan ctl is write-only"))),
            K_STATUS if write => Err(Error::Perm(String::from("chan status is read-only"))),
            _ => Ok(Aux::None),
        }
    }

    fn read(
        &self,
        cx: &Ctx<'_>,
        node: Node,
        aux: &mut Aux,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<ReadOutcome, Error> {
        let chan = Self::chan(cx, node)?;
        match node.kind {
            K_STATUS => Ok(dev::read_text(aux, offset, count, out, || {
                let mut s = String::with_capacity(128);
                let _ = write!(
                    s,
                    "name {}\nstate {}\nqueued {}\nbytes {}\nsent {}\nreceived {}\nwaiting {}\ncreated {}\n",
                    chan.name,
                    if chan.open { "open" } else { "closed" },
                    chan.queue.len(),
                    chan.bytes,
                    chan.sent,
                    chan.received,
                    cx.waiting.waiting(data_node(node.obj)),
                    chan.created,
                );
                s
            })),
            K_DATA if chan.queue.is_empty() && chan.open => Ok(ReadOutcome::Block),
            K_DATA if chan.queue.is_empty() => Ok(ReadOutcome::Done),
            K_DATA => Ok(ReadOutcome::Propose(Command::Chan(ChanCmd::Take {
                name: chan.name.clone(),
                max: count,
            }))),
            _ => Err(Error::Perm(format!(
                "chan {}: ctl is write-only",
                chan.name
            ))),
        }
    }

    fn write(&self, cx: &Ctx<'_>, node: Node, data: &[u8]) -> Result<Command, Error> {
        let chan = Self::chan(cx, node)?;
        let name = chan.name.clone();
        match node.kind {
            K_DATA => {
                // An empty message would read as end of file.
                if data.is_empty() {
                    return Err(Error::Invalid(format!(
                        "chan {name}: empty write; a message needs at least one byte"
                    )));
                }
                if let Some(e) = chan.refuse_send(data.len()) {
                    return Err(e);
                }
                Ok(Command::Chan(ChanCmd::Send {
                    name,
                    data: data.to_vec(),
                }))
            }
            K_CTL => {
                let object = format!("chan {name}");
                let ops = ctl::parse(&object, CTL_VERBS, data)?
                    .iter()
                    .map(|l| match l.verb {
                        "clear" => ChanOp::Clear,
                        "close" => ChanOp::Close,
                        _ => ChanOp::Open,
                    })
                    .collect();
                Ok(Command::Chan(ChanCmd::Ctl { name, ops }))
            }
            _ => Err(Error::Perm(format!("chan {name}: status is read-only"))),
        }
    }

    fn create(&self, cx: &Ctx<'_>, dir: Node, name: &str, is_dir: bool) -> Result<Command, Error> {
        if dir.kind != K_TOP {
            let chan = Self::chan(cx, dir)?;
            return Err(Error::Perm(format!(
                "chan {}: cannot create '{name}': a channel has only ctl, data and status",
                chan.name
            )));
        }
        if !is_dir {
            return Err(Error::Perm(format!(
                "cannot create file '{name}' in /chan: make a channel with mkdir /chan/{name}"
            )));
        }
        check_name(name)?;
        if cx.state.chans.id(name).is_some() {
            return Err(Error::Exists(format!("chan {name}")));
        }
        Ok(Command::Chan(ChanCmd::Create {
            name: String::from(name),
            at: cx.unix_ms / 1000,
        }))
    }

    fn remove(&self, cx: &Ctx<'_>, node: Node) -> Result<Option<Command>, Error> {
        if node.kind == K_TOP {
            return Err(Error::Perm(String::from(
                "cannot remove /chan: it is part of the node",
            )));
        }
        let chan = Self::chan(cx, node)?;
        Ok(match node.kind {
            K_DIR => Some(Command::Chan(ChanCmd::Remove {
                name: chan.name.clone(),
            })),
            _ => None,
        })
    }
}
