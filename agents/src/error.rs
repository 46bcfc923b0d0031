//! Errors: what went wrong in a call to the supervisor ([`Error`]), and
//! why an agent could not be started ([`StartError`], the reason of
//! [`crate::State::Failed`]). Each says what to do about it.

use std::fmt;
use std::io;

use crate::spec::SpecError;

/// A call to the [`crate::Supervisor`] that was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The agent's name cannot be one (it names a cgroup, so it must be
    /// a plain word).
    BadName(String),
    /// No agent has that name.
    NoSuchAgent(String),
    /// The agent still has a process (or is starting one), so it cannot
    /// be removed.
    Busy {
        /// The agent.
        name: String,
        /// The word of the state it is in.
        state: &'static str,
    },
    /// The supervisor's thread is gone (it panicked or was shut down).
    Gone,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadName(n) => write!(
                f,
                "agent {n:?}: not a name: 1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'"
            ),
            Error::NoSuchAgent(n) => write!(f, "agent {n:?}: no such agent here"),
            Error::Busy { name, state } => write!(
                f,
                "agent {name}: it is {state}; stop or kill it, and wait for it to be stopped, first"
            ),
            Error::Gone => f.write_str("the agent supervisor has shut down"),
        }
    }
}

impl std::error::Error for Error {}

/// Why an agent could not be started. It is not restarted after one of
/// these (a program that is missing stays missing); `start` tries again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The spec itself is wrong.
    Spec(SpecError),
    /// The program does not exist.
    NotFound {
        /// The program's path.
        program: String,
    },
    /// The program is a directory or some other thing that is not a file.
    NotAFile {
        /// The program's path.
        program: String,
    },
    /// The program has no execute permission.
    NotExecutable {
        /// The program's path.
        program: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The program could not be looked at.
    Inaccessible {
        /// The program's path.
        program: String,
        /// The system's error number.
        errno: i32,
    },
    /// The kernel refused to run the program.
    Exec {
        /// The program's path.
        program: String,
        /// The system's error number.
        errno: i32,
    },
    /// Setting up the sandbox in the new process failed.
    Sandbox {
        /// The step that failed.
        step: &'static str,
        /// The system's error number.
        errno: i32,
    },
    /// The runner could not make what a process needs (pipes, the
    /// process itself): the host is short of a resource.
    Os {
        /// What failed.
        what: &'static str,
        /// The system's error number.
        errno: i32,
    },
}

fn os(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Spec(e) => e.fmt(f),
            StartError::NotFound { program } => write!(
                f,
                "program {program} does not exist on this host; install it or fix the path"
            ),
            StartError::NotAFile { program } => {
                write!(
                    f,
                    "program {program} is not a file (a directory?); give the program's own path"
                )
            }
            StartError::NotExecutable { program, mode } => write!(
                f,
                "program {program} is not executable (mode {mode:04o}); chmod +x it"
            ),
            StartError::Inaccessible { program, errno } => {
                write!(f, "program {program} cannot be looked at: {}", os(*errno))
            }
            StartError::Exec { program, errno } => {
                write!(f, "cannot run {program}: {}", os(*errno))?;
                if *errno == libc::ENOEXEC {
                    f.write_str(" (not a binary for this host, nor a script starting with #!)")?;
                }
                Ok(())
            }
            StartError::Sandbox { step, errno } => {
                write!(
                    f,
                    "cannot set up the agent's sandbox: {step}: {}",
                    os(*errno)
                )
            }
            StartError::Os { what, errno } => {
                write!(f, "cannot start the agent: {what}: {}", os(*errno))
            }
        }
    }
}

impl std::error::Error for StartError {}

impl From<SpecError> for StartError {
    fn from(e: SpecError) -> StartError {
        StartError::Spec(e)
    }
}
