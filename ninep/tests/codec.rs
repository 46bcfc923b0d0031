//! The codec against hand-written frames, round trips of every message,
//! and hostile input.

use ninep::stat::{Attr, StatExt, StatFs};
use ninep::{Body, DecodeError, Dialect, Dirent, Msg, Names, Qid, QidType, Qids, Stat};
use proptest::prelude::*;

fn enc(tag: u16, body: Body<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    ninep::encode(&Msg { tag, body }, &mut v).unwrap();
    v
}

#[test]
fn tversion_matches_the_manual() {
    let f = enc(
        0xffff,
        Body::Tversion {
            msize: 8192,
            version: "9P2000.L",
        },
    );
    let mut want = vec![21, 0, 0, 0, 100, 0xff, 0xff, 0x00, 0x20, 0, 0, 8, 0];
    want.extend_from_slice(b"9P2000.L");
    assert_eq!(f, want);
}

#[test]
fn twalk_with_two_names() {
    let f = enc(
        3,
        Body::Twalk {
            fid: 1,
            newfid: 2,
            wnames: Names::from_slice(&["chan", "x"]).unwrap(),
        },
    );
    let mut want = vec![0, 0, 0, 0, 110, 3, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 4, 0];
    want.extend_from_slice(b"chan");
    want.extend_from_slice(&[1, 0, b'x']);
    want[0] = want.len() as u8;
    assert_eq!(f, want);
}

#[test]
fn tattach_carries_n_uname_only_in_l() {
    let l = enc(
        1,
        Body::Tattach {
            fid: 0,
            afid: !0,
            uname: "u",
            aname: "",
            n_uname: Some(1000),
        },
    );
    let p = enc(
        1,
        Body::Tattach {
            fid: 0,
            afid: !0,
            uname: "u",
            aname: "",
            n_uname: None,
        },
    );
    assert_eq!(l.len(), p.len() + 4);
    assert!(ninep::decode(&l, Dialect::L).is_ok());
    assert_eq!(
        ninep::decode(&l, Dialect::P2000),
        Err(DecodeError::TrailingBytes(4))
    );
    assert_eq!(ninep::decode(&p, Dialect::L), Err(DecodeError::Truncated));
}

#[test]
fn rread_and_rlerror_and_rgetattr_layouts() {
    assert_eq!(
        enc(7, Body::Rread { data: b"hi" }),
        [13, 0, 0, 0, 117, 7, 0, 2, 0, 0, 0, b'h', b'i']
    );
    assert_eq!(
        enc(7, Body::Rlerror { ecode: 2 }),
        [11, 0, 0, 0, 7, 7, 0, 2, 0, 0, 0]
    );
    // valid[8] qid[13] mode[4] uid[4] gid[4] and fifteen u64s.
    let f = enc(
        1,
        Body::Rgetattr {
            attr: Attr::default(),
        },
    );
    assert_eq!(f.len(), 7 + 8 + 13 + 12 + 15 * 8);
}

#[test]
fn tfsync_without_datasync_is_accepted() {
    let f = [11, 0, 0, 0, 50, 1, 0, 5, 0, 0, 0];
    assert_eq!(
        ninep::decode(&f, Dialect::L).unwrap().body,
        Body::Tfsync {
            fid: 5,
            datasync: 0
        }
    );
}

#[test]
fn hostile_frames_are_errors() {
    let ok = enc(
        1,
        Body::Tread {
            fid: 1,
            offset: 0,
            count: 10,
        },
    );
    for cut in 0..ok.len() {
        let mut f = ok[..cut].to_vec();
        if f.len() >= 4 {
            let n = f.len() as u32;
            f[..4].copy_from_slice(&n.to_le_bytes());
        }
        assert!(ninep::decode(&f, Dialect::P2000).is_err(), "cut at {cut}");
    }
    let mut lying = ok.clone();
    lying[0] += 1;
    assert!(matches!(
        ninep::decode(&lying, Dialect::P2000),
        Err(DecodeError::BadSize { .. })
    ));
    assert_eq!(
        ninep::decode(&[7, 0, 0, 0, 106, 0, 0], Dialect::P2000),
        Err(DecodeError::UnknownType(106))
    );
    // count says more than is there.
    let mut w = enc(
        1,
        Body::Twrite {
            fid: 1,
            offset: 0,
            data: b"abc",
        },
    );
    w[19] = 200;
    assert_eq!(
        ninep::decode(&w, Dialect::P2000),
        Err(DecodeError::Truncated)
    );
    // Seventeen names.
    let mut f = enc(
        1,
        Body::Twalk {
            fid: 0,
            newfid: 1,
            wnames: Names::from_slice(&["a"; 16]).unwrap(),
        },
    );
    f[15] = 17;
    f.extend_from_slice(&[1, 0, b'a']);
    let n = f.len() as u32;
    f[..4].copy_from_slice(&n.to_le_bytes());
    assert_eq!(
        ninep::decode(&f, Dialect::P2000),
        Err(DecodeError::TooManyNames(17))
    );
    // Not UTF-8.
    let mut f = enc(
        1,
        Body::Tversion {
            msize: 1,
            version: "ab",
        },
    );
    f[13] = 0xff;
    assert_eq!(ninep::decode(&f, Dialect::P2000), Err(DecodeError::BadUtf8));
}

#[test]
fn long_strings_do_not_encode_and_leave_the_buffer_alone() {
    let long = "x".repeat(70_000);
    let mut out = vec![1, 2, 3];
    let r = ninep::encode(
        &Msg {
            tag: 1,
            body: Body::Rerror {
                ename: &long,
                errno: None,
            },
        },
        &mut out,
    );
    assert!(r.is_err());
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn stats_and_dirents_round_trip() {
    let s = Stat {
        name: "status",
        uid: "a",
        gid: "b",
        muid: "c",
        length: 9,
        ..Stat::default()
    };
    let mut buf = Vec::new();
    ninep::encode::encode_stat(&s, &mut buf).unwrap();
    assert_eq!(buf.len(), s.encoded_len());
    assert_eq!(
        ninep::decode::decode_stat(&buf).unwrap(),
        (s.clone(), buf.len())
    );
    let d = Dirent {
        qid: Qid {
            ty: QidType::DIR,
            version: 1,
            path: 7,
        },
        offset: 3,
        ty: 4,
        name: "chan",
    };
    let mut buf = Vec::new();
    ninep::encode::encode_dirent(&d, &mut buf).unwrap();
    assert_eq!(
        ninep::decode::decode_dirent(&buf).unwrap(),
        (d.clone(), d.encoded_len())
    );
    let f = enc(2, Body::Rstat { stat: s.clone() });
    assert_eq!(
        ninep::decode(&f, Dialect::P2000).unwrap().body,
        Body::Rstat { stat: s.clone() }
    );
    // 9P2000.u's fields follow muid; the record's size says they are there.
    let u = Stat {
        ext: Some(StatExt {
            extension: "",
            n_uid: 1000,
            n_gid: 100,
            n_muid: u32::MAX,
        }),
        ..s
    };
    let mut buf = Vec::new();
    ninep::encode::encode_stat(&u, &mut buf).unwrap();
    assert_eq!(buf.len(), u.encoded_len());
    assert_eq!(buf.len(), s.encoded_len() + 2 + 12);
    assert_eq!(ninep::decode::decode_stat(&buf).unwrap(), (u, buf.len()));
}

#[test]
fn a_9p2000u_error_carries_its_errno() {
    let body = Body::Rerror {
        ename: "File exists",
        errno: Some(17),
    };
    let f = enc(3, body.clone());
    assert_eq!(ninep::decode(&f, Dialect::U).unwrap().body, body);
    // In 9P2000 the same bytes have four too many.
    assert_eq!(
        ninep::decode(&f, Dialect::P2000),
        Err(DecodeError::TrailingBytes(4))
    );
}

/// Field material for one arbitrary message: numbers, strings and bytes
/// that [`build`] borrows from.
#[derive(Debug, Clone)]
struct Seed {
    kind: u8,
    n: [u64; 12],
    s: [String; 4],
    data: Vec<u8>,
    names: usize,
}

fn seed() -> impl Strategy<Value = Seed> {
    (
        any::<u8>(),
        any::<[u64; 12]>(),
        [
            "[a-z0-9./ ]{0,12}",
            "\\PC{0,8}",
            "[A-Za-z]{0,5}",
            "[0-9a-f]{0,40}",
        ],
        proptest::collection::vec(any::<u8>(), 0..300),
        0usize..=16,
    )
        .prop_map(|(kind, n, s, data, names)| Seed {
            kind,
            n,
            s,
            data,
            names,
        })
}

fn qid(n: u64) -> Qid {
    Qid {
        ty: QidType((n >> 56) as u8),
        version: (n >> 8) as u32,
        path: n.rotate_left(7),
    }
}

/// One message of type `kind % 66`, every field from the seed.
fn build(sd: &Seed, dialect: Dialect) -> Body<'_> {
    let n = &sd.n;
    let (s0, s1, s2, s3) = (
        sd.s[0].as_str(),
        sd.s[1].as_str(),
        sd.s[2].as_str(),
        sd.s[3].as_str(),
    );
    let u32_ = |i: usize| n[i] as u32;
    let nu = if matches!(dialect, Dialect::L | Dialect::U) {
        Some(u32_(9))
    } else {
        None
    };
    let u = dialect == Dialect::U;
    let stat = Stat {
        ty: n[0] as u16,
        dev: u32_(1),
        qid: qid(n[2]),
        mode: u32_(3),
        atime: u32_(4),
        mtime: u32_(5),
        length: n[6],
        name: s0,
        uid: s1,
        gid: s2,
        muid: s3,
        ext: u.then_some(StatExt {
            extension: s2,
            n_uid: u32_(7),
            n_gid: u32_(8),
            n_muid: u32_(10),
        }),
    };
    let mut names = Names::new();
    let mut qids = Qids::new();
    for i in 0..sd.names {
        names.push(sd.s[i % 4].as_str()).unwrap();
        qids.push(qid(n[i % 12])).unwrap();
    }
    let attr = Attr {
        valid: n[0],
        qid: qid(n[1]),
        mode: u32_(2),
        uid: u32_(3),
        gid: u32_(4),
        nlink: n[5],
        size: n[6],
        data_version: n[11],
        ..Attr::default()
    };
    let statfs = StatFs {
        ty: u32_(0),
        bsize: u32_(1),
        blocks: n[2],
        ffree: n[3],
        namelen: u32_(4),
        ..StatFs::default()
    };
    match sd.kind % 66 {
        0 => Body::Tversion {
            msize: u32_(0),
            version: s0,
        },
        1 => Body::Rversion {
            msize: u32_(0),
            version: s0,
        },
        2 => Body::Tauth {
            afid: u32_(0),
            uname: s0,
            aname: s1,
            n_uname: nu,
        },
        3 => Body::Rauth { aqid: qid(n[0]) },
        4 => Body::Tattach {
            fid: u32_(0),
            afid: u32_(1),
            uname: s0,
            aname: s1,
            n_uname: nu,
        },
        5 => Body::Rattach { qid: qid(n[0]) },
        6 => Body::Rerror {
            ename: s1,
            errno: u.then_some(u32_(2)),
        },
        7 => Body::Tflush {
            oldtag: n[0] as u16,
        },
        8 => Body::Rflush,
        9 => Body::Twalk {
            fid: u32_(0),
            newfid: u32_(1),
            wnames: names,
        },
        10 => Body::Rwalk { wqids: qids },
        11 => Body::Topen {
            fid: u32_(0),
            mode: n[1] as u8,
        },
        12 => Body::Ropen {
            qid: qid(n[0]),
            iounit: u32_(1),
        },
        13 => Body::Tcreate {
            fid: u32_(0),
            name: s0,
            perm: u32_(1),
            mode: n[2] as u8,
            extension: u.then_some(s3),
        },
        14 => Body::Rcreate {
            qid: qid(n[0]),
            iounit: u32_(1),
        },
        15 => Body::Tread {
            fid: u32_(0),
            offset: n[1],
            count: u32_(2),
        },
        16 => Body::Rread { data: &sd.data },
        17 => Body::Twrite {
            fid: u32_(0),
            offset: n[1],
            data: &sd.data,
        },
        18 => Body::Rwrite { count: u32_(0) },
        19 => Body::Tclunk { fid: u32_(0) },
        20 => Body::Rclunk,
        21 => Body::Tremove { fid: u32_(0) },
        22 => Body::Rremove,
        23 => Body::Tstat { fid: u32_(0) },
        24 => Body::Rstat { stat },
        25 => Body::Twstat { fid: u32_(7), stat },
        26 => Body::Rwstat,
        27 => Body::Rlerror { ecode: u32_(0) },
        28 => Body::Tstatfs { fid: u32_(0) },
        29 => Body::Rstatfs { statfs },
        30 => Body::Tlopen {
            fid: u32_(0),
            flags: u32_(1),
        },
        31 => Body::Rlopen {
            qid: qid(n[0]),
            iounit: u32_(1),
        },
        32 => Body::Tlcreate {
            fid: u32_(0),
            name: s0,
            flags: u32_(1),
            mode: u32_(2),
            gid: u32_(3),
        },
        33 => Body::Rlcreate {
            qid: qid(n[0]),
            iounit: u32_(1),
        },
        34 => Body::Tsymlink {
            fid: u32_(0),
            name: s0,
            symtgt: s1,
            gid: u32_(2),
        },
        35 => Body::Rsymlink { qid: qid(n[0]) },
        36 => Body::Tmknod {
            dfid: u32_(0),
            name: s0,
            mode: u32_(1),
            major: u32_(2),
            minor: u32_(3),
            gid: u32_(4),
        },
        37 => Body::Rmknod { qid: qid(n[0]) },
        38 => Body::Trename {
            fid: u32_(0),
            dfid: u32_(1),
            name: s0,
        },
        39 => Body::Rrename,
        40 => Body::Treadlink { fid: u32_(0) },
        41 => Body::Rreadlink { target: s0 },
        42 => Body::Tgetattr {
            fid: u32_(0),
            request_mask: n[1],
        },
        43 => Body::Rgetattr { attr },
        44 => Body::Tsetattr {
            fid: u32_(0),
            valid: u32_(1),
            mode: u32_(2),
            uid: u32_(3),
            gid: u32_(4),
            size: n[5],
            atime_sec: n[6],
            atime_nsec: n[7],
            mtime_sec: n[8],
            mtime_nsec: n[9],
        },
        45 => Body::Rsetattr,
        46 => Body::Txattrwalk {
            fid: u32_(0),
            newfid: u32_(1),
            name: s0,
        },
        47 => Body::Rxattrwalk { size: n[0] },
        48 => Body::Txattrcreate {
            fid: u32_(0),
            name: s0,
            attr_size: n[1],
            flags: u32_(2),
        },
        49 => Body::Rxattrcreate,
        50 => Body::Treaddir {
            fid: u32_(0),
            offset: n[1],
            count: u32_(2),
        },
        51 => Body::Rreaddir { data: &sd.data },
        52 => Body::Tfsync {
            fid: u32_(0),
            datasync: u32_(1),
        },
        53 => Body::Rfsync,
        54 => Body::Tlock {
            fid: u32_(0),
            ty: n[1] as u8,
            flags: u32_(2),
            start: n[3],
            length: n[4],
            proc_id: u32_(5),
            client_id: s0,
        },
        55 => Body::Rlock { status: n[0] as u8 },
        56 => Body::Tgetlock {
            fid: u32_(0),
            ty: n[1] as u8,
            start: n[3],
            length: n[4],
            proc_id: u32_(5),
            client_id: s0,
        },
        57 => Body::Rgetlock {
            ty: n[1] as u8,
            start: n[3],
            length: n[4],
            proc_id: u32_(5),
            client_id: s0,
        },
        58 => Body::Tlink {
            dfid: u32_(0),
            fid: u32_(1),
            name: s0,
        },
        59 => Body::Rlink,
        60 => Body::Tmkdir {
            dfid: u32_(0),
            name: s0,
            mode: u32_(1),
            gid: u32_(2),
        },
        61 => Body::Rmkdir { qid: qid(n[0]) },
        62 => Body::Trenameat {
            olddirfid: u32_(0),
            oldname: s0,
            newdirfid: u32_(1),
            newname: s1,
        },
        63 => Body::Rrenameat,
        64 => Body::Tunlinkat {
            dirfid: u32_(0),
            name: s0,
            flags: u32_(1),
        },
        _ => Body::Runlinkat,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_message_round_trips(sd in seed(), tag in any::<u16>(), d in 0u8..3) {
        let dialect = [Dialect::P2000, Dialect::L, Dialect::U][usize::from(d)];
        let body = build(&sd, dialect);
        let mut f = Vec::new();
        ninep::encode(&Msg { tag, body: body.clone() }, &mut f).unwrap();
        prop_assert_eq!(ninep::frame::frame_len(&f, u32::MAX).unwrap(), Some(f.len()));
        let back = ninep::decode(&f, dialect).unwrap();
        prop_assert_eq!(back.tag, tag);
        prop_assert_eq!(back.body.msg_type(), body.msg_type());
        prop_assert_eq!(back.body, body);
        // Every strict prefix is an error, never a panic.
        for cut in [f.len() / 2, f.len() - 1] {
            let mut p = f[..cut].to_vec();
            if p.len() >= 4 {
                let n = p.len() as u32;
                p[..4].copy_from_slice(&n.to_le_bytes());
            }
            prop_assert!(ninep::decode(&p, dialect).is_err());
        }
    }

    #[test]
    fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..200), fix_size in any::<bool>()) {
        if fix_size && bytes.len() >= 4 {
            let n = bytes.len() as u32;
            bytes[..4].copy_from_slice(&n.to_le_bytes());
        }
        ninep::fuzzcheck::check(&bytes);
    }
}
