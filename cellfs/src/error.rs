//! Errors a request can meet, each with the text a user reads and the errno
//! that 9P2000.L (and therefore FUSE) carries instead.

use alloc::string::String;
use core::fmt;

use crate::cap::{CapError, Right, Rights};
use crate::log::LogError;

/// Linux errno values used on the wire in 9P2000.L.
#[allow(missing_docs)]
pub mod errno {
    pub const EPERM: u32 = 1;
    pub const ENOENT: u32 = 2;
    pub const EIO: u32 = 5;
    pub const EBADF: u32 = 9;
    pub const EAGAIN: u32 = 11;
    pub const EACCES: u32 = 13;
    pub const EBUSY: u32 = 16;
    pub const EEXIST: u32 = 17;
    pub const ENOTDIR: u32 = 20;
    pub const EISDIR: u32 = 21;
    pub const EINVAL: u32 = 22;
    pub const ENOSPC: u32 = 28;
    pub const EPIPE: u32 = 32;
    pub const ERANGE: u32 = 34;
    pub const ENAMETOOLONG: u32 = 36;
    pub const ENOTEMPTY: u32 = 39;
    pub const EPROTO: u32 = 71;
    pub const EMSGSIZE: u32 = 90;
    pub const EOPNOTSUPP: u32 = 95;
}

/// The text Linux's 9P2000 client (and other Unix clients) maps back to
/// `errno`: the C library's message for it, word for word. A plain 9P2000
/// error carries only this, so that such a client gets the right errno;
/// 9P2000.u carries the node's own message beside the number.
pub fn strerror(errno: u32) -> &'static str {
    use errno::*;
    match errno {
        EPERM => "Operation not permitted",
        ENOENT => "No such file or directory",
        EBADF => "Bad file descriptor",
        EAGAIN => "Resource temporarily unavailable",
        EACCES => "Permission denied",
        EBUSY => "Device or resource busy",
        EEXIST => "File exists",
        ENOTDIR => "Not a directory",
        EISDIR => "Is a directory",
        EINVAL => "Invalid argument",
        ENOSPC => "No space left on device",
        EPIPE => "Broken pipe",
        ERANGE => "Numerical result out of range",
        ENAMETOOLONG => "File name too long",
        ENOTEMPTY => "Directory not empty",
        EPROTO => "Protocol error",
        EMSGSIZE => "Message too long",
        EOPNOTSUPP => "Operation not supported",
        _ => "Input/output error",
    }
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A name that is not in the directory walked.
    NotFound(String),
    /// The object a fid stood for was removed after the fid reached it.
    Removed(&'static str),
    /// An object of that name exists already.
    Exists(String),
    /// The fid names no file on this connection.
    UnknownFid(u32),
    /// A new fid was asked for under a number already in use.
    FidInUse(u32),
    /// Walk or open on a fid that is already open.
    FidOpen,
    /// Read or write on a fid not opened for it.
    NotOpenFor(&'static str),
    /// A walk or create from a file that is not a directory.
    NotDir,
    /// Write to a directory, or open one for writing.
    IsDir,
    /// The file does not allow this operation (the text says why).
    Perm(String),
    /// A ctl line or argument that does not parse (the text names the
    /// object, the bad word and what was expected).
    Invalid(String),
    /// The object is full or busy right now; retrying later can work.
    Again(String),
    /// The object is closed for writing.
    Closed(String),
    /// The write is larger than the object takes in one message.
    TooBig(String),
    /// The object cannot take the write yet and its policy is to make the
    /// writer wait: the server parks the request until the object changes
    /// (a client only sees it, as EAGAIN, if it cannot be parked).
    WouldBlock(String),
    /// A name that breaks the naming rules.
    BadName(String),
    /// The request is valid 9P but this server does not do it.
    Unsupported(&'static str),
    /// A Tauth to a node that needs none (ENOENT, which diod's clients and
    /// Linux take to mean "attach without authenticating").
    NoAuth,
    /// The request breaks the protocol (the text says how).
    Protocol(String),
    /// The log could not commit the change; nothing was applied.
    Log(LogError),
    /// The capability presented or held is not valid (now): bad, expired,
    /// not yet valid or revoked.
    Cap(CapError),
    /// No usable capability at attach (the text says what is missing).
    Unauthorized(String),
    /// The fid's capability lacks the right an operation needs.
    Denied {
        /// The operation (`read`, `write`, `create`, `remove`, …).
        op: &'static str,
        /// The file it was tried on.
        path: String,
        /// The capability's holder.
        holder: String,
        /// The capability's scope.
        scope: String,
        /// What it grants.
        rights: Rights,
        /// What was missing.
        right: Right,
    },
}

impl Error {
    /// The errno that stands for this error in 9P2000.L.
    pub fn errno(&self) -> u32 {
        use errno::*;
        match self {
            Error::NotFound(_) | Error::Removed(_) => ENOENT,
            Error::Exists(_) => EEXIST,
            Error::UnknownFid(_) => EBADF,
            Error::FidInUse(_) => EBADF,
            Error::FidOpen => EBUSY,
            Error::NotOpenFor(_) => EBADF,
            Error::NotDir => ENOTDIR,
            Error::IsDir => EISDIR,
            Error::Perm(_) => EPERM,
            Error::Invalid(_) => EINVAL,
            Error::Again(_) => EAGAIN,
            Error::Closed(_) => EPIPE,
            Error::TooBig(_) => EMSGSIZE,
            Error::WouldBlock(_) => EAGAIN,
            Error::BadName(_) => EINVAL,
            Error::Unsupported(_) => EOPNOTSUPP,
            Error::NoAuth => ENOENT,
            Error::Protocol(_) => EPROTO,
            Error::Log(LogError::Full | LogError::NoLeader) => EAGAIN,
            Error::Log(LogError::Refused(_)) => EINVAL,
            Error::Log(LogError::NoSpace(_)) => ENOSPC,
            Error::Log(_) => EIO,
            Error::Cap(_) | Error::Unauthorized(_) | Error::Denied { .. } => EACCES,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound(name) => write!(f, "'{name}' does not exist"),
            Error::Removed(what) => write!(
                f,
                "the {what} was removed while this file was open; walk to it again"
            ),
            Error::Exists(what) => write!(f, "{what} already exists"),
            Error::UnknownFid(fid) => write!(f, "unknown fid {fid}"),
            Error::FidInUse(fid) => write!(f, "fid {fid} already in use"),
            Error::FidOpen => f.write_str("fid is open; walk or open a clone instead"),
            Error::NotOpenFor(how) => write!(f, "fid is not open for {how}"),
            Error::NotDir => f.write_str("not a directory"),
            Error::IsDir => f.write_str("is a directory"),
            Error::Perm(why)
            | Error::Invalid(why)
            | Error::Again(why)
            | Error::Closed(why)
            | Error::TooBig(why)
            | Error::WouldBlock(why)
            | Error::Protocol(why) => f.write_str(why),
            Error::BadName(why) => write!(f, "bad name: {why}"),
            Error::Unsupported(what) => write!(f, "{what} is not supported by cell0"),
            Error::NoAuth => f.write_str(
                "authentication not required: attach with afid NOFID and token=c0.… in aname (or Tauth with aname auth=cap); see cap(3)",
            ),
            // These two say themselves whether anything changed.
            Error::Log(e @ (LogError::Unknown | LogError::NoLeader)) => write!(f, "{e}"),
            Error::Log(e) => write!(f, "{e}; nothing was changed"),
            Error::Cap(e) => write!(f, "{e}"),
            Error::Unauthorized(why) => f.write_str(why),
            Error::Denied {
                op,
                path,
                holder,
                scope,
                rights,
                right,
            } => write!(
                f,
                "{op} {path}: capability '{holder}' (scope {scope}, rights {rights}) lacks the {} right",
                right.name()
            ),
        }
    }
}

impl From<LogError> for Error {
    fn from(e: LogError) -> Self {
        Error::Log(e)
    }
}

impl From<CapError> for Error {
    fn from(e: CapError) -> Self {
        Error::Cap(e)
    }
}
