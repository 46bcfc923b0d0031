//! The shared vocabulary of opening, removing and changing files: 9P2000
//! open modes, Linux open flags (9P2000.L's Tlopen and Tlcreate), the
//! `unlinkat` flag and Tsetattr's `valid` bits. Servers and clients read
//! the same numbers from here.

/// 9P2000 open mode: read.
pub const OREAD: u8 = 0;
/// 9P2000 open mode: write.
pub const OWRITE: u8 = 1;
/// 9P2000 open mode: read and write.
pub const ORDWR: u8 = 2;
/// 9P2000 open mode: execute (read, for a server without programs).
pub const OEXEC: u8 = 3;
/// 9P2000 open bit: truncate first.
pub const OTRUNC: u8 = 0x10;
/// 9P2000 open bit: remove the file when the fid is clunked.
pub const ORCLOSE: u8 = 0x40;

/// Linux open flags: read only.
pub const O_RDONLY: u32 = 0;
/// Linux open flags: write only.
pub const O_WRONLY: u32 = 1;
/// Linux open flags: read and write.
pub const O_RDWR: u32 = 2;

/// Linux open flags: fail if the file exists (with O_CREAT).
pub const O_EXCL: u32 = 0o200;

/// Tunlinkat flag: the name is a directory.
pub const AT_REMOVEDIR: u32 = 0x200;

/// How a file is opened: for reading, writing or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Reads allowed.
    pub read: bool,
    /// Writes allowed.
    pub write: bool,
}

impl Access {
    /// From the low two bits shared by a 9P2000 mode byte (OREAD, OWRITE,
    /// ORDWR, OEXEC) and Linux open flags (O_RDONLY, O_WRONLY, O_RDWR).
    const fn from_low_bits(bits: u32) -> Access {
        match bits & 3 {
            1 => Access {
                read: false,
                write: true,
            },
            2 => Access {
                read: true,
                write: true,
            },
            _ => Access {
                read: true,
                write: false,
            },
        }
    }

    /// The access of a 9P2000 Topen/Tcreate mode byte.
    pub const fn from_9p(mode: u8) -> Access {
        Access::from_low_bits(mode as u32)
    }

    /// The access of Linux open flags (Tlopen, Tlcreate).
    pub const fn from_linux(flags: u32) -> Access {
        Access::from_low_bits(flags)
    }
}

/// The `valid` bits of Tsetattr: which of its fields to set.
pub mod setattr {
    /// Set the mode.
    pub const MODE: u32 = 0x1;
    /// Set the owner.
    pub const UID: u32 = 0x2;
    /// Set the group.
    pub const GID: u32 = 0x4;
    /// Set the size (truncate).
    pub const SIZE: u32 = 0x8;
    /// Set the access time (to now unless [`ATIME_SET`]).
    pub const ATIME: u32 = 0x10;
    /// Set the modification time (to now unless [`MTIME_SET`]).
    pub const MTIME: u32 = 0x20;
    /// Set the change time.
    pub const CTIME: u32 = 0x40;
    /// The access time given, not now.
    pub const ATIME_SET: u32 = 0x80;
    /// The modification time given, not now.
    pub const MTIME_SET: u32 = 0x100;
}
