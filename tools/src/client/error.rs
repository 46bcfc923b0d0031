//! What can go wrong talking to a node.

use std::fmt;

/// A failed 9P request or connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The connection could not be made or broke.
    Io(String),
    /// The node answered something that makes no sense for the request.
    Protocol(String),
    /// The node refused the request (9P2000: with its message).
    Server(String),
    /// The node refused the request (9P2000.L: with an errno).
    Errno(u32),
    /// The request was cancelled with Tflush before it was answered.
    Flushed,
}

impl ClientError {
    /// The errno to hand to FUSE.
    pub fn errno(&self) -> i32 {
        match self {
            ClientError::Errno(e) => *e as i32,
            ClientError::Flushed => libc::EINTR,
            ClientError::Io(_) => libc::EIO,
            ClientError::Protocol(_) => libc::EPROTO,
            ClientError::Server(_) => libc::EIO,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "connection: {e}"),
            ClientError::Protocol(e) => write!(f, "protocol: {e}"),
            ClientError::Server(e) => f.write_str(e),
            ClientError::Errno(e) => write!(f, "{}", std::io::Error::from_raw_os_error(*e as i32)),
            ClientError::Flushed => f.write_str("request cancelled"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Results of client calls.
pub type Result<T> = std::result::Result<T, ClientError>;
