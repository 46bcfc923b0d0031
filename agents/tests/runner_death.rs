//! When the runner dies (SIGKILL, no chance to clean up), no process of
//! its agents may remain.
//!
//! The test runs this test binary again as the runner ("helper_process",
//! which does nothing in a normal run), has it start an agent whose
//! script starts background sleepers, kills it with SIGKILL, and looks in
//! /proc for any process left with the agent's marker.
//!
//! With a pid namespace this must hold: the agent is pid 1 of its
//! namespace and has PR_SET_PDEATHSIG(SIGKILL), so the runner's death
//! kills it and the kernel kills the rest of its namespace. Without one
//! (not root, or namespaces forbidden) it cannot: nothing is left to kill
//! the cgroup or the process group. The isolation says so
//! (`contained() == false`), and that is what the test checks then.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use cell0_agents::{Supervisor, What};
use common::{SHORT, Watch, gone, kill_leftovers, marker, sh, wait_procs};

const HELPER_ENV: &str = "CELL0_AGENTS_TEST_HELPER_MARKER";

/// The runner, when run by the test below (and nothing otherwise): it
/// starts the agent, says `ready` and its run's cgroups, and waits to be
/// killed (it gives up after a minute, so it never lingers).
#[test]
fn helper_process() {
    let Ok(m) = std::env::var(HELPER_ENV) else {
        return;
    };
    let (s, rx) = Supervisor::new().unwrap();
    let mut w = Watch::new(rx);
    s.start("victim", sh("sleep $1 & sleep $1 & wait", &m))
        .unwrap();
    w.until(
        "victim",
        SHORT,
        |w| matches!(w, What::State(st) if st.word() == "running"),
    );
    wait_procs(&m, 3, SHORT);
    let st = s.status("victim").unwrap();
    let dirs: Vec<String> = st.cgroups.iter().map(|d| d.display().to_string()).collect();
    println!(
        "ready contained={} cgroups={}",
        st.isolation.unwrap().contained(),
        dirs.join(",")
    );
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn no_process_of_an_agent_outlives_its_runner() {
    let m = marker();
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, &m)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    let mut out = BufReader::new(helper.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        // The harness may have printed the test's name on the same line.
        if let Some(at) = line.find("ready ") {
            ready = line[at..].to_string();
            break;
        }
    }
    assert!(!ready.is_empty(), "the helper never got its agent running");
    assert!(!common::procs_with(&m).is_empty());

    // SAFETY: kill takes integers; this is our own child.
    unsafe { libc::kill(helper.id() as i32, libc::SIGKILL) };
    helper.wait().unwrap();

    eprintln!("helper: {}", ready.trim());
    let contained = ready.contains("contained=true");
    let left = gone(&m, Duration::from_secs(3));
    kill_leftovers(&m);
    if contained {
        left.expect("processes of the agent outlived its runner");
    } else {
        // No pid namespace here: the isolation said the agent's processes
        // can outlive the runner, and they may have. Nothing to assert
        // beyond that the runner said so.
        eprintln!("no pid namespace here: agents are not contained ({ready})");
    }

    // The dead runner's cgroups are swept by the next runner.
    let cgroups: Vec<&str> = ready
        .trim()
        .split_once("cgroups=")
        .map(|(_, c)| c.split(',').filter(|c| !c.is_empty()).collect())
        .unwrap_or_default();
    drop(Supervisor::new().unwrap());
    for dir in cgroups {
        assert!(!std::path::Path::new(dir).exists(), "{dir} was left behind");
    }
}
