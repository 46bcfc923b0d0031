//! The device table: every kind of kernel object, indexed by
//! [`crate::file::File::dev`]. Adding an object is one module and one
//! line here (its `DEV` number is its place in this table).

use crate::dev::{Device, Devices};

/// Every device, indexed by [`crate::file::File::dev`]. The root device
/// is first.
pub const DEVICES: Devices = match Devices::new(ALL) {
    Some(d) => d,
    None => panic!("the device table is empty"),
};

const ALL: &[&dyn Device] = &[
    &crate::root::Root,
    &crate::chan::ChanDev,
    &crate::proof::ProofDev,
    &crate::cap::CapDev,
    &crate::raft::device::RaftDev,
    &crate::agent::AgentDev,
    &crate::swarm::SwarmDev,
];
