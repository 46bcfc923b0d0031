//! Requests that wait: reads parked until their file changes, and requests
//! waiting for their command to commit.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::dev::Waiting;
use crate::node::Node;
use crate::outbox::ConnId;

/// A Tread: who asked, for what. Kept while the read waits for its node
/// to change (it found nothing yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkedRead {
    /// Who asked.
    pub conn: ConnId,
    /// Under which tag.
    pub tag: u16,
    /// On which fid.
    pub fid: u32,
    /// At what offset.
    pub offset: u64,
    /// For how many bytes.
    pub count: u32,
}

/// Parked reads, by the node they wait on.
#[derive(Debug, Default)]
pub struct ParkedReads {
    by_node: BTreeMap<Node, Vec<ParkedRead>>,
}

impl ParkedReads {
    /// Park `read` on `node`.
    pub fn park(&mut self, node: Node, read: ParkedRead) {
        self.by_node.entry(node).or_default().push(read);
    }

    /// Every read parked on `node`, in the order they came.
    pub fn take(&mut self, node: Node) -> Vec<ParkedRead> {
        self.by_node.remove(&node).unwrap_or_default()
    }

    /// Every node some read is parked on.
    pub fn nodes(&self) -> impl Iterator<Item = Node> + '_ {
        self.by_node.keys().copied()
    }

    /// Remove the reads that `pick` selects, wherever they wait.
    pub fn remove_where(&mut self, mut pick: impl FnMut(&ParkedRead) -> bool) -> Vec<ParkedRead> {
        let mut gone = Vec::new();
        self.by_node.retain(|_, reads| {
            reads.retain(|r| {
                if pick(r) {
                    gone.push(*r);
                    false
                } else {
                    true
                }
            });
            !reads.is_empty()
        });
        gone
    }
}

impl Waiting for ParkedReads {
    fn waiting(&self, node: Node) -> usize {
        self.by_node.get(&node).map_or(0, Vec::len)
    }
}
