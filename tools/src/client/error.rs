//! What can go wrong talking to a node.

use std::fmt;

/// A failed 9P request or connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The node could not be reached or refused the session.
    Connect {
        /// The address dialled.
        addr: String,
        /// Why it failed.
        reason: String,
    },
    /// The connection broke (or was shut) before the answer came.
    Closed(String),
    /// The node answered something that makes no sense for the request.
    Protocol(String),
    /// The node refused the request, with its own message (9P2000 Rerror).
    Server(String),
    /// The node refused the request with an errno (9P2000.L Rlerror).
    Errno(u32),
    /// The node refused the request with its message and the errno that
    /// stands for it (9P2000.u Rerror).
    Refused {
        /// The node's message.
        text: String,
        /// Its errno.
        errno: u32,
    },
    /// A walk stopped at this name: it does not exist.
    NotFound(String),
    /// The request was cancelled with Tflush before it was answered.
    Flushed,
}

impl ClientError {
    /// The errno that stands for this error (what FUSE hands back to the
    /// program that made the system call).
    pub fn errno(&self) -> i32 {
        match self {
            ClientError::Errno(e) | ClientError::Refused { errno: e, .. } => {
                i32::try_from(*e).unwrap_or(libc::EIO)
            }
            ClientError::NotFound(_) => libc::ENOENT,
            ClientError::Flushed => libc::EINTR,
            ClientError::Protocol(_) => libc::EPROTO,
            ClientError::Connect { .. } | ClientError::Closed(_) | ClientError::Server(_) => {
                libc::EIO
            }
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { addr, reason } => {
                write!(f, "cannot reach a node at {addr}: {reason}")
            }
            ClientError::Closed(why) => write!(f, "connection to the node lost: {why}"),
            ClientError::Protocol(e) => write!(f, "9P protocol error: {e}"),
            ClientError::Server(e) | ClientError::Refused { text: e, .. } => f.write_str(e),
            // "Invalid argument (os error 22)": the text and the number.
            ClientError::Errno(_) => {
                write!(f, "{}", std::io::Error::from_raw_os_error(self.errno()))
            }
            ClientError::NotFound(name) => write!(f, "'{name}' does not exist"),
            ClientError::Flushed => f.write_str("request cancelled (Tflush)"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Results of client calls.
pub type Result<T> = std::result::Result<T, ClientError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_pass_through_and_others_map_to_what_a_program_expects() {
        assert_eq!(ClientError::Errno(17).errno(), libc::EEXIST);
        assert_eq!(ClientError::NotFound("x".into()).errno(), libc::ENOENT);
        assert_eq!(ClientError::Flushed.errno(), libc::EINTR);
        assert_eq!(ClientError::Closed("eof".into()).errno(), libc::EIO);
        assert_eq!(ClientError::Errno(u32::MAX).errno(), libc::EIO);
    }

    #[test]
    fn the_servers_text_is_shown_as_is() {
        let e = ClientError::Server("chan a: unknown verb \"x\"; expected clear".into());
        assert_eq!(e.to_string(), "chan a: unknown verb \"x\"; expected clear");
        assert!(ClientError::Errno(2).to_string().contains("No such file"));
    }
}
