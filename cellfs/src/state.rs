//! The committed state: what the log's commands add up to.

use crate::cap::Caps;
use crate::chan::Chans;
use crate::command::{Applied, Command};
use crate::error::Error;
use crate::log::Index;
use crate::root;

/// Everything the log has built. Only [`State::apply`] changes it.
#[derive(Debug, Default)]
pub struct State {
    /// Index of the last entry applied.
    pub applied: Index,
    /// The channels.
    pub chans: Chans,
    /// Minted capabilities and revoked ids.
    pub caps: Caps,
}

impl State {
    /// Apply the command at `index`. An error leaves the state as it was
    /// (apart from `applied`), and is what the proposer is told.
    pub fn apply(&mut self, index: Index, cmd: &Command) -> Result<Applied, Error> {
        self.applied = index;
        match cmd {
            Command::Root(c) => root::apply(c),
            Command::Chan(c) => self.chans.apply(c),
            Command::Cap(c) => self.caps.apply(c),
        }
    }
}
