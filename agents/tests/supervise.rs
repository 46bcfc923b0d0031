//! The supervisor with real processes: /bin/sh scripts as agents.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cell0_agents::{
    Error, ExitStatus, Options, Restart, RestartPolicy, Spec, SpecError, StartError, State,
    Supervisor, What,
};
use common::{SHORT, Watch, gone, kill_leftovers, marker, procs_with, sh, wait_procs};

fn supervisor() -> (Supervisor, Watch) {
    let (s, rx) = Supervisor::new().expect("a supervisor");
    (s, Watch::new(rx))
}

fn policy(restart: Restart, max: u32) -> RestartPolicy {
    RestartPolicy {
        restart,
        max,
        window: Duration::from_secs(60),
    }
}

/// A file of its own in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, content: &[u8], mode: u32) -> TempFile {
        let path = std::env::temp_dir().join(format!("cell0-agents-{}-{tag}", std::process::id()));
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn the_log_holds_what_the_agent_prints_and_is_bounded() {
    let (s, mut w) = supervisor();
    s.start("small", sh("echo out; echo err >&2", "")).unwrap();
    w.state("small", "exited", SHORT);
    let log = String::from_utf8(s.log("small").unwrap()).unwrap();
    assert!(log.contains("out\n") && log.contains("err\n"), "{log:?}");

    let mut spec = sh(
        "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done",
        "",
    );
    spec.log_bytes = 4096;
    s.start("chatty", spec).unwrap();
    w.state("chatty", "exited", SHORT);
    let log = String::from_utf8(s.log("chatty").unwrap()).unwrap();
    assert!(log.len() <= 4096, "{} bytes", log.len());
    assert!(log.starts_with("line "), "{:?}", &log[..40]);
    assert!(
        log.ends_with("line 2999\n"),
        "{:?} {:?}",
        &log[log.len() - 40..],
        s.status("chatty").unwrap().last_exit
    );

    // A cursor reads on from where it was, and says what it missed.
    let chunk = s.read_log("chatty", 0).unwrap();
    assert!(chunk.skipped > 0);
    assert_eq!(chunk.data, log.as_bytes());
    assert!(s.read_log("chatty", chunk.next).unwrap().data.is_empty());
}

#[test]
fn on_failure_restarts_quickly_then_gives_up_in_crashloop() {
    let (s, mut w) = supervisor();
    let mut spec = sh(
        "echo starting; echo \"bad thing $1\" >&2; echo last words >&2; exit 1",
        "x",
    );
    spec.restart = policy(Restart::OnFailure, 3);
    s.start("flaky", spec).unwrap();

    let mut exits = Vec::new();
    let mut first_restart = None;
    loop {
        let (t, what) = w.until("flaky", SHORT, |w| {
            matches!(
                w,
                What::Exit(_) | What::State(State::Running { .. } | State::Crashloop)
            )
        });
        match what {
            What::Exit(e) => exits.push((t, e)),
            What::State(State::Running { .. }) if exits.len() == 1 && first_restart.is_none() => {
                first_restart = Some(t.duration_since(exits[0].0));
            }
            What::State(State::Crashloop) => break,
            _ => {}
        }
    }
    // Started once, restarted max=3 times: four exits, the last one not
    // restarted.
    assert_eq!(exits.len(), 4, "{exits:#?}");
    for (i, (_, e)) in exits.iter().enumerate() {
        assert_eq!(e.status, ExitStatus::Code(1));
        assert_eq!(e.stderr, vec!["bad thing x", "last words"]);
        assert!(!e.asked);
        assert_eq!(e.restarting, i < 3, "exit {i}");
    }
    let first = first_restart.expect("a restart");
    assert!(
        first < Duration::from_secs(1),
        "first restart after {first:?}"
    );

    let st = s.status("flaky").unwrap();
    assert_eq!(st.state, State::Crashloop);
    assert_eq!(st.restarts, 3);
    // Crash loop is final: nothing more happens until started again.
    assert!(
        w.for_a_while("flaky", Duration::from_millis(300))
            .is_empty()
    );
    // Starting again gives it a fresh budget.
    s.start("flaky", sh("exit 0", "")).unwrap();
    w.state("flaky", "exited", SHORT);
    assert_eq!(s.status("flaky").unwrap().restarts, 0);
}

#[test]
fn never_runs_once_and_always_restarts_even_after_success() {
    let (s, mut w) = supervisor();
    let mut once = sh("exit 2", "");
    once.restart = policy(Restart::Never, 5);
    s.start("once", once).unwrap();
    let (_, what) = w.until("once", SHORT, |w| matches!(w, What::Exit(_)));
    let What::Exit(e) = what else { unreachable!() };
    assert_eq!(e.status, ExitStatus::Code(2));
    assert!(!e.restarting);
    w.state("once", "exited", SHORT);

    let mut again = sh("exit 0", "");
    again.restart = policy(Restart::Always, 2);
    s.start("again", again).unwrap();
    w.state("again", "crashloop", SHORT);
    let exits = w
        .seen
        .iter()
        .filter(|(_, e)| e.agent == "again" && matches!(e.what, What::Exit(_)))
        .count();
    assert_eq!(exits, 3);

    // `never` stayed exited all along: one run only.
    let later = w.for_a_while("once", Duration::from_millis(300));
    assert!(later.is_empty(), "{later:?}");
    let runs = w
        .seen
        .iter()
        .filter(|(_, e)| e.agent == "once" && matches!(e.what, What::State(State::Running { .. })))
        .count();
    assert_eq!(runs, 1);
    assert_eq!(s.status("once").unwrap().state, State::Exited);
}

#[test]
fn stop_leaves_no_process_of_the_agent() {
    let (s, mut w) = supervisor();
    let m = marker();
    s.start("bg", sh("sleep $1 & sleep $1 & wait", &m)).unwrap();
    w.state("bg", "running", SHORT);
    wait_procs(&m, 3, SHORT);
    let t = Instant::now();
    s.stop("bg").unwrap();
    w.state("bg", "stopping", SHORT);
    w.state("bg", "stopped", SHORT);
    // The children took TERM, so the script's wait ended: no grace
    // period was waited for.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let r = gone(&m, Duration::from_secs(2));
    kill_leftovers(&m);
    r.expect("no process of the agent after stop");
    let last = s.status("bg").unwrap().last_exit.unwrap();
    assert!(last.asked);
    assert!(!last.restarting);
}

#[test]
fn stop_kills_after_the_grace_period_what_ignores_term() {
    let (s, mut w) = supervisor();
    let m = marker();
    let mut spec = sh("trap '' TERM; sleep $1 & sleep $1 & wait", &m);
    spec.grace = Duration::from_millis(300);
    spec.restart = policy(Restart::Always, 5);
    s.start("stubborn", spec).unwrap();
    w.state("stubborn", "running", SHORT);
    wait_procs(&m, 3, SHORT);
    let t = Instant::now();
    s.stop("stubborn").unwrap();
    w.state("stubborn", "stopped", SHORT);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300), "stopped after {took:?}");
    let r = gone(&m, Duration::from_secs(2));
    kill_leftovers(&m);
    r.expect("no process of the agent after stop");
    let last = s.status("stubborn").unwrap().last_exit.unwrap();
    assert_eq!(last.status, ExitStatus::Signal(libc::SIGKILL));
    // Stopped as asked: its policy does not restart it.
    assert!(!last.restarting);
}

#[test]
fn kill_is_at_once() {
    let (s, mut w) = supervisor();
    let m = marker();
    let mut spec = sh("trap '' TERM; sleep $1 & wait", &m);
    spec.grace = Duration::from_secs(60);
    s.start("k", spec).unwrap();
    w.state("k", "running", SHORT);
    wait_procs(&m, 2, SHORT);
    let t = Instant::now();
    s.kill("k").unwrap();
    w.state("k", "stopped", SHORT);
    assert!(t.elapsed() < Duration::from_secs(2));
    let r = gone(&m, Duration::from_secs(2));
    kill_leftovers(&m);
    r.expect("no process of the agent after kill");
}

#[test]
fn an_agent_that_ends_takes_its_children_with_it() {
    let (s, mut w) = supervisor();
    let m = marker();
    s.start("leaver", sh("sleep $1 & sleep $1 & sleep 0.2; exit 3", &m))
        .unwrap();
    w.state("leaver", "exited", SHORT);
    let r = gone(&m, Duration::from_secs(2));
    kill_leftovers(&m);
    r.expect("no child outlives the agent");
}

#[test]
fn programs_that_cannot_run_fail_clearly_and_are_not_restarted() {
    let (s, mut w) = supervisor();
    let text = TempFile::new("text", b"just words\n", 0o644);
    let garbage = TempFile::new("garbage", b"just words, no #! line\n", 0o755);
    // Each case: the agent, its spec, the error expected, its message.
    type Case<'a> = (&'a str, Spec, &'a dyn Fn(&StartError) -> bool, String);
    let cases: Vec<Case> = vec![
        (
            "missing",
            Spec::new("/nonexistent/agent-program"),
            &|e| matches!(e, StartError::NotFound { .. }),
            "/nonexistent/agent-program does not exist".to_string(),
        ),
        (
            "relative",
            Spec::new("bin/worker"),
            &|e| matches!(e, StartError::Spec(SpecError::RelativeProgram(_))),
            "\"bin/worker\" is not an absolute path".to_string(),
        ),
        (
            "plainfile",
            Spec::new(&text.0),
            &|e| matches!(e, StartError::NotExecutable { mode: 0o644, .. }),
            format!("{} is not executable (mode 0644)", text.0.display()),
        ),
        (
            "directory",
            Spec::new("/tmp"),
            &|e| matches!(e, StartError::NotAFile { .. }),
            "/tmp is not a file".to_string(),
        ),
        (
            "garbage",
            Spec::new(&garbage.0),
            &|e| matches!(e, StartError::Exec { errno, .. } if *errno == libc::ENOEXEC),
            format!("cannot run {}", garbage.0.display()),
        ),
    ];
    for (name, mut spec, is, message) in cases {
        spec.restart = policy(Restart::Always, 5);
        s.start(name, spec).unwrap();
        let (_, state) = w.state(name, "failed", SHORT);
        let State::Failed(e) = state else {
            unreachable!()
        };
        assert!(is(&e), "{name}: {e:?}");
        assert!(e.to_string().contains(&message), "{name}: {e}");
    }
    for name in ["missing", "relative", "plainfile", "directory", "garbage"] {
        let later = w.for_a_while(name, Duration::from_millis(50));
        assert!(later.is_empty(), "{name} went on: {later:?}");
        assert!(matches!(s.status(name).unwrap().state, State::Failed(_)));
    }
}

#[test]
fn the_environment_is_only_what_is_given() {
    let (s, mut w) = supervisor();
    s.start("env", Spec::new("/usr/bin/env").env("FOO", "bar"))
        .unwrap();
    w.state("env", "exited", SHORT);
    let log = String::from_utf8(s.log("env").unwrap()).unwrap();
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "FOO=bar",
            "HOME=/",
            &format!("PATH={}", cell0_agents::DEFAULT_PATH)
        ]
    );
}

/// The network interfaces listed in a /proc/net/dev text.
fn interfaces(text: &str) -> Vec<String> {
    // Only the interface lines have a colon (`  eth0: 123 …`).
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(i, _)| i.trim().to_string())
        .collect()
}

#[test]
fn namespaces_isolate_pids_mounts_and_network() {
    let (s, mut w) = supervisor();
    let script = "echo pid=$$; cat /proc/net/dev";
    s.start("boxed", sh(script, "")).unwrap();
    let mut open = sh(script, "");
    open.network = true;
    s.start("open", open).unwrap();
    w.state("boxed", "exited", SHORT);
    w.state("open", "exited", SHORT);
    let boxed = String::from_utf8(s.log("boxed").unwrap()).unwrap();
    let open = String::from_utf8(s.log("open").unwrap()).unwrap();
    let iso = s.status("boxed").unwrap().isolation.unwrap();
    let open_iso = s.status("open").unwrap().isolation.unwrap();
    if !s.isolation().pid_namespace {
        // Not root, or namespaces forbidden: the isolation says so.
        assert!(!iso.contained());
        assert!(
            iso.notes.iter().any(|n| n.contains("no namespaces")),
            "{iso:?}"
        );
        return;
    }
    assert!(iso.pid_namespace && iso.mount_namespace && iso.network_namespace);
    assert!(iso.contained());
    assert!(!open_iso.network_namespace);
    // pid 1 of its own namespace, and its /proc is that namespace's.
    assert!(boxed.starts_with("pid=1\n"), "{boxed}");
    assert_eq!(interfaces(&boxed), vec!["lo"]);
    let host = interfaces(&fs::read_to_string("/proc/net/dev").unwrap());
    let mut seen = interfaces(&open);
    seen.sort();
    let mut host_sorted = host.clone();
    host_sorted.sort();
    assert_eq!(
        seen, host_sorted,
        "an agent allowed the network sees the host's"
    );
}

#[test]
fn a_namespaced_agent_is_root_only_in_its_own_user_namespace() {
    let (s, mut w) = supervisor();
    if !s.isolation().user_namespace {
        assert!(!s.isolation().confined());
        return;
    }
    // A file only the host's root may write, in a directory anyone may
    // enter.
    let dir = std::env::temp_dir().join(format!("cell0-userns-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.join("root-only");
    fs::write(&file, "kept\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let m = marker();
    let script = "echo uid=$(id -u); cat /proc/self/uid_map; \
        (echo changed >> \"$1\") 2>/dev/null && echo wrote || echo refused; \
        hostname inside-agent && echo host=$(hostname); sleep 30 $2";
    let file_arg = file.display().to_string();
    let spec = cell0_agents::Spec::new("/bin/sh").args(["-c", script, "agent", &file_arg, &m]);
    s.start("userns", spec).unwrap();
    let pid = w.state("userns", "running", SHORT).1.pid().unwrap();
    let end = Instant::now() + SHORT;
    let log = loop {
        let log = String::from_utf8(s.log("userns").unwrap()).unwrap();
        if log.contains("host=") || Instant::now() > end {
            break log;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Seen from the host, it is an unprivileged id of its own.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let iso = s.status("userns").unwrap().isolation.unwrap();
    s.kill("userns").unwrap();
    w.state("userns", "stopped", SHORT);
    kill_leftovers(&m);
    let uid = iso.uid.expect("a run in a user namespace has a host uid");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == uid.to_string()),
        "{uid_line} (wanted {uid})"
    );
    // SAFETY: geteuid takes nothing and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert!(uid >= cell0_agents::DEFAULT_UID_BASE, "{uid}");
        // None of the root runner's groups (the host's root group).
        let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
        assert_eq!(groups.split_whitespace().count(), 1, "{groups}");
    }
    assert!(log.contains("uid=0\n"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["0", &uid.to_string(), "1"]),
        "{log}"
    );
    assert!(log.contains("refused\n"), "{log}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "kept\n");
    let _ = fs::remove_dir_all(&dir);
    // Its host name is its own.
    assert!(log.contains("host=inside-agent"), "{log}");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name
    );
}

/// The value of the first of `files` that exists in one of `dirs`.
fn cgroup_value(dirs: &[PathBuf], files: &[&str]) -> Option<String> {
    dirs.iter()
        .flat_map(|d| files.iter().map(move |f| d.join(f)))
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|v| v.trim().to_string())
}

#[test]
fn limits_are_written_to_the_agents_cgroup() {
    let (s, mut w) = supervisor();
    let m = marker();
    let mut spec = sh("sleep $1", &m);
    spec.limits.memory_bytes = Some(64 << 20);
    spec.limits.pids = Some(32);
    spec.limits.cpu_percent = Some(50);
    s.start("limited", spec).unwrap();
    let (_, state) = w.state("limited", "running", SHORT);
    let pid = state.pid().unwrap();
    let st = s.status("limited").unwrap();
    let iso = st.isolation.clone().unwrap();
    if !iso.cgroup {
        // No cgroups on this host: the isolation must say so, and why.
        assert!(!iso.memory_limit && !iso.pids_limit && !iso.cpu_limit);
        assert!(iso.notes.iter().any(|n| n.contains("cgroup")), "{iso:?}");
        s.kill("limited").unwrap();
        w.state("limited", "stopped", SHORT);
        return;
    }
    assert!(!st.cgroups.is_empty());
    // The process is in every one of its cgroups.
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for dir in &st.cgroups {
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(own.contains(name), "{own} lacks {name}");
    }
    if iso.memory_limit {
        assert_eq!(
            cgroup_value(&st.cgroups, &["memory.max", "memory.limit_in_bytes"]).as_deref(),
            Some("67108864")
        );
    } else {
        assert!(iso.notes.iter().any(|n| n.contains("memory")), "{iso:?}");
    }
    if iso.pids_limit {
        assert_eq!(
            cgroup_value(&st.cgroups, &["pids.max"]).as_deref(),
            Some("32")
        );
    } else {
        assert!(iso.notes.iter().any(|n| n.contains("pids")), "{iso:?}");
    }
    if iso.cpu_limit {
        let cpu = cgroup_value(&st.cgroups, &["cpu.max", "cpu.cfs_quota_us"]).unwrap();
        assert!(cpu == "50000 100000" || cpu == "50000", "{cpu}");
    } else {
        assert!(iso.notes.iter().any(|n| n.contains("cpu")), "{iso:?}");
    }
    s.stop("limited").unwrap();
    w.state("limited", "stopped", SHORT);
    // The cgroups go with the process.
    let end = Instant::now() + SHORT;
    while st.cgroups.iter().any(|d| d.exists()) {
        assert!(Instant::now() < end, "{:?} still there", st.cgroups);
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_leftovers(&m);
}

/// Start `spec`'s agent `name`, running a script that first prints its
/// own /proc/self/cgroup (read by the shell itself, a builtin: no other
/// process has run), then sleeps. Returns its status and those lines.
fn cgroups_at_start(
    s: &Supervisor,
    w: &mut Watch,
    name: &str,
    limits: cell0_agents::Limits,
) -> (cell0_agents::Status, Vec<String>, String) {
    let m = marker();
    let mut spec = sh(
        "while read -r l; do echo \"$l\"; done < /proc/self/cgroup; echo END; sleep $1",
        &m,
    );
    spec.limits = limits;
    s.start(name, spec).unwrap();
    let pid = match w.state(name, "running", SHORT).1 {
        State::Running { pid } => pid,
        other => panic!("{other:?}"),
    };
    let st = s.status(name).unwrap();
    let end = Instant::now() + SHORT;
    let log = loop {
        let log = String::from_utf8(s.log(name).unwrap()).unwrap();
        if log.contains("END\n") {
            break log;
        }
        assert!(Instant::now() < end, "{log:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    let inside: Vec<String> = log
        .lines()
        .take_while(|l| *l != "END")
        .map(String::from)
        .collect();
    // With a cgroup namespace of its own, the program sees the cgroups
    // it started in as the roots of its view (nothing above them); where
    // they are is the host's view of its process.
    let iso = st.isolation.clone().unwrap();
    let lines = if iso.user_namespace {
        for l in &inside {
            assert!(l.ends_with(":/"), "sees a cgroup above its own: {inside:?}");
        }
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    } else {
        inside
    };
    (st, lines, m)
}

/// Whether `dir` is a cgroup v2 directory (only v2 has this file).
fn is_v2(dir: &std::path::Path) -> bool {
    dir.join("cgroup.controllers").exists()
}

/// Whether one of `lines` (of /proc/PID/cgroup) names `dir`: its path,
/// relative to its hierarchy's root, ends `dir`.
fn names(lines: &[String], dir: &std::path::Path, v2: bool) -> bool {
    lines.iter().any(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        (ctl.is_empty() == v2) && path.len() > 1 && dir.to_string_lossy().ends_with(path)
    })
}

#[test]
fn a_run_without_limits_is_made_in_its_v2_cgroup_and_no_other() {
    let (s, mut w) = supervisor();
    let (st, lines, m) = cgroups_at_start(&s, &mut w, "nolimits", Default::default());
    let iso = st.isolation.clone().unwrap();
    // Read before the kill, which removes the cgroups.
    let v2 = st.cgroups.iter().find(|d| is_v2(d)).cloned();
    s.kill("nolimits").unwrap();
    w.state("nolimits", "stopped", SHORT);
    kill_leftovers(&m);
    if !iso.cgroup {
        return;
    }
    match &v2 {
        // A v2 cgroup tracks its processes: no v1 one is made (joining
        // one is a slow migration), and the program starts in it.
        Some(v2) => {
            assert_eq!(st.cgroups, std::slice::from_ref(v2));
            assert!(names(&lines, v2, true), "{lines:?} lack {v2:?}");
        }
        // Only v1: one cgroup, in the first hierarchy, tracks them.
        None => {
            assert_eq!(st.cgroups.len(), 1, "{:?}", st.cgroups);
            assert!(names(&lines, &st.cgroups[0], false), "{lines:?}");
        }
    }
}

#[test]
fn a_run_with_a_memory_limit_starts_under_it() {
    let (s, mut w) = supervisor();
    let limits = cell0_agents::Limits {
        memory_bytes: Some(64 << 20),
        ..Default::default()
    };
    let (st, lines, m) = cgroups_at_start(&s, &mut w, "memlimit", limits);
    let iso = st.isolation.clone().unwrap();
    // Read before the kill, which removes the cgroups.
    let memory = cgroup_value(&st.cgroups, &["memory.max", "memory.limit_in_bytes"]);
    let v1_dirs: Vec<(PathBuf, bool)> = st
        .cgroups
        .iter()
        .filter(|d| !is_v2(d))
        .map(|d| (d.clone(), d.join("memory.limit_in_bytes").exists()))
        .collect();
    let v2_dirs: Vec<PathBuf> = st.cgroups.iter().filter(|d| is_v2(d)).cloned().collect();
    s.kill("memlimit").unwrap();
    w.state("memlimit", "stopped", SHORT);
    kill_leftovers(&m);
    if !iso.cgroup || !iso.memory_limit {
        assert!(iso.notes.iter().any(|n| n.contains("memory")), "{iso:?}");
        return;
    }
    assert_eq!(memory.as_deref(), Some("67108864"));
    // In each of its cgroups before it ran, the one with the limit too.
    for dir in &v2_dirs {
        assert!(names(&lines, dir, true), "{lines:?} lack {dir:?}");
    }
    for (dir, _) in &v1_dirs {
        assert!(names(&lines, dir, false), "{lines:?} lack {dir:?}");
    }
    // No v1 cgroup but the memory one (no other limit is set).
    assert!(v1_dirs.iter().all(|(_, memory)| *memory), "{v1_dirs:?}");
    assert_eq!(v1_dirs.len() + v2_dirs.len(), st.cgroups.len());
}

#[test]
fn without_namespaces_the_cgroup_still_kills_everything() {
    let (s, rx) = Supervisor::with_options(Options {
        namespaces: false,
        ..Options::default()
    })
    .unwrap();
    let mut w = Watch::new(rx);
    let iso = s.isolation().clone();
    assert!(!iso.pid_namespace && !iso.contained());
    assert!(
        iso.notes
            .iter()
            .any(|n| n.contains("outlive a runner that dies")),
        "{iso:?}"
    );
    let m = marker();
    // One child leaves the process group (setsid): only a cgroup finds it.
    let escape = if iso.cgroup { "setsid sleep $1 & " } else { "" };
    s.start("nons", sh(&format!("{escape}sleep $1 & wait"), &m))
        .unwrap();
    w.state("nons", "running", SHORT);
    wait_procs(&m, if iso.cgroup { 3 } else { 2 }, SHORT);
    s.stop("nons").unwrap();
    w.state("nons", "stopped", SHORT);
    let r = gone(&m, Duration::from_secs(2));
    kill_leftovers(&m);
    r.expect("no process of the agent after stop");
}

#[test]
fn without_namespaces_or_cgroups_the_process_group_is_stopped() {
    let (s, rx) = Supervisor::with_options(Options {
        namespaces: false,
        cgroups: false,
        ..Options::default()
    })
    .unwrap();
    let mut w = Watch::new(rx);
    let iso = s.isolation().clone();
    assert!(!iso.cgroup && !iso.contained());
    assert!(
        iso.notes
            .iter()
            .any(|n| n.contains("leave its process group")),
        "{iso:?}"
    );
    let m = marker();
    let mut spec = sh("sleep $1 & sleep $1 & wait", &m);
    spec.limits.pids = Some(10);
    s.start("plain", spec).unwrap();
    let (_, st) = w.state("plain", "running", SHORT);
    let run_iso = s.status("plain").unwrap().isolation.unwrap();
    assert!(!run_iso.pids_limit);
    assert!(
        run_iso
            .notes
            .iter()
            .any(|n| n.contains("limits not enforced")),
        "{run_iso:?}"
    );
    wait_procs(&m, 3, SHORT);
    assert!(st.pid().is_some());
    s.stop("plain").unwrap();
    w.state("plain", "stopped", SHORT);
    let r = gone(&m, Duration::from_secs(2));
    kill_leftovers(&m);
    r.expect("no process of the agent after stop");
}

#[test]
fn remove_waits_for_the_process_to_end() {
    let (s, mut w) = supervisor();
    let m = marker();
    s.start("r", sh("sleep $1", &m)).unwrap();
    w.state("r", "running", SHORT);
    assert!(matches!(s.remove("r"), Err(Error::Busy { .. })));
    assert_eq!(s.names(), vec!["r"]);
    s.kill("r").unwrap();
    w.state("r", "stopped", SHORT);
    s.remove("r").unwrap();
    assert!(s.names().is_empty());
    assert_eq!(s.stop("r"), Err(Error::NoSuchAgent("r".to_string())));
    assert!(matches!(
        s.start("a/b", sh("true", "")),
        Err(Error::BadName(_))
    ));
    kill_leftovers(&m);
}

#[test]
fn dropping_the_supervisor_kills_every_agent() {
    let m = marker();
    {
        let (s, mut w) = supervisor();
        s.start("one", sh("sleep $1 & wait", &m)).unwrap();
        s.start("two", sh("sleep $1", &m)).unwrap();
        w.state("one", "running", SHORT);
        w.state("two", "running", SHORT);
        wait_procs(&m, 3, SHORT);
    }
    let r = gone(&m, Duration::from_secs(2));
    kill_leftovers(&m);
    r.expect("no agent outlives its supervisor");
}

#[test]
fn a_stopped_agent_started_again_runs_again() {
    let (s, mut w) = supervisor();
    let m = marker();
    let mut spec = sh("trap 'exit 0' TERM; sleep $1 & wait", &m);
    spec.grace = Duration::from_secs(30);
    s.start("again", spec.clone()).unwrap();
    let (_, first) = w.state("again", "running", SHORT);
    // Once the script is set up (its trap set, its child started): a
    // shell that is still starting can lose a signal in its own races.
    wait_procs(&m, 2, SHORT);
    s.stop("again").unwrap();
    w.state("again", "stopping", SHORT);
    // Started again before the first process has ended: it runs once that
    // one is gone.
    s.start("again", spec).unwrap();
    let (_, second) = w.state("again", "running", SHORT);
    assert_ne!(first.pid(), second.pid());
    assert!(procs_with(&m).len() <= 2);
    s.kill("again").unwrap();
    w.state("again", "stopped", SHORT);
    let r = gone(&m, Duration::from_secs(2));
    kill_leftovers(&m);
    r.unwrap();
}

#[test]
fn stop_ends_at_once_an_agent_deaf_to_term_once_it_is_alone() {
    let (s, mut w) = supervisor();
    let m = marker();
    // `sleep` handles no signal: as pid 1 of a namespace, TERM never
    // reaches it, yet stop must not wait out the grace period.
    let mut spec = sh("exec sleep $1", &m);
    spec.grace = Duration::from_secs(30);
    s.start("deaf", spec).unwrap();
    w.state("deaf", "running", SHORT);
    wait_procs(&m, 1, SHORT);
    let t = Instant::now();
    s.stop("deaf").unwrap();
    w.state("deaf", "stopped", SHORT);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let status = s.status("deaf").unwrap().last_exit.unwrap().status;
    let expected = if s.isolation().pid_namespace {
        libc::SIGKILL
    } else {
        libc::SIGTERM
    };
    assert_eq!(status, ExitStatus::Signal(expected));
    let r = gone(&m, Duration::from_secs(2));
    kill_leftovers(&m);
    r.unwrap();
}
