//! The messages of 9P2000 and 9P2000.L.
//!
//! A [`Msg`] is a tag and a [`Body`]; bodies borrow their strings and data
//! from the frame they were decoded from (or from the caller's buffers when
//! encoding), so neither direction copies payloads.

use crate::qid::Qid;
use crate::stat::{Attr, Stat, StatFs};

/// Which protocol variant a connection speaks, fixed by Tversion.
///
/// It matters to the decoder only where the same message number has
/// different fields: Tauth and Tattach carry `n_uname` in 9P2000.L.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// Plain 9P2000 (Plan 9, p9fs's default, diod's clients never).
    #[default]
    P2000,
    /// 9P2000.L, the Linux dialect (v9fs, diod).
    L,
    /// 9P2000.u, the Unix extension (QEMU's 9p, Linux's `version=9p2000.u`,
    /// older unikernels): numeric errors, ids and a create extension.
    U,
}

impl Dialect {
    /// The version string sent in Tversion/Rversion.
    pub fn version(self) -> &'static str {
        match self {
            Dialect::P2000 => "9P2000",
            Dialect::L => "9P2000.L",
            Dialect::U => "9P2000.u",
        }
    }
}

/// Up to [`crate::MAXWELEM`] path elements of a Twalk, borrowed.
pub type Names<'a> = heapless::Vec<&'a str, { crate::MAXWELEM }>;
/// Up to [`crate::MAXWELEM`] qids of an Rwalk.
pub type Qids = heapless::Vec<Qid, { crate::MAXWELEM }>;

/// One 9P message: its tag and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    /// Matches a reply to its request; [`crate::NOTAG`] for Tversion.
    pub tag: u16,
    /// What the message says.
    pub body: Body<'a>,
}

/// The numeric message types on the wire.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgType {
    // 9P2000.L
    Tlerror = 6,
    Rlerror = 7,
    Tstatfs = 8,
    Rstatfs = 9,
    Tlopen = 12,
    Rlopen = 13,
    Tlcreate = 14,
    Rlcreate = 15,
    Tsymlink = 16,
    Rsymlink = 17,
    Tmknod = 18,
    Rmknod = 19,
    Trename = 20,
    Rrename = 21,
    Treadlink = 22,
    Rreadlink = 23,
    Tgetattr = 24,
    Rgetattr = 25,
    Tsetattr = 26,
    Rsetattr = 27,
    Txattrwalk = 30,
    Rxattrwalk = 31,
    Txattrcreate = 32,
    Rxattrcreate = 33,
    Treaddir = 40,
    Rreaddir = 41,
    Tfsync = 50,
    Rfsync = 51,
    Tlock = 52,
    Rlock = 53,
    Tgetlock = 54,
    Rgetlock = 55,
    Tlink = 70,
    Rlink = 71,
    Tmkdir = 72,
    Rmkdir = 73,
    Trenameat = 74,
    Rrenameat = 75,
    Tunlinkat = 76,
    Runlinkat = 77,
    // 9P2000
    Tversion = 100,
    Rversion = 101,
    Tauth = 102,
    Rauth = 103,
    Tattach = 104,
    Rattach = 105,
    Terror = 106,
    Rerror = 107,
    Tflush = 108,
    Rflush = 109,
    Twalk = 110,
    Rwalk = 111,
    Topen = 112,
    Ropen = 113,
    Tcreate = 114,
    Rcreate = 115,
    Tread = 116,
    Rread = 117,
    Twrite = 118,
    Rwrite = 119,
    Tclunk = 120,
    Rclunk = 121,
    Tremove = 122,
    Rremove = 123,
    Tstat = 124,
    Rstat = 125,
    Twstat = 126,
    Rwstat = 127,
}

/// The body of a message. Field names follow the 9P manual pages and
/// diod's protocol notes for 9P2000.L.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    // ---- 9P2000 ----
    Tversion {
        msize: u32,
        version: &'a str,
    },
    Rversion {
        msize: u32,
        version: &'a str,
    },
    /// `n_uname` is present on the wire only in 9P2000.L and .u.
    Tauth {
        afid: u32,
        uname: &'a str,
        aname: &'a str,
        n_uname: Option<u32>,
    },
    Rauth {
        aqid: Qid,
    },
    /// `n_uname` is present on the wire only in 9P2000.L and .u.
    Tattach {
        fid: u32,
        afid: u32,
        uname: &'a str,
        aname: &'a str,
        n_uname: Option<u32>,
    },
    Rattach {
        qid: Qid,
    },
    /// `errno` is present on the wire only in 9P2000.u.
    Rerror {
        ename: &'a str,
        errno: Option<u32>,
    },
    Tflush {
        oldtag: u16,
    },
    Rflush,
    Twalk {
        fid: u32,
        newfid: u32,
        wnames: Names<'a>,
    },
    Rwalk {
        wqids: Qids,
    },
    Topen {
        fid: u32,
        mode: u8,
    },
    Ropen {
        qid: Qid,
        iounit: u32,
    },
    /// `extension` (a symlink's target, a device's `b|c major minor`) is
    /// present on the wire only in 9P2000.u.
    Tcreate {
        fid: u32,
        name: &'a str,
        perm: u32,
        mode: u8,
        extension: Option<&'a str>,
    },
    Rcreate {
        qid: Qid,
        iounit: u32,
    },
    Tread {
        fid: u32,
        offset: u64,
        count: u32,
    },
    Rread {
        data: &'a [u8],
    },
    Twrite {
        fid: u32,
        offset: u64,
        data: &'a [u8],
    },
    Rwrite {
        count: u32,
    },
    Tclunk {
        fid: u32,
    },
    Rclunk,
    Tremove {
        fid: u32,
    },
    Rremove,
    Tstat {
        fid: u32,
    },
    Rstat {
        stat: Stat<'a>,
    },
    Twstat {
        fid: u32,
        stat: Stat<'a>,
    },
    Rwstat,

    // ---- 9P2000.L ----
    Rlerror {
        ecode: u32,
    },
    Tstatfs {
        fid: u32,
    },
    Rstatfs {
        statfs: StatFs,
    },
    Tlopen {
        fid: u32,
        flags: u32,
    },
    Rlopen {
        qid: Qid,
        iounit: u32,
    },
    Tlcreate {
        fid: u32,
        name: &'a str,
        flags: u32,
        mode: u32,
        gid: u32,
    },
    Rlcreate {
        qid: Qid,
        iounit: u32,
    },
    Tsymlink {
        fid: u32,
        name: &'a str,
        symtgt: &'a str,
        gid: u32,
    },
    Rsymlink {
        qid: Qid,
    },
    Tmknod {
        dfid: u32,
        name: &'a str,
        mode: u32,
        major: u32,
        minor: u32,
        gid: u32,
    },
    Rmknod {
        qid: Qid,
    },
    Trename {
        fid: u32,
        dfid: u32,
        name: &'a str,
    },
    Rrename,
    Treadlink {
        fid: u32,
    },
    Rreadlink {
        target: &'a str,
    },
    Tgetattr {
        fid: u32,
        request_mask: u64,
    },
    Rgetattr {
        attr: Attr,
    },
    Tsetattr {
        fid: u32,
        valid: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        size: u64,
        atime_sec: u64,
        atime_nsec: u64,
        mtime_sec: u64,
        mtime_nsec: u64,
    },
    Rsetattr,
    Txattrwalk {
        fid: u32,
        newfid: u32,
        name: &'a str,
    },
    Rxattrwalk {
        size: u64,
    },
    Txattrcreate {
        fid: u32,
        name: &'a str,
        attr_size: u64,
        flags: u32,
    },
    Rxattrcreate,
    Treaddir {
        fid: u32,
        offset: u64,
        count: u32,
    },
    /// `data` is a run of encoded [`crate::Dirent`]s.
    Rreaddir {
        data: &'a [u8],
    },
    /// Linux sends `datasync`; older clients omit it (decoded as 0).
    Tfsync {
        fid: u32,
        datasync: u32,
    },
    Rfsync,
    Tlock {
        fid: u32,
        ty: u8,
        flags: u32,
        start: u64,
        length: u64,
        proc_id: u32,
        client_id: &'a str,
    },
    Rlock {
        status: u8,
    },
    Tgetlock {
        fid: u32,
        ty: u8,
        start: u64,
        length: u64,
        proc_id: u32,
        client_id: &'a str,
    },
    Rgetlock {
        ty: u8,
        start: u64,
        length: u64,
        proc_id: u32,
        client_id: &'a str,
    },
    Tlink {
        dfid: u32,
        fid: u32,
        name: &'a str,
    },
    Rlink,
    Tmkdir {
        dfid: u32,
        name: &'a str,
        mode: u32,
        gid: u32,
    },
    Rmkdir {
        qid: Qid,
    },
    Trenameat {
        olddirfid: u32,
        oldname: &'a str,
        newdirfid: u32,
        newname: &'a str,
    },
    Rrenameat,
    Tunlinkat {
        dirfid: u32,
        name: &'a str,
        flags: u32,
    },
    Runlinkat,
}

impl Body<'_> {
    /// The wire type number of this body.
    pub fn msg_type(&self) -> MsgType {
        use Body::*;
        match self {
            Tversion { .. } => MsgType::Tversion,
            Rversion { .. } => MsgType::Rversion,
            Tauth { .. } => MsgType::Tauth,
            Rauth { .. } => MsgType::Rauth,
            Tattach { .. } => MsgType::Tattach,
            Rattach { .. } => MsgType::Rattach,
            Rerror { .. } => MsgType::Rerror,
            Tflush { .. } => MsgType::Tflush,
            Rflush => MsgType::Rflush,
            Twalk { .. } => MsgType::Twalk,
            Rwalk { .. } => MsgType::Rwalk,
            Topen { .. } => MsgType::Topen,
            Ropen { .. } => MsgType::Ropen,
            Tcreate { .. } => MsgType::Tcreate,
            Rcreate { .. } => MsgType::Rcreate,
            Tread { .. } => MsgType::Tread,
            Rread { .. } => MsgType::Rread,
            Twrite { .. } => MsgType::Twrite,
            Rwrite { .. } => MsgType::Rwrite,
            Tclunk { .. } => MsgType::Tclunk,
            Rclunk => MsgType::Rclunk,
            Tremove { .. } => MsgType::Tremove,
            Rremove => MsgType::Rremove,
            Tstat { .. } => MsgType::Tstat,
            Rstat { .. } => MsgType::Rstat,
            Twstat { .. } => MsgType::Twstat,
            Rwstat => MsgType::Rwstat,
            Rlerror { .. } => MsgType::Rlerror,
            Tstatfs { .. } => MsgType::Tstatfs,
            Rstatfs { .. } => MsgType::Rstatfs,
            Tlopen { .. } => MsgType::Tlopen,
            Rlopen { .. } => MsgType::Rlopen,
            Tlcreate { .. } => MsgType::Tlcreate,
            Rlcreate { .. } => MsgType::Rlcreate,
            Tsymlink { .. } => MsgType::Tsymlink,
            Rsymlink { .. } => MsgType::Rsymlink,
            Tmknod { .. } => MsgType::Tmknod,
            Rmknod { .. } => MsgType::Rmknod,
            Trename { .. } => MsgType::Trename,
            Rrename => MsgType::Rrename,
            Treadlink { .. } => MsgType::Treadlink,
            Rreadlink { .. } => MsgType::Rreadlink,
            Tgetattr { .. } => MsgType::Tgetattr,
            Rgetattr { .. } => MsgType::Rgetattr,
            Tsetattr { .. } => MsgType::Tsetattr,
            Rsetattr => MsgType::Rsetattr,
            Txattrwalk { .. } => MsgType::Txattrwalk,
            Rxattrwalk { .. } => MsgType::Rxattrwalk,
            Txattrcreate { .. } => MsgType::Txattrcreate,
            Rxattrcreate => MsgType::Rxattrcreate,
            Treaddir { .. } => MsgType::Treaddir,
            Rreaddir { .. } => MsgType::Rreaddir,
            Tfsync { .. } => MsgType::Tfsync,
            Rfsync => MsgType::Rfsync,
            Tlock { .. } => MsgType::Tlock,
            Rlock { .. } => MsgType::Rlock,
            Tgetlock { .. } => MsgType::Tgetlock,
            Rgetlock { .. } => MsgType::Rgetlock,
            Tlink { .. } => MsgType::Tlink,
            Rlink => MsgType::Rlink,
            Tmkdir { .. } => MsgType::Tmkdir,
            Rmkdir { .. } => MsgType::Rmkdir,
            Trenameat { .. } => MsgType::Trenameat,
            Rrenameat => MsgType::Rrenameat,
            Tunlinkat { .. } => MsgType::Tunlinkat,
            Runlinkat => MsgType::Runlinkat,
        }
    }
}
