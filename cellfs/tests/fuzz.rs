//! A coverage-less mutational fuzzer for stable Rust, in three targets:
//! the `ninep` codec, the server's request handling, and the ctl parsers
//! (see each module). Each unit of work draws from its own seeded
//! generator, so a run is deterministic per seed and any failure replays
//! alone from the line it prints.
//!
//! `cargo test` runs a short pass of each (a few seconds). A long run:
//!
//! ```text
//! CELL0_FUZZ_INPUTS=100000000 nice -n 19 cargo test --release -p cellfs --test fuzz -- --nocapture
//! ```
//!
//! splits the inputs 6:3:1 over decoder, server and ctl (or set
//! `CELL0_FUZZ_DECODER`, `CELL0_FUZZ_SERVER`, `CELL0_FUZZ_CTL` one by
//! one), and prints inputs, time, inputs/s and the seed of each target.
//! `CELL0_FUZZ_SEED` picks another seed; `CELL0_FUZZ_FROM` the first unit.

#[path = "fuzz/ctl.rs"]
mod ctl;
#[path = "fuzz/decoder.rs"]
mod decoder;
#[path = "fuzz/engine.rs"]
mod engine;
#[path = "fuzz/node.rs"]
mod node;
#[path = "fuzz/requests.rs"]
mod requests;
#[path = "fuzz/server.rs"]
mod server;

use engine::{Budget, run};

#[test]
fn decoder() {
    let budget = Budget::of("decoder", 6, 1_000_000);
    let mut scratch = decoder::Scratch::default();
    run(
        "decoder",
        budget,
        |_, rng| decoder::unit(rng, &mut scratch),
        decoder::describe,
    );
}

#[test]
fn server() {
    let budget = Budget::of("server", 3, 100_000);
    run("server", budget, server::unit, server::describe);
    eprint!("{}", server::summary());
}

#[test]
fn ctl() {
    let budget = Budget::of("ctl", 1, 20_000);
    let mut bench = None;
    run(
        "ctl",
        budget,
        |n, rng| ctl::unit(n, rng, &mut bench),
        ctl::describe,
    );
    eprint!("{}", ctl::summary());
}

/// Found by the server target (seed 0xce110f002026, unit 17900): an
/// Rerror quoting a long attach name was sent larger than the msize the
/// connection had negotiated (381 bytes for msize 256).
#[test]
fn an_error_fits_the_msize() {
    use cellfs::{Outbox, Server};
    use ninep::{Body, Dialect, NOFID, NOTAG};
    let mut s = Server::new(
        node::config(),
        node::FuzzLog::new(engine::Rng::new(1, 1)),
        node::FuzzClock::default(),
    );
    let c = s.connect();
    let mut out = Outbox::new();
    let version = Body::Tversion {
        msize: 256,
        version: "9P2000.u",
    };
    s.handle(c, &node::frame(NOTAG, version), &mut out);
    let aname = "é".repeat(400);
    let attach = Body::Tattach {
        fid: 0,
        afid: NOFID,
        uname: "u",
        aname: &aname,
        n_uname: Some(0),
    };
    out.clear();
    s.handle(c, &node::frame(1, attach), &mut out);
    let (_, reply) = out.frames().next().expect("an answer");
    assert!(reply.len() <= 256, "{} bytes", reply.len());
    let msg = ninep::decode(reply, Dialect::U).unwrap();
    assert!(
        matches!(msg.body, Body::Rerror { ename, .. } if ename.ends_with('…')),
        "{msg:?}"
    );
}

/// Found by the server target (seed 0xce110f002026, unit 27336): a
/// Tflush naming a Tflush that waits for a write to commit was answered,
/// and the flushed Tflush was answered too, later, under a tag the
/// client had been told was free.
#[test]
fn a_flushed_flush_is_not_answered() {
    use cellfs::{Outbox, Server};
    use ninep::{Body, Dialect, NOFID, NOTAG, Names};
    let mut log = node::FuzzLog::new(engine::Rng::new(1, 1));
    log.chaos = false;
    let mut s = Server::new(node::config(), log, node::FuzzClock::default());
    let c = s.connect();
    let mut out = Outbox::new();
    let mut call = |s: &mut Server<_, _>, tag, body| {
        out.clear();
        s.handle(c, &node::frame(tag, body), &mut out);
        s.poll(&mut out);
        let replies: Vec<(u16, String)> = out
            .frames()
            .map(|(_, f)| {
                let m = ninep::decode(f, Dialect::P2000).unwrap();
                (m.tag, format!("{:?}", m.body.msg_type()))
            })
            .collect();
        replies
    };
    let version = Body::Tversion {
        msize: 8192,
        version: "9P2000",
    };
    call(&mut s, NOTAG, version);
    let attach = Body::Tattach {
        fid: 0,
        afid: NOFID,
        uname: "u",
        aname: "",
        n_uname: None,
    };
    call(&mut s, 1, attach);
    let wnames = Names::from_slice(&["ctl"]).unwrap();
    call(
        &mut s,
        1,
        Body::Twalk {
            fid: 0,
            newfid: 1,
            wnames,
        },
    );
    call(&mut s, 1, Body::Topen { fid: 1, mode: 1 });
    s.log_mut().hold = true;
    let write = Body::Twrite {
        fid: 1,
        offset: 0,
        data: b"note x",
    };
    assert_eq!(call(&mut s, 1, write), []);
    assert_eq!(call(&mut s, 2, Body::Tflush { oldtag: 1 }), []);
    assert_eq!(
        call(&mut s, 3, Body::Tflush { oldtag: 2 }),
        [(3, "Rflush".to_string())]
    );
    s.log_mut().hold = false;
    assert_eq!(
        call(&mut s, 4, Body::Tclunk { fid: 9 }).len(),
        2,
        "the write's reply, then the clunk's"
    );
    let replies = call(&mut s, 2, Body::Tstat { fid: 1 });
    assert_eq!(replies, [(2, "Rstat".to_string())], "tag 2 is free again");
}

/// Found by the server target (seed 0xce110f002026, unit 174704): the
/// removal a remove-on-close clunk proposes kept the clunk's tag, so a
/// Tflush naming a later request under that tag was answered when the
/// removal committed, before the request it flushed.
#[test]
fn a_remove_on_close_keeps_no_tag() {
    use cellfs::{Outbox, Server};
    use ninep::stat::DMDIR;
    use ninep::{Body, Dialect, NOFID, NOTAG, Names};
    let mut log = node::FuzzLog::new(engine::Rng::new(1, 1));
    log.chaos = false;
    let mut s = Server::new(node::config(), log, node::FuzzClock::default());
    let c = s.connect();
    let mut out = Outbox::new();
    let mut call = |s: &mut Server<_, _>, tag, body| {
        out.clear();
        s.handle(c, &node::frame(tag, body), &mut out);
        s.poll(&mut out);
        let replies: Vec<(u16, String)> = out
            .frames()
            .map(|(_, f)| {
                let m = ninep::decode(f, Dialect::P2000).unwrap();
                (m.tag, format!("{:?}", m.body.msg_type()))
            })
            .collect();
        replies
    };
    let walk = |fid, newfid, names: &[&'static str]| Body::Twalk {
        fid,
        newfid,
        wnames: Names::from_slice(names).unwrap(),
    };
    call(
        &mut s,
        NOTAG,
        Body::Tversion {
            msize: 8192,
            version: "9P2000",
        },
    );
    let attach = Body::Tattach {
        fid: 0,
        afid: NOFID,
        uname: "u",
        aname: "",
        n_uname: None,
    };
    call(&mut s, 1, attach);
    call(&mut s, 1, walk(0, 1, &["chan"]));
    let mkdir = Body::Tcreate {
        fid: 1,
        name: "x",
        perm: DMDIR | 0o755,
        mode: 0,
        extension: None,
    };
    assert_eq!(call(&mut s, 1, mkdir), [(1, "Rcreate".to_string())]);
    call(&mut s, 1, walk(0, 2, &["chan", "x"]));
    call(
        &mut s,
        1,
        Body::Topen {
            fid: 2,
            mode: ninep::mode::ORCLOSE,
        },
    );
    call(&mut s, 1, walk(0, 3, &["chan", "x", "data"]));
    call(&mut s, 1, Body::Topen { fid: 3, mode: 1 });
    s.log_mut().hold = true;
    // The clunk proposes the removal of /chan/x under tag 7 ...
    assert_eq!(
        call(&mut s, 7, Body::Tclunk { fid: 2 }),
        [(7, "Rclunk".to_string())]
    );
    // ... and tag 7 is free: a write uses it, and a Tflush names that.
    let write = Body::Twrite {
        fid: 3,
        offset: 0,
        data: b"hi",
    };
    assert_eq!(call(&mut s, 7, write), []);
    assert_eq!(call(&mut s, 1, Body::Tflush { oldtag: 7 }), []);
    s.log_mut().hold = false;
    // The clunk of an unknown fid is answered at once; then the log
    // commits the removal (no answer), the write, and its Rflush after it.
    let replies = call(&mut s, 2, Body::Tclunk { fid: 9 });
    let order: Vec<u16> = replies.iter().map(|r| r.0).collect();
    assert_eq!(order, [2, 7, 1], "{replies:?}");
}
