//! 9P clients that this project did not write: p9fs (Python; 9P2000 and
//! 9P2000.L) and diod's diodls/diodcat (9P2000.L).

use std::path::Path;
use std::process::Command;

use cell0_tests::{Node, output_within, require_tool};

/// Run a client, failing (not hanging) if it takes more than a minute.
fn run(cmd: &mut Command) -> String {
    let out = output_within(60, cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

fn p9fs(version: &str) {
    require_tool("python3", "apt-get install python3");
    let ok = Command::new("python3")
        .args(["-c", "import p9fs"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the p9fs Python package is missing: python3 -m pip install p9fs (tests/run installs it)"
    );
    let node = Node::start();
    let (host, port) = node.addr.split_once(':').unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/p9fs_check.py");
    let out = run(Command::new("python3")
        .arg(script)
        .args([host, port, version]));
    assert!(out.contains(&format!("p9fs {version} ok")), "{out}");
}

#[test]
fn p9fs_in_9p2000() {
    p9fs("9P2000");
}

#[test]
fn p9fs_in_9p2000_l() {
    p9fs("9P2000.L");
}

#[test]
fn diod_clients_list_and_read() {
    require_tool("diodls", "apt-get install diod");
    require_tool("diodcat", "apt-get install diod");
    let node = Node::start();
    assert!(node.cell0(&["mkdir", "/chan/diod"]).0);
    assert!(node.cell0(&["write", "/chan/diod/data", "via diodcat"]).0);
    // A closed channel gives end of file once drained, so diodcat, which
    // reads to the end, stops.
    assert!(node.cell0(&["write", "/chan/diod/ctl", "close"]).0);
    let ls = run(Command::new("diodls").args(["-t", "20", "-s", &node.addr, "-a", "/", "/"]));
    for name in ["chan", "ctl", "events", "proof", "status"] {
        assert!(
            ls.lines()
                .any(|l| l.trim() == name || l.ends_with(&format!(" {name}"))),
            "diodls shows {ls}"
        );
    }
    let status =
        run(Command::new("diodcat").args(["-t", "20", "-s", &node.addr, "-a", "/", "status"]));
    assert!(status.starts_with("node "), "{status}");
    let data = run(Command::new("diodcat").args([
        "-t",
        "20",
        "-s",
        &node.addr,
        "-a",
        "/",
        "chan/diod/data",
    ]));
    assert_eq!(data, "via diodcat\n");
}
