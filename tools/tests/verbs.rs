//! `cell0 ls|cat|stat|mkdir|rm|write` against a hosted node: what they
//! print, and that a refusal prints the node's own message and exits
//! non-zero.

use cell0_tests::Node;
use cell0_tests::cell0_bin;

fn ok(node: &Node, args: &[&str]) -> String {
    let (success, out, err) = node.cell0(args);
    assert!(success, "cell0 {args:?} failed:\n{err}");
    out
}

fn refused(node: &Node, args: &[&str], stdin: &[u8]) -> String {
    let (success, out, err) = node.cell0_in(args, stdin);
    assert!(!success, "cell0 {args:?} should fail; printed {out}");
    err
}

fn value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
        .to_string()
}

#[test]
fn verbs_list_create_write_read_and_remove() {
    let node = Node::start();
    let root = ok(&node, &["ls", "/"]);
    let mut names: Vec<&str> = root.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "agent/", "cap/", "chan/", "ctl", "events", "proof/", "raft/", "status", "swarm/"
        ]
    );
    assert!(ok(&node, &["cat", "/status"]).starts_with("node "));

    ok(&node, &["mkdir", "/chan/v"]);
    assert_eq!(ok(&node, &["ls", "/chan"]), "graph\nv/\n");
    assert_eq!(ok(&node, &["ls", "/chan/v/status"]), "status\n");

    ok(&node, &["write", "/chan/v/data", "hello"]);
    let (success, _, err) = node.cell0_in(&["write", "/chan/v/data"], b"from stdin");
    assert!(success, "{err}");
    let st = ok(&node, &["cat", "/chan/v/status"]);
    assert_eq!(value(&st, "retained"), "2");
    // "hello\n" (a newline added, like echo) and "from stdin" as read.
    assert_eq!(value(&st, "bytes"), "16");

    let stat = ok(&node, &["stat", "/chan/v"]);
    assert_eq!(value(&stat, "name"), "v");
    assert_eq!(value(&stat, "type"), "directory");
    for key in ["mode", "length", "qid", "mtime", "uid"] {
        value(&stat, key);
    }
    assert_eq!(value(&ok(&node, &["stat", "/chan/v/data"]), "type"), "file");

    ok(&node, &["rm", "/chan/v"]);
    assert_eq!(ok(&node, &["ls", "/chan"]), "graph\n");
}

#[test]
fn refusals_print_the_nodes_message_and_exit_non_zero() {
    let node = Node::start();
    ok(&node, &["mkdir", "/chan/a"]);
    let before = ok(&node, &["cat", "/chan/a/status"]);

    let err = refused(&node, &["write", "/chan/a/ctl", "qoss"], b"");
    assert!(err.contains("/chan/a/ctl"), "{err}");
    assert!(err.contains("unknown verb \"qoss\""), "{err}");
    assert_eq!(
        ok(&node, &["cat", "/chan/a/status"]),
        before,
        "nothing changed"
    );

    let err = refused(&node, &["mkdir", "/chan/a"], b"");
    assert!(err.contains("exists"), "{err}");
    let err = refused(&node, &["rm", "/chan/nope"], b"");
    assert!(err.contains("nope"), "{err}");
    let err = refused(&node, &["cat", "/no/such/file"], b"");
    assert!(err.contains("/no/such/file"), "{err}");
    let err = refused(&node, &["write", "/status", "x"], b"");
    assert!(err.contains("/status"), "{err}");
    let err = refused(&node, &["cat", "/chan"], b"");
    assert!(err.contains("directory"), "{err}");
}

#[test]
fn a_dead_address_is_named_in_the_error() {
    let out = std::process::Command::new(cell0_bin())
        .args(["ls", "/", "--addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("127.0.0.1:1"), "{err}");
}
