//! `/raft/log`: one line per committed entry (being written).

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::log::Entry;

/// The committed entries as `/raft/log` shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {}

impl Journal {
    /// Record a committed entry (`cmd` is `None` when its bytes are not a
    /// command).
    pub fn push(&mut self, entry: &Entry, cmd: Option<&Command>) {
        let _ = (entry, cmd);
    }
}
