//! The tree through a real FUSE mount, driven by shell tools only: the
//! conformance suite (tests/src/conformance.rs, which the kernel's tests
//! run too) against a hosted node, plus what only a hosted node shows.

use cell0_tests::conformance;
use cell0_tests::{Mount, Node, sh_ok};

#[test]
fn shell_tools_use_the_tree() {
    let node = Node::start();
    let m = Mount::with_token(&node.addr, Some(&node.owner_token()));
    let d = m.path();
    // A fresh hosted node holds exactly these, and no channel yet.
    assert_eq!(
        sh_ok(d, "ls").split_whitespace().collect::<Vec<_>>(),
        conformance::ROOT_NAMES
    );
    assert_eq!(
        sh_ok(d, "awk '$1==\"channels\"{print $2}' status").trim(),
        "0"
    );
    conformance::tree(d);
    conformance::channel_round_trip(d);
    assert_eq!(sh_ok(d, "ls chan"), "graph\n", "only /chan/graph is left");
}

#[test]
fn proof_boot_says_a_hosted_node_has_no_boot_proof() {
    let node = Node::start();
    let m = Mount::with_token(&node.addr, Some(&node.owner_token()));
    assert_eq!(
        conformance::proof_boot(m.path()),
        cellfs::proof::NO_BOOT_PROOF
    );
}

#[test]
fn a_blocking_cat_receives_lines_written_by_another_process() {
    let node = Node::start();
    let m = Mount::with_token(&node.addr, Some(&node.owner_token()));
    conformance::blocking_read(m.path());
}

#[test]
fn a_bad_ctl_write_fails_changes_nothing_and_says_why_on_events() {
    let node = Node::start();
    let m = Mount::with_token(&node.addr, Some(&node.owner_token()));
    conformance::bad_ctl(m.path());
}

#[test]
fn the_whole_suite_runs_on_one_node() {
    // As the kernel's test runs it: every check, one after another.
    let node = Node::start();
    conformance::fuse_suite(&node.addr, Some(&node.owner_token()));
}
