//! `cell0 agent-shim`: the first process of an agent's sandbox. Each test
//! starts a node, mints the agent a read-only capability, and runs the
//! shim as PID 1 of new pid and mount namespaces (`unshare --pid --mount
//! --fork --mount-proc`, as the runner's supervisor does) around a shell
//! script standing for the agent's program.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Server, bin, children_of, kill, wait_for};

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
    let unshare = Command::new("unshare").arg("--version").output();
    assert!(
        matches!(&unshare, Ok(o) if o.status.success()),
        "unshare(1) is missing: apt-get install util-linux"
    );
}

/// A node and an agent's capability on it (read-only, whole tree).
struct Fixture {
    node: Server,
    token: String,
    /// Where the agent's tree is mounted (created by the shim).
    mnt: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        require();
        let node = Server::node();
        let (ok, out, err) = node.cell0(
            &[
                "cap", "mint", "--scope", "/", "--rights", "r", "--ttl", "5m", "--holder", "agent1",
            ],
            b"",
        );
        assert!(ok, "cell0 cap mint failed:\n{err}");
        let token = out.trim().to_string();
        assert!(token.starts_with("c0."), "not a token: {token:?}");
        let scratch = tempfile::tempdir().unwrap();
        let mnt = scratch.path().join("cell0");
        Fixture {
            node,
            token,
            mnt,
            _scratch: scratch,
        }
    }

    /// `unshare … cell0 agent-shim -- ARGV` with the agent's environment
    /// (network granted if `net`).
    fn shim(&self, net: bool, argv: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "KILL", "60", "unshare", "--pid", "--mount", "--fork"])
            .args(["--mount-proc", "--propagation", "private"])
            .args([bin(), "agent-shim", "--"])
            .args(argv)
            .env("CELL0_ADDR", &self.node.addr)
            .env("CELL0_TOKEN", &self.token)
            .env("CELL0_MOUNT", &self.mnt)
            .env("CELL0_NET", if net { "1" } else { "0" })
            .stdin(Stdio::null());
        cmd
    }

    /// Run `script` with sh as the agent's program.
    fn sh(&self, net: bool, script: &str) -> Output {
        self.shim(net, &["sh", "-c", script])
            .output()
            .expect("unshare runs")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The program's exit code as the shim passed it on (the shim exits
/// normally; `unshare --fork` exits with its status).
fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("the shim died of {:?}:\n{}", out.status, text(&out.stderr)))
}

/// `readlink /proc/self/ns/net` of this (host) process.
fn host_netns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn host_lists(mnt: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = mnt.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

const AGENT: &str = r#"
cat "$CELL0_MOUNT/status"
echo ---
ls "$CELL0_MOUNT"
echo ---
tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '
echo ---
readlink /proc/self/ns/net
echo "pid1 $(cat /proc/1/comm)"
exit 3
"#;

#[test]
fn the_program_sees_the_tree_and_no_network_and_its_exit_code_passes() {
    let f = Fixture::new();
    let out = f.sh(false, AGENT);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(code(&out), 3, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let parts: Vec<&str> = stdout.split("---\n").collect();
    assert_eq!(parts.len(), 4, "{stdout}");
    assert!(
        parts[0].starts_with("node ") && parts[0].contains("\nversion "),
        "not the node's /status:\n{}",
        parts[0]
    );
    let names: Vec<&str> = parts[1].lines().collect();
    for want in ["cap", "chan", "ctl", "status"] {
        assert!(names.contains(&want), "ls of the mount: {names:?}");
    }
    assert_eq!(
        parts[2].lines().collect::<Vec<_>>(),
        ["lo"],
        "the program's interfaces: only loopback"
    );
    let mut rest = parts[3].lines();
    let ns = rest.next().unwrap();
    assert_ne!(ns, host_netns(), "the program shares the host's network");
    assert_eq!(rest.next(), Some("pid1 cell0"), "PID 1 is the shim");
    assert!(
        !host_lists(&f.mnt),
        "the agent's mount leaked into the host's mount table"
    );
}

#[test]
fn with_the_network_granted_the_program_has_the_hosts() {
    let f = Fixture::new();
    let out = f.sh(
        true,
        "readlink /proc/self/ns/net; cat $CELL0_MOUNT/status >/dev/null",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), host_netns());
}

#[test]
fn a_signal_death_is_128_plus_n() {
    let f = Fixture::new();
    let out = f.sh(false, "kill -TERM $$; sleep 5");
    assert_eq!(code(&out), 128 + libc::SIGTERM, "{}", text(&out.stderr));
    let out = f.sh(false, "kill -KILL $$");
    assert_eq!(code(&out), 128 + libc::SIGKILL, "{}", text(&out.stderr));
}

#[test]
fn sigterm_to_the_shim_reaches_the_program_and_the_mount_stays_inside() {
    let f = Fixture::new();
    let mut child = f
        .shim(false, &["sh", "-c", "echo ready; exec sleep 60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    // timeout → unshare → the shim (PID 1 inside), seen from here.
    let unshare = children_of(child.id());
    assert_eq!(unshare.len(), 1, "{unshare:?}");
    let shim = children_of(unshare[0]);
    assert_eq!(shim.len(), 1, "{shim:?}");
    let shim = shim[0];
    let inside = std::fs::read_to_string(format!("/proc/{shim}/mountinfo")).unwrap();
    let p = f.mnt.to_string_lossy();
    assert!(
        inside
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*p) && l.contains(" - fuse")),
        "the shim's namespace has no mount at {p}:\n{inside}"
    );
    assert!(
        !host_lists(&f.mnt),
        "the agent's mount is visible in the host's mount table"
    );
    kill(shim, libc::SIGTERM);
    let mut status = None;
    wait_for("the shim to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(128 + libc::SIGTERM));
}

#[test]
fn orphans_are_reaped() {
    let f = Fixture::new();
    // The inner shell leaves two finished children behind; they become
    // the shim's, which must reap them.
    let script = r#"
        sh -c 'true & true & exit 0'
        for i in $(seq 200); do
            z=$(cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == "Z"' | wc -l)
            [ "$z" = 0 ] && { echo no-zombies; exit 0; }
            sleep 0.01
        done
        cat /proc/[0-9]*/stat | awk '$3 == "Z"'
        exit 1
    "#;
    let out = f.sh(false, script);
    assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stdout), "no-zombies\n");
}

#[test]
fn a_missing_program_is_127_and_named() {
    let f = Fixture::new();
    let out = f
        .shim(false, &["/nonexistent/agent-prog", "x"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 127, "{stderr}");
    assert!(
        stderr.contains("/nonexistent/agent-prog") && stderr.contains("not found"),
        "{stderr}"
    );
}

#[test]
fn a_program_that_is_not_executable_is_126() {
    let f = Fixture::new();
    let file = f._scratch.path().join("not-exec");
    std::fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
    let out = f.shim(false, &[file.to_str().unwrap()]).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 126, "{stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
}

#[test]
fn a_refused_mount_stops_the_start_with_125() {
    let f = Fixture::new();
    let marker = f._scratch.path().join("ran");
    let script = format!("touch {}", marker.display());
    let out = f
        .shim(false, &["sh", "-c", &script])
        .env("CELL0_TOKEN", "c0.not-a-token")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 125, "{stderr}");
    assert!(
        stderr.contains("cannot mount the tree at") && stderr.contains("not a Cell0 token"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the program ran after the mount failed");
}

#[test]
fn an_empty_mount_variable_skips_the_mount() {
    let f = Fixture::new();
    let out = f
        .shim(false, &["sh", "-c", "echo ran; exit 5"])
        .env("CELL0_MOUNT", "")
        .env("CELL0_ADDR", "127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(code(&out), 5, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ran\n");
    assert!(!f.mnt.exists());
}

/// Spawn latency: the shim's own report (its start to the program's
/// exec) and the wall time of the whole unshare + shim + `true`.
#[test]
fn spawn_latency() {
    let f = Fixture::new();
    let mut inside = Vec::new();
    let mut whole = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let out = Command::new("unshare")
            .args(["--pid", "--mount", "--fork", "--mount-proc"])
            .args([bin(), "agent-shim", "--timing", "--", "true"])
            .env("CELL0_ADDR", &f.node.addr)
            .env("CELL0_TOKEN", &f.token)
            .env("CELL0_MOUNT", &f.mnt)
            .env("CELL0_NET", "0")
            .output()
            .unwrap();
        whole.push(t.elapsed());
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let ms: f64 = stderr
            .split(" started ")
            .nth(1)
            .and_then(|r| r.split(" ms").next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no timing in {stderr}"));
        inside.push(Duration::from_secs_f64(ms / 1e3));
    }
    inside.sort();
    whole.sort();
    eprintln!(
        "agent-shim start→exec: median {:?}, max {:?}; unshare+shim+true wall: median {:?}, max {:?}",
        inside[inside.len() / 2],
        inside[inside.len() - 1],
        whole[whole.len() / 2],
        whole[whole.len() - 1]
    );
    assert!(
        inside[inside.len() / 2] < Duration::from_millis(500),
        "the shim takes {:?} to start its program",
        inside[inside.len() / 2]
    );
}
