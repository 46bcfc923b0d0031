//! Requests for the server target: paths, names and values of the tree,
//! and a generator of every request type with fields that collide.

use ninep::{Body, Dialect, NOFID};

use super::ctl;
use super::decoder::{Material, build};
use super::engine::Rng;
use super::node::token_anames;

/// Paths of the tree (and a few that leave it or are not there).
pub const PATHS: &[&[&str]] = &[
    &[],
    &["chan"],
    &["chan", "x"],
    &["chan", "x", "data"],
    &["chan", "x", "ctl"],
    &["chan", "x", "status"],
    &["chan", "y", "data"],
    &["chan", "y", "ctl"],
    &["status"],
    &["events"],
    &["ctl"],
    &["agent"],
    &["agent", "a"],
    &["agent", "a", "ctl"],
    &["agent", "a", "log"],
    &["agent", "a", "status"],
    &["agent", "a", "spec"],
    &["agent", "a", "intent"],
    &["agent", "a", "trace"],
    &["agent", "a", "children"],
    &["raft"],
    &["raft", "log"],
    &["raft", "status"],
    &["raft", "ctl"],
    &["raft", "peers"],
    &["proof"],
    &["proof", "chain"],
    &["proof", "head"],
    &["proof", "boot"],
    &["cap"],
    &["cap", "ctl"],
    &["cap", "key"],
    &["cap", "revoked"],
    &["cap", "1"],
    &["cap", "1", "token"],
    &["cap", "1", "ctl"],
    &["cap", "1", "status"],
    &["chan", "x", ".."],
    &["..", ".."],
    &["chan", "x", "data", "more"],
    &["nothing"],
];
/// Names to create, and names that must be refused.
const NAMES: &[&str] = &[
    "x", "y", "a", "b", "c", "data", "ctl", "..", ".", "", "a/b", "x y", "\u{0}", "é", "1",
];
const VERSIONS: &[&str] = &[
    "9P2000",
    "9P2000.L",
    "9P2000.u",
    "9P2000.L.x",
    "9P",
    "bogus",
    "",
];
const MSIZES: &[u32] = &[0, 255, 256, 300, 1024, 8192, 65536, 1 << 20, u32::MAX];
/// Open modes and Linux open flags worth trying.
const MODES: &[u8] = &[0, 1, 2, 3, 0, 1, 0x10, 0x40, 0x41, 0x12, 0x80, 0xff];
const LFLAGS: &[u32] = &[
    0,
    1,
    2,
    0,
    1,
    0o1000,
    0o2000,
    0o100,
    0o200_000,
    0o4_000_000,
    u32::MAX,
];
const PERMS: &[u32] = &[
    0o644,
    0o755 | ninep::stat::DMDIR,
    0o600,
    ninep::stat::DMAPPEND,
    0,
    u32::MAX,
];

/// A name to create: mostly a good one.
fn name(rng: &mut Rng) -> String {
    match rng.below(16) {
        0 => "n".repeat(1 + rng.below(300)),
        _ => String::from(*rng.pick(NAMES)),
    }
}

/// Holds the strings a request borrows.
#[derive(Default)]
pub struct Parts {
    names: Vec<String>,
    data: Vec<u8>,
    m: Material,
}

/// One request for a connection that has negotiated `dialect`, borrowing
/// from `p`; fids and tags are small so that they collide.
pub fn request<'a>(rng: &mut Rng, p: &'a mut Parts, dialect: Dialect, msize: u32) -> Body<'a> {
    p.names.clear();
    p.names
        .extend(rng.pick(PATHS).iter().map(|s| String::from(*s)));
    if !p.names.is_empty() && rng.one_in(6) {
        let i = rng.below(p.names.len());
        p.names[i] = name(rng);
    }
    p.data.clear();
    match rng.below(4) {
        0 => p.data.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
        1 if rng.one_in(4) => p.data.resize(rng.below(msize as usize + 64), b'm'),
        _ => p.data.extend(ctl::any_lines(rng)),
    }
    let fid = match rng.below(32) {
        0 => rng.next() as u32,
        1..=8 => 0,
        _ => 1 + rng.below(7) as u32,
    };
    let fid2 = 1 + rng.below(7) as u32;
    let nm = match rng.below(8) {
        0 => p.names.first().map_or("x", String::as_str),
        _ => *rng.pick(NAMES),
    };
    let count = match rng.below(8) {
        0 => 0,
        1 => u32::MAX,
        _ => rng.below(9000) as u32,
    };
    let offset = match rng.below(8) {
        0 => rng.edgy(),
        1 | 2 => rng.below(64) as u64,
        _ => 0,
    };
    let n_uname = (dialect != Dialect::P2000).then_some(0);
    match rng.below(100) {
        0 => Body::Tversion {
            msize: *rng.pick(MSIZES),
            version: rng.pick::<&str>(VERSIONS),
        },
        1 => Body::Tauth {
            afid: fid,
            uname: "u",
            aname: if rng.one_in(2) { "auth=cap" } else { "" },
            n_uname,
        },
        2..=4 => Body::Tattach {
            fid,
            afid: if rng.one_in(4) { fid2 } else { NOFID },
            uname: "u",
            aname: match rng.below(8) {
                0..=3 => rng.pick(token_anames()).as_str(),
                _ => rng.pick::<&str>(&["", "/cap", "/chan", "token=x", "/nowhere", "auth=cap"]),
            },
            n_uname,
        },
        5..=24 => {
            let wnames = p.names.iter().map(String::as_str).collect();
            let from = if rng.one_in(4) { fid } else { 0 };
            Body::Twalk {
                fid: from,
                newfid: fid2,
                wnames,
            }
        }
        25..=32 => Body::Topen {
            fid,
            mode: *rng.pick(MODES),
        },
        33..=37 => Body::Tlopen {
            fid,
            flags: *rng.pick(LFLAGS),
        },
        38..=49 => Body::Tread { fid, offset, count },
        50..=53 => Body::Treaddir { fid, offset, count },
        54..=65 => Body::Twrite {
            fid,
            offset,
            data: &p.data,
        },
        66..=71 => Body::Tclunk { fid },
        72 | 73 => Body::Tremove { fid },
        74..=76 => Body::Tcreate {
            fid,
            name: nm,
            perm: *rng.pick(PERMS),
            mode: *rng.pick(MODES),
            extension: (dialect == Dialect::U)
                .then(|| *rng.pick(&["", "b 1 2", "c 4 64", "/x", "l"])),
        },
        77..=79 => Body::Tmkdir {
            dfid: fid,
            name: nm,
            mode: 0o755,
            gid: 0,
        },
        80 | 81 => Body::Tlcreate {
            fid,
            name: nm,
            flags: *rng.pick(LFLAGS),
            mode: 0o644,
            gid: 0,
        },
        82..=85 => Body::Tflush {
            oldtag: rng.below(8) as u16,
        },
        86 | 87 => Body::Tunlinkat {
            dirfid: fid,
            name: nm,
            flags: *rng.pick(&[0, 0x200, 1]),
        },
        88 => Body::Tstat { fid },
        89 => Body::Tgetattr {
            fid,
            request_mask: rng.edgy(),
        },
        90 => Body::Tstatfs { fid },
        91 => Body::Tfsync { fid, datasync: 1 },
        92 => Body::Tsetattr {
            fid,
            valid: rng.next() as u32,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: rng.edgy(),
            atime_sec: 0,
            atime_nsec: 0,
            mtime_sec: rng.edgy(),
            mtime_nsec: 0,
        },
        93 => Body::Twstat {
            fid,
            stat: ninep::Stat {
                length: rng.edgy(),
                name: nm,
                mode: rng.next() as u32,
                ..Default::default()
            },
        },
        _ => {
            // Anything at all: every other type, replies included.
            p.m.fill(rng);
            build(&p.m, dialect)
        }
    }
}
