//! File metadata as 9P2000 (`Stat`) and 9P2000.L (`Attr`, `Dirent`,
//! `StatFs`) carry it.

use crate::qid::Qid;

/// A 9P2000 stat record (Rstat, Twstat, and each entry of a directory read).
///
/// On the wire it is preceded by its own size[2]; inside Rstat/Twstat that is
/// itself preceded by another size[2] (see stat(9P)).
#[allow(missing_docs)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat<'a> {
    pub ty: u16,
    pub dev: u32,
    pub qid: Qid,
    /// Permission bits, with the qid type in the top byte (DMDIR = 1<<31).
    pub mode: u32,
    pub atime: u32,
    pub mtime: u32,
    pub length: u64,
    pub name: &'a str,
    pub uid: &'a str,
    pub gid: &'a str,
    pub muid: &'a str,
    /// The 9P2000.u fields, which follow `muid` in that dialect.
    pub ext: Option<StatExt<'a>>,
}

/// What 9P2000.u adds to a stat record.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatExt<'a> {
    /// A symlink's target or a device's `b|c major minor`; else empty.
    pub extension: &'a str,
    pub n_uid: u32,
    pub n_gid: u32,
    pub n_muid: u32,
}

/// The directory bit of a 9P2000 mode.
pub const DMDIR: u32 = 0x8000_0000;
/// The append-only bit of a 9P2000 mode.
pub const DMAPPEND: u32 = 0x4000_0000;
/// The exclusive-use bit of a 9P2000 mode.
pub const DMEXCL: u32 = 0x2000_0000;
/// 9P2000.u: the file is a symbolic link.
pub const DMSYMLINK: u32 = 0x0200_0000;
/// 9P2000.u: the file is a device (the extension says which).
pub const DMDEVICE: u32 = 0x0080_0000;
/// 9P2000.u: the file is a named pipe.
pub const DMNAMEDPIPE: u32 = 0x0020_0000;
/// 9P2000.u: the file is a socket.
pub const DMSOCKET: u32 = 0x0010_0000;

/// One entry of an Rreaddir: qid offset[8] type[1] name[s].
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent<'a> {
    pub qid: Qid,
    /// The offset a client passes to Treaddir to continue after this entry.
    pub offset: u64,
    /// The `d_type` of readdir(3): 4 for a directory, 8 for a file.
    pub ty: u8,
    pub name: &'a str,
}

/// The fields of Rgetattr.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attr {
    pub valid: u64,
    pub qid: Qid,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u64,
    pub blocks: u64,
    pub atime_sec: u64,
    pub atime_nsec: u64,
    pub mtime_sec: u64,
    pub mtime_nsec: u64,
    pub ctime_sec: u64,
    pub ctime_nsec: u64,
    pub btime_sec: u64,
    pub btime_nsec: u64,
    pub generation: u64,
    pub data_version: u64,
}

/// The `valid`/`request_mask` bits of Tgetattr/Rgetattr for the basic fields
/// (mode, nlink, uid, gid, rdev, atime, mtime, ctime, ino, size, blocks).
pub const GETATTR_BASIC: u64 = 0x0000_07ff;

/// The fields of Rstatfs.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    pub ty: u32,
    pub bsize: u32,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub fsid: u64,
    pub namelen: u32,
}
