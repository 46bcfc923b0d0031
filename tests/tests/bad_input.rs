//! Malformed and hostile 9P input over real TCP: each gets an error or a
//! closed connection, and the node keeps serving everyone else.

use cell0_tests::{Node, Raw};
use ninep::{Body, Dialect, NOTAG, Names};

fn still_serving(node: &Node) {
    let mut ok = Raw::attached(&node.addr, Dialect::U, &node.aname());
    assert!(
        ok.cat("status").starts_with("Rread node "),
        "node stopped serving"
    );
}

#[test]
fn hostile_frames_do_not_hurt_the_node() {
    let node = Node::start();
    let mut bystander = Raw::attached(&node.addr, Dialect::L, &node.aname());

    // Random bytes: whatever they decode to, the node answers or hangs up.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20 {
        let mut r = Raw::connect(&node.addr);
        let mut junk = vec![0u8; 64];
        for b in junk.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        // A plausible size so the frame is complete, then garbage.
        junk[..4].copy_from_slice(&64u32.to_le_bytes());
        r.send_bytes(&junk);
        if let Some(f) = r.recv() {
            assert!(r.text(&f).starts_with("Rerror"), "{}", r.text(&f));
        }
    }

    // A size field of 4 GiB: refused before anything is buffered.
    let mut r = Raw::connect(&node.addr);
    r.send_bytes(&[0xff, 0xff, 0xff, 0xff, 100, 0, 0]);
    assert!(
        r.recv().is_none(),
        "a 4 GiB frame must close the connection"
    );

    // A truncated frame followed by a hang-up.
    let mut r = Raw::connect(&node.addr);
    r.send_bytes(&[20, 0, 0, 0, 100, 0xff]);
    drop(r);

    // An unknown message type under a readable header.
    let mut r = Raw::attached(&node.addr, Dialect::U, &node.aname());
    r.send_bytes(&[7, 0, 0, 0, 250, 9, 0]);
    let f = r.recv().expect("an error reply");
    assert!(
        r.text(&f)
            .starts_with("Rerror bad message: unknown message type 250"),
        "{}",
        r.text(&f)
    );

    // A walk of 17 names.
    let mut frame = Vec::new();
    let names = Names::from_slice(&["a"; 16]).unwrap();
    ninep::encode(
        &ninep::Msg {
            tag: 8,
            body: Body::Twalk {
                fid: 0,
                newfid: 1,
                wnames: names,
            },
        },
        &mut frame,
    )
    .unwrap();
    frame[15..17].copy_from_slice(&17u16.to_le_bytes());
    frame.extend_from_slice(&[1, 0, b'a']);
    let n = frame.len() as u32;
    frame[..4].copy_from_slice(&n.to_le_bytes());
    r.send_bytes(&frame);
    let f = r.recv().unwrap();
    assert!(r.text(&f).contains("at most 16"), "{}", r.text(&f));

    // Reuse of a live fid.
    assert_eq!(r.walk(1, "status"), "Rwalk");
    assert_eq!(r.walk(1, "status"), "Rerror fid 1 already in use");

    // A read on an unopened fid.
    let f = r.rpc(
        4,
        Body::Tread {
            fid: 1,
            offset: 0,
            count: 10,
        },
    );
    assert_eq!(r.text(&f), "Rerror fid is not open for reading");

    // Reuse of a live tag: a parked read holds tag 40.
    assert_eq!(r.walk(2, "events"), "Rwalk");
    let f = r.rpc(3, Body::Topen { fid: 2, mode: 0 });
    assert_eq!(r.text(&f), "Ropen");
    r.send(
        40,
        Body::Tread {
            fid: 2,
            offset: 0,
            count: 100,
        },
    );
    assert!(r.quiet_for(200), "a read of /events with nothing new waits");
    r.send(40, Body::Tclunk { fid: 1 });
    let f = r.recv().unwrap();
    assert!(
        r.text(&f).starts_with("Rerror tag 40 is already in use"),
        "{}",
        r.text(&f)
    );
    assert!(r.recv().is_none(), "the confused connection is closed");

    // Nothing before Tversion.
    let mut r = Raw::connect(&node.addr);
    let f = r.rpc(1, Body::Tclunk { fid: 0 });
    assert!(r.text(&f).starts_with("Rerror no Tversion"));
    let f = r.rpc(
        NOTAG,
        Body::Tversion {
            msize: 1 << 20,
            version: "9P2000",
        },
    );
    let m = ninep::decode(&f, Dialect::P2000).unwrap();
    assert_eq!(
        m.body,
        Body::Rversion {
            msize: 1 << 20,
            version: "9P2000"
        },
        "msize up to 1 MiB is granted"
    );

    assert!(bystander.cat("status").starts_with("Rread node "));
    still_serving(&node);
}
