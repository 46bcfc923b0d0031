//! The connection logic against a scripted peer: the far end of a loopback
//! socket that each test drives by hand, so that orders a real server
//! produces only by chance (answers out of order, an answer racing a
//! Tflush, a connection dropped mid-request) happen every time.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use ninep::{Body, Dialect, Msg, Qid, Qids};

use cell0::client::*;

/// The server side of one connection, driven by the test.
struct Peer {
    stream: TcpStream,
    dialect: Dialect,
}

impl Peer {
    /// The next request, as (tag, frame).
    fn recv(&mut self) -> (u16, Vec<u8>) {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).unwrap();
        let mut frame = vec![0u8; u32::from_le_bytes(size) as usize];
        frame[..4].copy_from_slice(&size);
        self.stream.read_exact(&mut frame[4..]).unwrap();
        (u16::from_le_bytes([frame[5], frame[6]]), frame)
    }

    /// The next request, decoded and handed to `check`.
    fn expect<R>(&mut self, check: impl FnOnce(u16, Body<'_>) -> R) -> R {
        let (tag, frame) = self.recv();
        let msg = ninep::decode(&frame, self.dialect).unwrap();
        check(tag, msg.body)
    }

    fn send(&mut self, tag: u16, body: Body<'_>) {
        let mut out = Vec::new();
        ninep::encode(&Msg { tag, body }, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }
}

/// A client connected to a fresh peer that has answered Tversion (with
/// `msize`) and Tattach.
fn pair(dialect: Dialect, msize: u32) -> (Client, Peer) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = std::thread::spawn(move || Client::connect(&addr, dialect));
    let (stream, _) = listener.accept().unwrap();
    let mut peer = Peer { stream, dialect };
    peer.expect(|tag, body| {
        assert_eq!(tag, ninep::NOTAG);
        assert!(matches!(body, Body::Tversion { .. }), "{body:?}");
    });
    let version = dialect.version();
    peer.send(ninep::NOTAG, Body::Rversion { msize, version });
    let tag = peer.expect(|tag, body| {
        assert!(matches!(body, Body::Tattach { fid: ROOT, .. }), "{body:?}");
        tag
    });
    peer.send(
        tag,
        Body::Rattach {
            qid: Qid::default(),
        },
    );
    (client.join().unwrap().unwrap(), peer)
}

fn read_body(fid: u32) -> Body<'static> {
    Body::Tread {
        fid,
        offset: 0,
        count: 100,
    }
}

#[test]
fn answers_out_of_order_reach_their_own_callers() {
    let (c, mut peer) = pair(Dialect::L, 8192);
    let a = c.start(&read_body(1)).unwrap();
    let b = c.start(&read_body(2)).unwrap();
    let ta = peer.expect(|t, _| t);
    let tb = peer.expect(|t, _| t);
    assert_ne!(ta, tb);
    peer.send(tb, Body::Rread { data: b"for b" });
    peer.send(ta, Body::Rread { data: b"for a" });
    assert_eq!(b.wait().unwrap().read_data().unwrap(), b"for b");
    assert_eq!(a.wait().unwrap().read_data().unwrap(), b"for a");
}

#[test]
fn an_answer_that_beats_rflush_is_honoured() {
    let (c, mut peer) = pair(Dialect::L, 8192);
    let p = c.start(&read_body(1)).unwrap();
    let tag = peer.expect(|t, _| t);
    c.flush(p.id());
    let ftag = peer.expect(|t, body| {
        assert_eq!(body, Body::Tflush { oldtag: tag });
        t
    });
    peer.send(tag, Body::Rread { data: b"late" });
    peer.send(ftag, Body::Rflush);
    assert_eq!(p.wait().unwrap().read_data().unwrap(), b"late");
}

#[test]
fn a_flushed_tag_is_not_reused_before_rflush() {
    let (c, mut peer) = pair(Dialect::L, 8192);
    let p = c.start(&read_body(1)).unwrap();
    let tag = peer.expect(|t, _| t);
    c.flush(p.id());
    let ftag = peer.expect(|t, _| t);
    peer.send(tag, Body::Rread { data: b"" });
    assert!(p.wait().is_ok());
    // The answer came, but the node has not confirmed the flush yet: every
    // new request must get another tag.
    let mut more = Vec::new();
    for _ in 0..100 {
        more.push(c.start(&read_body(2)).unwrap());
        let t = peer.expect(|t, _| t);
        assert_ne!(t, tag, "tag reused before Rflush");
        peer.send(t, Body::Rread { data: b"" });
    }
    peer.send(ftag, Body::Rflush);
    for p in more {
        p.wait().unwrap();
    }
}

#[test]
fn rflush_without_an_answer_cancels_the_request() {
    let (c, mut peer) = pair(Dialect::L, 8192);
    let p = c.start(&read_body(1)).unwrap();
    peer.expect(|_, _| ());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(p.flush()));
    let ftag = peer.expect(|t, body| {
        assert!(matches!(body, Body::Tflush { .. }));
        t
    });
    peer.send(ftag, Body::Rflush);
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got.unwrap_err(), ClientError::Flushed);
}

#[test]
fn flushing_a_finished_request_sends_nothing() {
    let (c, mut peer) = pair(Dialect::L, 8192);
    let p = c.start(&read_body(1)).unwrap();
    let tag = peer.expect(|t, _| t);
    peer.send(tag, Body::Rread { data: b"x" });
    let id = p.id();
    assert!(p.wait().is_ok());
    c.flush(id);
    // The next thing on the wire is the next request, not a Tflush.
    let _q = c.start(&Body::Tclunk { fid: 1 }).unwrap();
    peer.expect(|_, body| assert_eq!(body, Body::Tclunk { fid: 1 }));
}

#[test]
fn callbacks_run_once_with_the_answer_or_the_error() {
    let (c, mut peer) = pair(Dialect::L, 8192);
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    c.start_with(&read_body(1), move |r| {
        tx.send(r.map(|r| r.read_data().unwrap().to_vec())).unwrap()
    })
    .unwrap();
    c.start_with(&read_body(2), move |r| {
        tx2.send(r.map(|r| r.read_data().unwrap().to_vec()))
            .unwrap()
    })
    .unwrap();
    let t1 = peer.expect(|t, _| t);
    let t2 = peer.expect(|t, _| t);
    peer.send(t1, Body::Rread { data: b"one" });
    peer.send(t2, Body::Rlerror { ecode: 11 });
    let mut got = vec![rx.recv().unwrap(), rx.recv().unwrap()];
    got.sort_by_key(|r| r.is_err());
    assert_eq!(got, [Ok(b"one".to_vec()), Err(ClientError::Errno(11))]);
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
}

#[test]
fn rerror_text_reaches_the_caller() {
    let (c, mut peer) = pair(Dialect::P2000, 8192);
    let (tx, rx) = mpsc::channel();
    let c2 = c.clone();
    std::thread::spawn(move || tx.send(c2.write(5, 0, b"qoss\n")));
    let tag = peer.expect(|t, _| t);
    let ename = "chan a: unknown verb \"qoss\"; expected clear, close, open";
    peer.send(tag, Body::Rerror { ename, errno: None });
    assert_eq!(rx.recv().unwrap(), Err(ClientError::Server(ename.into())));
}

#[test]
fn a_dropped_connection_fails_every_waiter_and_every_later_call() {
    let (c, mut peer) = pair(Dialect::L, 8192);
    let a = c.start(&read_body(1)).unwrap();
    let (tx, rx) = mpsc::channel();
    c.start_with(&read_body(2), move |r| tx.send(r.is_err()).unwrap());
    peer.expect(|_, _| ());
    peer.expect(|_, _| ());
    drop(peer);
    assert!(matches!(a.wait(), Err(ClientError::Closed(_))));
    assert!(rx.recv().unwrap());
    assert!(c.closed().is_some());
    assert!(matches!(c.clunk(3), Err(ClientError::Closed(_))));
}

#[test]
fn walks_of_more_than_16_names_take_several_twalks() {
    let (c, mut peer) = pair(Dialect::L, 8192);
    let names: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let c2 = c.clone();
    let owned: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let walker = std::thread::spawn(move || {
        let names: Vec<&str> = owned.iter().map(String::as_str).collect();
        c2.walk(ROOT, &names)
    });
    let qids = |n: usize| -> Qids { (0..n).map(|_| Qid::default()).collect() };
    let newfid = peer.expect(|t, body| match body {
        Body::Twalk {
            fid: ROOT,
            newfid,
            wnames,
        } => {
            assert_eq!(&wnames[..], &names[..16]);
            (t, newfid)
        }
        other => panic!("{other:?}"),
    });
    peer.send(newfid.0, Body::Rwalk { wqids: qids(16) });
    let tag = peer.expect(|t, body| match body {
        Body::Twalk {
            fid,
            newfid: nf,
            wnames,
        } => {
            assert_eq!(
                (fid, nf),
                (newfid.1, newfid.1),
                "later walks move newfid itself"
            );
            assert_eq!(&wnames[..], &names[16..]);
            t
        }
        other => panic!("{other:?}"),
    });
    peer.send(tag, Body::Rwalk { wqids: qids(4) });
    assert_eq!(walker.join().unwrap(), Ok(newfid.1));
}

#[test]
fn a_walk_that_stops_short_names_the_missing_element_and_frees_the_fid() {
    let (c, mut peer) = pair(Dialect::L, 8192);
    let c2 = c.clone();
    let walker = std::thread::spawn(move || c2.walk(ROOT, &["chan", "nope", "data"]));
    let (tag, newfid) = peer.expect(|t, body| match body {
        Body::Twalk { newfid, .. } => (t, newfid),
        other => panic!("{other:?}"),
    });
    let wqids: Qids = [Qid::default()].into_iter().collect();
    peer.send(tag, Body::Rwalk { wqids });
    assert_eq!(
        walker.join().unwrap(),
        Err(ClientError::NotFound("nope".into()))
    );
    // A partial walk creates no fid, so the number is free again.
    assert_eq!(c.alloc_fid().unwrap(), newfid);
}

#[test]
fn writes_larger_than_the_iounit_are_cut_and_short_writes_resent() {
    // msize 124: iounit 100.
    let (c, mut peer) = pair(Dialect::L, 124);
    let data: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
    let c2 = c.clone();
    let sent = data.clone();
    let writer = std::thread::spawn(move || c2.write_all(7, 1000, &sent, 0));
    let mut got = Vec::new();
    for take in [100u32, 60, 90] {
        let tag = peer.expect(|t, body| match body {
            Body::Twrite { fid, offset, data } => {
                assert_eq!(fid, 7);
                assert_eq!(offset, 1000 + got.len() as u64);
                assert!(data.len() <= 100);
                got.extend_from_slice(&data[..take as usize]);
                t
            }
            other => panic!("{other:?}"),
        });
        peer.send(tag, Body::Rwrite { count: take });
    }
    assert_eq!(writer.join().unwrap(), Ok(250));
    assert_eq!(got, data);
}

#[test]
fn a_version_the_client_did_not_ask_for_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = std::thread::spawn(move || Client::connect(&addr, Dialect::L));
    let (stream, _) = listener.accept().unwrap();
    let mut peer = Peer {
        stream,
        dialect: Dialect::L,
    };
    peer.expect(|_, _| ());
    peer.send(
        ninep::NOTAG,
        Body::Rversion {
            msize: 8192,
            version: "unknown",
        },
    );
    let err = client.join().unwrap().err().expect("refused");
    assert!(err.to_string().contains("unknown"), "{err}");
}
