//! A client that has not attached is a stranger, and costs the node little
//! (issue 19; cellfs(4) LIMITS): its frames are held to 64 KiB, and it is
//! closed 10 s after it connected if it has not attached by then. A client
//! that attached may stay idle as long as it likes.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cell0_tests::{Node, Raw, rss_kib};
use ninep::Dialect;

/// Whether the peer closed `s` (end of file or a reset) within `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn strangers_cannot_make_the_node_hold_their_frames() {
    let node = Node::start();
    let before = rss_kib(node.pid());
    // 200 connections each declare a frame of 900 KiB and send it.
    let declared: u32 = 900 * 1024;
    let body = vec![0u8; declared as usize - 4];
    let mut conns: Vec<TcpStream> = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&node.addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        // The node may close it before all is sent: that is the point.
        let _ = s.write_all(&declared.to_le_bytes());
        let _ = s.write_all(&body);
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss_kib(node.pid()).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "200 strangers' frames grew the node by {grown} KiB"
    );
    for s in &mut conns {
        assert!(
            closed_within(s, Duration::from_secs(2)),
            "a stranger's oversized frame did not close its connection"
        );
    }
    assert!(node.log().contains("closing connection"), "{}", node.log());
}

#[test]
fn a_stranger_is_closed_after_ten_seconds_and_a_client_is_not() {
    let node = Node::start();
    let t0 = Instant::now();
    // One sends half a Tversion and stalls; one attaches and idles.
    let mut stalled = TcpStream::connect(&node.addr).unwrap();
    stalled.write_all(&[19, 0, 0, 0, 100]).unwrap();
    let mut client = Raw::attached(&node.addr, Dialect::L, &node.aname());
    assert!(
        closed_within(&mut stalled, Duration::from_secs(20)),
        "a stalled stranger was never closed"
    );
    let after = t0.elapsed();
    assert!(
        after >= Duration::from_secs(9),
        "the stranger was closed after {after:?}, before its 10 s"
    );
    // The client that attached is still served.
    let r = client.cat("status");
    assert!(r.starts_with("Rread"), "{r}");
}
