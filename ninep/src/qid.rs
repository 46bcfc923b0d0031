//! Qids: the server's unique identity of a file.

/// The type bits of a qid (the high byte of a file's mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct QidType(pub u8);

impl QidType {
    /// A directory.
    pub const DIR: QidType = QidType(0x80);
    /// An append-only file.
    pub const APPEND: QidType = QidType(0x40);
    /// A file that only one client may open at a time.
    pub const EXCL: QidType = QidType(0x20);
    /// An authentication file (the afid of Tauth).
    pub const AUTH: QidType = QidType(0x08);
    /// A temporary file, not backed up.
    pub const TMP: QidType = QidType(0x04);
    /// A plain file.
    pub const FILE: QidType = QidType(0x00);

    /// Whether this is a directory.
    pub fn is_dir(self) -> bool {
        self.0 & Self::DIR.0 != 0
    }
}

/// A qid: type, version and a path unique among the server's files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Qid {
    /// What kind of file this is.
    pub ty: QidType,
    /// Bumped whenever the file changes, so clients can tell stale caches.
    pub version: u32,
    /// Unique per file for the life of the server.
    pub path: u64,
}

/// Encoded size of a qid: type[1] version[4] path[8].
pub const QID_SIZE: usize = 13;
