//! The root directory and the node-wide files: `/ctl`, `/status`, `/events`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::command::Command;
use crate::ctl::{self, Verb};
use crate::dev::{self, Aux, Ctx, Device, Entry, Info, ReadOutcome, Table};
use crate::error::Error;
use crate::file::File;

pub mod cmd;

pub use cmd::{RootCmd, RootOp, apply};

/// The root device's number in [`crate::devices::DEVICES`].
pub const DEV: u8 = 0;
const K_ROOT: u8 = 0;
const K_CTL: u8 = 1;
const K_STATUS: u8 = 2;
const K_EVENTS: u8 = 3;

/// The root directory.
pub const ROOT: File = File::new(DEV, K_ROOT, 0);
/// `/events`, whose readers are woken after every batch of changes.
pub const EVENTS: File = File::new(DEV, K_EVENTS, 0);

/// The files of the root, before the devices' directories.
const FILES: Table = Table(&[
    Entry::file("ctl", K_CTL, 0o220),
    Entry::file("status", K_STATUS, 0o444),
    Entry::file("events", K_EVENTS, 0o444),
]);

/// The verbs of `/ctl`.
pub const CTL_VERBS: &[Verb] = &[
    Verb {
        name: "note",
        min_args: 1,
        max_args: usize::MAX,
        keys: &[],
        usage: "note TEXT…",
    },
    Verb {
        name: "sync",
        min_args: 0,
        max_args: 0,
        keys: &[],
        usage: "sync",
    },
];

/// The root device.
pub struct Root;

impl Device for Root {
    fn rendered(&self, node: File) -> bool {
        node.kind == K_STATUS
    }

    fn top(&self) -> Option<(&'static str, File)> {
        None
    }

    fn info<'a>(&self, cx: &Ctx<'a>, node: File) -> Option<Info<'a>> {
        let mtime = cx.unix_ms / 1000;
        if node == ROOT {
            return Some(Info {
                name: "/",
                dir: true,
                perm: 0o555,
                length: 0,
                version: 0,
                mtime,
            });
        }
        let Entry { name, perm, .. } = FILES.kind(node.kind).filter(|_| node.obj == 0)?;
        let version = if node.kind == K_STATUS {
            cx.state.applied as u32
        } else {
            0
        };
        Some(Info {
            name,
            dir: false,
            perm: *perm,
            length: 0,
            version,
            mtime,
        })
    }

    fn parent(&self, _node: File) -> File {
        ROOT
    }

    fn lookup(&self, cx: &Ctx<'_>, dir: File, name: &str) -> Option<File> {
        if dir != ROOT {
            return None;
        }
        if let Some(f) = FILES.lookup(DEV, 0, name) {
            return Some(f);
        }
        cx.devices
            .all()
            .iter()
            .filter_map(|d| d.top())
            .find(|(n, _)| *n == name)
            .map(|(_, node)| node)
    }

    fn list(&self, cx: &Ctx<'_>, dir: File, out: &mut Vec<File>) {
        if dir == ROOT {
            FILES.list(DEV, 0, out);
            out.extend(
                cx.devices
                    .all()
                    .iter()
                    .filter_map(|d| d.top())
                    .map(|(_, n)| n),
            );
        }
    }

    fn open(&self, cx: &Ctx<'_>, node: File, _read: bool, write: bool) -> Result<Aux, Error> {
        match node.kind {
            // Opens against the permission bits are refused by the server.
            K_ROOT if write => Err(Error::IsDir),
            // A reader of /events sees what happens from its open on.
            K_EVENTS => Ok(Aux::Cursor(cx.events.end())),
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
            K_STATUS => Ok(dev::read_text(aux, offset, count, out, || {
                render_status(cx)
            })),
            K_EVENTS => {
                let mut cursor = match aux {
                    Aux::Cursor(c) => *c,
                    _ => cx.events.end(),
                };
                let got = cx.events.read(&mut cursor, count as usize, cx.unix_ms, out);
                *aux = Aux::Cursor(cursor);
                Ok(if got {
                    ReadOutcome::Done
                } else {
                    ReadOutcome::Block
                })
            }
            _ => Err(Error::Perm(String::from("/ctl is write-only"))),
        }
    }

    fn write(&self, _cx: &Ctx<'_>, node: File, data: &[u8]) -> Result<Command, Error> {
        if node.kind != K_CTL {
            return Err(Error::Perm(String::from("only /ctl can be written here")));
        }
        let lines = ctl::parse("/ctl", CTL_VERBS, data)?;
        let ops = lines
            .iter()
            .map(|line| match line.verb {
                "note" => RootOp::Note(String::from(line.rest)),
                _ => RootOp::Sync,
            })
            .collect();
        Ok(Command::Root(RootCmd(ops)))
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
            "/",
            "the root holds only the node's own files",
        ))
    }

    fn remove(&self, _cx: &Ctx<'_>, node: File) -> Result<Option<Command>, Error> {
        let name = FILES.kind(node.kind).map_or("/", |f| f.name);
        Err(Error::Perm(format!(
            "cannot remove '{name}': it is part of the node"
        )))
    }
}

fn render_status(cx: &Ctx<'_>) -> String {
    let mut s = String::with_capacity(192);
    let st = cx.state;
    let _ = write!(
        s,
        "node {}\nversion {}\nuptime {}\nconnections {}\nfids {}\nchannels {}\nretained {}\nagents {}\napplied {}\nevents {}\nkey {}\n",
        cx.node_id,
        crate::VERSION,
        cx.uptime_secs,
        cx.connections,
        cx.fids,
        st.chans.len(),
        st.chans.retained(),
        st.agents.len(),
        st.applied,
        cx.events.total(),
        crate::hex::encode(&cx.key.public()),
    );
    s
}
