//! 9P clients that this project did not write: p9fs (Python; 9P2000 and
//! 9P2000.L) and diod's diodls/diodcat (9P2000.L), against a hosted node.
//! The checks are the conformance suite's (tests/src/conformance.rs),
//! which the kernel's tests run too.

use cell0_tests::{Node, conformance};

#[test]
fn p9fs_in_9p2000() {
    let node = Node::start();
    conformance::p9fs(&node.addr, "9P2000", Some(&node.owner_token()));
}

#[test]
fn p9fs_in_9p2000_l() {
    let node = Node::start();
    conformance::p9fs(&node.addr, "9P2000.L", Some(&node.owner_token()));
}

#[test]
fn diod_clients_list_and_read() {
    let node = Node::start();
    conformance::diod_suite(&node.addr, Some(&node.owner_token()));
}

#[test]
fn every_client_runs_on_one_node() {
    // As the kernel's test runs them: one after another on one server.
    let node = Node::start();
    conformance::p9fs_suite(&node.addr, Some(&node.owner_token()));
    conformance::diod_suite(&node.addr, Some(&node.owner_token()));
}
