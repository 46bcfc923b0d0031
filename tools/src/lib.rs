//! The `cell0` library: the 9P client and what the node and the commands
//! both need from the host (configuration, identity files). The `cell0`
//! binary is built on it, and so are the integration tests that speak 9P.

pub mod client;
pub mod config;
pub mod identity;
