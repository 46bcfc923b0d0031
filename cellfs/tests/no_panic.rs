//! No input may panic the server: random frames, and random but well-formed
//! requests in random order, on several connections.

use cellfs::cap::NodeKey;
use cellfs::{Config, FixedClock, MemLog, Outbox, Server};
use ninep::{Body, Msg, NOFID, Names};
use proptest::prelude::*;

fn frame(tag: u16, body: Body<'_>) -> Vec<u8> {
    let mut f = Vec::new();
    ninep::encode(&Msg { tag, body }, &mut f).unwrap();
    f
}

const NAMES: &[&str] = &[
    "chan", "status", "events", "ctl", "data", "x", "..", "", "a/b", "y",
];
const VERSIONS: &[&str] = &["9P2000", "9P2000.L", "9P2000.u", "bogus"];
const CTL: &[&[u8]] = &[
    b"close",
    b"open\nclear",
    b"qoss",
    b"",
    b"note hi",
    b"sync",
    b"\xff\xfe",
];

/// Build a request from a handful of small numbers, so that fids, tags and
/// names collide often.
fn request(kind: u8, a: u8, b: u8, c: u8) -> Vec<u8> {
    let fid = u32::from(a % 6);
    let newfid = u32::from(b % 6);
    let tag = u16::from(c % 5);
    let name = NAMES[usize::from(b) % NAMES.len()];
    let data = CTL[usize::from(c) % CTL.len()];
    let body = match kind % 16 {
        0 => Body::Tversion {
            msize: 256 + u32::from(a) * 64,
            version: VERSIONS[usize::from(b) % 4],
        },
        1 => Body::Tattach {
            fid,
            afid: NOFID,
            uname: "u",
            aname: "",
            n_uname: None,
        },
        2 => {
            let mut w = Names::new();
            for i in 0..(c % 4) {
                let _ = w.push(NAMES[usize::from(a.wrapping_add(i)) % NAMES.len()]);
            }
            Body::Twalk {
                fid,
                newfid,
                wnames: w,
            }
        }
        3 => Body::Topen { fid, mode: c % 4 },
        4 => Body::Tlopen {
            fid,
            flags: u32::from(c % 3),
        },
        5 => Body::Tread {
            fid,
            offset: u64::from(b),
            count: u32::from(c) * 40,
        },
        6 => Body::Twrite {
            fid,
            offset: 0,
            data,
        },
        7 => Body::Tclunk { fid },
        8 => Body::Tremove { fid },
        9 => Body::Tcreate {
            fid,
            name,
            perm: if c.is_multiple_of(2) {
                ninep::stat::DMDIR
            } else {
                0
            },
            mode: 0,
            extension: None,
        },
        10 => Body::Tmkdir {
            dfid: fid,
            name,
            mode: 0o755,
            gid: 0,
        },
        11 => Body::Tflush {
            oldtag: u16::from(b % 5),
        },
        12 => Body::Treaddir {
            fid,
            offset: u64::from(b % 8),
            count: u32::from(c) * 8,
        },
        13 => Body::Tunlinkat {
            dirfid: fid,
            name,
            flags: if c.is_multiple_of(2) { 0x200 } else { 0 },
        },
        14 => Body::Tstat { fid },
        _ => Body::Tgetattr {
            fid,
            request_mask: !0,
        },
    };
    frame(tag, body)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_never_panic(ops in proptest::collection::vec((0u8..3, any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()), 1..120)) {
        let mut s = Server::new(config(), MemLog::default(), FixedClock::default());
        let conns = [s.connect(), s.connect(), s.connect()];
        let mut out = Outbox::new();
        for (who, kind, a, b, c) in ops {
            let conn = conns[usize::from(who)];
            out.clear();
            s.handle(conn, &request(kind, a, b, c), &mut out);
            s.poll(&mut out);
            if kind == 255 {
                s.disconnect(conn, &mut out);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..40)) {
        let mut s = Server::new(config(), MemLog::default(), FixedClock::default());
        let c = s.connect();
        let mut out = Outbox::new();
        s.handle(c, &frame(0xffff, Body::Tversion { msize: 8192, version: "9P2000" }), &mut out);
        for mut f in frames {
            if f.len() >= 4 {
                let n = f.len() as u32;
                f[..4].copy_from_slice(&n.to_le_bytes());
            }
            out.clear();
            s.handle(c, &f, &mut out);
            s.poll(&mut out);
        }
    }
}

/// A node that lets hostile input reach every request handler.
fn config() -> Config {
    Config {
        insecure: true,
        ..Config::new("test", NodeKey::from_seed(&[1; 32]))
    }
}
