//! Which file of the channel device a node is: the device's number, its
//! kinds of file, and the nodes of a channel's files.

use crate::file::File;

/// The channel device's number in [`crate::devices::DEVICES`].
pub const DEV: u8 = 1;
pub(super) const K_TOP: u8 = 0;
pub(super) const K_DIR: u8 = 1;
pub(super) const K_CTL: u8 = 2;
pub(super) const K_DATA: u8 = 3;
pub(super) const K_STATUS: u8 = 4;
pub(super) const K_MSGS: u8 = 5;
pub(super) const K_GROUPS: u8 = 6;
pub(super) const K_GROUP: u8 = 7;
pub(super) const K_GRAPH: u8 = 8;

/// `/chan` itself.
pub const TOP: File = File::new(DEV, K_TOP, 0);
/// `/chan/graph`.
pub const GRAPH: File = File::new(DEV, K_GRAPH, 0);

pub(super) fn dir_node(id: u64) -> File {
    File::new(DEV, K_DIR, id)
}

pub(super) fn data_node(id: u64) -> File {
    File::new(DEV, K_DATA, id)
}

pub(super) fn msgs_node(id: u64) -> File {
    File::new(DEV, K_MSGS, id)
}

pub(super) fn group_node(id: u64, group: u16) -> File {
    File::new(DEV, K_GROUP, (u64::from(group) << 32) | id)
}

/// The channel number of any node of the device (group files carry the
/// group's number above it).
pub(super) fn chan_id(node: File) -> u64 {
    node.obj & u64::from(u32::MAX)
}

pub(super) fn group_id(node: File) -> u16 {
    (node.obj >> 32) as u16
}
