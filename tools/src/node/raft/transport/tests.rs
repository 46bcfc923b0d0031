//! The transport's tests: real sockets on loopback between nodes, and
//! peers that misbehave on purpose.

use super::*;
use std::io::{Read, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use tokio::runtime::Runtime;

fn key(id: u64) -> NodeKey {
    NodeKey::from_seed(&[id as u8; 32])
}

fn rt() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

type Rx = Receiver<(u64, Vec<u8>)>;

/// Start node `id` on a fresh port with an empty directory.
fn node(rt: &Runtime, id: u64, addr: &str) -> (Transport, Directory, Rx) {
    let dir = Directory::default();
    let (tx, rx) = channel();
    let deliver: Deliver = Arc::new(move |from, f| {
        let _ = tx.send((from, f));
    });
    let t = Transport::start(rt.handle(), addr, id, key(id), dir.clone(), deliver).unwrap();
    (t, dir, rx)
}

fn peer(t: &Transport) -> Peer {
    Peer {
        addr: t.local_addr().to_string(),
        key: key(t.id()).public(),
    }
}

/// Give every node a directory of all of them.
fn mesh(nodes: &[(&Transport, &Directory)]) {
    let all: BTreeMap<u64, Peer> = nodes.iter().map(|(t, _)| (t.id(), peer(t))).collect();
    for (_, d) in nodes {
        d.set(all.clone());
    }
}

fn recv(rx: &Rx) -> (u64, Vec<u8>) {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a frame in time")
}

fn nothing(rx: &Rx, wait: Duration) {
    match rx.recv_timeout(wait) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("expected nothing, got {other:?}"),
    }
}

fn frame(i: u32) -> Vec<u8> {
    let mut f = i.to_le_bytes().to_vec();
    f.resize(4 + (i as usize % 300), i as u8);
    f
}

#[test]
fn two_nodes_exchange_in_order() {
    let rt = rt();
    let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
    let (b, db, rb) = node(&rt, 2, "127.0.0.1:0");
    mesh(&[(&a, &da), (&b, &db)]);
    for i in 0..200 {
        a.send(2, frame(i));
        b.send(1, frame(i + 1000));
    }
    for i in 0..200 {
        assert_eq!(recv(&rb), (1, frame(i)));
        assert_eq!(recv(&ra), (2, frame(i + 1000)));
    }
    let s = a.stats();
    assert!(s[&2].connected);
    assert_eq!(s[&2].sent, 200);
    assert_eq!(s[&2].dropped, 0);
    // An empty frame and a large one travel too.
    a.send(2, Vec::new());
    a.send(2, vec![7u8; 3 << 20]);
    assert_eq!(recv(&rb), (1, Vec::new()));
    assert_eq!(recv(&rb), (1, vec![7u8; 3 << 20]));
}

#[test]
fn three_nodes_all_pairs() {
    let rt = rt();
    let nodes: Vec<_> = (1..=3).map(|id| node(&rt, id, "127.0.0.1:0")).collect();
    mesh(&nodes.iter().map(|(t, d, _)| (t, d)).collect::<Vec<_>>());
    // Send from plain threads, as the Raft driver will.
    std::thread::scope(|sc| {
        for (t, _, _) in &nodes {
            sc.spawn(move || {
                for i in 0..100 {
                    for to in 1..=3 {
                        if to != t.id() {
                            t.send(to, frame(i));
                        }
                    }
                }
            });
        }
    });
    for (t, _, rx) in &nodes {
        let mut next: BTreeMap<u64, u32> = BTreeMap::new();
        for _ in 0..200 {
            let (from, f) = recv(rx);
            assert_ne!(from, t.id());
            let i = next.entry(from).or_default();
            assert_eq!(f, frame(*i), "node {} from {from}", t.id());
            *i += 1;
        }
        nothing(rx, Duration::from_millis(100));
    }
}

#[test]
fn wrong_key_refused_both_ways() {
    let rt = rt();
    let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
    let (b, db, rb) = node(&rt, 2, "127.0.0.1:0");
    mesh(&[(&a, &da), (&b, &db)]);
    // A believes node 2 has another key.
    da.insert(
        2,
        Peer {
            addr: b.local_addr().to_string(),
            key: key(99).public(),
        },
    );
    for i in 0..5 {
        a.send(2, frame(i));
        b.send(1, frame(i));
    }
    nothing(&ra, Duration::from_millis(500));
    nothing(&rb, Duration::from_millis(10));
    let sa = a.stats();
    assert!(!sa[&2].connected);
    assert!(
        sa[&2]
            .last_error
            .as_deref()
            .unwrap()
            .contains("key other than"),
        "{sa:?}"
    );
    let sb = b.stats();
    assert!(!sb[&1].connected);
    assert!(sb[&1].last_error.is_some(), "{sb:?}");
    assert_eq!(sa[&2].sent + sb[&1].sent, 0);
}

#[test]
fn unknown_id_refused() {
    let rt = rt();
    let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
    let (c, dc, _rc) = node(&rt, 3, "127.0.0.1:0");
    // C knows A; A does not know C.
    da.set([(1, peer(&a))].into());
    dc.set([(1, peer(&a)), (3, peer(&c))].into());
    c.send(1, frame(1));
    nothing(&ra, Duration::from_millis(500));
    assert!(!c.stats()[&1].connected);
    // A cannot send to C either.
    a.send(3, frame(1));
    assert_eq!(a.stats()[&3].dropped, 1);
    // Once A learns C, frames flow.
    da.insert(3, peer(&c));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        c.send(1, frame(2));
        if let Ok(got) = ra.recv_timeout(Duration::from_millis(100)) {
            // The frame queued while refused is kept and comes first.
            assert_eq!(got, (3, frame(1)));
            break;
        }
        assert!(Instant::now() < deadline, "never connected");
    }
}

#[test]
fn reconnects_after_restart() {
    let rt = rt();
    let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
    let (b, db, rb) = node(&rt, 2, "127.0.0.1:0");
    mesh(&[(&a, &da), (&b, &db)]);
    a.send(2, frame(0));
    assert_eq!(recv(&rb), (1, frame(0)));
    let addr = b.local_addr();
    drop(b);
    drop(rb);
    // Frames sent while B is down are lost or queued, never blocking.
    for i in 0..10 {
        a.send(2, frame(i));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(!a.stats()[&2].connected);
    // B comes back on the same address (the old listener closes
    // asynchronously, so retry the bind).
    let deadline = Instant::now() + Duration::from_secs(5);
    let (b, db, rb) = loop {
        let dir = Directory::default();
        let (tx, rx) = channel();
        let deliver: Deliver = Arc::new(move |from, f| {
            let _ = tx.send((from, f));
        });
        match Transport::start(rt.handle(), addr, 2, key(2), dir.clone(), deliver) {
            Ok(t) => break (t, dir, rx),
            Err(e) => assert!(Instant::now() < deadline, "rebinding: {e:#}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    mesh(&[(&a, &da), (&b, &db)]);
    // Drain whatever was queued; then later frames arrive in order.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        a.send(2, b"ping".to_vec());
        if let Ok((1, f)) = rb.recv_timeout(Duration::from_millis(100))
            && f == b"ping"
        {
            break;
        }
        assert!(Instant::now() < deadline, "never reconnected");
    }
    for i in 100..120 {
        a.send(2, frame(i));
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let (from, f) = recv(&rb);
        assert_eq!(from, 1);
        if f != b"ping" {
            got.push(f);
        }
    }
    assert_eq!(got, (100..120).map(frame).collect::<Vec<_>>());
    assert!(a.stats()[&2].connected);
    // And B can reach A.
    b.send(1, frame(5));
    assert_eq!(recv(&ra), (2, frame(5)));
}

#[test]
fn full_queue_drops_without_blocking() {
    let rt = rt();
    let (a, da, _ra) = node(&rt, 1, "127.0.0.1:0");
    // Node 2's address refuses connections.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    da.set(
        [
            (1, peer(&a)),
            (
                2,
                Peer {
                    addr: dead_addr,
                    key: key(2).public(),
                },
            ),
        ]
        .into(),
    );
    let t0 = Instant::now();
    for i in 0..2000 {
        a.send(2, frame(i));
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
    let s = &a.stats()[&2];
    assert_eq!(s.dropped, 2000 - MAX_QUEUE_FRAMES as u64);
    assert_eq!(s.sent, 0);
    // Too-large frames are dropped at once.
    a.send(2, vec![0; MAX_FRAME + 1]);
    assert_eq!(a.stats()[&2].dropped, 2001 - MAX_QUEUE_FRAMES as u64);
    std::thread::sleep(Duration::from_millis(200));
    assert!(a.stats()[&2].last_error.is_some());
}

/// Read until the server closes; panics if it does not within 5 s.
fn closed_by_server(s: &mut std::net::TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

#[test]
fn garbage_hello_closes_connection() {
    let rt = rt();
    let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
    da.set([(1, peer(&a)), (2, peer_of(2, "127.0.0.1:1"))].into());
    let mut s = std::net::TcpStream::connect(a.local_addr()).unwrap();
    s.write_all(&[b'x'; HELLO_LEN + 64]).unwrap();
    closed_by_server(&mut s);
    // A short hello then EOF.
    let mut s = std::net::TcpStream::connect(a.local_addr()).unwrap();
    s.write_all(b"cell0").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    closed_by_server(&mut s);
    nothing(&ra, Duration::from_millis(100));
}

fn peer_of(id: u64, addr: &str) -> Peer {
    Peer {
        addr: addr.into(),
        key: key(id).public(),
    }
}

#[test]
fn oversized_frame_closes_connection() {
    let rt = rt();
    let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
    // Node 2 is played by hand; its own directory lists A.
    da.set([(1, peer(&a)), (2, peer_of(2, "127.0.0.1:1"))].into());
    let d2 = Directory::new([(1, peer(&a))].into());
    rt.block_on(async {
        let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
        let id = handshake(2, &key(2), &d2, &mut s, Role::Dialer, Some(1))
            .await
            .unwrap();
        assert_eq!(id, 1);
        write_frame(&mut s, b"ok").await.unwrap();
        s.write_all(&((MAX_FRAME + 1) as u32).to_le_bytes())
            .await
            .unwrap();
        s.write_all(b"more").await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0);
    });
    assert_eq!(recv(&ra), (2, b"ok".to_vec()));
    nothing(&ra, Duration::from_millis(100));
    // A handshake with a signature from the wrong key is refused too.
    let d9 = Directory::new([(1, peer(&a))].into());
    rt.block_on(async {
        let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
        // Claim id 2 but sign with key 9: A's directory check on the
        // hello (key 9 is not node 2's) fails first.
        let r = handshake(2, &key(9), &d9, &mut s, Role::Dialer, Some(1)).await;
        assert!(r.is_err());
    });
    nothing(&ra, Duration::from_millis(100));
}

#[test]
fn forged_signature_refused() {
    let rt = rt();
    let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
    da.set([(1, peer(&a)), (2, peer_of(2, "127.0.0.1:1"))].into());
    rt.block_on(async {
        let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
        // A hello with node 2's public key, but a signature it cannot make.
        let mut hello = MAGIC.to_vec();
        hello.extend_from_slice(&2u64.to_le_bytes());
        hello.extend_from_slice(&key(2).public());
        hello.extend_from_slice(&[0; 32]);
        s.write_all(&hello).await.unwrap();
        let mut theirs = [0u8; HELLO_LEN];
        s.read_exact(&mut theirs).await.unwrap();
        // The listener may already have hung up on the bad signature.
        let _ = s.write_all(&key(9).sign(b"whatever")).await;
        let _ = write_frame(&mut s, b"forged").await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "the listener must not send its signature");
    });
    nothing(&ra, Duration::from_millis(200));
}
