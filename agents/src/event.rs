//! What the supervisor tells its caller: the [`State`] of each agent, an
//! [`Exit`] record for each process that ended, both as [`Event`]s, and
//! a [`Status`] snapshot on demand.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::error::StartError;
use crate::process::ExitStatus;
use crate::sandbox::Isolation;

/// Where an agent is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Wanted running; its process is being made.
    Starting,
    /// Its process runs.
    Running {
        /// The process (in the runner's pid namespace).
        pid: u32,
    },
    /// Asked to stop (TERM sent, KILL after the grace period) or killed;
    /// its process has not ended yet.
    Stopping {
        /// The process.
        pid: u32,
    },
    /// Not running, as asked (`stop` or `kill`).
    Stopped,
    /// Its process ended and its policy does not restart it.
    Exited,
    /// Its process ended; it is restarted after this wait.
    Backoff {
        /// The wait.
        delay: Duration,
    },
    /// It ended more often within its policy's window than the policy
    /// allows restarts; it is not restarted until started again.
    Crashloop,
    /// It could not be started, for this reason; it is not restarted
    /// until started again.
    Failed(StartError),
}

impl State {
    /// Its word, for a status file: `starting`, `running`, `stopping`,
    /// `stopped`, `exited`, `backoff`, `crashloop` or `failed`.
    pub fn word(&self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running { .. } => "running",
            State::Stopping { .. } => "stopping",
            State::Stopped => "stopped",
            State::Exited => "exited",
            State::Backoff { .. } => "backoff",
            State::Crashloop => "crashloop",
            State::Failed(_) => "failed",
        }
    }

    /// The process, while there is one.
    pub fn pid(&self) -> Option<u32> {
        match self {
            State::Running { pid } | State::Stopping { pid } => Some(*pid),
            _ => None,
        }
    }
}

/// Most lines of stderr kept with an exit (its last ones).
pub const EXIT_STDERR_LINES: usize = 16;

/// The record of one process's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The process that ended.
    pub pid: u32,
    /// How it ended.
    pub status: ExitStatus,
    /// When the runner saw it end.
    pub at: SystemTime,
    /// How long it ran.
    pub ran: Duration,
    /// The last lines (at most [`EXIT_STDERR_LINES`]) it wrote to stderr,
    /// for the crash trace.
    pub stderr: Vec<String>,
    /// Whether it ended because it was asked to (`stop`, `kill`).
    pub asked: bool,
    /// Whether it will be started again.
    pub restarting: bool,
}

/// Something that happened to an agent, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The agent's name.
    pub agent: String,
    /// What happened.
    pub what: What,
}

/// What an [`Event`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// It entered this state.
    State(State),
    /// Its process ended (the state it enters follows as its own event).
    Exit(Exit),
}

/// A snapshot of one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Where it is.
    pub state: State,
    /// Restarts made by its policy since it was last started.
    pub restarts: u32,
    /// How its last process ended.
    pub last_exit: Option<Exit>,
    /// The isolation of its current (or last) process.
    pub isolation: Option<Isolation>,
    /// The cgroup directories of its current process (empty when none
    /// runs, or without cgroups).
    pub cgroups: Vec<PathBuf>,
    /// When its current process started.
    pub since: Option<SystemTime>,
}
