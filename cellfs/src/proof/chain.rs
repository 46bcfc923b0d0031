//! The hash chain over every committed entry (`/proof/chain`, `/proof/head`).
//!
//! Link `i` is sha256(link `i-1` ‖ index ‖ term ‖ command bytes), the
//! index and term as 8 little-endian bytes each, starting from 32 zero
//! bytes. Every node computes it as it applies, so every node of a cluster
//! holds the same chain, and changing any byte of any entry changes every
//! later link. See proof(3).

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::log::{Index, Term};

/// One committed entry's place in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The entry's index.
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// The node it was proposed on.
    pub origin: u64,
    /// The chain hash through it.
    pub hash: [u8; 32],
}

/// The chain so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    links: Vec<Link>,
}

/// The hash that follows `prev` for an entry.
pub fn next_hash(prev: &[u8; 32], index: Index, term: Term, data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(index.to_le_bytes());
    h.update(term.to_le_bytes());
    h.update(data);
    h.finalize().into()
}

impl Chain {
    /// Extend the chain by a committed entry.
    pub fn push(&mut self, index: Index, term: Term, origin: u64, data: &[u8]) {
        let prev = self.links.last().map_or([0; 32], |l| l.hash);
        let hash = next_hash(&prev, index, term, data);
        self.links.push(Link {
            index,
            term,
            origin,
            hash,
        });
    }

    /// The last link's index and hash (0 and zeros when empty).
    pub fn head(&self) -> (Index, [u8; 32]) {
        self.links
            .last()
            .map_or((0, [0; 32]), |l| (l.index, l.hash))
    }

    /// Every link, oldest first.
    pub fn links(&self) -> &[Link] {
        &self.links
    }
}
