//! File metadata in the shapes each dialect wants.

use ninep::stat::{DMAPPEND, DMDIR, GETATTR_BASIC};
use ninep::{Attr, Qid, QidType, Stat};

use crate::dev::Info;
use crate::file::File;

/// The owner every file reports.
pub const OWNER: &str = "cell0";

/// The qid of `node` as described by `info`.
pub fn qid(node: File, info: &Info<'_>) -> Qid {
    Qid {
        // A message file (perm has DMAPPEND) says so in its qid, so a
        // client knows each write is one message and must not be split.
        ty: if info.dir {
            QidType::DIR
        } else if info.perm & DMAPPEND != 0 {
            QidType::APPEND
        } else {
            QidType::FILE
        },
        version: info.version,
        path: node.path(),
    }
}

/// A stat record in `dialect`: 9P2000's, or 9P2000.u's with numeric ids
/// (those [`getattr`] reports) and no extension.
pub fn stat_in<'a>(node: File, info: &Info<'a>, dialect: ninep::Dialect) -> Stat<'a> {
    let mut s = stat(node, info);
    if dialect == ninep::Dialect::U {
        s.ext = Some(ninep::StatExt {
            extension: "",
            n_uid: 0,
            n_gid: 0,
            n_muid: 0,
        });
    }
    s
}

/// A 9P2000 stat record.
pub fn stat<'a>(node: File, info: &Info<'a>) -> Stat<'a> {
    let mtime = u32::try_from(info.mtime).unwrap_or(u32::MAX);
    Stat {
        ty: 0,
        dev: 0,
        qid: qid(node, info),
        mode: info.perm | if info.dir { DMDIR } else { 0 },
        atime: mtime,
        mtime,
        length: info.length,
        name: info.name,
        uid: OWNER,
        gid: OWNER,
        muid: OWNER,
        ext: None,
    }
}

/// Linux file-type bits for a directory and a regular file.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

/// A 9P2000.L getattr answer.
pub fn getattr(node: File, info: &Info<'_>) -> Attr {
    Attr {
        valid: GETATTR_BASIC,
        qid: qid(node, info),
        mode: (info.perm & 0o7777) | if info.dir { S_IFDIR } else { S_IFREG },
        uid: 0,
        gid: 0,
        nlink: if info.dir { 2 } else { 1 },
        rdev: 0,
        size: info.length,
        blksize: 4096,
        blocks: info.length.div_ceil(512),
        atime_sec: info.mtime,
        mtime_sec: info.mtime,
        ctime_sec: info.mtime,
        ..Attr::default()
    }
}

/// The `d_type` of a directory entry.
pub fn dirent_type(info: &Info<'_>) -> u8 {
    if info.dir { 4 } else { 8 }
}
