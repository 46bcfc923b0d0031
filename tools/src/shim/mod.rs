//! `cell0 agent-shim [--] PROGRAM ARGS…`: the first process of an agent's
//! sandbox (see agent(3)).
//!
//! The runner starts the shim as PID 1 of a new pid namespace, in a mount
//! namespace of its own, on the host's network. The shim:
//!
//! 1. detaches the FUSE mounts its namespace inherited from the host (a
//!    user's mount of the tree among them), then mounts the node's tree at
//!    `$CELL0_MOUNT` (default `/cell0`, created
//!    if missing; set but empty: no mount) with the agent's capability
//!    `$CELL0_TOKEN`, from the node at `$CELL0_ADDR`. The FUSE server is
//!    `cell0 mount`'s own, run on threads of this process: the mount is
//!    seen only in this mount namespace and lives as long as the sandbox;
//! 2. unless `$CELL0_NET` is `1`, gives the program a network namespace of
//!    its own holding only loopback. The shim keeps the host's network:
//!    its connection to the node is made from threads that keep theirs;
//! 3. runs PROGRAM with the shim's standard streams and environment
//!    (`CELL0_*` included);
//! 4. as init, forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and
//!    SIGUSR2 to the program, reaps every process that becomes its child
//!    (orphans do), and exits as soon as the program ends.
//!
//! Exit status of the shim:
//! - the program's own when it exits, 128+N when signal N kills it (as
//!   shells report it);
//! - 125 ([`SETUP_FAILED`]): the sandbox could not be set up (the mount,
//!   the network namespace); the program did not run; stderr says why;
//! - 126 ([`CANNOT_EXECUTE`]): PROGRAM exists but cannot be executed;
//! - 127 ([`NOT_FOUND`]): PROGRAM (or its `#!` interpreter) was not found;
//! - 128+N: signal N (one of those forwarded) came before the program
//!   started, which then does not run.
//!
//! Nothing on the way to the program's exec sleeps or polls: the mount is
//! awaited with poll(2) on `/proc/self/mountinfo`, which the kernel wakes
//! on every change of the mount table.

mod hide;
mod init;
mod mount;
mod net;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Args;

/// The sandbox could not be set up; the program did not run.
pub const SETUP_FAILED: i32 = 125;
/// The program exists but cannot be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// The program was not found.
pub const NOT_FOUND: i32 = 127;

/// Where the tree is mounted when `$CELL0_MOUNT` is not set.
const DEFAULT_MOUNT: &str = "/cell0";

/// How long the node has to answer the mount.
const MOUNT_WAIT: Duration = Duration::from_secs(15);

/// Arguments of `cell0 agent-shim`.
#[derive(Args, Debug)]
pub struct ShimArgs {
    /// Say on standard error how long the setup took (shim start to the
    /// program's exec).
    #[arg(long, hide = true)]
    pub timing: bool,
    /// Hide PATH from the agent (a directory: an empty read-only tmpfs
    /// over it; a file: /dev/null over it), in its mount namespace only:
    /// the runner hides the node's data directory and its own token.
    #[arg(long, value_name = "PATH")]
    pub hide: Vec<PathBuf>,
    /// The agent's program and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "PROGRAM"
    )]
    pub command: Vec<String>,
}

/// Why the shim stops before (or instead of) running the program.
struct Stop {
    code: i32,
    /// What to say on stderr (nothing for a signal).
    message: Option<String>,
}

impl Stop {
    fn setup(message: String) -> Stop {
        Stop {
            code: SETUP_FAILED,
            message: Some(message),
        }
    }
}

/// Run the shim; it never returns: it exits with the program's status
/// (see the module's documentation).
pub fn run(args: ShimArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let code = match shim(&args, started) {
        Ok(code) => code,
        Err(stop) => {
            if let Some(m) = stop.message {
                eprintln!("cell0 agent-shim: {m}");
            }
            stop.code
        }
    };
    std::process::exit(code)
}

fn shim(args: &ShimArgs, started: Instant) -> Result<i32, Stop> {
    // Before any thread exists, so that every thread inherits the mask
    // and the signals wait on the signalfd, whatever handlers the mount
    // installs.
    let signals =
        init::Signals::block().map_err(|e| Stop::setup(format!("blocking signals: {e}")))?;
    init::become_reaper();

    let mount_dir = match std::env::var_os("CELL0_MOUNT") {
        None => Some(PathBuf::from(DEFAULT_MOUNT)),
        Some(d) if d.is_empty() => None,
        Some(d) => Some(PathBuf::from(d)),
    };
    // The host's FUSE mounts (a user's mount of the tree with the owner's
    // capability among them) came with the copy of its mount namespace:
    // hide them, in this namespace only. Only as PID 1 of the sandbox's
    // pid namespace, which the runner makes with a mount namespace.
    if std::process::id() == 1 {
        hide::detach_fuse_mounts().map_err(|e| Stop::setup(format!("{e:#}")))?;
        for path in &args.hide {
            hide::cover(path).map_err(|e| Stop::setup(format!("{e:#}")))?;
        }
    }
    let pending = match &mount_dir {
        Some(dir) => Some(mount::start(dir).map_err(|e| {
            Stop::setup(format!("cannot mount the tree at {}: {e:#}", dir.display()))
        })?),
        None => None,
    };
    // After the mount's thread started, which keeps the host's network.
    let isolated = std::env::var_os("CELL0_NET").is_none_or(|v| v != "1");
    if isolated {
        net::isolate().map_err(|e| Stop::setup(format!("{e:#}")))?;
    }
    let mounted = match pending {
        Some(p) => {
            let shown = p.dir().display().to_string();
            match p.wait(&signals, started + MOUNT_WAIT) {
                Ok(mount::Waited::Mounted(dir)) => Some(dir),
                Ok(mount::Waited::Signal(sig)) => {
                    return Err(Stop {
                        code: 128 + sig,
                        message: None,
                    });
                }
                Err(e) => {
                    return Err(Stop::setup(format!(
                        "cannot mount the tree at {shown}: {e:#}"
                    )));
                }
            }
        }
        None => None,
    };
    let mount_took = started.elapsed();

    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Stop::setup("no program to run".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
    init::default_signals(&mut cmd);
    if let Some(dir) = &mounted
        && std::env::var_os("CELL0_MOUNT").is_none()
    {
        cmd.env("CELL0_MOUNT", dir);
    }
    let child = cmd.spawn().map_err(|e| exec_failure(program, &e))?;
    if args.timing {
        eprintln!(
            "cell0 agent-shim: {program} started {:.3} ms after the shim began (mount ready at {:.3} ms; network {})",
            started.elapsed().as_secs_f64() * 1e3,
            mount_took.as_secs_f64() * 1e3,
            if isolated { "isolated" } else { "host" }
        );
    }

    let code = init::supervise(child.id() as libc::pid_t, &signals)
        .map_err(|e| Stop::setup(format!("waiting for {program}: {e}")))?;
    if let Some(dir) = &mounted {
        mount::detach(dir);
    }
    Ok(code)
}

/// The status and message for a program that could not be started.
fn exec_failure(program: &str, e: &std::io::Error) -> Stop {
    let (code, why) = match e.raw_os_error() {
        Some(libc::ENOENT) => (
            NOT_FOUND,
            "not found (no such file, not on $PATH, or its #! interpreter is missing)".to_string(),
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => (
            CANNOT_EXECUTE,
            "permission denied (not an executable file?)".to_string(),
        ),
        Some(libc::ENOEXEC) => (CANNOT_EXECUTE, "not an executable format".to_string()),
        _ => (CANNOT_EXECUTE, e.to_string()),
    };
    Stop {
        code,
        message: Some(format!("cannot run {program}: {why}")),
    }
}
