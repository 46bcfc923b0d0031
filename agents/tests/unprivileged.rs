//! A runner that is not root: it may not make cgroups, but where the
//! kernel lets anyone make a user namespace it still sandboxes agents in
//! one (its root mapped to the runner's own id); where it does not, it
//! runs them without namespaces. Either way it runs and stops them, and
//! its isolation says what is missing.
//!
//! Run as root, the test runs this test binary again as user `nobody`
//! (65534, with `setpriv` from util-linux), in "helper_unprivileged",
//! which does nothing in a normal run. Run as another user, it checks in
//! its own process.

mod common;

use std::process::Command;
use std::time::Duration;

use cell0_agents::Supervisor;
use common::{SHORT, Watch, gone, kill_leftovers, marker, sh, wait_procs};

const HELPER_ENV: &str = "CELL0_AGENTS_TEST_UNPRIVILEGED";

/// What an unprivileged runner must do; panics if it does not.
fn check_unprivileged() {
    let (s, rx) = Supervisor::new().unwrap();
    let mut w = Watch::new(rx);
    let iso = s.isolation().clone();
    if user_namespaces_allowed() {
        // Sandboxed all the same, in a user namespace of its own.
        assert!(iso.confined() && iso.contained(), "{iso:?}");
        assert!(iso.network_namespace, "{iso:?}");
    } else {
        assert!(
            !iso.pid_namespace && !iso.network_namespace && !iso.contained(),
            "{iso:?}"
        );
        assert!(
            iso.notes.iter().any(|n| n.contains("no namespaces here")),
            "{iso:?}"
        );
        assert!(
            iso.notes
                .iter()
                .any(|n| n.contains("leave its process group")),
            "{iso:?}"
        );
        assert!(
            iso.notes
                .iter()
                .any(|n| n.contains("network is the host's")),
            "{iso:?}"
        );
    }
    assert!(!iso.cgroup, "{iso:?}");
    assert!(!iso.memory_limit && !iso.pids_limit && !iso.cpu_limit);
    assert!(
        iso.notes
            .iter()
            .any(|n| n.contains("no writable cgroup hierarchy")),
        "{iso:?}"
    );

    let m = marker();
    let mut spec = sh("echo hello; sleep $1 & sleep $1 & wait", &m);
    spec.limits.memory_bytes = Some(64 << 20);
    s.start("plain", spec).unwrap();
    w.state("plain", "running", SHORT);
    wait_procs(&m, 3, SHORT);
    let run = s.status("plain").unwrap().isolation.unwrap();
    assert!(!run.cgroup && !run.memory_limit, "{run:?}");
    if run.user_namespace {
        // Only its own id can be mapped: the namespace's root is it.
        // SAFETY: geteuid has no arguments and cannot fail.
        assert_eq!(run.uid, Some(unsafe { libc::geteuid() }), "{run:?}");
    }
    assert!(
        run.notes.iter().any(|n| n.contains("limits not enforced")),
        "{run:?}"
    );
    s.stop("plain").unwrap();
    w.state("plain", "stopped", SHORT);
    let left = gone(&m, Duration::from_secs(2));
    kill_leftovers(&m);
    left.expect("the process group was stopped");
    assert!(
        String::from_utf8(s.log("plain").unwrap())
            .unwrap()
            .contains("hello\n")
    );
    println!("unprivileged: ok: {iso}");
}

/// Whether this kernel lets a user who is not root make a user namespace
/// (Debian's `kernel.unprivileged_userns_clone`, and any room left in
/// `user.max_user_namespaces`).
fn user_namespaces_allowed() -> bool {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|v| v.trim().to_string())
    };
    read("/proc/sys/kernel/unprivileged_userns_clone").is_none_or(|v| v != "0")
        && read("/proc/sys/user/max_user_namespaces").is_none_or(|v| v != "0")
}

/// The check, when run by the test below as `nobody`.
#[test]
fn helper_unprivileged() {
    if std::env::var_os(HELPER_ENV).is_some() {
        check_unprivileged();
    }
}

#[test]
fn an_unprivileged_runner_falls_back_and_says_so() {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        check_unprivileged();
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_unprivileged",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "1")
        .output()
        .expect("setpriv (util-linux) to run the check as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("unprivileged: ok"),
        "as nobody: {}\n{stdout}\n{stderr}",
        out.status
    );
}
