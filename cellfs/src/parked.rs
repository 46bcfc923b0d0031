//! Requests that wait: reads parked until their file changes, and requests
//! waiting for their command to commit.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use crate::dev::Waiting;
use crate::file::File;
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

/// A Twrite that waits for room (a full channel whose policy is to make
/// writers wait), holding its bytes until it can be proposed.
#[derive(Debug)]
pub struct ParkedWrite {
    /// Who asked.
    pub conn: ConnId,
    /// Under which tag.
    pub tag: u16,
    /// On which fid.
    pub fid: u32,
    /// What to write.
    pub data: Vec<u8>,
}

/// Most bytes parked writes may hold together; past it a writer that
/// would wait is refused with EAGAIN instead.
pub const MAX_PARKED_WRITE_BYTES: usize = 64 << 20;

/// Parked requests, by the node they wait on.
#[derive(Debug, Default)]
pub struct Parked {
    by_node: BTreeMap<File, Vec<ParkedRead>>,
    writes: BTreeMap<File, VecDeque<ParkedWrite>>,
    write_bytes: usize,
}

impl Parked {
    /// Park `write` on `node` behind the writes already waiting there;
    /// handed back if parked writes already hold too much.
    pub fn park_write(&mut self, node: File, write: ParkedWrite) -> Result<(), ParkedWrite> {
        if self.write_bytes + write.data.len() > MAX_PARKED_WRITE_BYTES {
            return Err(write);
        }
        self.write_bytes += write.data.len();
        self.writes.entry(node).or_default().push_back(write);
        Ok(())
    }

    /// Every write parked on `node`, oldest first.
    pub fn take_writes(&mut self, node: File) -> VecDeque<ParkedWrite> {
        let writes = self.writes.remove(&node).unwrap_or_default();
        self.write_bytes -= writes.iter().map(|w| w.data.len()).sum::<usize>();
        writes
    }

    /// Remove the writes that `pick` selects, wherever they wait.
    pub fn remove_writes_where(
        &mut self,
        mut pick: impl FnMut(&ParkedWrite) -> bool,
    ) -> Vec<ParkedWrite> {
        let mut gone = Vec::new();
        for writes in self.writes.values_mut() {
            let (out, keep): (Vec<_>, Vec<_>) = writes.drain(..).partition(|w| pick(w));
            writes.extend(keep);
            gone.extend(out);
        }
        self.writes.retain(|_, w| !w.is_empty());
        self.write_bytes -= gone.iter().map(|w| w.data.len()).sum::<usize>();
        gone
    }

    /// Park `read` on `node`.
    pub fn park(&mut self, node: File, read: ParkedRead) {
        self.by_node.entry(node).or_default().push(read);
    }

    /// Every read parked on `node`, in the order they came.
    pub fn take(&mut self, node: File) -> Vec<ParkedRead> {
        self.by_node.remove(&node).unwrap_or_default()
    }

    /// The connection and fid of every parked read and write (a fid
    /// with several comes several times).
    pub fn fids(&self) -> impl Iterator<Item = (ConnId, u32)> + '_ {
        let reads = self.by_node.values().flatten().map(|r| (r.conn, r.fid));
        let writes = self.writes.values().flatten().map(|w| (w.conn, w.fid));
        reads.chain(writes)
    }

    /// Every node some read is parked on.
    pub fn nodes(&self) -> impl Iterator<Item = File> + '_ {
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

impl Waiting for Parked {
    fn waiting(&self, node: File) -> usize {
        self.by_node.get(&node).map_or(0, Vec::len)
    }

    fn blocked(&self, node: File) -> usize {
        self.writes.get(&node).map_or(0, VecDeque::len)
    }
}
