//! The last of the shim's set-up: the sandbox's host name, then every
//! privilege given up, by the shim itself, before it starts the program
//! (which inherits the result: the shim is single-threaded, so nothing
//! of it keeps what it gave up).

use anyhow::Context;
use cell0_agents::seccomp::Filter;

/// Name the sandbox's host (its own UTS namespace) after the agent, so
/// that its programs and logs say where they run.
pub fn name_host() {
    let name = std::env::var("CELL0_AGENT").unwrap_or_else(|_| "agent".to_string());
    let name = format!("agent-{name}");
    let bytes = &name.as_bytes()[..name.len().min(64)];
    // SAFETY: a buffer and its length, only read by the call. A refusal
    // only leaves the name the namespace started with (the host's).
    unsafe { libc::sethostname(bytes.as_ptr().cast(), bytes.len()) };
}

/// No capabilities (and none regained by an exec as the namespace's
/// root), no new privileges, not dumpable (the program cannot read or
/// write the shim's memory through /proc), and `filter` on this thread,
/// which the program inherits.
pub fn give_up_privileges(filter: &Filter, last_cap: u32) -> anyhow::Result<()> {
    // SAFETY: prctl with integer arguments changes only this process.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    cell0_agents::privs::drop_all(last_cap).context("dropping capabilities")?;
    filter.apply().context("applying the seccomp filter")
}
