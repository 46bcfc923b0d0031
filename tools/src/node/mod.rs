//! The node: `cell0 serve` and what runs inside it — the Raft runtime,
//! the agent runner, and the shim that sets up each agent's sandbox.

pub mod cut;
pub mod fds;
pub mod raft;
pub mod runner;
pub mod serve;
pub mod shim;
pub mod swarm;
