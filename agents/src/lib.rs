//! Cell0's agent runner: starts agent processes on a Linux host, each
//! sandboxed as far as the host allows, supervises them and restarts them
//! by their policy, and reports what happens so the caller can write it
//! back to the tree (see agent(3)).
//!
//! - [`Spec`]: what to run (program, arguments, environment, limits,
//!   restart policy, network, grace period).
//! - [`Supervisor`]: runs many agents by name; [`Event`]s say each change
//!   of [`State`] and each [`Exit`]; [`Status`] and the log are read on
//!   demand.
//! - [`Isolation`]: what a host can give and what each run got: pid,
//!   mount and network namespaces, a cgroup with its limits.
//! - [`seccomp::Filter`] and [`privs::drop_all`]: the system-call filter
//!   and the dropping of every capability an agent's program execs with.
//!
//! Each module does one thing: `spec` (what to run), `child` (making a
//! process and the calls on it), `sandbox` (what isolation applies),
//! `cgroup` (cgroups v2 and v1), `logbuf` (bounded output), `backoff`
//! (when to restart), `event` (what is reported), `supervisor` (the
//! thread that ties them together).

#![cfg(target_os = "linux")]
#![warn(missing_docs)]

mod backoff;
mod cgroup;
mod child;
mod error;
mod event;
mod logbuf;
pub mod privs;
mod process;
mod run;
mod sandbox;
pub mod seccomp;
mod spec;
mod supervisor;

pub use backoff::{FIRST_DELAY, HEALTHY_RUN, MAX_DELAY};
pub use error::{Error, StartError};
pub use event::{EXIT_STDERR_LINES, Event, Exit, State, Status, What};
pub use logbuf::LogChunk;
pub use process::{ExitStatus, signal_name};
pub use sandbox::Isolation;
pub use spec::{
    DEFAULT_GRACE, DEFAULT_HOME, DEFAULT_LOG_BYTES, DEFAULT_PATH, Fds, Limits, MAX_LOG_BYTES,
    Restart, RestartPolicy, Spec, SpecError,
};
pub use supervisor::{DEFAULT_UID_BASE, Killer, Options, Supervisor};
