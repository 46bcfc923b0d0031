//! File identities: which file of which object a fid points at.
//!
//! A file is packed into the 64-bit qid path, so a qid alone names the file
//! for as long as the object lives: the device (one per kind of kernel
//! object), the file kind within the device, and the object's number.

/// One file or directory of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct File {
    /// Which device serves it (an index into the device table).
    pub dev: u8,
    /// Which of the device's files it is (the device's own numbering).
    pub kind: u8,
    /// Which object of the device (0 for the device's fixed files).
    pub obj: u64,
}

/// Objects are numbered below 2^48 so that a file fits a qid path.
pub const MAX_OBJ: u64 = (1 << 48) - 1;

impl File {
    /// A file of `dev`, file `kind`, object `obj`.
    pub const fn new(dev: u8, kind: u8, obj: u64) -> File {
        File { dev, kind, obj }
    }

    /// The qid path that names this file.
    pub fn path(self) -> u64 {
        (u64::from(self.dev) << 56) | (u64::from(self.kind) << 48) | (self.obj & MAX_OBJ)
    }
}
