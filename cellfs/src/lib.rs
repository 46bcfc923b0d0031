//! Cell0's server core.
//!
//! `cellfs` serves Cell0's file tree over 9P without doing any I/O itself:
//! a transport hands it frames ([`Server::handle`]) and sends the replies it
//! leaves in an [`Outbox`]; the [`Log`] commits mutations; a [`Clock`] gives
//! time. The same core runs in the hosted node and in the kernel.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod agent;
pub mod attr;
pub mod cap;
pub mod chan;
pub mod clock;
pub mod command;
pub mod conn;
pub mod ctl;
pub mod dev;
pub mod devices;
pub mod error;
pub mod events;
pub mod fid;
pub mod file;
pub mod gossip;
pub mod hex;
pub mod log;
pub mod name;
pub mod outbox;
pub mod parked;
pub mod proof;
pub mod raft;
pub mod root;
pub mod server;
pub mod state;
pub mod walk;

pub use clock::{Clock, FixedClock};
pub use command::Command;
pub use error::Error;
pub use log::{
    Change, Commit, Entry, Index, Log, LogError, LogStatus, MemLog, ProposalId, ReadGate, Snapshot,
    Term,
};
pub use outbox::{ConnId, Outbox};
pub use server::{Config, Server};

/// The version string of this build, shown in `/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
