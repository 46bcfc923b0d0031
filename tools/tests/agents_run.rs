//! Agents under a real runner (the one `cell0 serve` runs, and `cell0
//! runner` on its own): shell-script agents in their sandboxes, drift,
//! restarts and crash loops, and no process left behind when a parent,
//! the runner or the node dies. See agent(3).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use cell0_tests::Node;
use cell0_tests::cell0_bin;
use cell0_tests::cluster::{field, wait};
use common::owner::{agent, cat, script, status, try_write, write};

/// The processes on this host of agent `name` of the node at `addr`
/// (their environment says so; every process of an agent inherits it).
fn agent_pids(addr: &str, name: &str) -> Vec<u32> {
    let want_agent = format!("CELL0_AGENT={name}");
    let want_addr = format!("CELL0_ADDR={addr}");
    let mut out = Vec::new();
    for pid in cell0_tests::pids() {
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = env.split(|&b| b == 0).collect();
        let has = |v: &str| vars.contains(&v.as_bytes());
        // A zombie has no environment left; it is not running.
        if has(&want_agent) && has(&want_addr) && cell0_tests::proc_state(pid) != Some('Z') {
            out.push(pid);
        }
    }
    out
}

#[test]
fn an_agent_reading_in_only_is_halted_when_it_writes_out_and_sees_only_its_scope() {
    let node = Node::start();
    let (ok, _, err) = node.cell0(&["mkdir", "/chan/in"]);
    assert!(ok, "{err}");
    let (ok, _, err) = node.cell0(&["mkdir", "/chan/out"]);
    assert!(ok, "{err}");
    let prog = script(
        &node,
        "reader.sh",
        "echo \"sees: $(ls $CELL0_MOUNT/chan | tr '\\n' ' ')\"\n\
         head -n 1 $CELL0_MOUNT/chan/in/data | sed 's/^/got: /'\n\
         echo stolen > $CELL0_MOUNT/chan/out/data && echo wrote\n\
         sleep 100",
    );
    // /events shows what happens from when it is opened on.
    let events_out = node.dir.path().join("events.out");
    let mut events = Command::new(cell0_bin())
        .args(["cat", "/events", "--addr", &node.addr, "--data"])
        .arg(node.data())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&events_out).unwrap())
        .spawn()
        .unwrap();
    agent(&node, "reader", &prog, &["intent r /chan/in"]);
    wait("the reader to run", 10, || {
        status(&node, "reader", "state") == "running"
    });
    write(&node, "/chan/in/data", "hello");
    wait("the reader to be halted", 10, || {
        status(&node, "reader", "state") == "halted-drift"
    });
    let drift = status(&node, "reader", "drift");
    assert!(drift.contains("/chan/out"), "drift names the path: {drift}");
    assert!(status(&node, "reader", "drift-at").parse::<u64>().is_ok());
    let trace = cat(&node, "/agent/reader/trace");
    assert!(
        trace.contains("drift ") && trace.contains("/chan/out"),
        "{trace}"
    );
    wait("the drift in /events", 10, || {
        std::fs::read_to_string(&events_out)
            .unwrap()
            .lines()
            .any(|l| l.contains(" drift agent reader:") && l.contains("/chan/out"))
    });
    events.kill().unwrap();
    events.wait().unwrap();
    // Nothing reached out, and the process is gone.
    let out = cat(&node, "/chan/out/status");
    assert_eq!(field(&out, "sent").as_deref(), Some("0"), "{out}");
    wait("the reader's processes to end", 10, || {
        agent_pids(&node.addr, "reader").is_empty()
    });
    let mut log = String::new();
    wait("the reader's output in its log", 10, || {
        log = cat(&node, "/agent/reader/log");
        log.contains("got: hello")
    });
    assert!(
        log.lines().any(|l| l == "sees: in"),
        "the view shows only its scope:\n{log}"
    );
    assert!(log.contains("got: hello"), "{log}");
    assert!(!log.contains("wrote"), "{log}");
    // It stays halted until someone writes start.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(status(&node, "reader", "state"), "halted-drift");
    assert!(agent_pids(&node.addr, "reader").is_empty());
}

#[test]
fn an_agent_exiting_1_is_restarted_until_max_then_crashloops_with_each_exit_traced() {
    let node = Node::start();
    let prog = script(&node, "fail.sh", "echo \"boom $$\" >&2\nexit 1");
    agent(
        &node,
        "failer",
        &prog,
        &["restart policy=always max=3 window=60s"],
    );
    wait("the crash loop", 20, || {
        status(&node, "failer", "state") == "crashloop"
    });
    let trace = cat(&node, "/agent/failer/trace");
    let exits: Vec<&str> = trace.lines().filter(|l| l.starts_with("exit ")).collect();
    assert_eq!(
        exits.len(),
        4,
        "three restarts, then the exit that loops:\n{trace}"
    );
    assert!(exits.iter().all(|l| l.contains("code=1")), "{trace}");
    assert_eq!(
        exits
            .iter()
            .filter(|l| l.contains("restarting=yes"))
            .count(),
        3,
        "{trace}"
    );
    assert!(trace.contains("stderr boom"), "{trace}");
    assert_eq!(status(&node, "failer", "restarts"), "3");
    // The first restarts come fast (backoff from 100 ms): the first and
    // the fourth exit are less than a few seconds apart.
    let at: Vec<u64> = exits
        .iter()
        .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
        .collect();
    assert!(at[3] - at[0] <= 3, "restarted within a second each: {at:?}");
}

#[test]
fn a_missing_program_fails_the_agent_with_a_clear_reason() {
    let node = Node::start();
    agent(&node, "ghost", Path::new("/no/such/program"), &[]);
    wait("the failure", 10, || {
        status(&node, "ghost", "state") == "failed"
    });
    let reason = status(&node, "ghost", "reason");
    assert!(reason.contains("/no/such/program"), "{reason}");
    assert!(reason.contains("no such file"), "{reason}");
    assert!(agent_pids(&node.addr, "ghost").is_empty());
}

#[test]
fn stop_and_kill_end_every_process_of_an_agent() {
    let node = Node::start();
    let prog = script(
        &node,
        "tree.sh",
        "sleep 300 &\nsleep 300 &\n(sleep 300; true) &\nwait",
    );
    agent(&node, "tree", &prog, &[]);
    wait("the agent's processes", 10, || {
        agent_pids(&node.addr, "tree").len() >= 5
    });
    write(&node, "/agent/tree/ctl", "stop");
    wait("every process to end", 15, || {
        agent_pids(&node.addr, "tree").is_empty()
    });
    wait("state stopped", 10, || {
        status(&node, "tree", "state") == "stopped"
    });
    write(&node, "/agent/tree/ctl", "start");
    wait("running again", 10, || {
        agent_pids(&node.addr, "tree").len() >= 5
    });
    write(&node, "/agent/tree/ctl", "kill");
    wait("every process to end", 10, || {
        agent_pids(&node.addr, "tree").is_empty()
    });
}

#[test]
fn killing_the_node_leaves_no_process_and_its_restart_brings_always_agents_back() {
    let node = Node::start();
    let prog = script(&node, "steady.sh", "echo up\nsleep 300 &\nwait");
    agent(
        &node,
        "steady",
        &prog,
        &["restart policy=always max=5 window=60s"],
    );
    wait("the agent to run", 10, || {
        status(&node, "steady", "state") == "running"
    });
    let key = cat(&node, "/agent/steady/key");
    assert!(!agent_pids(&node.addr, "steady").is_empty());
    let (dir, addr) = node.kill_keep();
    wait("no process of the agent left", 10, || {
        agent_pids(&addr, "steady").is_empty()
    });
    let node = Node::start_in(dir, Some(addr), &[]);
    wait("the agent back", 15, || {
        !agent_pids(&node.addr, "steady").is_empty()
            && status(&node, "steady", "state") == "running"
    });
    assert_eq!(cat(&node, "/agent/steady/key"), key, "the same identity");
    let trace = cat(&node, "/agent/steady/trace");
    assert!(
        trace.contains("resume"),
        "the restart is in its trace:\n{trace}"
    );
}

/// A process killed when dropped (a failed test leaves no runner behind).
struct Killed(Child);

impl Killed {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `cell0 runner` on its own, for a node that runs none.
fn runner(node: &Node, name: &str) -> Killed {
    let log = std::fs::File::create(node.dir.path().join(format!("runner-{name}.log"))).unwrap();
    Command::new(cell0_bin())
        .args(["runner", "--node", &node.addr, "--name", name, "--token"])
        .arg(node.data().join("owner.token"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map(Killed)
        .expect("cell0 runner starts")
}

#[test]
fn a_separate_runner_runs_agents_and_killing_it_leaves_no_process() {
    let node = Node::start_in(tempfile::tempdir().unwrap(), None, &["--no-runner"]);
    let prog = script(&node, "idle.sh", "sleep 300 &\nsleep 300 &\nwait");
    agent(&node, "idle", &prog, &[]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(status(&node, "idle", "state"), "pending", "no runner yet");
    let mut r = runner(&node, "host-b");
    wait("the agent to run", 10, || {
        status(&node, "idle", "state") == "running" && agent_pids(&node.addr, "idle").len() >= 3
    });
    assert_eq!(status(&node, "idle", "node"), "host-b");
    assert_eq!(status(&node, "idle", "runner"), "host-b");
    r.kill();
    wait("no process of the agent left", 10, || {
        agent_pids(&node.addr, "idle").is_empty()
    });
    // A runner of another name does not take an agent that is host-b's.
    let mut other = runner(&node, "host-c");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(agent_pids(&node.addr, "idle").is_empty());
    assert_eq!(status(&node, "idle", "runner"), "host-b");
    other.kill();
    // host-b back: it runs it again, and says so.
    let mut r = runner(&node, "host-b");
    wait("the agent back", 10, || {
        !agent_pids(&node.addr, "idle").is_empty()
    });
    assert!(cat(&node, "/agent/idle/trace").contains("resume"));
    // The node restarts under the runner: the runner attaches again and
    // goes on acting on the tree.
    let (dir, addr) = node.kill_keep();
    let node = Node::start_in(dir, Some(addr), &["--no-runner"]);
    assert!(!agent_pids(&node.addr, "idle").is_empty());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut stopped = false;
    wait("the stop to be taken", 10, || {
        stopped = stopped || try_write(&node, "/agent/idle/ctl", "stop").is_ok();
        stopped
    });
    wait(
        "the runner to stop the agent after the node's restart",
        15,
        || agent_pids(&node.addr, "idle").is_empty(),
    );
    wait("state stopped", 10, || {
        status(&node, "idle", "state") == "stopped"
    });
    r.kill();
}

#[test]
fn killing_a_parent_ends_the_processes_of_its_sub_agents() {
    let node = Node::start();
    let prog = script(&node, "sleeper.sh", "sleep 300 &\nwait");
    agent(&node, "parent", &prog, &["intent r /chan"]);
    write(&node, "/agent/parent/ctl", "spawn child r /chan");
    write(
        &node,
        "/agent/child/ctl",
        &format!("exec {}", prog.display()),
    );
    write(&node, "/agent/child/ctl", "start");
    write(&node, "/agent/child/ctl", "spawn grandchild none");
    write(
        &node,
        "/agent/grandchild/ctl",
        &format!("exec {}", prog.display()),
    );
    write(&node, "/agent/grandchild/ctl", "start");
    wait("three agents running", 10, || {
        ["parent", "child", "grandchild"]
            .iter()
            .all(|a| agent_pids(&node.addr, a).len() >= 2)
    });
    write(&node, "/agent/parent/ctl", "kill");
    wait("no process of the tree left", 10, || {
        ["parent", "child", "grandchild"]
            .iter()
            .all(|a| agent_pids(&node.addr, a).is_empty())
    });
    for a in ["parent", "child", "grandchild"] {
        wait("stopped", 10, || status(&node, a, "state") == "stopped");
        assert_eq!(status(&node, a, "want"), "killed");
    }
}

#[test]
fn processes_an_agent_leaves_behind_end_with_it() {
    let node = Node::start();
    // The program starts two sleepers in the background, one of them in
    // a session of its own, and exits at once.
    let prog = script(
        &node,
        "leaver.sh",
        "sleep 300 &\nsetsid sleep 300 &\necho left\nexit 0",
    );
    agent(&node, "leaver", &prog, &[]);
    wait("its exit", 10, || {
        status(&node, "leaver", "state") == "exited"
    });
    wait("no process of it left", 10, || {
        agent_pids(&node.addr, "leaver").is_empty()
    });
    assert_eq!(status(&node, "leaver", "last-exit"), "code=0");
}

#[test]
fn the_example_of_two_agents_wired_by_a_channel_runs() {
    let node = Node::start();
    let m = cell0_tests::Mount::on(&node, "");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/agents.sh");
    let out = m.sh(&format!("{script} ."));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("done: job 1"), "{stdout}");
    assert!(stdout.contains("== greedy: halted-drift"), "{stdout}");
    assert!(stdout.contains("drift write /chan/jobs/data"), "{stdout}");
    // It cleans up after itself, processes included.
    assert!(!m.path().join("agent/producer").exists());
    assert!(!m.path().join("chan/jobs").exists());
    wait("no process of the example left", 10, || {
        ["producer", "consumer", "greedy"]
            .iter()
            .all(|a| agent_pids(&node.addr, a).is_empty())
    });
}

/// The processes whose command line mentions `text`.
fn processes_mentioning(text: &str) -> Vec<u32> {
    cell0_tests::pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains(text))
        })
        .collect()
}

#[test]
fn an_agent_does_not_see_the_hosts_mount_of_the_tree_nor_pin_it() {
    let node = Node::start();
    let m = cell0_tests::Mount::on(&node, "");
    let host_mount = m.path().to_path_buf();
    assert!(host_mount.join("status").exists());
    let prog = script(
        &node,
        "peek.sh",
        &format!(
            "echo \"host mount: $(ls -A {0} | wc -l) entries\"\n\
             cat {0}/status >/dev/null 2>&1 || echo 'host status: unreadable'\n\
             echo \"own mount: $(ls $CELL0_MOUNT)\"\n\
             sleep 300",
            host_mount.display()
        ),
    );
    agent(&node, "peek", &prog, &["intent r /chan"]);
    let mut log = String::new();
    wait("the agent's view", 10, || {
        log = cat(&node, "/agent/peek/log");
        log.contains("own mount:")
    });
    assert!(log.contains("host mount: 0 entries"), "{log}");
    assert!(log.contains("host status: unreadable"), "{log}");
    assert!(log.contains("own mount: chan"), "{log}");
    // The host can unmount while the agent runs: the mount's server ends.
    let shown = host_mount.display().to_string();
    drop(m);
    wait("the host mount's server to end", 10, || {
        processes_mentioning(&shown).is_empty()
    });
    assert!(!agent_pids(&node.addr, "peek").is_empty());
}

#[test]
fn an_agent_cannot_read_the_nodes_key_or_the_owners_token() {
    let node = Node::start();
    let data = std::fs::canonicalize(node.data()).unwrap();
    assert!(data.join("owner.token").exists() && data.join("node.key").exists());
    let prog = script(
        &node,
        "thief.sh",
        &format!(
            "echo \"data: $(ls -A {0} 2>&1 | wc -l) entries\"\n\
             cat {0}/owner.token >/dev/null 2>&1 || echo 'token: unreadable'\n\
             cat {0}/node.key >/dev/null 2>&1 || echo 'key: unreadable'\n\
             echo done",
            data.display()
        ),
    );
    agent(&node, "thief", &prog, &["intent r /chan"]);
    let mut log = String::new();
    wait("the agent to finish", 10, || {
        log = cat(&node, "/agent/thief/log");
        log.contains("done")
    });
    assert!(log.contains("token: unreadable"), "{log}");
    assert!(log.contains("key: unreadable"), "{log}");
    assert!(!log.contains("c0."), "{log}");
    // The host's copy is untouched.
    assert!(data.join("owner.token").exists());
}
