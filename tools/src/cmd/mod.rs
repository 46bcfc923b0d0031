//! The commands: what a user runs to start, inspect or talk to nodes
//! (client verbs, capabilities, proofs, channels, clusters, `up`, `boot`,
//! benchmarks) and the child-process helpers they share.

pub mod bench;
pub mod boot;
pub mod cap;
pub mod chan;
pub mod child;
pub mod cluster;
pub mod proof;
pub mod up;
pub mod verbs;
