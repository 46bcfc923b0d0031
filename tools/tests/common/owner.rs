//! The node, as its owner: `cell0` client verbs run against a test's
//! node with the owner token of its data directory, and agents made and
//! started with them (what the agent tests share).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cell0_tests::Node;
use cell0_tests::cluster::field;

/// `cell0 ARGS` on `node`; its standard output, or a panic with its error.
pub fn cell0(node: &Node, args: &[&str]) -> String {
    let (ok, out, err) = node.cell0(args);
    assert!(ok, "cell0 {args:?}: {err}");
    out
}

/// `cell0 write PATH TEXT` on `node`; panics on refusal.
pub fn write(node: &Node, path: &str, text: &str) {
    let (ok, _, err) = node.cell0(&["write", path, text]);
    assert!(ok, "write {text:?} to {path}: {err}");
}

/// `cell0 write PATH TEXT` on `node`; the error text if refused.
pub fn try_write(node: &Node, path: &str, text: &str) -> Result<(), String> {
    let (ok, _, err) = node.cell0(&["write", path, text]);
    if ok { Ok(()) } else { Err(err) }
}

/// `cell0 cat PATH` on `node`.
pub fn cat(node: &Node, path: &str) -> String {
    let (ok, out, err) = node.cell0(&["cat", path]);
    assert!(ok, "cat {path}: {err}");
    out
}

/// `cell0 mkdir PATH` on `node`.
pub fn mkdir(node: &Node, path: &str) {
    let (ok, _, err) = node.cell0(&["mkdir", path]);
    assert!(ok, "mkdir {path}: {err}");
}

/// A `key value` line of agent `name`'s status.
pub fn status(node: &Node, name: &str, key: &str) -> String {
    let text = cat(node, &format!("/agent/{name}/status"));
    field(&text, key).unwrap_or_else(|| panic!("no {key} in status:\n{text}"))
}

/// An executable shell script in the node's scratch directory (mode
/// 0700, as a temporary directory is: out of a sandbox's reach but for
/// the program's own file, which the runner hands it).
pub fn script(node: &Node, name: &str, body: &str) -> PathBuf {
    let path = node.dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Make agent `name` running `program` with ctl `lines`, and start it.
pub fn agent(node: &Node, name: &str, program: &Path, lines: &[&str]) {
    mkdir(node, &format!("/agent/{name}"));
    let ctl = format!("/agent/{name}/ctl");
    write(node, &ctl, &format!("exec {}", program.display()));
    for l in lines {
        write(node, &ctl, l);
    }
    write(node, &ctl, "start");
}
