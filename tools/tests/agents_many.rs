//! 10,000 agents made on one node (issue 23): every one is listed in
//! `/agent`, each has its status, and agents still start and run among
//! them. Nothing is timed (`cell0 bench agents --agents 10000 --running
//! 1000` times it).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use cell0::client::{Client, Options, mode};
use cell0::identity::ClientToken;
use cell0_tests::Node;
use cell0_tests::cluster::wait;
use common::owner::{script, status};
use ninep::Dialect;

/// Agents made.
const AGENTS: usize = 10_000;
/// Of those, started (and left running).
const RUNNING: usize = 20;
/// Connections the agents are made and read over, side by side.
const CONNS: usize = 4;

/// A 9P2000.u connection to `node` as its owner.
fn owner(node: &Node) -> Client {
    let token = ClientToken::resolve(Some(Path::new(&node.owner_token())), None).unwrap();
    Client::connect_with(&node.addr, &Options::new(Dialect::U).with_token(&token)).unwrap()
}

#[test]
fn ten_thousand_agents_are_listed_each_with_its_status_and_some_run() {
    let node = Node::start();
    let prog = script(&node, "sleeper.sh", "exec sleep 600");
    let name = |i: usize| format!("m{i}");
    // Made over a few connections at once, each its share.
    std::thread::scope(|s| {
        for k in 0..CONNS {
            let (node, name) = (&node, &name);
            s.spawn(move || {
                let c = owner(node);
                for i in (k..AGENTS).step_by(CONNS) {
                    // Tcreate moves the fid to what it made.
                    let fid = c.walk_path("/agent").unwrap();
                    c.create(fid, &name(i), ninep::stat::DMDIR | 0o755, mode::OREAD)
                        .unwrap_or_else(|e| panic!("mkdir /agent/{}: {e}", name(i)));
                    c.clunk(fid).unwrap();
                }
            });
        }
    });
    let c = owner(&node);
    // A few start among them, and run.
    for i in 0..RUNNING {
        let ctl = format!("/agent/{}/ctl", name(i));
        c.write_file(&ctl, format!("exec {}\nstart\n", prog.display()).as_bytes())
            .unwrap_or_else(|e| panic!("{ctl}: {e}"));
    }
    // Every one listed, once.
    let dir = c.walk_path("/agent").unwrap();
    let listed: Vec<String> = c.list(dir).unwrap().into_iter().map(|(n, _)| n).collect();
    c.clunk(dir).unwrap();
    let set: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    let missing: Vec<String> = (0..AGENTS)
        .map(name)
        .filter(|n| !set.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} not listed: {missing:?}",
        missing.len()
    );
    assert_eq!(listed.len(), AGENTS, "/agent lists others, or some twice");
    // Every one has its status, which names it.
    std::thread::scope(|s| {
        for k in 0..CONNS {
            let (node, name) = (&node, &name);
            s.spawn(move || {
                let c = owner(node);
                for i in (k..AGENTS).step_by(CONNS) {
                    let path = format!("/agent/{}/status", name(i));
                    let text = c.read_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                    let text = String::from_utf8_lossy(&text);
                    assert!(
                        text.lines().any(|l| l.starts_with("state ")),
                        "{path}:\n{text}"
                    );
                }
            });
        }
    });
    for i in 0..RUNNING {
        wait(&format!("agent {} to run", name(i)), 60, || {
            status(&node, &name(i), "state") == "running"
        });
    }
}
