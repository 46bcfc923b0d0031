//! What a write to `/ctl` commits ([`RootCmd`]), how it applies, and how
//! `/raft/log` shows it.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::command::Applied;
use crate::error::Error;
use crate::events::Kind;

/// A write to `/ctl`: its lines, applied together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCmd(pub Vec<RootOp>);

/// One line of a `/ctl` write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootOp {
    /// Record some text in the log and on `/events`.
    Note(String),
    /// Nothing: committing it proves every earlier command durable.
    Sync,
}

/// Apply a node-wide command.
pub fn apply(cmd: &RootCmd) -> Result<Applied, Error> {
    let mut done = Applied::default();
    for op in &cmd.0 {
        if let RootOp::Note(text) = op {
            done.events.push((Kind::Note, text.clone()));
        }
    }
    Ok(done)
}

/// As `/raft/log` shows it: `/ctl note TEXT; sync`.
impl core::fmt::Display for RootCmd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("/ctl ")?;
        let ops = self.0.iter().map(|op| match op {
            RootOp::Note(text) => format!("note {}", crate::ctl::cut(text, crate::ctl::MAX_NOTE)),
            RootOp::Sync => String::from("sync"),
        });
        crate::ctl::join_lines(f, ops)
    }
}
