//! `cell0 agent-shim`: the first process of an agent's sandbox, as the
//! runner of `cell0 serve` starts it (in its own user, pid, mount, UTS,
//! IPC, cgroup and network namespaces, with the descriptors the runner
//! hands it). Each test runs a shell script standing for the agent's
//! program and reads what it printed from the agent's log, how it ended
//! from its status and trace, and the host's side from /proc.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cell0_tests::Node;
use cell0_tests::cell0_bin;
use cell0_tests::cluster::wait;
use common::owner::{agent, cell0, script, status};

/// What every test needs, or a failure that says how to get it.
fn require() {
    // SAFETY: geteuid(2) has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests make namespaces and FUSE mounts: run them as root"
    );
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: modprobe fuse, apt-get install fuse3"
    );
}

/// The agent's log once it holds `marker`.
fn log_with(node: &Node, name: &str, marker: &str) -> String {
    let mut log = String::new();
    wait(&format!("{marker:?} in {name}'s log"), 20, || {
        log = cell0(node, &["cat", &format!("/agent/{name}/log")]);
        log.contains(marker)
    });
    log
}

/// The lines of `log` between `from` and `to` (markers on lines of
/// their own).
fn section<'a>(log: &'a str, from: &str, to: &str) -> Vec<&'a str> {
    log.lines()
        .skip_while(|l| *l != from)
        .skip(1)
        .take_while(|l| *l != to)
        .collect()
}

/// The last exit of agent `name` once it has one.
fn last_exit(node: &Node, name: &str) -> String {
    let mut exit = String::new();
    wait(&format!("{name} to exit"), 20, || {
        exit = status(node, name, "last-exit");
        exit != "-"
    });
    exit
}

fn host_netns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn the_program_sees_the_tree_its_own_root_only_loopback_and_its_exit_code_passes() {
    require();
    let node = Node::start();
    let prog = script(
        &node,
        "look.sh",
        r#"echo =status; cat "$CELL0_MOUNT/status"
echo =tree; ls "$CELL0_MOUNT"
echo =root; ls /
echo =net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '
echo =ns; readlink /proc/self/ns/net
echo "pid1 $(cat /proc/1/comm)"
echo =end
exit 3"#,
    );
    agent(&node, "look", &prog, &["intent r /"]);
    let log = log_with(&node, "look", "=end");
    assert_eq!(last_exit(&node, "look"), "code=3", "{log}");
    let st = section(&log, "=status", "=tree");
    assert!(
        st.first().is_some_and(|l| l.starts_with("node ")),
        "not the node's /status: {st:?}"
    );
    let tree = section(&log, "=tree", "=root");
    for want in ["chan", "status", "agent"] {
        assert!(tree.contains(&want), "ls of the mount: {tree:?}");
    }
    // A fresh root: what a program needs, nothing else of the host's
    // (not /root, /home, /var, /work, nor the scratch directory).
    let mut root = section(&log, "=root", "=net");
    root.sort();
    for l in &root {
        assert!(
            [
                "bin", "cell0", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run",
                "sbin", "tmp", "usr"
            ]
            .contains(l),
            "{l} in the agent's root: {root:?}"
        );
    }
    assert_eq!(section(&log, "=net", "=ns"), ["lo"], "only loopback");
    let ns = section(&log, "=ns", "=end");
    assert_ne!(ns[0], host_netns(), "the program shares the host's network");
    assert_eq!(ns[1], "pid1 cell0", "PID 1 is the shim");
    // Its status says what protects it.
    let sandbox = status(&node, "look", "sandbox");
    let words: Vec<&str> = sandbox.split(',').collect();
    for want in [
        "user",
        "pid",
        "mount",
        "uts",
        "ipc",
        "cgroupns",
        "net",
        "seccomp",
        "nonewprivs",
        "nocaps",
        "root",
    ] {
        assert!(
            words.contains(&want),
            "{want} missing from sandbox {sandbox}"
        );
    }
}

#[test]
fn with_the_network_granted_the_program_has_the_hosts() {
    require();
    let node = Node::start();
    let prog = script(
        &node,
        "net.sh",
        "echo \"ns $(readlink /proc/self/ns/net)\"; ls $CELL0_MOUNT/chan >/dev/null && echo =end",
    );
    agent(&node, "net", &prog, &["intent rw /net r /chan"]);
    let log = log_with(&node, "net", "=end");
    assert!(
        log.contains(&format!("ns {}", host_netns())),
        "the host's network: {log}"
    );
}

#[test]
fn a_signal_death_is_128_plus_n() {
    require();
    let node = Node::start();
    let prog = script(&node, "die.sh", "kill -TERM $$; sleep 5");
    agent(&node, "die", &prog, &[]);
    assert_eq!(
        last_exit(&node, "die"),
        format!("code={}", 128 + libc::SIGTERM)
    );
}

#[test]
fn stop_sends_term_to_the_program_and_the_mount_stays_inside() {
    require();
    let node = Node::start();
    let prog = script(
        &node,
        "term.sh",
        "trap 'echo got-term; exit 0' TERM\necho ready\nwhile :; do sleep 0.1; done",
    );
    agent(&node, "term", &prog, &["intent r /chan"]);
    log_with(&node, "term", "ready");
    let pid: u32 = status(&node, "term", "pid").parse().unwrap();
    // The shim's namespace has the tree mounted; the host's has not.
    let inside = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert!(
        inside
            .lines()
            .any(|l| l.split(' ').nth(4) == Some("/cell0") && l.contains(" - fuse")),
        "no mount at /cell0 in the sandbox:\n{inside}"
    );
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host
            .lines()
            .any(|l| l.contains("cell0@") && l.contains(&node.addr)),
        "an agent's mount is in the host's mount table:\n{host}"
    );
    cell0(&node, &["write", "/agent/term/ctl", "stop"]);
    log_with(&node, "term", "got-term");
    wait("term to be stopped", 20, || {
        status(&node, "term", "state") == "stopped"
    });
}

#[test]
fn orphans_are_reaped() {
    require();
    let node = Node::start();
    // The inner shell leaves two finished children behind; they become
    // the shim's, which must reap them.
    let prog = script(
        &node,
        "orphans.sh",
        r#"sh -c 'true & true & exit 0'
for i in $(seq 200); do
  z=$(cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == "Z"' | wc -l)
  [ "$z" = 0 ] && { echo no-zombies; exit 0; }
  sleep 0.01
done
cat /proc/[0-9]*/stat | awk '$3 == "Z"'
echo zombies
exit 1"#,
    );
    agent(&node, "orphans", &prog, &[]);
    assert_eq!(last_exit(&node, "orphans"), "code=0");
    let log = log_with(&node, "orphans", "zombies");
    assert!(log.contains("no-zombies"), "{log}");
}

#[test]
fn a_missing_interpreter_is_127_and_named() {
    require();
    let node = Node::start();
    let path = node.dir.path().join("orphan-interp.sh");
    std::fs::write(&path, "#!/nonexistent/interp\necho hi\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    agent(&node, "interp", &path, &[]);
    assert_eq!(last_exit(&node, "interp"), "code=127");
    let trace = cell0(&node, &["cat", "/agent/interp/trace"]);
    assert!(
        trace.contains("orphan-interp.sh") && trace.contains("not found"),
        "{trace}"
    );
}

#[test]
fn the_shim_outside_a_sandbox_refuses_with_125() {
    require();
    let marker = tempfile::tempdir().unwrap();
    let ran = marker.path().join("ran");
    let out = std::process::Command::new(cell0_bin())
        .args(["agent-shim", "--", "/bin/sh", "-c"])
        .arg(format!("touch {}", ran.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("not the first process of a sandbox"),
        "{stderr}"
    );
    assert!(!ran.exists(), "the program ran");
}

#[test]
fn stop_interrupts_a_read_blocked_on_the_tree() {
    require();
    let node = Node::start();
    cell0(&node, &["mkdir", "/chan/quiet"]);
    // The shell itself reads an empty channel, which waits on the node,
    // and catches TERM: the signal does not kill it, so only the mount
    // can end the read (it cancels it with Tflush once it sees the signal
    // pending on the reader's thread, looked up in the sandbox's own pid
    // namespace); then the handler runs.
    let prog = script(
        &node,
        "blocked.sh",
        "trap 'echo got-term; exit 0' TERM\necho waiting\nread -r line < $CELL0_MOUNT/chan/quiet/data\necho read-ended",
    );
    agent(&node, "blocked", &prog, &["intent r /chan/quiet"]);
    log_with(&node, "blocked", "waiting");
    std::thread::sleep(std::time::Duration::from_millis(300));
    cell0(&node, &["write", "/agent/blocked/ctl", "stop"]);
    let log = log_with(&node, "blocked", "got-term");
    wait("blocked to be stopped", 20, || {
        status(&node, "blocked", "state") == "stopped"
    });
    assert_eq!(status(&node, "blocked", "last-exit"), "-", "{log}");
}

/// The mount's own lines (the operation, the path, the errno) go to the
/// agent's stderr, so its log, not to the node's.
#[test]
fn a_refused_write_is_told_in_the_agents_log() {
    require();
    let node = Node::start();
    cell0(&node, &["mkdir", "/chan/mine"]);
    let prog = script(
        &node,
        "typo.sh",
        "echo 'qoss rate=1' > $CELL0_MOUNT/chan/mine/ctl || echo refused\necho =end",
    );
    agent(&node, "typo", &prog, &["intent rw /chan/mine"]);
    let log = log_with(&node, "typo", "=end");
    assert!(log.contains("refused"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("write /chan/mine/ctl: Invalid argument")),
        "the refusal is in the agent's own log:\n{log}"
    );
}

/// Where agents cannot be sandboxed (emulated here by turning the
/// runner's namespaces off), the runner refuses to run them unless the
/// node was started with --unconfined-agents, and says so; with it, the
/// agent runs and its status says it is unconfined.
#[test]
fn a_host_that_cannot_sandbox_runs_agents_only_when_told_to_unconfined() {
    require();
    let weak = |extra: &[&str]| {
        Node::start_with_env(
            tempfile::tempdir().unwrap(),
            None,
            extra,
            &[("CELL0_RUNNER_NAMESPACES", "off")],
        )
    };
    let node = weak(&[]);
    let prog = script(&node, "plain.sh", "echo ran; sleep 30");
    agent(&node, "plain", &prog, &[]);
    wait("the agent to be refused", 20, || {
        status(&node, "plain", "state") == "failed"
    });
    let reason = status(&node, "plain", "reason");
    assert!(
        reason.contains("cannot sandbox") && reason.contains("--unconfined-agents"),
        "{reason}"
    );
    let node = weak(&["--unconfined-agents"]);
    let prog = script(
        &node,
        "plain.sh",
        "echo \"token $(cut -c1-3 \"$CELL0_TOKEN_FILE\")\"; sleep 30",
    );
    agent(&node, "plain", &prog, &[]);
    let log = log_with(&node, "plain", "token");
    assert!(log.contains("token c0."), "{log}");
    wait("the agent to say it is unconfined", 20, || {
        status(&node, "plain", "sandbox") == "unconfined"
    });
}
