//! Agents across a swarm of real `cell0 serve` processes (agent(3)
//! PLACEMENT): five nodes, each running its own runner; agents that post
//! heartbeats to a channel are spread over the nodes; a node killed with
//! SIGKILL has its agents started elsewhere under the same key with a
//! `moved` block in their trace; a node cut off from the others stops
//! its agents when its lease ends, before they start elsewhere; `move`,
//! `drain` and `undrain`, and `place` constraints, through FUSE and shell
//! tools. Every heartbeat carries its run's id and a timestamp: no two
//! runs of one agent ever overlap.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cell0_tests::Mount;
use cell0_tests::cluster::{Cluster, cat, field, wait};

/// `cell0 ARGS` against node `i` with the cluster's token.
fn cell0(c: &Cluster, i: usize, args: &[&str]) -> Result<String, String> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--addr", &c.node(i).addr, "--token", &c.token]);
    let (ok, out, err) = cell0_tests::run_cell0(&all);
    if ok { Ok(out) } else { Err(err) }
}

/// A field of agent `name`'s status, as node `i` has it.
fn agent_field(c: &Cluster, i: usize, name: &str, key: &str) -> Option<String> {
    let s = cat(
        c.nodes[i].as_ref()?,
        &c.token,
        &format!("/agent/{name}/status"),
    )?;
    field(&s, key)
}

/// The node agent `name` is placed on, as node `i` has it.
fn placed(c: &Cluster, i: usize, name: &str) -> Option<usize> {
    agent_field(c, i, name, "placed")?.parse().ok()
}

/// Whether agent `name` runs, as node `i` has it.
fn running(c: &Cluster, i: usize, name: &str) -> bool {
    agent_field(c, i, name, "state").as_deref() == Some("running")
}

/// The script every agent runs: a heartbeat every 100 ms, with its run's
/// id (the time it started, in ns) and the time.
const BEAT: &str = "#!/bin/sh\nrun=$(date +%s%N)\nwhile :; do echo \"$CELL0_AGENT $run $(date +%s%N)\" > /cell0/chan/beats/data; sleep 0.1; done\n";

/// Make agent `name` running the heartbeat script with ctl `lines`.
fn beating(c: &Cluster, name: &str, script: &std::path::Path, lines: &[&str]) {
    cell0(c, 0, &["mkdir", &format!("/agent/{name}")]).unwrap();
    let ctl = format!("/agent/{name}/ctl");
    let mut all = vec![
        format!("exec {}", script.display()),
        "intent w /chan/beats".to_string(),
    ];
    all.extend(lines.iter().map(|l| l.to_string()));
    all.push("start".to_string());
    for l in all {
        cell0(c, 0, &["write", &ctl, &l]).unwrap_or_else(|e| panic!("{ctl} {l}: {e}"));
    }
}

/// A process in the background, killed when dropped (so that a failed
/// test leaves nothing holding its mount).
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cat WHAT` into a file, in the background, in mount `m`.
fn follow(m: &Mount, what: &str, into: &std::path::Path) -> Bg {
    Bg(Command::new("bash")
        .arg("-c")
        .arg(format!("exec cat {what} > {}", into.display()))
        .current_dir(m.path())
        .stdin(Stdio::null())
        .spawn()
        .unwrap())
}

/// Every heartbeat read so far: agent → run id → (first, last) time.
fn runs(beats: &std::path::Path) -> BTreeMap<String, BTreeMap<u128, (u128, u128)>> {
    let text = std::fs::read_to_string(beats).unwrap_or_default();
    let mut out: BTreeMap<String, BTreeMap<u128, (u128, u128)>> = BTreeMap::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let [name, run, at] = w[..] else {
            continue;
        };
        let (Ok(run), Ok(at)) = (run.parse::<u128>(), at.parse::<u128>()) else {
            continue;
        };
        let e = out
            .entry(name.to_string())
            .or_default()
            .entry(run)
            .or_insert((at, at));
        e.0 = e.0.min(at);
        e.1 = e.1.max(at);
    }
    out
}

/// No two runs of one agent beat at overlapping times.
fn assert_no_two_copies(beats: &std::path::Path) -> usize {
    let mut checked = 0;
    for (name, r) in runs(beats) {
        let mut spans: Vec<(u128, u128)> = r.values().copied().collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 < pair[1].0,
                "two copies of {name} ran at once: one beat from {} to {}, another from {} (ns)",
                pair[0].0,
                pair[0].1,
                pair[1].0
            );
        }
        checked += spans.len();
    }
    checked
}

/// The `--id` of the `cell0 serve` process above `pid` (its node), if
/// any.
fn node_of(pid: u32) -> Option<u32> {
    let mut p = pid;
    for _ in 0..64 {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        let ppid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()?;
        let cmd = std::fs::read(format!("/proc/{ppid}/cmdline")).ok()?;
        let words: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        if words.iter().any(|w| *w == b"serve") {
            let id = words.iter().skip_while(|w| **w != b"--id").nth(1)?;
            return String::from_utf8_lossy(id).parse().ok();
        }
        p = ppid;
    }
    None
}

/// For each agent, its runs now, and the node each runs under: the
/// heartbeat scripts are found by the `CELL0_AGENT` in their environment
/// (as root, /proc shows them all), and a run is its pid namespace (each
/// run has its own; a script's subshells share it).
fn copies_where() -> BTreeMap<String, BTreeMap<PathBuf, Option<u32>>> {
    let mut seen: BTreeMap<String, BTreeMap<PathBuf, Option<u32>>> = BTreeMap::new();
    for pid in cell0_tests::pids() {
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmd).contains("beat.sh") {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) else {
            continue;
        };
        if let Some(name) = env
            .split(|&b| b == 0)
            .find_map(|v| v.strip_prefix(b"CELL0_AGENT="))
        {
            seen.entry(String::from_utf8_lossy(name).into_owned())
                .or_default()
                .entry(ns)
                .or_insert_with(|| node_of(pid));
        }
    }
    seen
}

/// Count copies every 20 ms until `stop`; the most of any agent seen at
/// once, and when.
fn watch_copies(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<BTreeMap<String, usize>> {
    std::thread::spawn(move || {
        let mut most: BTreeMap<String, usize> = BTreeMap::new();
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            for (name, runs) in copies_where() {
                let m = most.entry(name.clone()).or_default();
                if runs.len() > 1 {
                    eprintln!(
                        "{:?}: {} runs of {name}, under node processes {:?}",
                        start.elapsed(),
                        runs.len(),
                        runs.values().collect::<Vec<_>>()
                    );
                }
                *m = (*m).max(runs.len());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        most
    })
}

/// The agents node `i` has placed on node `node`.
fn on_node(c: &Cluster, i: usize, names: &[String], node: usize) -> Vec<String> {
    names
        .iter()
        .filter(|n| placed(c, i, n) == Some(node))
        .cloned()
        .collect()
}

#[test]
fn agents_spread_fail_over_move_and_drain_and_never_run_twice() {
    let mut c = Cluster::start_swarm(5, 3);
    wait("five members alive with three voters", 30, || {
        cat(c.node(0), &c.token, "/swarm/status").is_some_and(|s| {
            field(&s, "alive").as_deref() == Some("5")
                && field(&s, "voters").is_some_and(|v| v.split(',').count() == 3)
        })
    });
    let token = PathBuf::from(&c.token);
    let m = Mount::with_token(&c.node(0).addr, Some(&token));
    m.sh_ok("mkdir chan/beats");
    let scratch = tempfile::tempdir().unwrap();
    let beats = scratch.path().join("beats.txt");
    let events = scratch.path().join("events.txt");
    let reader = follow(&m, "chan/beats/data", &beats);
    let tail = follow(&m, "events", &events);
    std::thread::sleep(Duration::from_millis(300));
    let script = scratch.path().join("beat.sh");
    std::fs::write(&script, BEAT).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_copies(stop.clone());
    let test_start = Instant::now();

    // Ten agents, spread: every node runs two.
    let names: Vec<String> = (0..10).map(|i| format!("b{i}")).collect();
    for n in &names {
        beating(&c, n, &script, &["restart policy=always"]);
    }
    wait("ten agents running", 60, || {
        names.iter().all(|n| running(&c, 0, n))
    });
    for node in 1..=5 {
        let here = on_node(&c, 0, &names, node);
        assert_eq!(here.len(), 2, "node {node} runs {here:?}");
        let s = cat(c.node(0), &c.token, &format!("/swarm/nodes/{node}/status")).unwrap();
        assert_eq!(field(&s, "placed").as_deref(), Some("2"), "{s}");
    }
    // Every node's status says the same (it is committed).
    for i in 0..5 {
        assert_eq!(placed(&c, i, "b3"), placed(&c, 0, "b3"));
    }
    let keys: BTreeMap<String, String> = names
        .iter()
        .map(|n| (n.clone(), m.sh_ok(&format!("cat agent/{n}/key"))))
        .collect();

    eprintln!(
        "stage at {:?}: SIGKILL a node that runs agent",
        test_start.elapsed()
    );
    // SIGKILL a node that runs agents and does not lead: they run again
    // elsewhere, same key, with a trace block.
    let leader = c.leader_seen_by(0).unwrap();
    let victim = (1..5).find(|&i| i != leader).unwrap();
    let victim_id = victim + 1;
    let moved = on_node(&c, 0, &names, victim_id);
    assert_eq!(moved.len(), 2);
    let killed_at = Instant::now();
    let (_dir, _addr) = c.nodes[victim].take().unwrap().kill_keep();
    let took = wait("the killed node's agents running elsewhere", 30, || {
        moved
            .iter()
            .all(|n| running(&c, 0, n) && placed(&c, 0, n).is_some_and(|p| p != victim_id))
    });
    eprintln!(
        "failover: {:?} after the kill ({:?} waited)",
        killed_at.elapsed(),
        took
    );
    for n in &moved {
        let trace = m.sh_ok(&format!("cat agent/{n}/trace"));
        assert!(
            trace.contains(&format!("from={victim_id} "))
                && (trace.contains("reason=node-dead") || trace.contains("reason=lease-lost")),
            "{n}: {trace}"
        );
        assert_eq!(agent_field(&c, 0, n, "epoch").as_deref(), Some("2"));
        assert_eq!(m.sh_ok(&format!("cat agent/{n}/key")), keys[n]);
    }
    let node_status = m.sh_ok(&format!("cat swarm/nodes/{victim_id}/status"));
    assert!(
        node_status.contains("fenced node-dead") || node_status.contains("fenced lease-lost"),
        "{node_status}"
    );

    eprintln!("stage at {:?}: Cut a node off", test_start.elapsed());
    // Cut a node off (alive, but unreachable): its runner stops its
    // agents when its lease ends, and only then do they start elsewhere.
    let leader = c.leader_seen_by(0).unwrap();
    let cut = (1..5)
        .find(|&i| i != leader && c.nodes[i].is_some())
        .unwrap();
    let cut_id = cut + 1;
    let stranded = on_node(&c, 0, &names, cut_id);
    assert!(!stranded.is_empty(), "node {cut_id} runs no agent");
    c.cut(cut);
    wait("the cut-off node's agents running elsewhere", 30, || {
        stranded
            .iter()
            .all(|n| running(&c, 0, n) && placed(&c, 0, n).is_some_and(|p| p != cut_id))
    });
    // The cut-off node's own view: its lease is gone.
    let own = cat(c.node(cut), &c.token, "/swarm/status");
    if let Some(own) = own {
        assert_eq!(field(&own, "lease").as_deref(), Some("0ms"), "{own}");
    }
    let log = c.node(cut).log();
    eprintln!(
        "node {cut_id} said: {}",
        log.lines()
            .filter(|l| l.contains("lease") || l.contains("runner"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    c.mend(cut);
    wait("the cut-off node let back", 30, || {
        cat(
            c.node(0),
            &c.token,
            &format!("/swarm/nodes/{cut_id}/status"),
        )
        .is_some_and(|s| field(&s, "fenced").as_deref() == Some("no"))
    });

    eprintln!(
        "stage at {:?}: move: stopped where it is",
        test_start.elapsed()
    );
    // move: stopped where it is, started there.
    let a = &names[0];
    let from = placed(&c, 0, a).unwrap();
    let to = (1..=5).find(|&n| n != from && n != victim_id).unwrap();
    m.sh_ok(&format!("echo 'move node={to}' > agent/{a}/ctl"));
    wait(&format!("{a} running on node {to}"), 30, || {
        placed(&c, 0, a) == Some(to) && running(&c, 0, a)
    });
    assert!(
        m.sh_ok(&format!("cat agent/{a}/trace"))
            .contains(&format!("from={from} to={to} reason=move")),
    );
    // A move to a node that is gone is refused, with the reason on /events.
    let out = m.sh(&format!("echo 'move node={victim_id}' > agent/{a}/ctl"));
    assert!(!out.status.success());
    assert!(
        !m.sh(&format!("echo 'move node=99' > agent/{a}/ctl"))
            .status
            .success()
    );

    eprintln!(
        "stage at {:?}: drain: every agent leaves",
        test_start.elapsed()
    );
    // drain: every agent leaves the node and none comes back until undrain.
    let drained = (1..=5)
        .find(|&n| n != victim_id && !on_node(&c, 0, &names, n).is_empty())
        .unwrap();
    m.sh_ok(&format!("echo drain > swarm/nodes/{drained}/ctl"));
    wait(&format!("node {drained} drained of agents"), 30, || {
        on_node(&c, 0, &names, drained).is_empty() && names.iter().all(|n| running(&c, 0, n))
    });
    let s = m.sh_ok(&format!("cat swarm/nodes/{drained}/status"));
    assert!(
        s.contains("drained yes\n") && s.contains("placed 0\n"),
        "{s}"
    );
    m.sh_ok(&format!("echo undrain > swarm/nodes/{drained}/ctl"));

    eprintln!("stage at {:?}: Constraints: a label", test_start.elapsed());
    // Constraints: a label, and one no node has (pending, with a reason).
    m.sh_ok(&format!("echo 'label zone=eu' > swarm/nodes/{drained}/ctl"));
    assert!(
        m.sh_ok(&format!("cat swarm/nodes/{drained}/status"))
            .contains("labels zone=eu\n")
    );
    beating(&c, "eu", &script, &["place label=zone=eu"]);
    beating(&c, "gpu", &script, &["place label=gpu=yes"]);
    wait("the eu agent running on the labelled node", 30, || {
        running(&c, 0, "eu") && placed(&c, 0, "eu") == Some(drained)
    });
    let s = m.sh_ok("cat agent/gpu/status");
    assert!(s.contains("state pending\n"), "{s}");
    assert!(
        s.contains("no node can take it (place label=gpu=yes)"),
        "{s}"
    );
    assert!(s.contains("placed -\n"), "{s}");

    // A sub-agent tree spans nodes, and stopping the parent stops the
    // child where it runs.
    let (pn, cn) = (
        placed(&c, 0, "eu").unwrap(),
        placed(&c, 0, &names[1]).unwrap(),
    );
    let cn = if cn == pn {
        (1..=5).find(|&n| n != pn && n != victim_id).unwrap()
    } else {
        cn
    };
    beating(&c, "parent", &script, &[&format!("place node={pn}")]);
    m.sh_ok("echo 'spawn child w /chan/beats' > agent/parent/ctl");
    for l in [
        format!("exec {}", script.display()),
        format!("place node={cn}"),
        "start".to_string(),
    ] {
        m.sh_ok(&format!("echo '{l}' > agent/child/ctl"));
    }
    wait("parent and child running on their nodes", 30, || {
        running(&c, 0, "parent")
            && running(&c, 0, "child")
            && placed(&c, 0, "parent") == Some(pn)
            && placed(&c, 0, "child") == Some(cn)
    });
    assert_eq!(m.sh_ok("cat agent/parent/children").trim(), "child");
    m.sh_ok("echo stop > agent/parent/ctl");
    wait(
        "the child stopped with its parent, its process gone",
        30,
        || {
            agent_field(&c, 0, "child", "state").as_deref() == Some("stopped")
                && !copies_where().contains_key("child")
                && !copies_where().contains_key("parent")
        },
    );

    // Events tell each placement, move and failover.
    std::thread::sleep(Duration::from_millis(500));
    let ev = std::fs::read_to_string(&events).unwrap_or_default();
    for want in [
        "place agent b0: placed node=",
        &format!("swarm fence node={victim_id}"),
        "reason=move epoch=",
        "reason=drain epoch=",
        "place agent gpu: pending reason=",
    ] {
        assert!(ev.contains(want), "no {want:?} on /events:\n{ev}");
    }

    // Never two copies of one agent, over the whole run.
    for n in names.iter().chain([&"eu".to_string()]) {
        m.sh_ok(&format!("echo kill > agent/{n}/ctl"));
    }
    m.sh_ok("echo kill > agent/gpu/ctl");
    std::thread::sleep(Duration::from_millis(500));
    drop(reader);
    drop(tail);
    let seen = runs(&beats);
    for n in &names {
        assert!(seen.contains_key(n), "no heartbeat of {n}");
    }
    for n in &moved {
        assert!(seen[n].len() >= 2, "{n} ran once only: {:?}", seen[n]);
    }
    let checked = assert_no_two_copies(&beats);
    eprintln!("{checked} runs checked, none overlapping");
    stop.store(true, Ordering::Relaxed);
    let most = watcher.join().unwrap();
    assert!(
        most.contains_key("b0"),
        "the watcher saw no agent: {most:?}"
    );
    for (name, n) in &most {
        assert!(*n <= 1, "{n} copies of agent {name} ran at once: {most:?}");
    }
}
