//! The committed capability state: minted capabilities and revoked ids.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use super::token::Token;
use crate::command::Applied;
use crate::error::Error;
use crate::events::Kind;

/// A write to `/cap/ctl` or `/cap/N/ctl`: its lines, applied together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapCmd(pub Vec<CapOp>);

/// One capability change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapOp {
    /// A capability the node minted (signed by the proposer, so that
    /// applying it is deterministic); its id is the next mint number.
    Mint(Token),
    /// Revoke an id, and with it every token whose chain holds it.
    Revoke(u64),
}

/// Minted capabilities (by mint number, which is their id) and revoked ids.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Caps {
    minted: BTreeMap<u64, (String, Token)>,
    revoked: BTreeSet<u64>,
}

impl Caps {
    /// Whether `id` was revoked.
    pub fn is_revoked(&self, id: u64) -> bool {
        !self.revoked.is_empty() && self.revoked.contains(&id)
    }

    /// The revoked ids, ascending.
    pub fn revoked(&self) -> impl Iterator<Item = u64> + '_ {
        self.revoked.iter().copied()
    }

    /// The id the next mint gets (mint numbers start at 1; 0 is the
    /// owner's).
    pub fn next_id(&self) -> u64 {
        self.minted.keys().next_back().map_or(1, |k| k + 1)
    }

    /// The capability minted as number `n`.
    pub fn minted(&self, n: u64) -> Option<&Token> {
        self.minted.get(&n).map(|m| &m.1)
    }

    /// The directory name of capability `n` (its number, in decimal).
    pub fn name(&self, n: u64) -> Option<&str> {
        self.minted.get(&n).map(|m| m.0.as_str())
    }

    /// The mint numbers, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.minted.keys().copied()
    }

    /// Apply a capability command: all of it or, on error, none.
    pub fn apply(&mut self, cmd: &CapCmd) -> Result<Applied, Error> {
        let mut next = self.next_id();
        for op in &cmd.0 {
            if let CapOp::Mint(t) = op {
                let id = t.claims().id;
                if id != next {
                    return Err(Error::Again(format!(
                        "/cap/ctl: capability {id} was minted by another write first; mint again"
                    )));
                }
                next += 1;
            }
        }
        let mut done = Applied::default();
        for op in &cmd.0 {
            match op {
                CapOp::Mint(t) => {
                    let c = t.claims();
                    done.events.push((
                        Kind::Create,
                        format!(
                            "cap {} holder {} scope {} rights {} expires {}",
                            c.id, c.holder, c.scope, c.rights, c.expires
                        ),
                    ));
                    self.minted.insert(c.id, (c.id.to_string(), t.clone()));
                }
                CapOp::Revoke(id) => {
                    self.revoked.insert(*id);
                    done.revoked = true;
                    done.events.push((Kind::Ctl, format!("cap {id} revoked")));
                }
            }
        }
        Ok(done)
    }
}

/// As `/raft/log` shows it: `/cap/ctl mint id=… holder=… …; revoke N`.
impl core::fmt::Display for CapCmd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("/cap/ctl ")?;
        let ops = self.0.iter().map(|op| match op {
            CapOp::Mint(t) => {
                let c = t.claims();
                format!(
                    "mint id={} holder={} scope={} rights={} not_before={} expires={}",
                    c.id, c.holder, c.scope, c.rights, c.not_before, c.expires
                )
            }
            CapOp::Revoke(id) => format!("revoke {id}"),
        });
        crate::ctl::join_lines(f, ops)
    }
}
