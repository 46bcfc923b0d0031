//! The identity foca knows a member by.

use serde::{Deserialize, Serialize};

/// A member as foca sees it: its id, the boot of the process speaking for it
/// and how many times that process has rejoined after being declared down.
///
/// `boot` is part of it so that a restarted process (a later boot) wins over
/// what the swarm remembers of its earlier run, even if that run had rejoined
/// many times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ident {
    /// The member's id (foca's address: one entry per id).
    pub id: u64,
    /// The boot of the process (unix ms at its start).
    pub boot: u64,
    /// Rejoins of this process after being declared down.
    pub bump: u16,
}

impl foca::Identity for Ident {
    type Addr = u64;

    // A node falsely declared down comes back by itself, as a newer identity.
    fn renew(&self) -> Option<Ident> {
        Some(Ident {
            bump: self.bump.wrapping_add(1),
            ..*self
        })
    }

    fn addr(&self) -> u64 {
        self.id
    }

    fn win_addr_conflict(&self, adversary: &Ident) -> bool {
        (self.boot, self.bump) > (adversary.boot, adversary.bump)
    }
}
