//! `/proof/chain` and `/proof/head` of a real hosted node, exported with
//! `cell0 cat` and checked offline with `cell0 proof verify`; a changed
//! byte anywhere in either file fails and names an entry.

use std::path::Path;
use std::process::Command;

use cell0_tests::{Node, cell0_bin};

fn ok(node: &Node, args: &[&str]) -> String {
    let (success, out, err) = node.cell0(args);
    assert!(success, "cell0 {args:?} failed:\n{err}");
    out
}

/// `cell0 proof verify CHAIN HEAD [EXTRA]`: (success, stdout, stderr).
fn verify(chain: &Path, head: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(cell0_bin())
        .args(["proof", "verify"])
        .arg(chain)
        .arg(head)
        .args(extra)
        .output()
        .expect("cell0 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Another byte at `pos`: a different hex digit for a hex digit (so the
/// file still parses), another byte otherwise.
fn flipped(text: &str, pos: usize) -> Vec<u8> {
    const HEX: &[u8] = b"0123456789abcdef";
    let mut bytes = text.as_bytes().to_vec();
    bytes[pos] = match HEX.iter().position(|&c| c == bytes[pos]) {
        Some(i) => HEX[(i + 7) % 16],
        None => bytes[pos] ^ 1,
    };
    bytes
}

#[test]
fn an_exported_chain_verifies_and_any_changed_byte_names_an_entry() {
    let node = Node::start();
    ok(&node, &["mkdir", "/chan/x"]);
    ok(&node, &["write", "/chan/x/data", "hello"]);
    ok(&node, &["write", "/chan/x/data", "world"]);

    let chain = ok(&node, &["cat", "/proof/chain"]);
    let head = ok(&node, &["cat", "/proof/head"]);
    let lines = chain.lines().count();
    assert!(lines >= 3, "{chain}");
    assert_eq!(head.lines().count(), 4, "{head}");
    // Reading again gives the same text (nothing committed in between).
    assert_eq!(ok(&node, &["cat", "/proof/chain"]), chain);
    assert_eq!(ok(&node, &["cat", "/proof/head"]), head);

    let dir = tempfile::tempdir().unwrap();
    let (chain_path, head_path) = (dir.path().join("chain"), dir.path().join("head"));
    std::fs::write(&chain_path, &chain).unwrap();
    std::fs::write(&head_path, &head).unwrap();

    let last = chain.lines().last().unwrap();
    let mut f = last.split(' ');
    let (index, _term, hash) = (f.next().unwrap(), f.next(), f.next().unwrap());
    let key = head.lines().nth(2).unwrap().strip_prefix("key ").unwrap();
    let (success, out, err) = verify(&chain_path, &head_path, &["--key", key]);
    assert!(success, "{err}");
    assert_eq!(
        out,
        format!("ok: {lines} entries, head {index} {hash} signed by {key}\n")
    );

    // Another node's key is refused.
    let other = "11".repeat(32);
    let (success, _, err) = verify(&chain_path, &head_path, &["--key", &other]);
    assert!(!success);
    assert!(err.contains("another key"), "{err}");

    // Every byte of the chain, then of the head, changed in turn.
    let bad = dir.path().join("bad");
    for pos in 0..chain.len() {
        std::fs::write(&bad, flipped(&chain, pos)).unwrap();
        let (success, out, err) = verify(&bad, &head_path, &[]);
        assert!(!success, "byte {pos} of the chain changed, yet: {out}");
        assert!(
            err.contains("line ") && err.contains("(entry "),
            "{pos}: {err}"
        );
    }
    for pos in 0..head.len() {
        std::fs::write(&bad, flipped(&head, pos)).unwrap();
        let (success, out, err) = verify(&chain_path, &bad, &[]);
        assert!(!success, "byte {pos} of the head changed, yet: {out}");
        assert!(
            err.contains(&format!("line {lines} (entry {index}): head")),
            "{pos}: {err}"
        );
    }

    // The chain grows; the old head no longer names its last entry.
    ok(&node, &["write", "/chan/x/data", "more"]);
    let grown = ok(&node, &["cat", "/proof/chain"]);
    assert!(grown.starts_with(&chain), "a chain only grows");
    std::fs::write(&bad, &grown).unwrap();
    let (success, _, err) = verify(&bad, &head_path, &[]);
    assert!(!success);
    assert!(err.contains("not the last entry's"), "{err}");
}
