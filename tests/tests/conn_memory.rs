//! Memory a node took for connections goes back when they close (issue
//! 19): a node that held a thousand clients does not keep their buffers.

use std::time::Duration;

use cell0_tests::{Node, Raw, rss_kib};
use ninep::Dialect;

#[test]
fn memory_held_for_connections_is_returned_when_they_close() {
    let node = Node::start();
    let aname = node.aname();
    // Warm up: the node's own threads and caches.
    drop(Raw::attached(&node.addr, Dialect::L, &aname).cat("status"));
    std::thread::sleep(Duration::from_millis(500));
    let base = rss_kib(node.pid());
    let mut conns: Vec<Raw> = (0..900)
        .map(|_| Raw::attached(&node.addr, Dialect::L, &aname))
        .collect();
    for c in conns.iter_mut().step_by(3) {
        let r = c.cat("status");
        assert!(r.starts_with("Rread"), "{r}");
    }
    let held = rss_kib(node.pid());
    drop(conns);
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kib(node.pid());
    println!("RSS: {base} KiB idle, {held} KiB with 900 clients, {after} KiB 3 s after they left");
    let took = held.saturating_sub(base);
    let kept = after.saturating_sub(base);
    assert!(took > 0, "900 clients took no memory? {base} → {held} KiB");
    assert!(
        kept * 4 < took,
        "the node kept {kept} of the {took} KiB its 900 clients took"
    );
}
