//! `cell0 agent-shim [--] PROGRAM ARGS…`: the first process of an agent's
//! sandbox (see agent(3)).
//!
//! The runner starts the shim as PID 1 of new user, pid, mount, UTS, IPC
//! and cgroup namespaces (and a network namespace holding only loopback,
//! unless the agent's intent allows the network); it is the root of its
//! user namespace, which is an unprivileged id of the host. It is given:
//!
//! - [`READY_FD`]: a socket to the runner, where it says the tree is
//!   mounted and hands over the FUSE connection;
//! - [`TOKEN_FD`]: the agent's capability (a sealed memfd);
//! - [`PROGRAM_FD`]: a detached, read-only mount of the program's file;
//! - [`FUSE_FD`]: `/dev/fuse`, opened in its user namespace before it
//!   gave up the runner's ids (the kernel lets a namespace mount FUSE
//!   only with a descriptor opened inside it).
//!
//! The shim:
//!
//! 1. builds a fresh root holding only what the program needs (see
//!    `root`), read-only, and pivots to it: nothing of the host's file
//!    system is left beneath it;
//! 2. mounts the tree at `$CELL0_MOUNT` (`/cell0`) with the FUSE
//!    descriptor (see `mount`): the runner serves it from outside;
//! 3. names its host after the agent, brings loopback up, then gives up
//!    every privilege it has: no capabilities (none regained by exec as
//!    its root), no new privileges, and a seccomp filter (see
//!    [`cell0_agents::seccomp`]) that refuses mounts, namespaces,
//!    ptrace, kernel modules, kexec, bpf, perf, keyrings, clock and host
//!    name changes, raw and packet sockets;
//! 4. runs PROGRAM, with the shim's standard streams and environment and
//!    `CELL0_TOKEN_FILE` naming `/run/cell0/token`;
//! 5. as init, forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and
//!    SIGUSR2 to the program, reaps every process that becomes its child
//!    (orphans do), and exits as soon as the program ends.
//!
//! Exit status of the shim:
//! - the program's own when it exits, 128+N when signal N kills it (as
//!   shells report it);
//! - 125 ([`SETUP_FAILED`]): the sandbox could not be set up; the
//!   program did not run; stderr says why;
//! - 126 ([`CANNOT_EXECUTE`]): PROGRAM exists but cannot be executed;
//! - 127 ([`NOT_FOUND`]): PROGRAM (or its `#!` interpreter) was not found;
//! - 128+N: signal N (one of those forwarded) came before the program
//!   started, which then does not run.
//!
//! Nothing on the way to the program's exec sleeps, polls or waits for
//! the node.

mod confine;
mod hide;
mod init;
mod mount;
mod net;
mod root;

use std::fs::File;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Args;

pub use root::{
    MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, TOKEN_FILE, set_mount_attrs,
};

/// The sandbox could not be set up; the program did not run.
pub const SETUP_FAILED: i32 = 125;
/// The program exists but cannot be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// The program was not found.
pub const NOT_FOUND: i32 = 127;

/// The socket on which the shim hands the runner the mounted FUSE
/// connection.
pub const READY_FD: i32 = 3;
/// The agent's capability (its text).
pub const TOKEN_FD: i32 = 4;
/// The program's file: a detached mount (open_tree(2)).
pub const PROGRAM_FD: i32 = 5;
/// The `/dev/fuse` descriptor the shim mounts the tree with.
pub const FUSE_FD: i32 = 6;
/// The device the sandbox opens as [`FUSE_FD`].
pub const FUSE_DEVICE: &str = "/dev/fuse";

/// Where the tree is mounted when `$CELL0_MOUNT` is not set.
pub const DEFAULT_MOUNT: &str = "/cell0";

/// Arguments of `cell0 agent-shim`.
#[derive(Args, Debug)]
pub struct ShimArgs {
    /// Say on standard error how long the setup took (shim start to the
    /// program's exec).
    #[arg(long, hide = true)]
    pub timing: bool,
    /// Hide PATH from the agent wherever its root would show it (a
    /// directory: an empty read-only tmpfs over it; a file: /dev/null
    /// over it): the runner names the node's data directory and its own
    /// token.
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

/// The shim's arguments from `cell0`'s (after its own name) when they
/// are `agent-shim` as the runner writes them: `--timing`, `--hide PATH`
/// (or `--hide=PATH`), then `--` and the program with its arguments.
/// Anything else is `None`, for clap to parse (and to say what is
/// wrong): building clap's parser for every command of `cell0` took
/// 0.4 ms of each spawn.
pub fn runner_args(mut words: impl Iterator<Item = std::ffi::OsString>) -> Option<ShimArgs> {
    if words.next()? != "agent-shim" {
        return None;
    }
    let mut args = ShimArgs {
        timing: false,
        hide: Vec::new(),
        command: Vec::new(),
    };
    while let Some(w) = words.next() {
        match w.to_str()? {
            "--timing" => args.timing = true,
            "--hide" => args.hide.push(words.next()?.into()),
            "--" => {
                args.command = words.map(|w| w.into_string().ok()).collect::<Option<_>>()?;
                break;
            }
            w => args.hide.push(w.strip_prefix("--hide=")?.into()),
        }
    }
    (!args.command.is_empty()).then_some(args)
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
    let setup = |e: anyhow::Error| Stop::setup(format!("{e:#}"));
    // Before anything else, so that signals wait on the signalfd.
    let signals =
        init::Signals::block().map_err(|e| Stop::setup(format!("blocking signals: {e}")))?;
    if std::process::id() != 1 {
        return Err(Stop::setup(
            "not the first process of a sandbox: the shim is started by a runner (cell0 serve, cell0 runner)"
                .into(),
        ));
    }
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Stop::setup("no program to run".into()))?;
    let mount_dir = PathBuf::from(
        std::env::var_os("CELL0_MOUNT")
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| DEFAULT_MOUNT.into()),
    );
    if !mount_dir.is_absolute() {
        return Err(Stop::setup(format!(
            "$CELL0_MOUNT={} is not an absolute path",
            mount_dir.display()
        )));
    }
    // Compiled before the root changes (it reads nothing, but nothing
    // may fail after the privileges are gone but the program's exec).
    let filter = cell0_agents::seccomp::Filter::agent()
        .map_err(|e| Stop::setup(format!("building the seccomp filter: {e}")))?;
    let last_cap = cell0_agents::privs::last_cap();
    let token = read_token().map_err(setup)?;

    root::build_and_enter(&root::Layout {
        program: Path::new(program),
        program_fd: PROGRAM_FD,
        token: token.as_bytes(),
        mount: &mount_dir,
        hide: &args.hide,
    })
    .map_err(|e| Stop::setup(format!("building the agent's root: {e:#}")))?;
    let addr = std::env::var("CELL0_ADDR").unwrap_or_default();
    mount::mount(&mount_dir, FUSE_FD, READY_FD, &addr).map_err(setup)?;
    root::seal().map_err(setup)?;
    confine::name_host();
    // A program that talks to itself over 127.0.0.1 works; without it,
    // nothing is reachable either way.
    if std::env::var_os("CELL0_NET").is_none_or(|v| v != "1") {
        let _ = net::loopback_up();
    }
    confine::give_up_privileges(&filter, last_cap).map_err(setup)?;
    let setup_took = started.elapsed();

    let mut cmd = Command::new(program);
    cmd.args(rest);
    cmd.env("CELL0_TOKEN_FILE", TOKEN_FILE);
    cmd.env("CELL0_MOUNT", &mount_dir);
    init::default_signals(&mut cmd);
    let child = cmd.spawn().map_err(|e| exec_failure(program, &e))?;
    if args.timing {
        eprintln!(
            "cell0 agent-shim: {program} started {:.3} ms after the shim began (sandbox ready at {:.3} ms)",
            started.elapsed().as_secs_f64() * 1e3,
            setup_took.as_secs_f64() * 1e3,
        );
    }
    init::supervise(child.id() as libc::pid_t, &signals)
        .map_err(|e| Stop::setup(format!("waiting for {program}: {e}")))
}

/// The agent's capability from [`TOKEN_FD`] (closed after).
fn read_token() -> anyhow::Result<String> {
    use anyhow::Context as _;
    use std::os::unix::fs::FileExt as _;
    // SAFETY: the runner passes the capability at TOKEN_FD; the shim
    // takes ownership of it here, once.
    let f = unsafe { File::from_raw_fd(TOKEN_FD) };
    // From its start, wherever the writer left the offset.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = f
            .read_at(&mut buf, bytes.len() as u64)
            .context("reading the agent's capability from its descriptor")?;
        if n == 0 || bytes.len() > cellfs::cap::token::MAX_TEXT {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    cellfs::cap::Token::from_text(&text)
        .map_err(|e| anyhow::anyhow!("the agent's capability is not a Cell0 token: {e}"))?;
    Ok(text)
}

/// The status and message for a program that could not be started.
fn exec_failure(program: &str, e: &std::io::Error) -> Stop {
    let (code, why) = match e.raw_os_error() {
        Some(libc::ENOENT) => (
            NOT_FOUND,
            "not found (no such file, not on $PATH, or its #! interpreter is missing from the sandbox)"
                .to_string(),
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => (
            CANNOT_EXECUTE,
            "permission denied (not an executable file, or not readable by the agent's unprivileged user?)"
                .to_string(),
        ),
        Some(libc::ENOEXEC) => (CANNOT_EXECUTE, "not an executable format".to_string()),
        _ => (CANNOT_EXECUTE, e.to_string()),
    };
    Stop {
        code,
        message: Some(format!("cannot run {program}: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `runner_args` of `words`, and clap's `ShimArgs` for the same.
    fn both(words: &[&str]) -> (Option<ShimArgs>, Option<ShimArgs>) {
        #[derive(Parser)]
        struct Shim {
            #[command(flatten)]
            args: ShimArgs,
        }
        let quick = runner_args(words.iter().map(Into::into));
        let clap = Shim::try_parse_from(words).ok().map(|s| s.args);
        (quick, clap)
    }

    fn same(a: &ShimArgs, b: &ShimArgs) -> bool {
        (a.timing, &a.hide, &a.command) == (b.timing, &b.hide, &b.command)
    }

    #[test]
    fn the_runners_words_parse_as_clap_parses_them() {
        for words in [
            &["agent-shim", "--", "/bin/sh", "-c", "echo --hide x"][..],
            &[
                "agent-shim",
                "--hide",
                "/a",
                "--hide=/b c",
                "--",
                "/p",
                "--",
                "-x",
            ],
            &["agent-shim", "--timing", "--", "/p"],
        ] {
            let (quick, clap) = both(words);
            let (quick, clap) = (quick.unwrap(), clap.unwrap());
            assert!(same(&quick, &clap), "{words:?}");
        }
        // Anything else is clap's to parse and to refuse.
        for words in [
            &["agent-shim", "--help"][..],
            &["agent-shim", "--"],
            &["agent-shim", "--hide"],
            &["agent-shim", "/p"],
            &["serve", "--", "/p"],
        ] {
            assert!(both(words).0.is_none(), "{words:?}");
        }
    }
}
