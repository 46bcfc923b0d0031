//! Target 1: the `ninep` codec. Every message type is generated with
//! random fields in each dialect (9P2000, 9P2000.u, 9P2000.L) and must
//! round trip; then the frame is mutated many times and every mutant must
//! decode to an error or to a message that re-encodes to the same bytes
//! (`ninep::fuzzcheck::check`). Random byte strings are fed too.

use ninep::stat::{Attr, StatFs};
use ninep::{Body, Dialect, Msg, Names, Qid, QidType, Qids, Stat};

use super::engine::{Rng, hex, mutate};

/// How many types [`build`] makes.
pub const KINDS: u8 = 66;

/// Field material for one message, which [`build`] borrows from.
#[derive(Debug, Default)]
pub struct Material {
    pub kind: u8,
    pub n: [u64; 12],
    pub s: [String; 4],
    pub data: Vec<u8>,
    pub names: usize,
}

const ALPHABETS: &[&str] = &[
    "abcxyz0189._-",
    "/. ",
    "é∂漢🙂\u{0}\u{7f}\u{ffff}",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ=\n\t",
];

/// A string that is usually short and sometimes long or strange.
fn string(rng: &mut Rng, s: &mut String) {
    s.clear();
    let len = match rng.below(8) {
        0 => 0,
        1 => 40 + rng.below(300),
        _ => rng.below(12),
    };
    let alphabet: Vec<char> = rng.pick(ALPHABETS).chars().collect();
    for _ in 0..len {
        s.push(*rng.pick(&alphabet));
    }
}

impl Material {
    /// Fill with fresh random fields.
    pub fn fill(&mut self, rng: &mut Rng) {
        self.kind = rng.below(usize::from(KINDS)) as u8;
        for v in self.n.iter_mut() {
            *v = rng.edgy();
        }
        for s in self.s.iter_mut() {
            string(rng, s);
        }
        self.data.clear();
        let len = match rng.below(6) {
            0 => rng.below(2000),
            _ => rng.below(40),
        };
        self.data.extend((0..len).map(|_| rng.next() as u8));
        self.names = rng.below(17);
    }
}

fn qid(n: u64) -> Qid {
    Qid {
        ty: QidType((n >> 56) as u8),
        version: (n >> 8) as u32,
        path: n.rotate_left(7),
    }
}

/// One message of type `m.kind`, every field from `m`.
pub fn build(m: &Material, dialect: Dialect) -> Body<'_> {
    let n = &m.n;
    let (s0, s1, s2, s3) = (
        m.s[0].as_str(),
        m.s[1].as_str(),
        m.s[2].as_str(),
        m.s[3].as_str(),
    );
    let u = |i: usize| n[i] as u32;
    let nu = (dialect != Dialect::P2000).then(|| u(9));
    let stat = Stat {
        ty: n[0] as u16,
        dev: u(1),
        qid: qid(n[2]),
        mode: u(3),
        atime: u(4),
        mtime: u(5),
        length: n[6],
        name: s0,
        uid: s1,
        gid: s2,
        muid: s3,
        ext: (n[11] & 1 == 1).then_some(ninep::stat::StatExt {
            extension: s2,
            n_uid: u(8),
            n_gid: u(9),
            n_muid: u(10),
        }),
    };
    let mut names = Names::new();
    let mut qids = Qids::new();
    for i in 0..m.names {
        let _ = names.push(m.s[i % 4].as_str());
        let _ = qids.push(qid(n[i % 12]));
    }
    let attr = Attr {
        valid: n[0],
        qid: qid(n[1]),
        mode: u(2),
        uid: u(3),
        gid: u(4),
        nlink: n[5],
        rdev: n[6],
        size: n[7],
        blksize: n[8],
        blocks: n[9],
        atime_sec: n[10],
        data_version: n[11],
        ..Attr::default()
    };
    let statfs = StatFs {
        ty: u(0),
        bsize: u(1),
        blocks: n[2],
        bfree: n[3],
        bavail: n[4],
        files: n[5],
        ffree: n[6],
        fsid: n[7],
        namelen: u(8),
    };
    match m.kind {
        0 => Body::Tversion {
            msize: u(0),
            version: s0,
        },
        1 => Body::Rversion {
            msize: u(0),
            version: s0,
        },
        2 => Body::Tauth {
            afid: u(0),
            uname: s0,
            aname: s1,
            n_uname: nu,
        },
        3 => Body::Rauth { aqid: qid(n[0]) },
        4 => Body::Tattach {
            fid: u(0),
            afid: u(1),
            uname: s0,
            aname: s1,
            n_uname: nu,
        },
        5 => Body::Rattach { qid: qid(n[0]) },
        6 => Body::Rerror {
            ename: s1,
            errno: (dialect == Dialect::U).then(|| u(3)),
        },
        7 => Body::Tflush {
            oldtag: n[0] as u16,
        },
        8 => Body::Rflush,
        9 => Body::Twalk {
            fid: u(0),
            newfid: u(1),
            wnames: names,
        },
        10 => Body::Rwalk { wqids: qids },
        11 => Body::Topen {
            fid: u(0),
            mode: n[1] as u8,
        },
        12 => Body::Ropen {
            qid: qid(n[0]),
            iounit: u(1),
        },
        13 => Body::Tcreate {
            fid: u(0),
            name: s0,
            perm: u(1),
            mode: n[2] as u8,
            extension: (dialect == Dialect::U).then_some(s2),
        },
        14 => Body::Rcreate {
            qid: qid(n[0]),
            iounit: u(1),
        },
        15 => Body::Tread {
            fid: u(0),
            offset: n[1],
            count: u(2),
        },
        16 => Body::Rread { data: &m.data },
        17 => Body::Twrite {
            fid: u(0),
            offset: n[1],
            data: &m.data,
        },
        18 => Body::Rwrite { count: u(0) },
        19 => Body::Tclunk { fid: u(0) },
        20 => Body::Rclunk,
        21 => Body::Tremove { fid: u(0) },
        22 => Body::Rremove,
        23 => Body::Tstat { fid: u(0) },
        24 => Body::Rstat { stat },
        25 => Body::Twstat { fid: u(7), stat },
        26 => Body::Rwstat,
        27 => Body::Rlerror { ecode: u(0) },
        28 => Body::Tstatfs { fid: u(0) },
        29 => Body::Rstatfs { statfs },
        30 => Body::Tlopen {
            fid: u(0),
            flags: u(1),
        },
        31 => Body::Rlopen {
            qid: qid(n[0]),
            iounit: u(1),
        },
        32 => Body::Tlcreate {
            fid: u(0),
            name: s0,
            flags: u(1),
            mode: u(2),
            gid: u(3),
        },
        33 => Body::Rlcreate {
            qid: qid(n[0]),
            iounit: u(1),
        },
        34 => Body::Tsymlink {
            fid: u(0),
            name: s0,
            symtgt: s1,
            gid: u(2),
        },
        35 => Body::Rsymlink { qid: qid(n[0]) },
        36 => Body::Tmknod {
            dfid: u(0),
            name: s0,
            mode: u(1),
            major: u(2),
            minor: u(3),
            gid: u(4),
        },
        37 => Body::Rmknod { qid: qid(n[0]) },
        38 => Body::Trename {
            fid: u(0),
            dfid: u(1),
            name: s0,
        },
        39 => Body::Rrename,
        40 => Body::Treadlink { fid: u(0) },
        41 => Body::Rreadlink { target: s0 },
        42 => Body::Tgetattr {
            fid: u(0),
            request_mask: n[1],
        },
        43 => Body::Rgetattr { attr },
        44 => Body::Tsetattr {
            fid: u(0),
            valid: u(1),
            mode: u(2),
            uid: u(3),
            gid: u(4),
            size: n[5],
            atime_sec: n[6],
            atime_nsec: n[7],
            mtime_sec: n[8],
            mtime_nsec: n[9],
        },
        45 => Body::Rsetattr,
        46 => Body::Txattrwalk {
            fid: u(0),
            newfid: u(1),
            name: s0,
        },
        47 => Body::Rxattrwalk { size: n[0] },
        48 => Body::Txattrcreate {
            fid: u(0),
            name: s0,
            attr_size: n[1],
            flags: u(2),
        },
        49 => Body::Rxattrcreate,
        50 => Body::Treaddir {
            fid: u(0),
            offset: n[1],
            count: u(2),
        },
        51 => Body::Rreaddir { data: &m.data },
        52 => Body::Tfsync {
            fid: u(0),
            datasync: u(1),
        },
        53 => Body::Rfsync,
        54 => Body::Tlock {
            fid: u(0),
            ty: n[1] as u8,
            flags: u(2),
            start: n[3],
            length: n[4],
            proc_id: u(5),
            client_id: s0,
        },
        55 => Body::Rlock { status: n[0] as u8 },
        56 => Body::Tgetlock {
            fid: u(0),
            ty: n[1] as u8,
            start: n[3],
            length: n[4],
            proc_id: u(5),
            client_id: s0,
        },
        57 => Body::Rgetlock {
            ty: n[1] as u8,
            start: n[3],
            length: n[4],
            proc_id: u(5),
            client_id: s0,
        },
        58 => Body::Tlink {
            dfid: u(0),
            fid: u(1),
            name: s0,
        },
        59 => Body::Rlink,
        60 => Body::Tmkdir {
            dfid: u(0),
            name: s0,
            mode: u(1),
            gid: u(2),
        },
        61 => Body::Rmkdir { qid: qid(n[0]) },
        62 => Body::Trenameat {
            olddirfid: u(0),
            oldname: s0,
            newdirfid: u(1),
            newname: s1,
        },
        63 => Body::Rrenameat,
        64 => Body::Tunlinkat {
            dirfid: u(0),
            name: s0,
            flags: u(1),
        },
        _ => Body::Runlinkat,
    }
}

/// State reused from one unit to the next, so the loop does not allocate.
#[derive(Default)]
pub struct Scratch {
    m: Material,
    frame: Vec<u8>,
    prev: Vec<u8>,
    mutant: Vec<u8>,
}

/// Mutants checked per generated message.
const MUTANTS: usize = 15;

/// What one unit feeds the decoder, for failure reports: the valid frame
/// and every mutant.
pub fn inputs(rng: &mut Rng, s: &mut Scratch, mut each: impl FnMut(&[u8])) {
    if rng.one_in(16) {
        // Raw random bytes, size field honest or not.
        s.mutant.clear();
        let len = rng.below(64);
        s.mutant.extend((0..len).map(|_| rng.next() as u8));
        if len >= 4 && rng.one_in(2) {
            s.mutant[..4].copy_from_slice(&(len as u32).to_le_bytes());
        }
        return each(&s.mutant);
    }
    s.m.fill(rng);
    let dialect = *rng.pick(&[Dialect::P2000, Dialect::L, Dialect::U]);
    let tag = rng.next() as u16;
    let body = build(&s.m, dialect);
    s.frame.clear();
    if ninep::encode(
        &Msg {
            tag,
            body: body.clone(),
        },
        &mut s.frame,
    )
    .is_ok()
    {
        let back = ninep::decode(&s.frame, dialect)
            .unwrap_or_else(|e| panic!("a valid {:?} does not decode: {e}", body.msg_type()));
        assert_eq!(back, Msg { tag, body }, "round trip");
        assert_eq!(
            ninep::frame::frame_len(&s.frame, u32::MAX),
            Ok(Some(s.frame.len()))
        );
        each(&s.frame);
    }
    // Splices come from the unit's previous mutant, so a unit depends on
    // nothing but its own generator.
    s.prev.clear();
    s.prev.extend_from_slice(&s.frame);
    for _ in 0..MUTANTS {
        s.mutant.clear();
        s.mutant.extend_from_slice(&s.frame);
        mutate(rng, &mut s.mutant, &s.prev, 6);
        each(&s.mutant);
        core::mem::swap(&mut s.prev, &mut s.mutant);
    }
}

/// Run one unit: a message, its round trip and its mutants; returns the
/// number of inputs decoded.
pub fn unit(rng: &mut Rng, s: &mut Scratch) -> u64 {
    let mut n = 0;
    inputs(rng, s, |bytes| {
        ninep::fuzzcheck::check(bytes);
        n += 1;
    });
    n
}

/// The unit's inputs in hex, one a line, the failing ones marked.
pub fn describe(_: u64, rng: &mut Rng) -> String {
    let mut s = Scratch::default();
    let mut text = String::new();
    // Regenerating may itself panic (the round trip): report what we can.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        inputs(rng, &mut s, |b| {
            let fails = std::panic::catch_unwind(|| ninep::fuzzcheck::check(b)).is_err();
            let mark = if fails { "FAILS " } else { "" };
            text.push_str(&format!("{mark}{}\n", hex(b)));
        })
    }));
    text
}
